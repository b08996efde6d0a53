"""The ``dnslists`` ACL condition (spec "Using DNS lists"), and the DNS questions
that ``verify = helo`` and ``verify = reverse_host_lookup`` ask.

Every question goes through the project's resolver (``exim_py.dns``); answers
are kept in the context's ``dns_cache`` for the rest of the connection, so a
list is asked about a host once per session, as Exim does.
"""

import ipaddress
import re

from exim_py.match import split_list

OK, FAIL, DEFER, ERROR = "accept", "deny", "defer", "error"


class DnsDefer(Exception):
    """A DNS question got no decisive answer (timeout, SERVFAIL)."""


def resolver_of(ctx):
    """The resolver for this ACL context (made once, from the configuration)."""
    if ctx.resolver is None:
        from exim_py import dns     # dnspython only when a DNS list is asked
        ctx.resolver = dns.get_resolver(ctx.config)
    return ctx.resolver


def _text(rtype, record):
    if rtype == "TXT":
        return b"".join(record.strings).decode("utf-8", "replace")
    if rtype == "PTR":
        return record.target.to_text(omit_final_dot=True)
    return record.address


def query(ctx, name, rtype):
    """Records of ``rtype`` for ``name`` as text (A: dotted quads, TXT: joined strings).

    An empty list means no such name or no such record; DnsDefer means the
    question got no decisive answer (Exim's DNS_AGAIN and DNS_FAIL).
    """
    return _cached_query(ctx, name, rtype, False)[0]


def query_dnssec(ctx, name, rtype):
    """``query`` asking for DNSSEC: (records, whether the resolver said they
    were authenticated, its AD bit)."""
    return _cached_query(ctx, name, rtype, True)


def _cached_query(ctx, name, rtype, dnssec):
    """(records, authenticated) from the connection's cache, or asked for.
    Plain answers are cached as their records, DNSSEC ones with the flag."""
    key = (name.lower(), rtype, "dnssec") if dnssec else (name.lower(), rtype)
    cached = ctx.dns_cache.get(key)
    if cached is None:
        from exim_py import dns
        answer = resolver_of(ctx).query(name, rtype, dnssec=dnssec)
        if answer.status in (dns.AGAIN, dns.FAIL):
            cached = DnsDefer("DNS lookup of %s (%s) gave %s" % (name, rtype, answer.status))
        else:
            records = [_text(rtype, r) for r in answer.records]
            cached = (records, bool(answer.secure)) if dnssec else records
        ctx.dns_cache[key] = cached
    if isinstance(cached, DnsDefer):
        raise cached
    return cached if dnssec else (cached, False)


def resolve_addresses(ctx, name):
    """The IPv4 and IPv6 addresses of host ``name``."""
    return _resolve(ctx, name, False)[0]


def resolve_addresses_dnssec(ctx, name):
    """(the addresses of host ``name``, whether every answer was authenticated)."""
    return _resolve(ctx, name, True)


def _resolve(ctx, name, dnssec):
    found = []
    secure = True
    deferred = None
    for rtype in ("A", "AAAA"):
        try:
            records, authenticated = _cached_query(ctx, name, rtype, dnssec)
        except DnsDefer as e:
            deferred, secure = e, False
            continue
        found.extend(records)
        secure = secure and authenticated
    if not found and deferred is not None:
        raise deferred
    return found, secure


def reverse_names(ctx, address):
    """The PTR names of an IP address."""
    return query(ctx, ipaddress.ip_address(address).reverse_pointer, "PTR")


def _reversed_key(key):
    """A key as it is put in front of the list's domain: IPs reversed, names as they are."""
    try:
        ip = ipaddress.ip_address(key)
    except ValueError:
        return key
    return ip.reverse_pointer.rsplit(".", 2)[0]


_DOMAIN_OK = re.compile(r"^[A-Za-z0-9._-]*$")


class _Item:
    """One item of the list: domain (and TXT domain), key list, address restriction."""

    def __init__(self, text):
        self.domain, slash, self.keys = text.partition("/")
        self.keys = self.keys if slash else None
        self.iplist = None
        self.bitmask = False
        self.match_all = False
        self.invert = False
        eq = self.domain.find("=")
        if eq < 0:
            eq = self.domain.find("&")
            self.bitmask = eq >= 0
        if eq >= 0:
            head, rest = self.domain[:eq], self.domain[eq + 1:]
            if head.endswith("!"):
                self.invert = True
                head = head[:-1]
            if rest[:1] in ("=", "&"):
                self.match_all = True
                self.bitmask = self.bitmask or rest[0] == "&"
                rest = rest[1:]
            self.domain = head
            self.iplist = [a.strip() for a in rest.split(",") if a.strip()]
        self.txt_domain, comma, second = self.domain.partition(",")
        if comma:
            self.domain = second
        else:
            self.txt_domain = self.domain


def _ip_matches(item, found):
    """Whether the returned addresses satisfy the item's =, ==, &, =&, ! restriction."""
    def one(address):
        value = int(ipaddress.ip_address(address))
        for pattern in item.iplist:
            try:
                want = int(ipaddress.ip_address(pattern))
            except ValueError:
                continue
            if (value & want) == want if item.bitmask else value == want:
                return True
        return False
    results = [one(a) for a in found]
    if item.match_all:
        hit = all(results)
        return (not hit) if item.invert else hit
    hit = any(results)
    return (not hit) if item.invert else hit


def _one_check(run, item, domain, txt_domain, key, iplist_item, defer_return):
    """Look ``key`` up in one list; OK sets the $dnslist_* variables."""
    ctx = run.ctx
    name = "%s.%s" % (_reversed_key(key), domain)
    try:
        found = query(ctx, name, "A")
    except DnsDefer:
        if ctx.log is not None and ctx.log.selector("dnslist_defer"):
            ctx.write_log("DNS list lookup defer (probably timeout) for %s: %s" % (
                name, {OK: "assumed in list", FAIL: "assumed not in list"}.get(
                    defer_return, "returned DEFER")))
        return defer_return
    listed = [a for a in found if a.startswith("127.")]
    for address in found:
        if not address.startswith("127."):
            ctx.write_log("DNS list lookup for %s at %s returned %s; not in 127.0/8 and "
                          "discarded" % (key, domain, address))
    if not listed:
        return FAIL
    if iplist_item is not None and iplist_item.iplist is not None and \
            not _ip_matches(iplist_item, listed):
        return FAIL
    if txt_domain != domain:
        return _one_check(run, item, txt_domain, txt_domain, key, None, defer_return)
    try:
        texts = query(ctx, name, "TXT")
    except DnsDefer:
        texts = []
    ctx.set_variable("dnslist_domain", txt_domain)
    ctx.set_variable("dnslist_matched", key)
    ctx.set_variable("dnslist_value", ", ".join(listed))
    ctx.set_variable("dnslist_text", texts[0] if texts else "")
    return OK


def condition(run, cond_item, arg):
    """``dnslists = item : item ...``: OK as soon as one list lists the key."""
    ctx = run.ctx
    for var in ("dnslist_domain", "dnslist_matched", "dnslist_value", "dnslist_text"):
        ctx.set_variable(var, "")
    defer_return = FAIL
    address = ctx.session.sender_host_address
    for text in [t for t in split_list(arg) if t]:
        if text in ("+include_unknown", "+exclude_unknown", "+defer_unknown"):
            defer_return = {"+include_unknown": OK, "+exclude_unknown": FAIL,
                            "+defer_unknown": DEFER}[text]
            continue
        item = _Item(text)
        if not _DOMAIN_OK.match(item.domain) or not _DOMAIN_OK.match(item.txt_domain):
            ctx.write_log('dnslists domain "%s" contains syntax errors' % item.domain)
            continue
        if item.keys is None:
            if run.where in ("not_smtp", "not_smtp_start"):
                run.log = "cannot test dnslists condition in %s ACL" % (
                    "non-SMTP" if run.where == "not_smtp" else "non-SMTP-start")
                return ERROR
            if not address:
                continue
            rc = _one_check(run, item, item.domain, item.txt_domain, address, item,
                            defer_return)
            if rc != FAIL:
                return rc
            continue
        deferred = False
        for key in [k for k in split_list(item.keys) if k]:
            rc = _one_check(run, item, item.domain, item.txt_domain, key, item, defer_return)
            if rc == OK:
                return OK
            if rc == DEFER:
                deferred = True
        if deferred:
            return DEFER
    return FAIL
