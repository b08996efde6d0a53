"""The iplsearch lookup: an lsearch-format file keyed by IP addresses and networks.

The key sought must be a bare IP address; keys in the file are addresses or
CIDR networks (IPv6 ones quoted, because of their colons) or ``*``, and the
first that contains the address wins (spec "File and database lookups",
iplsearch).
"""

import ipaddress

from exim_py.lookups import defer
from exim_py.lookups import lsearch


def _networks(entries):
    """Each entry with its key parsed as a network (None when it is not one)."""
    out = []
    for entry in entries:
        try:
            net = ipaddress.ip_network(entry.key, strict=False)
        except ValueError:
            net = None
        out.append((entry, net))
    return out


class Lookup(lsearch.Lookup):

    def find_entry(self, path, key, ctx):
        entries = lsearch.FILES.get(path, _networks)
        if key == "*":
            return next((e for e, _ in entries if e.key == "*"), None)
        try:
            address = ipaddress.ip_address(key)
        except ValueError:
            raise defer('"%s" is not a valid iplsearch key (an IP address, with optional '
                        'CIDR mask, is wanted): in a host list, use net-iplsearch as the '
                        'search type' % key)
        if address.version == 6 and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        for entry, net in entries:
            if net is not None and address in net:
                return entry
        return None
