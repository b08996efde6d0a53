"""The ``begin retry`` and ``begin rewrite`` sections, one rule per line.

Spec chapters "Retry configuration" and "Address rewriting"; the syntax
checks and their error texts are those of Exim's readconf.c.
"""

import collections
import re

from exim_py.config.options import dequote, read_time
from exim_py.errors import ConfigError

RetryRule = collections.namedtuple("RetryRule", "pattern error senders rules filename line")
RewriteRule = collections.namedtuple("RewriteRule", "pattern replacement flags filename line")

REWRITE_FLAGS = "qwhsftcbrEFTQRS"


def _word(text):
    """Exim's string_dequote on a line: a quoted string or a run of non-space characters."""
    text = text.lstrip()
    if text.startswith('"'):
        value, rest, _closed = dequote(text)
        return value, rest
    m = re.match(r"\S*", text)
    return m.group(0), text[m.end():]


def check_retry_error(error):
    """None when ``error`` is a retry error name Exim knows, else Exim's complaint."""
    base, _, extra = error.partition("_")
    low = base.lower()
    if error == "*":
        return None
    if low == "quota":
        if extra and read_time(extra) < 0:
            return "bad time value"
        return None
    if low == "refused":
        if extra and extra.lower() not in ("mx", "a"):
            return 'A or MX expected after "refused"'
        return None
    if low == "timeout":
        if extra and extra.lower() not in ("a", "mx", "connect", "connect_a", "connect_mx", "dns"):
            return '"A", "MX", or "connect" expected after "timeout"'
        return None
    if error[:6].lower() in ("mail_4", "rcpt_4", "data_4"):
        if not re.match(r"^.{6}(xx|\dx|\d\d)$", error):
            return ("%s_4 must be followed by xx, dx, or dd, where x is literal and d is any digit"
                    % error[:4])
        return None
    if low == "auth" and extra.lower() == "failed":
        return None
    if error.lower() in ("lost_connection", "tls_required", "lookup"):
        return None
    return 'unknown or malformed retry error "%s"' % error


def parse_retry(item):
    """One retry rule: pattern, error, optional ``senders =``, then F/G/H rules."""
    def error(message):
        return ConfigError(message, item.filename, item.line)

    pattern, rest = _word(item.text)
    rest = rest.lstrip()
    m = re.match(r"[!-~]*", rest)
    err = m.group(0)
    if not err:
        raise error("missing error type in retry rule")
    problem = check_retry_error(err)
    if problem:
        raise error(problem)
    rest = rest[m.end():].lstrip()
    senders = None
    if rest.startswith("senders"):
        rest = rest[7:].lstrip()
        if not rest.startswith("="):
            raise error('"=" expected after "senders" in retry rule')
        senders, rest = _word(rest[1:])
    rest = rest.lstrip()
    rules = []
    while rest:
        letter = rest[0].upper()
        rest = rest[1:]
        cutoff, rest = _retry_arg(rest, error, fixed=False)
        if letter == "F":
            interval, rest = _retry_arg(rest, error, fixed=False)
            params = (interval,)
            ok = interval > 0
        elif letter in ("G", "H"):
            interval, rest = _retry_arg(rest, error, fixed=False)
            multiplier, rest = _retry_arg(rest, error, fixed=True)
            params = (interval, multiplier)
            ok = interval > 0 and multiplier >= 1
        else:
            raise error("unknown retry rule letter")
        if cutoff <= 0 or not ok:
            raise error("bad parameters for retry rule")
        rules.append((letter, cutoff, params))
        rest = rest.lstrip()
        if rest.startswith(";"):
            rest = rest[1:].lstrip()
        elif rest:
            raise error("semicolon expected")
    return RetryRule(pattern, err, senders, rules, item.filename, item.line)


def _retry_arg(text, error, fixed):
    """``,value`` in a retry rule: a time, or a fixed-point multiplier; -1 if malformed."""
    if not text.startswith(","):
        raise error("comma expected")
    text = text[1:].lstrip()
    m = re.match(r"[A-Za-z0-9.]*" if fixed else r"[A-Za-z0-9]*", text)
    value_text, rest = m.group(0), text[m.end():]
    if rest and not rest[0].isspace() and rest[0] not in ",;":
        raise error("comma or semicolon expected")
    if fixed:
        fm = re.match(r"^(\d+)(?:\.(\d*))?$", value_text)
        value = float("%s.%s" % (fm.group(1), (fm.group(2) or "0")[:3])) if fm else -1
    else:
        value = read_time(value_text)
    return value, rest


def parse_rewrite(item):
    """One rewrite rule: pattern, replacement, then flag letters (as written)."""
    pattern, rest = _word(item.text)
    if not rest.strip():
        raise ConfigError("missing rewrite replacement string", item.filename, item.line)
    replacement, rest = _word(rest)
    flags = []
    for c in rest:
        if c in " \t":
            continue
        if c not in REWRITE_FLAGS:
            raise ConfigError("unknown rewrite flag character '%s' (could be missing quotes round "
                              "replacement item)" % c, item.filename, item.line)
        if c == "S" and not (pattern.startswith("^") or pattern.startswith("\\N^")):
            raise ConfigError("rewrite rule has the S flag but is not a regular expression",
                              item.filename, item.line)
        flags.append(c)
    return RewriteRule(pattern, replacement, "".join(flags), item.filename, item.line)
