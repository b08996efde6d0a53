"""Host lists as routers write them, and finding the hosts' addresses.

Used by manualroute (route_list host lists, spec section "Format of one host
item") and dnslookup (MX and address records).  Lookups go through
exim_py.dns for DNS and the system resolver (getaddrinfo) for ``byname``.
"""

import functools
import ipaddress
import random
import re
import socket

from exim_py.delivery.address import Host

GROUP_BREAK = Host("+")


def split_items(text, default_sep=":"):
    """The non-empty items of an Exim list whose default separator is
    ``default_sep`` (a leading ``<x`` still changes it; doubled separators
    stand for themselves)."""
    from exim_py.match.lists import list_separator, split_list
    sep, start = list_separator(text)
    if start == 0:
        sep = default_sep
    return [item.strip() for item in split_list(text[start:], sep) if item.strip()]


def parse(text):
    """Host list text → list of Host (``mx=-1`` marks a '/MX' item to expand).

    Items are names or IP addresses, optionally with ':port' (or '[ip]:port'),
    a '/MX' suffix, or a lone '+' (a randomisation group break).
    """
    hosts = []
    for item in split_items(text):
        if item == "+":
            hosts.append(GROUP_BREAK)
            continue
        port = None
        m = re.match(r"^\[([^\]]+)\](?::(\d+))?$", item)
        if m:
            name, port = m.group(1), m.group(2)
        else:
            name = item
            if not _is_ip(item):
                m = re.match(r"^(.*?):(\d+)$", item)
                if m:
                    name, port = m.group(1), m.group(2)
        is_mx = name.lower().endswith("/mx")
        if is_mx:
            name = name[:-3]
        host = Host(name, name if _is_ip(name) else None, int(port) if port else None)
        if is_mx:
            host.mx = -1
        hosts.append(host)
    return hosts


@functools.lru_cache(maxsize=1024)
def _is_ip(text):
    # Remembered: a relay parses the same host list for every message.
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


# The MX value Exim gives the hosts of the first group of a randomized list
# (each '+' lowers it by one): below -1, which marks "no MX" (host.c).
_FAKE_MX = -2


def randomize_groups(hosts):
    """Shuffle each group between '+' items, keeping the groups in order.

    As Exim, each group's hosts get a made-up MX value of their own, so that
    addresses whose lists differ only by the shuffle are still seen as going
    to the same hosts (:func:`batch_key`); '/MX' items keep their marker.
    """
    out, group = [], []
    fake_mx = _FAKE_MX
    for h in hosts + [GROUP_BREAK]:
        if h is GROUP_BREAK:
            random.shuffle(group)
            out.extend(group)
            group = []
            fake_mx -= 1
        else:
            if h.mx is None:
                h = h.copy(mx=fake_mx)
            group.append(h)
    return out


def batch_key(hosts):
    """A key that is the same for two host lists exactly when Exim's
    same_hosts() lets their addresses share one delivery: hosts in the same
    order, except that within a run of hosts with one MX value (real, or made
    up for a randomized list) the order does not matter."""
    key, i = [], 0
    while i < len(hosts):
        mx = hosts[i].mx
        j = i + 1
        if mx is not None and mx != -1:
            while j < len(hosts) and hosts[j].mx == mx:
                j += 1
        key.append(tuple(sorted((h.name or "", h.address or "", h.port or 0)
                                for h in hosts[i:j])))
        i = j
    return tuple(key)


def byname(name):
    """Addresses from the system resolver (/etc/hosts, then DNS), IPv4 first."""
    try:
        infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        return []
    seen = []
    for family in (socket.AF_INET, socket.AF_INET6):
        for info in infos:
            if info[0] == family and info[4][0] not in seen:
                seen.append(info[4][0])
    return seen


def resolve(host, ctx, lookup_type=None):
    """The Hosts (one per address) for one host-list item; [] when none exist.

    ``lookup_type`` is "byname", "bydns" or None (DNS first, then the system
    resolver, as Exim does when neither is given).  An '/MX' item expands to
    the MX hosts of its name.  Raises LookupDefer on a temporary DNS failure.
    """
    if host.address:
        return [host.copy()]
    if host.mx == -1:
        return [h.copy(port=host.port) if host.port else h for h in mx_hosts(host.name, ctx)]
    if lookup_type == "byname":
        ips = byname(host.name)
    else:
        from exim_py import dns
        ips = dns.get_resolver(ctx.config).addresses(host.name)
        if not ips and lookup_type is None:
            ips = byname(host.name)
    return [host.copy(address=ip) for ip in ips]


def mx_hosts(domain, ctx):
    """Hosts from the MX records of ``domain``, by preference, equal preferences
    in random order, each expanded to its addresses (RFC 5321 5.1)."""
    from exim_py import dns
    resolver = dns.get_resolver(ctx.config)
    records = resolver.mx_hosts(domain)
    by_pref = {}
    for pref, name in records:
        by_pref.setdefault(pref, []).append(name)
    out = []
    for pref in sorted(by_pref):
        names = by_pref[pref]
        random.shuffle(names)
        for name in names:
            for ip in resolver.addresses(name):
                out.append(Host(name, ip, mx=pref))
    return out


def remove_ignored(hosts, router, addr, ctx):
    """Drop hosts in the router's ignore_target_hosts list."""
    spec = router.options["ignore_target_hosts"]
    if not spec:
        return hosts
    from exim_py import match
    mctx = ctx.expand_context(addr)
    return [h for h in hosts if not match.match_host(h, spec, mctx)]
