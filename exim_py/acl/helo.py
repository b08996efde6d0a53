"""Checking the name a client gave in HELO/EHLO against its address.

This is Exim's smtp_verify_helo (spec: helo_try_verify_hosts,
helo_verify_hosts, and ``verify = helo`` in "Access control lists").  The
name verifies when it is an IP literal holding the client's address, when it
is the client's host name (or one of its aliases) found by a reverse lookup
that resolves back, or when its own A/AAAA records include the client's
address.  The SMTP server runs the check at HELO for hosts in those two
options; ``verify = helo`` runs it later if nobody has yet.

The outcome lives on the session: ``helo_verified`` (None: not tried yet,
else True/False) for the name in ``helo_verified_name``, and
``sender_helo_dnssec`` ($sender_helo_dnssec).  A
reverse lookup also leaves the host name in ``sender_host_name``, as Exim's
host_name_lookup does.  All of it may block on DNS: call it from a thread.
"""

import ipaddress

from exim_py.acl import dnslists
from exim_py.match import hosts


def reset(session):
    """A new HELO/EHLO forgets the last one's verification (Exim clears its
    flags); returns what it forgot, for ``restore``."""
    before = outcome(session)
    session.helo_verified = None
    session.sender_helo_dnssec = False
    return before


def outcome(session):
    """The recorded outcome: (verified, dnssec, for which name)."""
    return (getattr(session, "helo_verified", None), getattr(session, "sender_helo_dnssec", False),
            getattr(session, "helo_verified_name", None))


def restore(session, before):
    session.helo_verified, session.sender_helo_dnssec, session.helo_verified_name = before


def known(session):
    """Whether the session holds an outcome for its current HELO name."""
    return (getattr(session, "helo_verified", None) is not None
            and getattr(session, "helo_verified_name", None) == session.helo_name)


def verify_helo(ctx):
    """Verify ``ctx.session.helo_name``; ``ctx`` is an AclContext (config,
    session, DNS cache).  Sets the session's outcome and returns False only
    when the reverse lookup of the client could not be done (DNS deferred):
    the server then rejects with 451 rather than 550, as Exim does."""
    session = ctx.session
    helo = session.helo_name
    address = session.sender_host_address
    complete = True
    session.sender_helo_dnssec = False
    if not helo:
        verified = False
    elif not address:
        verified = True            # -bs without a host address: nothing to compare
    elif helo.startswith("["):
        # Exim compares the start of the literal with the address, also
        # without an IPv4-mapped IPv6 prefix.
        body = helo[1:]
        plain = address[7:] if address.lower().startswith("::ffff:") else None
        verified = body.startswith(address) or (plain is not None and body.startswith(plain))
    else:
        try:
            names = _host_names(ctx, session, address)
        except dnslists.DnsDefer:
            names, complete = [], False
        verified = any(n.lower() == helo.lower() for n in names)
        if verified:
            # the name came from the reverse lookup: as trustworthy as that was
            session.sender_helo_dnssec = bool(getattr(session, "sender_host_dnssec", False))
        else:
            verified, session.sender_helo_dnssec = _forward_match(ctx, helo, address)
    session.helo_verified = verified
    session.helo_verified_name = helo
    ctx.set_variable("sender_helo_dnssec", session.sender_helo_dnssec)
    return complete


def _host_names(ctx, session, address):
    """The client's host name and aliases, looked up once.  Raises DnsDefer."""
    if session.sender_host_name:
        return [session.sender_host_name] + list(getattr(session, "sender_host_aliases", ()))
    if getattr(session, "host_lookup_failed", False):
        return []
    return host_name_lookup(ctx)


def host_name_lookup(ctx):
    """Exim's host_name_lookup for the client of AclContext ``ctx``
    (``match.hosts.confirmed_names`` through the connection's DNS cache).

    The first name that resolves back becomes ``sender_host_name``, the
    others its aliases.  None kept is remembered as ``host_lookup_failed``
    (and logged when there was no name at all).  A lookup that gets no
    decisive answer, reverse or forward, sets ``host_lookup_deferred`` and
    raises DnsDefer, without a log line, as in Exim.  ``sender_host_dnssec``
    is true when the PTR records and every forward lookup that confirmed a
    name came with the resolver's AD bit.  Returns the names."""
    session = ctx.session
    address = session.sender_host_address
    try:
        candidates, names, secure = hosts.confirmed_names(
            address, hosts.lookup_order(ctx.config),
            lambda a: dnslists.query_dnssec(ctx, ipaddress.ip_address(a).reverse_pointer, "PTR"),
            lambda name: dnslists.resolve_addresses_dnssec(ctx, name))
    except dnslists.DnsDefer:
        session.host_lookup_deferred = True
        raise
    session.sender_host_dnssec = bool(names) and secure
    ctx.set_variable("sender_host_dnssec", session.sender_host_dnssec)
    if names:
        session.sender_host_name = names[0]
        session.sender_host_aliases = names[1:]
        ctx.set_variable("sender_host_name", names[0])
    else:
        session.host_lookup_failed = True
        ctx.set_variable("host_lookup_failed", "1")
        # Exim logs only when no source gave a name at all; names that do
        # not resolve back fail silently (spec, log selector host_lookup_failed)
        if not candidates and ctx.log is not None and ctx.log.selector("host_lookup_failed"):
            ctx.write_log("no host name found for IP address %s" % address)
    return names


def client_name_lookup(ctx):
    """The lookup main option host_lookup asks for when a session starts:
    host_name_lookup, with a temporary DNS failure left as
    ``host_lookup_deferred`` rather than raised."""
    try:
        host_name_lookup(ctx)
    except dnslists.DnsDefer:
        pass


def _forward_match(ctx, name, address):
    """(True, dnssec) when an A or AAAA record of ``name`` is ``address``."""
    from exim_py import dns
    resolver = dnslists.resolver_of(ctx)
    for rtype in ("AAAA", "A"):
        answer = resolver.query(name, rtype, dnssec=True)
        if answer.status != dns.FOUND:
            continue
        if any(getattr(r, "address", None) == address for r in answer.records):
            return True, bool(answer.secure)
    return False, False
