"""Regular expressions for match conditions and ${sg}, PCRE-style on Python's re.

Exim uses PCRE2 (spec chapter "Regular expressions").  Python's ``re`` is
close; the few PCRE spellings it lacks (``\\Q...\\E``, ``(?<name>``, ``\\z``)
are rewritten before compiling, and matching is byte-like (``re.ASCII``).
Compiled patterns are cached by their text.
"""

import re
import warnings

from exim_py.errors import ExpansionError

_cache = {}


_POSIX = {
    "alpha": "a-zA-Z", "digit": "0-9", "alnum": "a-zA-Z0-9", "upper": "A-Z",
    "lower": "a-z", "space": "\\s", "xdigit": "0-9A-Fa-f", "word": "\\w",
    "punct": "!-/:-@\\[-`{-~", "blank": " \\t", "cntrl": "\\x00-\\x1f\\x7f",
    "print": " -~", "graph": "!-~", "ascii": "\\x00-\\x7f",
}
_POSIX_RE = re.compile(r"\[:(\^?)([a-z]+):\]")


def _translate(pattern):
    if "[:" in pattern:
        # POSIX classes inside brackets ([[:alpha:]]); negated ones are left alone.
        pattern = _POSIX_RE.sub(lambda m: _POSIX.get(m.group(2), m.group(0))
                                if not m.group(1) else m.group(0), pattern)
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
            with warnings.catch_warnings():
                # "[[" and the like are valid PCRE; Python only warns.
                warnings.simplefilter("ignore", FutureWarning)
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
