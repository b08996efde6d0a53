"""Parsing one RFC 5322 address the way Exim's parse_extract_address does.

Used for -bt/-bv arguments and for redirection lists: an item may be a bare
address, ``Name <address>``, carry (comments), or have a quoted local part.
Errors carry Exim's wording ("missing or malformed local part (expected
word or "<")"), because -bt prints them and bounces quote them.
"""

import re

from exim_py.delivery.address import find_at

_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-]+"
_LOCAL_RE = re.compile(r'^(?:%s(?:\.%s)*|"(?:[^"\\]|\\.)*")(?:\.(?:%s|"(?:[^"\\]|\\.)*"))*$'
                       % (_ATOM, _ATOM, _ATOM))
_DOMAIN_RE = re.compile(r"^(?:%s(?:\.%s)*|\[[^\[\]]*\])$" % (_ATOM, _ATOM))


class AddressSyntaxError(ValueError):
    """An address that does not parse; ``str()`` is Exim's reason."""


def _strip_comments(text):
    out, depth, in_quote, i = [], 0, False, 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            if depth == 0:
                out.append(text[i:i + 2])
            i += 2
            continue
        if c == '"' and depth == 0:
            in_quote = not in_quote
        elif c == "(" and not in_quote:
            depth += 1
            i += 1
            continue
        elif c == ")" and not in_quote and depth:
            depth -= 1
            i += 1
            continue
        if depth == 0:
            out.append(c)
        i += 1
    return "".join(out)


def extract_address(text, allow_unqualified=True):
    """The address inside ``text`` (route-addr or addr-spec); raises AddressSyntaxError.

    Returns "" for an empty route-addr ``<>`` (the null sender).
    """
    text = _strip_comments(text).strip()
    if not text:
        raise AddressSyntaxError("empty address")
    m = re.search(r"<([^<>]*)>\s*$", text)
    if m:
        inner = m.group(1).strip()
        if inner == "":
            return ""
        # A source route (@a,@b:user@c) is accepted and ignored, as Exim does.
        if inner.startswith("@") and ":" in inner:
            inner = inner.split(":", 1)[1]
        text = inner
    elif "<" in text:
        # Inside a route-addr the local part must start at once.
        raise AddressSyntaxError("missing or malformed local part")
    elif ">" in text:
        raise AddressSyntaxError('"<" missing at start of route-addr')
    local, at, domain = _split(text)
    if not local or not _LOCAL_RE.match(local):
        raise AddressSyntaxError('missing or malformed local part (expected word or "<")')
    if at:
        if not domain or not _DOMAIN_RE.match(domain):
            raise AddressSyntaxError("domain missing or malformed")
        return local + "@" + domain
    if not allow_unqualified:
        raise AddressSyntaxError("unqualified address not permitted")
    return local


def _split(text):
    at = find_at(text)
    if at < 0:
        return text.strip(), "", ""
    return text[:at].strip(), "@", text[at + 1:].strip()


def qualify(address, domain):
    """Add ``@domain`` to an unqualified address."""
    if "@" in address.replace('\\@', "") and _split(address)[1]:
        return address
    return "%s@%s" % (address, domain)
