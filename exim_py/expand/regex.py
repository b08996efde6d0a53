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
_POSIX_RE = re.compile(r"\[:(\^?)([^\]\[]*?):\]")


class _PcreError(Exception):
    def __init__(self, message, offset):
        super().__init__(message)
        self.message = message
        self.offset = offset


def _posix_classes(pattern):
    """Rewrite [[:name:]] inside bracket expressions for Python; refuse what
    PCRE refuses (an unknown name, a class outside brackets)."""
    out = []
    i = 0
    n = len(pattern)
    in_class = False
    while i < n:
        c = pattern[i]
        if c == "\\":
            out.append(pattern[i:i + 2])
            i += 2
            continue
        m = _POSIX_RE.match(pattern, i) if c == "[" else None
        if m:
            if not in_class:
                raise _PcreError("POSIX named classes are supported only within a class", i)
            if m.group(2) not in _POSIX:
                raise _PcreError("unknown POSIX class name", i + 2)
            # A negated class ([:^alpha:]) is left for Python to refuse.
            out.append(m.group(0) if m.group(1) else _POSIX[m.group(2)])
            i = m.end()
            continue
        if in_class:
            if c == "]":
                in_class = False
        elif c == "[":
            in_class = True
            i = _open_class(pattern, i, out)
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _open_class(pattern, i, out):
    """Copy the '[' at ``i`` with an optional '^' after it and, first in the
    class, a ']' (a literal in PCRE); return the index after them."""
    out.append("[")
    i += 1
    if pattern[i:i + 1] == "^":
        out.append("^")
        i += 1
    if pattern[i:i + 1] == "]":
        out.append("]")
        i += 1
    return i


def _translate(pattern):
    if "[:" in pattern:
        pattern = _posix_classes(pattern)
    out = []
    i = 0
    n = len(pattern)
    # PCRE lets (?i) and friends appear anywhere, applying to the rest of the
    # group; Python only takes them at the start, so later ones become a
    # scoped (?i: ...) closed where the group ends.
    closers = [0]           # per open group: scoped groups to close at its end
    in_class = False
    while i < n:
        c = pattern[i]
        if in_class:
            if c == "\\" and i + 1 < n:
                out.append(pattern[i:i + 2])
                i += 2
                continue
            if c == "]":
                in_class = False
            out.append(c)
            i += 1
            continue
        if c == "[":
            in_class = True
            i = _open_class(pattern, i, out)
            continue
        if pattern.startswith("(?)", i):
            i += 3                      # an empty option setting
            continue
        m = _INLINE_FLAGS.match(pattern, i) if c == "(" else None
        if m and out:
            out.append("(?%s:" % m.group(1))
            closers[-1] += 1
            i = m.end()
            continue
        if c == "(" and not pattern.startswith("(?#", i):
            closers.append(0)
        elif c == ")" and len(closers) > 1:
            out.append(")" * closers.pop())
        if c == "\\" and i + 1 < n:
            d = pattern[i + 1]
            if d == "Q":
                end = pattern.find("\\E", i + 2)
                literal = pattern[i + 2:] if end < 0 else pattern[i + 2:end]
                out.append(re.escape(literal))
                i = n if end < 0 else end + 2
                continue
            if d == "E":
                pass                    # \E without \Q: PCRE ignores it
            elif d == "z":
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
    out.append(")" * closers[0])
    return "".join(out)


_INLINE_FLAGS = re.compile(r"\(\?([imsx]+)\)")


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
        except _PcreError as e:
            raise ExpansionError('regular expression error in "%s": %s at offset %d'
                                 % (pattern, e.message, e.offset))
        if len(_cache) > 5000:
            _cache.clear()
        _cache[pattern] = compiled
    return compiled


def set_numeric(ctx, m):
    """Make $0, $1 ... the groups of match ``m`` (tainted if the subject was)."""
    from exim_py.expand.nodes import taint_like
    subject = m.string
    ctx.numeric = [taint_like(g or "", subject) for g in (m.group(0),) + m.groups()]
