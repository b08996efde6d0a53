"""``verify = csa``: Client SMTP Authorization (spec "Client SMTP authorization
(CSA)" in the ACL chapter; the CSA Internet Draft).

A domain publishes SRV records at ``_client._smtp.<domain>``: priority 1 is
the CSA version, the weight says whether the host is authorized (2), not
authorized (0, 1) or unknown (3), and the target names the host whose
addresses may send.  Without a record of its own, parent domains (up to
dns_csa_search_limit levels, not the top-level domain) may assert with port
bit 1 that every client must be explicitly authorized.  The domain is the
HELO name by default; an IP address (or literal) is looked up in the reverse
zone unless dns_csa_use_reverse is false.

The condition fails only when the client is found not to be authorized;
``$csa_status`` tells "ok", "unknown", "defer" and "fail" apart.  Results are
cached per domain for the connection.  May block on DNS.
"""

import ipaddress

from exim_py.acl import dnslists

# outcome -> ($csa_status, the reason Exim gives, does the condition succeed)
UNKNOWN = ("unknown", "unknown", True)
OK = ("ok", "ok", True)
DEFER_SRV = ("defer", "deferred (SRV lookup failed)", True)
DEFER_ADDR = ("defer", "deferred (target address lookup failed)", True)
FAIL_EXPLICIT = ("fail", "failed (explicit authorization required)", False)
FAIL_DOMAIN = ("fail", "failed (host name not authorized)", False)
FAIL_NOADDR = ("fail", "failed (no authorized addresses)", False)
FAIL_MISMATCH = ("fail", "failed (client address mismatch)", False)


class _Again(Exception):
    """A DNS question got no decisive answer."""


def check(ctx, domain=None):
    """The CSA outcome for the client of AclContext ``ctx`` (one of the tuples above)."""
    session = ctx.session
    address = session.sender_host_address
    domain = (domain or "").strip() or session.helo_name or address
    if not address:
        return UNKNOWN              # a local caller (-bs): CSA does not apply
    if domain.startswith("["):
        # an address literal: drop the brackets and any "IPv6:" tag
        inner = domain[1:-1]
        domain = inner.split(":", 1)[1] if inner.lower().startswith("ipv6:") else inner
    try:
        domain = ipaddress.ip_address(domain).reverse_pointer
        if not ctx.config.main.dns_csa_use_reverse:
            return UNKNOWN
    except ValueError:
        pass
    key = ("csa", domain.lower())
    if key not in ctx.dns_cache:
        ctx.dns_cache[key] = _lookup(ctx, domain, address)
    return ctx.dns_cache[key]


def _srv(ctx, name):
    """The (priority, weight, port, target) SRV records at ``name``; raises _Again."""
    from exim_py import dns
    answer = dnslists.resolver_of(ctx).query(name, "SRV")
    if answer.status in (dns.AGAIN, dns.FAIL):
        raise _Again(name)
    return [(r.priority, r.weight, r.port, r.target.to_text(omit_final_dot=True))
            for r in answer.records]


def _find(ctx, domain):
    """Exim's CSA lookup: (the domain whose records were found, its SRV records),
    or (None, []) when there are none.  Raises _Again."""
    records = _srv(ctx, "_client._smtp." + domain)
    if records:
        return domain, records
    # Parents, from the one under the top-level domain down; the reverse
    # IPv6 zone is searched in steps of four nibbles.
    labels = domain.rstrip(".").split(".")
    ipv6 = ".ip6." in domain.lower()
    step = 4 if ipv6 else 1
    first = len(labels) - 1 - step                # index of the shortest parent tried
    limit = ctx.config.main.dns_csa_search_limit
    for level in range(limit):
        start = first - level * step
        if start <= 0:
            break
        parent = ".".join(labels[start:])
        records = _srv(ctx, "_client._smtp." + parent)
        # only a parent asserting that subdomains need authorization counts
        if any(priority == 1 and port & 1 for priority, _, port, _ in records):
            return parent, records
    return None, []


def _lookup(ctx, domain, address):
    try:
        found, records = _find(ctx, domain)
    except _Again:
        return DEFER_SRV
    target = None
    for priority, weight, port, name in records:
        if priority != 1:
            continue                # not CSA version 1
        if found != domain:
            return FAIL_EXPLICIT if port & 1 else UNKNOWN
        if weight < 2:
            return FAIL_DOMAIN
        if weight == 2:
            target = name
            break
    else:
        return UNKNOWN
    if target in ("", "."):
        return FAIL_NOADDR          # RFC 2782: "." means no addresses
    try:
        found_addresses = dnslists.query(ctx, target, "AAAA" if ":" in address else "A")
    except dnslists.DnsDefer:
        return DEFER_ADDR
    if not found_addresses:
        return FAIL_NOADDR
    return OK if address in found_addresses else FAIL_MISMATCH
