"""Host list items, and the local host's own addresses (Exim's check_host).

Spec chapter "Domain, host, address, and local part lists", section "Host
lists".  Items that look at the IP address: ``*``, the empty item (no
remote host), IP addresses and CIDR networks, ``@[]``, ``net[N]-type;file``
(the masked address is the key) and query-style lookups.  Items that need
the host name, found by a reverse lookup confirmed forwards when the caller
did not know it: ``*suffix``, ``^regex`` and ``type;file`` (the name is the
key).  A plain name (and ``@``, the primary host name) is looked up
forwards and compared by address.

A host whose ``name`` is ``""`` (not None) may be matched by address only,
as ``${if match_ip}`` requires; single-key lookups then behave as ``net-``.
"""

import fcntl
import functools
import ipaddress
import re
import socket
import struct
import time

from exim_py import lookups
from exim_py.errors import LookupDefer
from exim_py.match.engine import Matcher, Unknown, check_list
from exim_py.match.items import StringMatcher, primary_hostname
from exim_py.match.lists import iter_list

_SIOCGIFADDR = 0x8915
_MALFORMED_V4 = re.compile(r"[0-9.]*(/.*)?$")


@functools.lru_cache(maxsize=4096)
def ip_and_mask(text):
    """``ip_network`` for an IP address with optional ``/bits``, else None."""
    if not text or not (text[0].isdigit() or text[0] in ":abcdefABCDEF"):
        return None
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


@functools.lru_cache(maxsize=4096)
def normalise_address(address):
    """IPv4-mapped IPv6 (``::ffff:1.2.3.4``) becomes plain IPv4, as Exim does.

    Every host list check of a session asks this for the same client, so
    answers are kept (parsing an address costs more than the list check)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


@functools.lru_cache(maxsize=4096)
def _parsed_address(address):
    """``ipaddress.ip_address`` of a normalised address, kept for the same reason."""
    return ipaddress.ip_address(address)


def masked_key(address, bits, sep):
    """The key of a ``net[N]-`` lookup (Exim's host_nmtoa).

    IPv4 is dotted; IPv6 is written in full, four hex digits per group,
    separated by ``sep`` (``.``, or ``:`` for iplsearch); ``/N`` follows
    when a mask was given.
    """
    ip = ipaddress.ip_address(address)
    if bits is not None:
        ip = ipaddress.ip_network("%s/%d" % (ip, min(bits, ip.max_prefixlen)),
                                  strict=False).network_address
    if ip.version == 4:
        text = str(ip)
    else:
        text = sep.join("%04x" % int.from_bytes(ip.packed[i:i + 2], "big")
                        for i in range(0, 16, 2))
    return text if bits is None else "%s/%d" % (text, bits)


_interfaces = (0.0, frozenset())


def _interface_addresses():
    """Every IP address on this host's interfaces, re-read at most once a minute."""
    global _interfaces
    now = time.monotonic()
    if now - _interfaces[0] > 60 or not _interfaces[1]:
        _interfaces = (now, frozenset(_read_interface_addresses()))
    return _interfaces[1]


def _read_interface_addresses():
    out = set()
    for _, name in socket.if_nameindex():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            packed = fcntl.ioctl(s.fileno(), _SIOCGIFADDR,
                                 struct.pack("256s", name.encode()[:15]))
            out.add(socket.inet_ntoa(packed[20:24]))
        except OSError:
            pass
        finally:
            s.close()
    try:
        with open("/proc/net/if_inet6") as f:
            for line in f:
                hexaddr = line.split()[0]
                out.add(str(ipaddress.IPv6Address(bytes.fromhex(hexaddr))))
    except OSError:
        pass
    return out


def _interface_list(text):
    """Addresses named in a local_interfaces-style list (ports dropped)."""
    out = []
    for item in iter_list(text or ""):
        item = item.strip()
        if item.startswith("["):
            item = item[1:item.find("]")] if "]" in item else item[1:]
        try:
            out.append(str(ipaddress.ip_address(item)))
            continue
        except ValueError:
            pass
        head, _, tail = item.rpartition(".")
        if tail.isdigit():
            try:
                out.append(str(ipaddress.ip_address(head)))
            except ValueError:
                pass
    return out


def local_addresses(ctx):
    """The IP addresses Exim treats as this host's own (``@[]``, ``@mx_any``).

    ``local_interfaces`` (all interfaces for its wildcard entries) plus
    ``extra_local_interfaces``, as Exim's host_find_interfaces.
    """
    main = ctx.main_option if hasattr(ctx, "main_option") else (lambda name, d=None: d)
    configured = main("local_interfaces", "<; ::0 ; 0.0.0.0")
    addresses = set()
    for item in _interface_list(configured) + _interface_list(main("extra_local_interfaces")):
        if item in ("0.0.0.0", "::"):
            addresses |= {a for a in _interface_addresses() if (":" in a) == (":" in item)}
        else:
            addresses.add(item)
    return addresses


def check_mx(domain, pattern, ctx):
    """``@mx_any``, ``@mx_primary``, ``@mx_secondary`` (optionally ``/ignore=list``).

    True/False, or None when ``pattern`` is not one of them after all.
    Spec "Domain lists": a target is local when one of its addresses is
    ours or its name is in ``hosts_treat_as_local``.
    """
    low = pattern.lower()
    for which in ("any", "primary", "secondary"):
        if low.startswith("@mx_" + which):
            rest = pattern[4 + len(which):]
            break
    else:
        return None
    ignore = None
    if rest.lower().startswith("/ignore="):
        ignore = rest[8:]
    elif rest:
        return None
    from exim_py.dns import get_resolver     # dnspython only when the DNS is asked
    resolver = get_resolver(getattr(ctx, "config", None))
    try:
        mxs = resolver.mx_hosts(domain)
    except LookupDefer:
        raise LookupDefer('DNS lookup of "%s" deferred' % domain)
    if not mxs:
        return False
    ours = local_addresses(ctx)
    treat = ctx.main_option("hosts_treat_as_local") if hasattr(ctx, "main_option") else None
    lowest = mxs[0].preference
    primary_local = other_local = False
    for mx in mxs:
        local = False
        if treat and check_list(treat, StringMatcher("domain", mx.host, ctx)):
            local = True
        else:
            for address in resolver.addresses(mx.host):
                if ignore and match_host_address(address, ignore, ctx):
                    continue
                if address in ours:
                    local = True
                    break
        if local:
            if mx.preference == lowest:
                primary_local = True
            else:
                other_local = True
    if which == "any":
        return primary_local or other_local
    if which == "primary":
        return primary_local
    return other_local and not primary_local


def match_host_address(address, liststring, ctx):
    """Whether IP ``address`` is in host list ``liststring``, by address only."""
    return check_list(liststring, HostMatcher(_AddressOnly(address), ctx))


class _AddressOnly:
    def __init__(self, address):
        self.address = address
        self.name = ""


def etc_hosts():
    """(address, [names]) for each line of /etc/hosts."""
    out = []
    try:
        with open("/etc/hosts") as f:
            for line in f:
                fields = line.split("#", 1)[0].split()
                if len(fields) > 1:
                    out.append((normalise_address(fields[0]), fields[1:]))
    except OSError:
        pass
    return out


def host_addresses(name, ctx):
    """Addresses of host ``name``: /etc/hosts first, as the system resolver
    does, then the DNS.  LookupDefer on a temporary DNS error."""
    low = name.lower()
    found = [a for a, names in etc_hosts() if low in (n.lower() for n in names)]
    if found:
        return found
    from exim_py.dns import get_resolver     # dnspython only when the DNS is asked
    resolver = get_resolver(getattr(ctx, "config", None))
    return [normalise_address(a) for a in resolver.addresses(name)]


class HostMatcher(Matcher):
    """Matching one host (``.address``, ``.name`` which may be None) against host items."""

    def __init__(self, host, ctx):
        address = getattr(host, "address", None) or ""
        super().__init__("host", ctx, normalise_address(address) if address else "")
        self.host = host
        self.address = self.cache_key
        self.iponly = getattr(host, "name", None) == ""
        self.subject = self.address

    @property
    def ip(self):
        return _parsed_address(self.address)

    def check(self, ss):
        if ss == "*":
            return True
        if not self.address:
            return ss == ""
        if not ss:
            return False
        if ss.startswith("@"):
            if ss == "@":
                if self.iponly:
                    raise Unknown("@ needs a host name")
                ss = primary_hostname(self.ctx)
            elif ss == "@[]":
                return self.address in local_addresses(self.ctx)
        net = ip_and_mask(ss)
        if net is not None:
            try:
                ip = self.ip
            except ValueError:
                return False
            return ip.version == net.version and ip in net
        semicolon = ss.find(";")
        if semicolon < 0:
            if _MALFORMED_V4.match(ss):
                raise Unknown("malformed IPv4 address or address mask: %s" % ss)
            if ss[0] not in "*^":
                if self.iponly:
                    raise Unknown("host name %s not permitted in an IP-only list" % ss)
                return self._by_address_of(ss)
            return self._by_name(ss)
        netm = re.match(r"net(\d*)-", ss)
        if netm and netm.end() <= semicolon:
            bits = int(netm.group(1)) if netm.group(1) else None
            return self._net_lookup(ss[netm.end():semicolon], ss[semicolon + 1:], bits)
        ltype = lookups.parse_type(ss[:semicolon])
        if lookups.is_query_style(ltype.name):
            return self._found(lookups.search(ltype, None, ss[semicolon + 1:], self.ctx))
        if self.iponly:
            return self._net_lookup(ss[:semicolon], ss[semicolon + 1:], None)
        return self._by_name(ss)

    def _net_lookup(self, typetext, data, bits):
        """``net[N]-type;data``: the (masked) address is the key."""
        ltype = lookups.parse_type(typetext)._replace(partial=None, star=None)
        if lookups.is_query_style(ltype.name):
            value = lookups.search(ltype, None, data, self.ctx)
        else:
            try:
                key = masked_key(self.address, bits, ":" if ltype.name == "iplsearch" else ".")
            except ValueError:
                raise Unknown("%s is not an IP address" % self.address)
            value = lookups.search(ltype, data, key, self.ctx)
        return self._found(value)

    def _found(self, value):
        """A lookup item's verdict; its data becomes the match value."""
        if value is None:
            return False
        self.value = value
        return True

    def _by_address_of(self, name):
        """A plain host name: does it resolve to the host's address?"""
        addresses = host_addresses(name, self.ctx)
        if not addresses:
            raise Unknown("failed to find IP address for %s" % name)
        return self.address in addresses

    def _by_name(self, pattern):
        """``*suffix``, ``^regex``, ``type;file``: tried on every name of the host."""
        for name in self._names():
            m = StringMatcher("string", name, self.ctx)
            if m.check_pattern(pattern):
                self.value = m.value
                self.numeric = m.numeric
                return True
        return False

    def _names(self):
        """The host's name and aliases, looked up from its address when unknown."""
        if self.iponly:
            raise Unknown("host name not permitted in an IP-only list")
        session_lookup = getattr(self.ctx, "host_name_lookup", None)
        if (session_lookup is not None
                and normalise_address(session_lookup.address) == self.address):
            # the session's client: its own lookup, done once and kept (with
            # a failure) for $sender_host_name and every later list, as Exim's
            # host_name_lookup keeps sender_host_name / host_lookup_failed
            names = session_lookup.names()
        else:
            name = getattr(self.host, "name", None)
            if name:
                # Aliases found by an earlier reverse lookup are in the cache.
                cached = (getattr(self.ctx, "match_cache", None) or {}).get(
                    ("host-names", self.address))
                if cached and cached[0] == name:
                    return cached
                return [name] + list(getattr(self.host, "aliases", None) or [])
            names = host_names(self.address, self.ctx)
        if not names:
            raise Unknown("failed to find host name for %s" % self.address)
        try:
            self.host.name = names[0]
        except AttributeError:
            pass
        return names


# How checking a host against a host list may use the DNS (dns_need)
NO_DNS, CLIENT_NAME, ANY_DNS = 0, 1, 2


def dns_need(liststring, config=None, _seen=None):
    """How matching a host against host list ``liststring`` may use the DNS.

    NO_DNS: addresses, networks, ``*``, ``@[]`` and ``net-`` file lookups
    only.  CLIENT_NAME: some item needs the host's name (``*suffix``,
    ``^regex``, a single-key ``type;file``), which for a session's client
    is its reverse lookup, made once.  ANY_DNS: an item asks the DNS each
    time (a plain host name or ``@`` looked up forwards, a query-style
    lookup such as dnsdb), or the list is expanded or read from a file,
    so anything may happen.  Named lists (``+name``) count with their items.
    """
    if not liststring:
        return NO_DNS
    if "$" in liststring:
        return ANY_DNS
    need = NO_DNS
    for item in iter_list(liststring):
        item = item.lstrip("!").strip()
        if not item or item in ("*", "@[]") or ip_and_mask(item) is not None:
            continue
        if item.startswith("+"):
            named = (getattr(config, "named_lists", None) or {}).get("host", {}).get(item[1:])
            seen = _seen if _seen is not None else set()
            if named is not None and item not in seen:
                seen.add(item)
                need = max(need, dns_need(named.value, config, seen))
        elif ";" in item:
            typetext = item[:item.find(";")]
            net = re.match(r"net\d*-", typetext)
            try:
                query = lookups.is_query_style(
                    lookups.parse_type(typetext[net.end():] if net else typetext).name)
            except Exception:                  # Exim's error at match time, not here
                query = True
            need = max(need, ANY_DNS if query else NO_DNS if net else CLIENT_NAME)
        elif item[0] in "*^":
            need = max(need, CLIENT_NAME)
        elif item[0] == "/" or not _MALFORMED_V4.match(item):
            return ANY_DNS                       # a host name, @, or a file of items
    return need


def lookup_order(config):
    """host_lookup_order as a list of "bydns" / "byaddr" (unknown words are
    dropped; Exim's default when nothing is left)."""
    try:
        text = config.main["host_lookup_order"]
    except (KeyError, AttributeError):
        text = None
    order = [item.strip().lower() for item in iter_list(text or "bydns:byaddr")]
    return [item for item in order if item in ("bydns", "byaddr")] or ["bydns", "byaddr"]


def confirmed_names(address, order, by_dns, forward):
    """The core of Exim's host_name_lookup (spec "Reverse DNS lookups").

    The sources in ``order`` are tried until one gives names: ``bydns`` is
    ``by_dns(address) -> (names, secure)`` (PTR records), ``byaddr`` reads
    /etc/hosts, as the system's gethostbyaddr does here.  A name is kept
    when ``forward(name) -> (addresses, secure)`` includes the address;
    Exim confirms in the DNS only, even a name from /etc/hosts.  Either
    callable raises its own exception for an answer that cannot be had.
    Returns (candidates, kept names, every answer authenticated)."""
    candidates, secure = [], False
    for source in order:
        if source == "bydns":
            candidates, secure = by_dns(address)
        else:
            candidates = [n for a, names in etc_hosts() if a == address for n in names]
            secure = False
        if candidates:
            break
    names = []
    for name in candidates:
        found, forward_secure = forward(name)
        if address in found:
            names.append(name)
            secure = secure and forward_secure
    return candidates, names, secure


def host_names(address, ctx):
    """Names of ``address`` for host-list items that need one, when the
    session has none: ``confirmed_names`` through the resolver.  A failed
    lookup, temporary or not, finds no name.  Cached in the context."""
    cache = getattr(ctx, "match_cache", None)
    if cache is None:
        cache = {}
        try:
            ctx.match_cache = cache
        except AttributeError:
            pass
    key = ("host-names", address)
    if key in cache:
        return cache[key]
    variables = getattr(ctx, "variables", None) or {}
    if (variables.get("host_lookup_failed") == "1"
            and variables.get("sender_host_address") == address):
        # the lookup host_lookup made as the session started found nothing:
        # Exim does not ask again
        cache[key] = []
        return []
    from exim_py.dns import get_resolver
    config = getattr(ctx, "config", None)
    resolver = get_resolver(config)
    try:
        _, confirmed, _ = confirmed_names(
            address, lookup_order(config), lambda a: (resolver.reverse(a), False),
            lambda name: ([normalise_address(a) for a in resolver.addresses(name)], False))
    except LookupDefer:
        confirmed = []
    cache[key] = confirmed
    return confirmed
