"""Addresses with a port given on the command line: -bh, -oMa and -oMi.

Exim reads them all through check_port (host_address_extract_port, then a
check that what is left is an IP address), so exim_py does too: -bh and -bs
(smtp/stdio.py), -be (expand/be.py) and local submission (delivery/submit.py)
share this one function.
"""

import ipaddress
import re
import sys


class NotAnIPAddress(ValueError):
    """A -bh, -oMa or -oMi argument that is no IP address: Exim's abandon message."""

    def __str__(self):
        return '"%s" is not an IP address' % self.args[0]


# What C's strtol takes in full (Exim checks that nothing follows the number);
# an empty port is a number too, 0.
_STRTOL = re.compile(r"(?:[ \t\n\v\f\r]*[+-]?\d+)?\Z")


def _extract_port(text):
    """Exim's host_address_extract_port: ``[address]:port`` or
    ``address.port`` (the dot after the four parts of an IPv4 address, the
    first dot after the last colon of an IPv6 one).  Returns (address,
    port); a port that is not a number leaves the text as it was, port 0."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return text, 0
        rest = text[end + 1:]
        if rest.startswith(":"):
            port = rest[1:]
        elif rest:
            return text, 0
        else:
            port = ""
        address = text[1:end]
    else:
        skip = -3
        for i, ch in enumerate(text):
            if ch == ":":
                skip = 0
            elif ch == ".":
                if skip >= 0:
                    break
                skip += 1
        else:
            return text, 0
        address, port = text[:i], text[i + 1:]
    if not _STRTOL.match(port):
        return text, 0
    value = int(port) if port.strip() else 0
    return address, ((value & 0xFFFFFFFF) ^ 0x80000000) - 0x80000000   # C's int


def command_line_address(text, canonical=False):
    """An address from the command line (-bh, -oMa) as Exim's check_port
    takes it: (address, port), or NotAnIPAddress.  With ``canonical`` (the
    -bh argument) the address is rewritten in Exim's canonical form, an IPv6
    one written out in full as host_nmtoa does (``2001:0db8:0000:...``),
    since Exim rewrites it so before the session starts.  -oMa and the
    addresses of real connections keep the form they have."""
    address, port = _extract_port(text)
    try:
        if "%" in address:
            raise ValueError(address)
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise NotAnIPAddress(address)
    if canonical:
        address = ip.exploded if ip.version == 6 else str(ip)
    return address, port


def checked_address(text):
    """command_line_address for -oMa / -oMi, or Exim's abandon when ``text``
    is no IP address: the message on standard error and exit status 1."""
    try:
        return command_line_address(text)
    except NotAnIPAddress as e:
        sys.stderr.write("exim abandoned: %s\n" % e)
        raise SystemExit(1)
