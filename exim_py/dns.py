"""The one DNS resolver every part of exim_py asks (dnspython underneath).

``get_resolver(config)`` returns a shared, thread-safe ``Resolver``: the
delivery thread pool, host lists and the dnsdb lookup all call it.  The
exim_py main option ``dns_nameservers`` (a list of ``IP`` or ``IP.port``)
replaces the servers of /etc/resolv.conf; tests point it at the server in
tests/support/dnsserver.py.

Answers keep Exim's distinction (its dns_lookup return codes):

- ``FOUND``: records; ``NXDOMAIN`` and ``NODATA``: the name or the type does
  not exist — a permanent "not found";
- ``AGAIN``: SERVFAIL, a timeout, no server reachable — try later;
  the helpers raise ``LookupDefer`` for it;
- ``FAIL``: the server refused or did not understand (REFUSED, NOTIMP,
  FORMERR) — a permanent failure, as Exim's DNS_FAIL.

Names are queried as given, never widened with the search list (Exim turns
RES_DEFNAMES and RES_DNSRCH off for the lookups that use this module).
"""

import ipaddress
import random
import threading
from collections import namedtuple

import dns.exception
import dns.flags
import dns.name
import dns.nameserver
import dns.rcode
import dns.rdatatype
import dns.resolver
import dns.reversename

from exim_py.errors import LookupDefer

FOUND = "found"
NXDOMAIN = "nxdomain"
NODATA = "nodata"
AGAIN = "again"
FAIL = "fail"

# One DNS answer: status, the rdata objects of the asked type (CNAMEs
# followed), the smallest TTL, whether the server vouched for it (AD bit).
Answer = namedtuple("Answer", "status records ttl secure name")

MX = namedtuple("MX", "preference host")

_HARD_RCODES = ("REFUSED", "NOTIMP", "FORMERR")


def parse_nameservers(value):
    """``dns_nameservers`` → [(address, port)]: items ``IP`` or ``IP.port``.

    The port follows the last dot of an IPv6 address, or a fifth dotted
    component of an IPv4 one (``127.0.0.1.5353``), as Exim writes ports in
    ``local_interfaces``.
    """
    from exim_py.match import split_list
    out = []
    for item in split_list(value or ""):
        if not item:
            continue
        address, port = item, 53
        try:
            ipaddress.ip_address(item)
        except ValueError:
            head, _, tail = item.rpartition(".")
            if not (head and tail.isdigit()):
                raise ValueError("dns_nameservers: %r is not an IP address or IP.port" % item)
            ipaddress.ip_address(head)
            address, port = head, int(tail)
        out.append((address, port))
    return out


class Resolver:
    """Queries with caching; safe to call from many threads at once.

    The optional policies are Exim's main options of the same names:
    ``check_names_pattern`` (names that do not match are "not found"
    without asking, except for PTR and TXT questions),
    ``again_means_nonexist`` (a domain list: a temporary failure for a
    matching name, TLSA excepted, counts as "not found") and
    ``ipv4_lookup`` (a domain list: no AAAA question for matching names).
    """

    def __init__(self, nameservers=None, timeout=None, retries=None,
                 check_names_pattern=None, again_means_nonexist=None, ipv4_lookup=None):
        self._plain = self._make(nameservers, timeout, retries, dnssec=False)
        self._dnssec = self._make(nameservers, timeout, retries, dnssec=True)
        self._check_names = None
        if check_names_pattern:
            from exim_py.expand.regex import compile_regex
            self._check_names = compile_regex(check_names_pattern)
        self._again_means_nonexist = again_means_nonexist
        self._ipv4_lookup = ipv4_lookup

    def _in_domain_list(self, name, liststring):
        if not liststring:
            return False
        from exim_py.match import match_list
        try:
            return bool(match_list("domain", name, liststring, None))
        except LookupDefer:
            return False

    @staticmethod
    def _make(nameservers, timeout, retries, dnssec):
        try:
            r = dns.resolver.Resolver(configure=not nameservers)
        except dns.resolver.NoResolverConfiguration:
            # No usable /etc/resolv.conf: the C resolver then asks the local host.
            r = dns.resolver.Resolver(configure=False)
            nameservers = [("127.0.0.1", 53)]
        if nameservers:
            r.nameservers = [dns.nameserver.Do53Nameserver(a, p) for a, p in nameservers]
        # dns_retrans / dns_retry: 0 means the resolver's defaults (5s, 2 tries).
        r.timeout = timeout or 5.0
        r.lifetime = r.timeout * ((retries or 1) + 1)
        r.retry_servfail = False
        r.cache = dns.resolver.LRUCache(10000)
        if dnssec:
            r.use_edns(0, dns.flags.DO, 1232)
            r.flags = dns.flags.RD | dns.flags.AD
        return r

    def query(self, name, rdtype, dnssec=False):
        """Ask for records of ``rdtype`` ("A", "MX" …) at ``name``; an ``Answer``."""
        if (self._check_names is not None and rdtype not in ("PTR", "TXT")
                and not self._check_names.search(name)):
            return Answer(NXDOMAIN, [], 0, False, name)
        ans = self._query(name, rdtype, dnssec)
        if (ans.status == AGAIN and rdtype != "TLSA"
                and self._in_domain_list(name, self._again_means_nonexist)):
            return Answer(NXDOMAIN, [], 0, False, name)
        return ans

    def _query(self, name, rdtype, dnssec):
        resolver = self._dnssec if dnssec else self._plain
        try:
            qname = dns.name.from_text(name.rstrip(".") + ".") if name not in ("", ".") \
                else dns.name.root
        except dns.exception.DNSException:
            return Answer(NXDOMAIN, [], 0, False, name)
        try:
            ans = resolver.resolve(qname, rdtype, search=False, raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN:
            return Answer(NXDOMAIN, [], 0, False, name)
        except dns.resolver.NoNameservers as e:
            return Answer(_classify(e), [], 0, False, name)
        except (dns.exception.Timeout, dns.resolver.YXDOMAIN, OSError):
            return Answer(AGAIN, [], 0, False, name)
        except dns.exception.DNSException:
            return Answer(FAIL, [], 0, False, name)
        secure = bool(ans.response.flags & dns.flags.AD)
        if ans.rrset is None:
            return Answer(NODATA, [], 0, secure, name)
        return Answer(FOUND, list(ans.rrset), ans.rrset.ttl, secure,
                      ans.rrset.name.to_text(omit_final_dot=True))

    def _checked(self, name, rdtype):
        """Records of ``rdtype`` at ``name``; [] if none; LookupDefer for AGAIN."""
        ans = self.query(name, rdtype)
        if ans.status == AGAIN:
            raise LookupDefer('DNS lookup of "%s" (%s) gave a temporary error' % (name, rdtype))
        return ans.records

    def mx_hosts(self, domain):
        """MX(preference, host) records of ``domain``, lowest preference first.

        Hosts of equal preference come in random order, as Exim randomises
        them (spec "The dnslookup router").  [] when there is no MX record;
        a "null MX" (RFC 7505) is ``MX(0, ".")``; ``LookupDefer`` on a
        temporary error.
        """
        records = [MX(r.preference, r.exchange.to_text(omit_final_dot=True))
                   for r in self._checked(domain, "MX")]
        random.shuffle(records)
        records.sort(key=lambda mx: mx.preference)
        return records

    def addresses(self, name, ipv4_only=False):
        """IPv6 then IPv4 addresses of ``name`` as text; [] when there is none.

        ``ipv4_only`` skips the AAAA question (``dns_ipv4_lookup``).  Raises
        ``LookupDefer`` only when a question deferred and nothing was found,
        as Exim does when looking up host addresses.
        """
        out = []
        deferred = False
        ipv4_only = ipv4_only or self._in_domain_list(name, self._ipv4_lookup)
        for rdtype in ("A",) if ipv4_only else ("AAAA", "A"):
            ans = self.query(name, rdtype)
            if ans.status == AGAIN:
                deferred = True
            out.extend(r.address for r in ans.records)
        if deferred and not out:
            raise LookupDefer('DNS lookup of "%s" gave a temporary error' % name)
        return out

    def reverse(self, ip):
        """Host names in the PTR records for address ``ip`` (no final dot);
        [] when ``ip`` is not an IP address."""
        try:
            rname = dns.reversename.from_address(ip).to_text()
        except (dns.exception.SyntaxError, ValueError):
            return []
        return [r.target.to_text(omit_final_dot=True) for r in self._checked(rname, "PTR")]


def _classify(exc):
    """AGAIN unless every server gave a hard refusal (REFUSED, NOTIMP, FORMERR)."""
    errors = exc.kwargs.get("errors") or []
    if errors and all(isinstance(err[3], str) and err[3] in _HARD_RCODES for err in errors):
        return FAIL
    return AGAIN


def search_list():
    """The resolver's search domains: $LOCALDOMAIN (as the C resolver reads
    it), else the domain/search lines of /etc/resolv.conf."""
    import os
    env = os.environ.get("LOCALDOMAIN")
    if env is not None:
        return env.split()
    try:
        r = dns.resolver.Resolver(configure=True)
    except dns.resolver.NoResolverConfiguration:
        return []
    names = list(r.search) or ([r.domain] if r.domain and r.domain != dns.name.root else [])
    return [n.to_text(omit_final_dot=True) for n in names if n != dns.name.root]


def candidate_names(name, qualify_single, search_parents):
    """The names the C resolver would try for ``name`` (its res_search):
    with RES_DEFNAMES (``qualify_single``) a name without a dot gets the
    search domains; with RES_DNSRCH (``search_parents``) so does a name with
    dots, after the name as it is."""
    if name.endswith("."):
        return [name.rstrip(".")]
    dotted = "." in name
    out = [name] if dotted else []
    if (not dotted and qualify_single) or (dotted and search_parents):
        out.extend("%s.%s" % (name, domain) for domain in search_list())
    if not dotted:
        out.append(name)
    return out


def reverse_name(ip):
    """The in-addr.arpa / ip6.arpa name for address ``ip`` (no final dot)."""
    return dns.reversename.from_address(ip).to_text(omit_final_dot=True)


_resolvers = {}
_resolvers_lock = threading.Lock()


def _main_option(config, name):
    if config is None:
        return None
    try:
        return config.main[name]
    except (KeyError, AttributeError):
        return None


def get_resolver(config=None, retrans=None, retry=None):
    """The shared Resolver for ``config``'s DNS settings (one per setting).

    ``dns_nameservers`` chooses the servers (default: /etc/resolv.conf),
    ``dns_retrans`` and ``dns_retry`` the timeout and retries; ``retrans``
    and ``retry`` override those two (dnsdb's modifiers).  The
    ``dns_check_names_pattern``, ``dns_again_means_nonexist`` and
    ``dns_ipv4_lookup`` options apply too.
    """
    servers = _main_option(config, "dns_nameservers")
    timeout = retrans or _main_option(config, "dns_retrans") or None
    retries = retry if retry is not None else (_main_option(config, "dns_retry") or None)
    policies = tuple(_main_option(config, name) for name in (
        "dns_check_names_pattern", "dns_again_means_nonexist", "dns_ipv4_lookup"))
    key = (servers, timeout, retries) + policies
    with _resolvers_lock:
        resolver = _resolvers.get(key)
        if resolver is None:
            try:
                nameservers = parse_nameservers(servers)
            except ValueError as e:
                # Reported where DNS is needed, as a temporary error with the reason.
                raise LookupDefer(str(e))
            resolver = _resolvers[key] = Resolver(nameservers or None, timeout, retries,
                                                  *policies)
        return resolver
