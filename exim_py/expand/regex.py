"""Regular expressions for match conditions and ${sg}, PCRE-style on Python's re.

Exim uses PCRE2 (spec chapter "Regular expressions").  Python's ``re`` is
close; the few PCRE spellings it lacks (``\\Q...\\E``, ``(?<name>``, ``\\z``)
are rewritten before compiling, and matching is byte-like (``re.ASCII``).
Compiled patterns are cached by their text.
"""

import re

from exim_py.errors import ExpansionError

_cache = {}


def _translate(pattern):
    out = []
    i = 0
    n = len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\" and i + 1 < n:
            d = pattern[i + 1]
            if d == "Q":
                end = pattern.find("\\E", i + 2)
                literal = pattern[i + 2:] if end < 0 else pattern[i + 2:end]
                out.append(re.escape(literal))
                i = n if end < 0 else end + 2
                continue
            if d == "z":
                out.append("\\Z")
            elif d == "Z":
                out.append("(?=\\n?\\Z)")
            else:
                out.append(pattern[i:i + 2])
            i += 2
            continue
        if pattern.startswith("(?<", i) and i + 3 < n and pattern[i + 3] not in "=!":
            out.append("(?P<")
            i += 3
            continue
        out.append(c)
        i += 1
    return "".join(out)


def compile_regex(pattern):
    """The compiled form of PCRE ``pattern``; ExpansionError as Exim words it."""
    compiled = _cache.get(pattern)
    if compiled is None:
        try:
            compiled = re.compile(_translate(pattern), re.ASCII)
        except re.error as e:
            raise ExpansionError('regular expression error in "%s": %s at offset %d'
                                 % (pattern, e.msg, e.pos or 0))
        if len(_cache) > 5000:
            _cache.clear()
        _cache[pattern] = compiled
    return compiled


def set_numeric(ctx, m):
    """Make $0, $1 ... the groups of match ``m``."""
    ctx.numeric = [m.group(0)] + [g or "" for g in m.groups()]
