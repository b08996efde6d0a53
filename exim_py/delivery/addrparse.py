"""Parsing one RFC 5322 address the way Exim's parse_extract_address does.

Used for -bt/-bv arguments and for redirection lists: an item may be a bare
address, ``Name <address>``, carry (comments), or have a quoted local part.
Errors carry Exim's wording ("missing or malformed local part (expected
word or "<")"), because -bt prints them and bounces quote them.
"""

from exim_py.delivery.address import find_at
from exim_py.expand.rfc822 import extract_address as _parse


class AddressSyntaxError(ValueError):
    """An address that does not parse; ``str()`` is Exim's reason."""


def extract_address(text):
    """The address inside ``text`` (route-addr or addr-spec); raises AddressSyntaxError.

    The parse is expand/rfc822.py's port of Exim's parse_extract_address,
    the one MAIL and RCPT use, so the reasons are Exim's; as in Exim's -bt
    and redirection lists, ``<>`` is no address ("missing or malformed
    local part").
    """
    errors = []
    parsed = _parse(text, errors=errors)
    if parsed is None:
        raise AddressSyntaxError(errors[0])
    return parsed[0]


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
