"""Parsing the arguments of MAIL and RCPT: the address and the ESMTP parameters.

Exim recognises an ESMTP parameter only when the client used EHLO and the
extension it belongs to was advertised; anything else stays part of the
address operand and makes it malformed ("X=Y may not follow <a@b>").
Parameters are taken from the end of the line, as Exim does, so the
address itself may contain spaces inside quotes.
"""

import re

from twisted.mail.smtp import xtext_decode as _twisted_xtext_decode

_PARAM = re.compile(r"\s+([A-Za-z0-9][A-Za-z0-9-]*)(?:=(\S*))?$")


def split_params(text, known):
    """Split ``text`` into (address operand, {NAME: value}).

    ``known`` is the set of upper-case parameter names acceptable now; the
    scan from the end stops at the first word that is not one of them.
    A parameter given without ``=value`` maps to ``None``.
    """
    params = {}
    rest = text.rstrip()
    while True:
        m = _PARAM.search(rest)
        if not m or m.group(1).upper() not in known:
            break
        name = m.group(1).upper()
        if name in params:
            break
        params[name] = m.group(2)
        rest = rest[:m.start()].rstrip()
    return rest.strip(), params


class BadAddress(ValueError):
    """An address operand Exim would refuse; ``str()`` is the text after '<operand>: '."""


def parse_path(operand, allow_empty):
    """Extract the mailbox from a MAIL/RCPT operand: ``<a@b>``, ``a@b``, ``<@r1,@r2:a@b>``.

    Returns the address ('' for ``<>`` when ``allow_empty``).  Raises
    BadAddress with Exim's explanation otherwise.
    """
    text = operand.strip()
    if text.startswith("<"):
        close = _find_close(text)
        if close < 0:
            raise BadAddress("'>' missing at end of address")
        inner, trailing = text[1:close].strip(), text[close + 1:].strip()
        if trailing:
            raise BadAddress("malformed address: %s may not follow %s " % (trailing, text[:close + 1]))
    else:
        inner = text
        if " " in _unquoted(inner):
            first = inner.split(None, 1)
            raise BadAddress("malformed address: %s may not follow %s " % (first[1], first[0]))
    # RFC 5321 4.1.2: a source route is accepted and ignored
    if inner.startswith("@"):
        colon = inner.find(":")
        if colon < 0:
            raise BadAddress("malformed address: source route without a mailbox")
        inner = inner[colon + 1:]
    if inner == "":
        if allow_empty:
            return ""
        raise BadAddress("missing or malformed local part")
    local, at, domain = inner.rpartition("@")
    if not at:
        local, domain = inner, ""
    if local == "" and at:
        raise BadAddress("missing or malformed local part")
    if at and domain == "":
        raise BadAddress("domain missing or malformed")
    if local.startswith('"'):
        if not local.endswith('"') or len(local) < 2:
            raise BadAddress("missing or malformed local part")
    return inner


def _find_close(text):
    """Index of the '>' closing the leading '<', skipping quoted strings."""
    quoted = False
    i = 1
    while i < len(text):
        c = text[i]
        if c == "\\" and quoted:
            i += 2
            continue
        if c == '"':
            quoted = not quoted
        elif c == ">" and not quoted:
            return i
        i += 1
    return -1


def _unquoted(text):
    """``text`` with quoted strings blanked out (to look for bare spaces)."""
    return re.sub(r'"(?:[^"\\]|\\.)*"', "q", text)


def xtext_decode(value):
    """RFC 3461 4: decode '+XX' escapes (ORCPT, ENVID, AUTH=)."""
    return _twisted_xtext_decode(value.encode("ascii", "replace"))[0]
