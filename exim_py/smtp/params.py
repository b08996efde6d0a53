"""Parsing the arguments of MAIL and RCPT: the address and the ESMTP parameters.

Exim recognises an ESMTP parameter only when the client used EHLO and the
extension it belongs to was advertised; anything else stays part of the
address operand and makes it malformed ("X=Y may not follow <a@b>").
Parameters are taken from the end of the line, as Exim does, so the
address itself may contain spaces inside quotes.
"""

import re

from exim_py.expand.rfc822 import extract_address

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


def parse_path(operand, allow_empty, domain_literals=True):
    """Extract the mailbox from a MAIL/RCPT operand: ``<a@b>``, ``a@b``, ``<@r1,@r2:a@b>``.

    Returns the address ('' for ``<>`` when ``allow_empty``).  Raises
    BadAddress with Exim's explanation otherwise: the operand goes through
    the port of Exim's parse_extract_address that ${address} uses, so the
    texts are its own ('"@" or "." expected after "c"', "unmatched
    doublequote in local part"...).  ``domain_literals`` is the
    allow_domain_literals option.
    """
    text = operand.strip()
    simple = _SIMPLE_PATH.fullmatch(text)
    if simple:
        # <dot-atom@dot-atom>, as nearly every client sends: the full parser
        # would return just what is between the brackets.
        return simple.group(1)
    errors = []
    parsed = extract_address(text, allow_null=allow_empty, errors=errors,
                             allow_domain_literals=domain_literals)
    if parsed is None:
        raise BadAddress(errors[0])
    return parsed[0]


_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
# RFC 821's rule for a domain, as Exim applies it: letters, digits and
# hyphens, not starting with a hyphen
_LABEL = r"[A-Za-z0-9][A-Za-z0-9-]*"
# "<local@domain>": a dot-atom, and labels; no quotes, comments, source
# route or white space, so nothing for the full parser to do
_SIMPLE_PATH = re.compile(r"<(%s(?:\.%s)*@%s(?:\.%s)*)>" % (_ATOM, _ATOM, _LABEL, _LABEL))


def xtext_decode(value):
    """RFC 3461 4: decode '+XX' escapes (ORCPT, ENVID, AUTH=)."""
    # twisted.mail is imported only when a parameter is xtext-encoded.
    from twisted.mail.smtp import xtext_decode as _twisted_xtext_decode
    return _twisted_xtext_decode(value.encode("ascii", "replace"))[0]
