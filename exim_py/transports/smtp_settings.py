"""The smtp transport's options, and what they decide for one host.

``OPTIONS`` is the transport's private option table (spec chapter "The smtp
transport", "Private options for smtp").  ``host_list`` picks the hosts to
try; ``for_host`` turns the options into ``ClientSettings`` for one host,
with ``$host`` and ``$host_address`` set while expanding and matching, as the
spec says they are for helo_data, interface, hosts_try_auth and the TLS
options.
"""

import ipaddress
import re
import socket

from exim_py.config.options import BOOL, HOSTLIST, INT, LIST, STRING, TIME, Option, OptionTable
from exim_py.errors import ExpansionError, ForcedFail, LookupDefer
from exim_py.smtp.outbound import ClientSettings

OPTIONS = OptionTable([
    Option("address_retry_include_sender", BOOL, True, "4xx to RCPT delays sender+recipient"),
    Option("allow_localhost", BOOL, False, "allow delivery to the local host"),
    Option("authenticated_sender", STRING, None, "AUTH= value on MAIL", expand=True),
    Option("authenticated_sender_force", BOOL, False, "send AUTH= even unauthenticated"),
    Option("command_timeout", TIME, 300, "timeout for replies to commands"),
    Option("connect_timeout", TIME, 300, "timeout for connecting"),
    Option("connection_max_messages", INT, 500, "messages per connection"),
    Option("dane_require_tls_ciphers", STRING, None, "ciphers when DANE is in use (no DANE)",
           expand=True),
    Option("data_timeout", TIME, 300, "timeout for sending each data block"),
    Option("delay_after_cutoff", BOOL, True, "skip hosts past their retry cutoff"),
    Option("dkim_canon", STRING, None, "DKIM canonicalization", expand=True),
    Option("dkim_domain", LIST, None, "DKIM signing domains", expand=True),
    Option("dkim_hash", STRING, "sha256", "DKIM hash", expand=True),
    Option("dkim_identity", STRING, None, "DKIM identity", expand=True),
    Option("dkim_private_key", STRING, None, "DKIM signing key (not supported)", expand=True),
    Option("dkim_selector", STRING, None, "DKIM selector", expand=True),
    Option("dkim_sign_headers", STRING, None, "headers to sign", expand=True),
    Option("dkim_strict", STRING, None, "defer when signing fails", expand=True),
    Option("dkim_timestamps", STRING, None, "DKIM signature lifetime", expand=True),
    Option("dns_qualify_single", BOOL, True, "qualify single-component names"),
    Option("dns_search_parents", BOOL, False, "search parent domains"),
    Option("dnssec_request_domains", STRING, "*", "request DNSSEC for these domains",
           expand=True),
    Option("dnssec_require_domains", STRING, None, "require DNSSEC for these domains",
           expand=True),
    Option("dscp", STRING, None, "DSCP value for the connection", expand=True),
    Option("fallback_hosts", LIST, None, "hosts to try when the others fail", expand=True),
    Option("final_timeout", TIME, 600, "timeout for the reply to the end of data"),
    Option("gethostbyname", BOOL, False, "look host names up with the system resolver"),
    Option("helo_data", STRING, "$primary_hostname", "the argument of EHLO/HELO", expand=True),
    Option("host_name_extract", LIST,
           "${if and {{match{$host}{.outlook.com\\$}} "
           "{match{$item}{\\N^250-([\\w.]+)\\s\\N}}} {$1}}",
           "how to name a host for connection reuse", expand=True),
    Option("hosts", LIST, None, "hosts to deliver to", expand=True),
    Option("hosts_avoid_esmtp", HOSTLIST, None, "send HELO, not EHLO", expand=True),
    Option("hosts_avoid_pipelining", HOSTLIST, None, "do not pipeline", expand=True),
    Option("hosts_avoid_tls", HOSTLIST, None, "do not use STARTTLS", expand=True),
    Option("hosts_max_try", INT, 5, "IP addresses tried per delivery"),
    Option("hosts_max_try_hardlimit", INT, 50, "absolute limit on IP addresses tried"),
    Option("hosts_nopass_tls", HOSTLIST, None, "do not pass TLS connections on", expand=True),
    Option("hosts_noproxy_tls", HOSTLIST, None, "do not proxy TLS connections", expand=True),
    Option("hosts_override", BOOL, False, "hosts replaces the router's host list"),
    Option("hosts_pipe_connect", HOSTLIST, None, "early pipelining (not used)", expand=True),
    Option("hosts_randomize", BOOL, False, "randomize the host list"),
    Option("hosts_request_ocsp", HOSTLIST, "*", "ask for an OCSP staple", expand=True),
    Option("hosts_require_alpn", HOSTLIST, None, "ALPN must succeed (not supported)",
           expand=True),
    Option("hosts_require_auth", HOSTLIST, None, "authentication must succeed", expand=True),
    Option("hosts_require_dane", HOSTLIST, None, "DANE must be used (not supported)",
           expand=True),
    Option("hosts_require_ocsp", HOSTLIST, None, "a valid OCSP staple is required",
           expand=True),
    Option("hosts_require_tls", HOSTLIST, None, "TLS must be used", expand=True),
    Option("hosts_try_auth", HOSTLIST, None, "authenticate when offered", expand=True),
    Option("hosts_try_chunking", HOSTLIST, "*", "use BDAT when CHUNKING is offered",
           expand=True),
    Option("hosts_try_dane", HOSTLIST, "*", "use DANE when TLSA records exist (none looked up)",
           expand=True),
    Option("hosts_try_fastopen", HOSTLIST, "*", "use TCP Fast Open", expand=True),
    Option("hosts_try_prdr", HOSTLIST, "*", "use PRDR when offered", expand=True),
    Option("hosts_verify_avoid_tls", HOSTLIST, None, "no STARTTLS for callouts", expand=True),
    Option("interface", LIST, None, "local IP address to connect from", expand=True),
    Option("keepalive", BOOL, True, "set SO_KEEPALIVE"),
    Option("lmtp_ignore_quota", BOOL, False, "LMTP IGNOREQUOTA"),
    Option("max_rcpt", STRING, "100", "RCPT commands per transaction", expand=True),
    Option("message_linelength_limit", INT, 998, "longest line allowed"),
    Option("multi_domain", BOOL, True, "one delivery may cover several domains"),
    Option("port", STRING, "smtp", "the port to connect to", expand=True),
    Option("protocol", STRING, "smtp", "smtp, lmtp or smtps"),
    Option("retry_include_ip_address", BOOL, True, "retry keys include the IP address"),
    Option("serialize_hosts", HOSTLIST, None, "one connection at a time to these",
           expand=True),
    Option("size_addition", INT, 1024, "added to SIZE= (negative: no SIZE)"),
    Option("socks_proxy", STRING, None, "SOCKS proxy (not supported)", expand=True),
    Option("tls_alpn", STRING, None, "ALPN names to offer (not offered)", expand=True),
    Option("tls_certificate", STRING, None, "client certificate", expand=True),
    Option("tls_crl", STRING, None, "certificate revocation list", expand=True),
    Option("tls_dh_min_bits", INT, 1024, "smallest acceptable DH group"),
    Option("tls_privatekey", STRING, None, "client certificate's key", expand=True),
    Option("tls_require_ciphers", STRING, None, "allowed ciphers", expand=True),
    Option("tls_resumption_hosts", HOSTLIST, None, "resume TLS sessions", expand=True),
    Option("tls_sni", STRING, None, "server name indication", expand=True),
    Option("tls_tempfail_tryclear", BOOL, True, "after a TLS problem, try in clear"),
    Option("tls_try_verify_hosts", HOSTLIST, "*", "verify, but do not insist", expand=True),
    Option("tls_verify_cert_hostnames", HOSTLIST, "*", "check the certificate's names",
           expand=True),
    # exim_py extension: the name the option had while experimental.
    Option("tls_verify_cert_hostname", HOSTLIST, None, "synonym of tls_verify_cert_hostnames",
           expand=True, hidden=True, synonym_of="tls_verify_cert_hostnames"),
    Option("tls_verify_certificates", STRING, "system", "trusted CA certificates",
           expand=True),
    Option("tls_verify_hosts", HOSTLIST, None, "verification must succeed", expand=True),
    Option("utf8_downconvert", STRING, "-1", "convert UTF-8 addresses to A-labels",
           expand=True),
])


# Options whose setting exim_py cannot honour: a delivery that would need
# them is deferred rather than made without them.
UNSUPPORTED = ("dkim_private_key", "hosts_require_dane", "hosts_require_alpn", "socks_proxy")


def unsupported(transport):
    """The first option set that this smtp transport cannot honour, or None."""
    for name in UNSUPPORTED:
        if transport.options[name]:
            return name
    return None


def _protocol(transport):
    """smtp, lmtp or smtps (Exim compares the option without regard to case)."""
    return (transport.options["protocol"] or "smtp").lower()


def _match(transport, option, host, addr, ctx, shared=None):
    """Whether ``host`` is in host-list option ``option`` (unset or empty: no).

    ``shared``, a list, keeps the expansion context made for the first
    option matched, for the next ones about the same host and address."""
    value = transport.options[option]
    if not value:
        return False
    if value == "*":
        # Every host: the default of several options, asked for each delivery.
        return True
    from exim_py.match import match_host
    if shared:
        mctx = shared[0]
        mctx.numeric = []
        mctx.lookup_value = None
    else:
        mctx = ctx.expand_context(addr, transport, host)
        if shared is not None:
            shared.append(mctx)
    return match_host(host, value, mctx)


def serialized(transport, host, addr, ctx):
    """Whether ``host`` is in serialize_hosts (one connection at a time)."""
    return _match(transport, "serialize_hosts", host, addr, ctx)


def _expand(transport, option, host, addr, ctx):
    """Option ``option`` expanded with $host set; a forced failure counts as unset."""
    value = transport.options[option]
    if value is None:
        return None
    try:
        return ctx.expand(value, addr, transport=transport, host=host)
    except ForcedFail:
        return None
    except ExpansionError as exc:
        raise ExpansionError('failed to expand "%s" in %s transport: %s'
                             % (option, transport.name, exc)) from None


def port_for(transport, host, addr, ctx):
    """The TCP port for ``host``: its own, else the ``port`` option ("smtp", or 465
    for protocol smtps when port is not set)."""
    if host.port:
        return host.port
    protocol = _protocol(transport)
    if protocol == "smtps" and not transport.options.is_set("port"):
        return 465
    text = _expand(transport, "port", host, addr, ctx)
    if not text:
        return {"smtps": 465, "lmtp": 24}.get(protocol, 25)
    if text.isdigit():
        return int(text)
    try:
        return socket.getservbyname(text, "tcp")
    except OSError:
        raise ExpansionError('invalid port "%s" in %s transport' % (text, transport.name))


def _interface(transport, host, addr, ctx):
    """The first address in ``interface`` of the same family as the host's."""
    text = _expand(transport, "interface", host, addr, ctx)
    if not text:
        return None
    want = ipaddress.ip_address(host.address).version
    sep = ":"
    if text.startswith("<") and len(text) > 1:
        # "<;" changes the separator so that IPv6 addresses can be listed.
        sep, text = text[1], text[2:]
    for item in text.split(sep):
        item = item.strip()
        if not item:
            continue
        try:
            if ipaddress.ip_address(item).version == want:
                return item
        except ValueError:
            raise ExpansionError('"%s" is not a valid IP address for the "interface" option '
                                 'for %s transport' % (item, transport.name)) from None
    return None


# The options for_host reads.  When none of them can give a different
# answer for another message to the same host, the answer is kept on the
# transport instance (one per configuration, so a new configuration after
# SIGHUP starts afresh): a relay then works them out once per host rather
# than once per message.
_HOST_LISTS = ("hosts_avoid_tls", "hosts_verify_avoid_tls", "hosts_require_tls",
               "tls_verify_hosts", "tls_try_verify_hosts", "tls_verify_cert_hostnames",
               "hosts_request_ocsp", "hosts_require_ocsp", "tls_resumption_hosts",
               "hosts_require_auth", "hosts_try_auth", "hosts_avoid_esmtp",
               "hosts_avoid_pipelining", "hosts_try_chunking", "hosts_try_prdr")
_STRINGS = ("tls_verify_certificates", "tls_crl", "tls_certificate", "tls_privatekey",
            "tls_sni", "tls_require_ciphers", "max_rcpt", "port", "interface")


def _static_host_list(value):
    """Whether matching host-list ``value`` depends only on the host.

    Unset, and lists of "*", IP addresses and networks (negated or not)
    qualify; names (looked up in the DNS), expansions, lookups, named
    lists and "@" do not."""
    if not value:
        return True
    if value.startswith("<"):
        return False
    for item in value.split(":"):
        item = item.strip().lstrip("!").strip()
        if item == "*":
            continue
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            return False
    return True


def _cacheable(transport):
    """Whether for_host's answer for a host is the same for every message
    (computed once per transport instance)."""
    known = transport.__dict__.get("_host_settings_cacheable")
    if known is None:
        opts = transport.options
        # helo_data's default names a variable that only the configuration
        # sets; any other expansion may differ per message.
        helo = opts["helo_data"]
        known = (all(_static_host_list(opts[name]) for name in _HOST_LISTS)
                 and all(opts[name] is None or ("$" not in opts[name] and "\\" not in opts[name])
                         for name in _STRINGS)
                 and (helo is None or helo == "$primary_hostname"
                      or ("$" not in helo and "\\" not in helo)))
        transport._host_settings_cacheable = known
    return known


def for_host(transport, host, addr, ctx, callout=False):
    """(ClientSettings, port, interface, connect_timeout) for delivering to ``host``.

    Deliveries (not callouts, whose caller adjusts the settings) reuse the
    answer for the same host while the options allow it (``_cacheable``).
    """
    if callout or not _cacheable(transport):
        return _for_host(transport, host, addr, ctx, callout)
    cache = transport.__dict__.setdefault("_host_settings", {})
    key = (host.name, host.address, host.port, getattr(host, "certname", None))
    found = cache.get(key)
    if found is None:
        found = _for_host(transport, host, addr, ctx, callout)
        if found[0].auth is None:
            # Authenticators are built with an expansion context of this
            # message; with them the settings are made afresh each time.
            if len(cache) > 1000:
                cache.clear()
            cache[key] = found
    return found


def _for_host(transport, host, addr, ctx, callout):
    opts = transport.options
    contexts = []

    def match(option):
        return _match(transport, option, host, addr, ctx, contexts)

    def expand(option):
        return _expand(transport, option, host, addr, ctx)

    smtps = _protocol(transport) == "smtps"
    if smtps:
        tls = "require"
    elif match("hosts_avoid_tls") or (callout and match("hosts_verify_avoid_tls")):
        tls = None
    elif match("hosts_require_tls"):
        tls = "require"
    else:
        tls = "try"
    tls_settings = None
    if tls:
        verify = "require" if match("tls_verify_hosts") else \
            "try" if match("tls_try_verify_hosts") else None
        names = None
        if verify and match("tls_verify_cert_hostnames"):
            names = [getattr(host, "certname", None) or host.name or host.address]
        from exim_py.smtp.tls_client import TLSClientSettings    # OpenSSL when needed
        tls_settings = TLSClientSettings(
            verify=verify, verify_certificates=expand("tls_verify_certificates") or "system",
            verify_names=names, crl=expand("tls_crl"), certificate=expand("tls_certificate"),
            privatekey=expand("tls_privatekey"), sni=expand("tls_sni"),
            require_ciphers=expand("tls_require_ciphers"),
            request_ocsp=match("hosts_request_ocsp"), require_ocsp=match("hosts_require_ocsp"),
            resume_key=((host.name, host.address, port_for(transport, host, addr, ctx))
                        if match("tls_resumption_hosts") else None))
    auth = "require" if match("hosts_require_auth") else "try" if match("hosts_try_auth") else None
    authenticators = []
    if auth:
        from exim_py.auths.base import load_authenticators
        from exim_py.smtp import sasl_client
        authenticators = sasl_client.for_transport(load_authenticators(transport.config),
                                                   ctx.expand_context(addr, transport, host))
    max_rcpt = expand("max_rcpt") or "100"
    try:
        max_rcpt = int(max_rcpt)
    except ValueError:
        raise ExpansionError('invalid max_rcpt "%s" in %s transport'
                             % (max_rcpt, transport.name)) from None
    settings = ClientSettings(
        helo_data=expand("helo_data") or "localhost",
        command_timeout=opts["command_timeout"], data_timeout=opts["data_timeout"],
        final_timeout=opts["final_timeout"], esmtp=not match("hosts_avoid_esmtp"),
        pipelining=not match("hosts_avoid_pipelining"), chunking=match("hosts_try_chunking"),
        prdr=match("hosts_try_prdr"), size_addition=opts["size_addition"], tls=tls,
        tls_settings=tls_settings, tls_tempfail_tryclear=opts["tls_tempfail_tryclear"],
        auth=auth, authenticators=authenticators, max_rcpt=max_rcpt, callout=callout,
        tls_on_connect=smtps, lmtp=_protocol(transport) == "lmtp",
        ignore_quota=opts["lmtp_ignore_quota"],
        mua_wrapper=bool(transport.config.main.get("mua_wrapper")))
    return (settings, port_for(transport, host, addr, ctx), _interface(transport, host, addr, ctx),
            opts["connect_timeout"])


def authenticated_sender(transport, host, addr, ctx):
    """A callable giving the AUTH= value for MAIL from the session so far, or None.

    Exim expands authenticated_sender once connected and after STARTTLS, so
    $host and the $tls_out_* variables describe this connection.  A forced
    failure or an empty result means "not set"; another failure raises.
    """
    value = transport.options["authenticated_sender"]
    if value is None:
        return None

    def expand(result):
        extra = result.tls.variables() if result.tls is not None else {}
        try:
            return ctx.expand(value, addr, transport=transport, host=host, extra=extra) or None
        except ForcedFail:
            return None
        except ExpansionError as exc:
            raise ExpansionError('Failed to expand authenticated_sender: %s' % (exc,)) from None
    return expand


def _router_fallback(config, addr):
    """The fallback_hosts option of the router that routed ``addr`` ("" if none)."""
    name = getattr(addr, "router", None)
    name = getattr(name, "name", name)
    for router in getattr(config, "routers", None) or ():
        if router.name == name:
            return router.options["fallback_hosts"] or ""
    return ""


def host_list(transport, addr, ctx):
    """The hosts (one per IP address) to try, in order, fallback hosts last.

    Blocking (DNS): run it in a thread.  The transport's ``hosts`` replaces
    the router's list when the router gave none or ``hosts_override`` is set.
    """
    from exim_py.routers import hostlist
    opts = transport.options
    hosts = list(addr.host_list)
    from_option = False
    if opts["hosts"] is not None and (not hosts or opts["hosts_override"]):
        text = ctx.expand(opts["hosts"], addr, transport=transport)
        hosts = hostlist.parse(text)
        from_option = True
    fallback = list(getattr(addr, "fallback_hosts", None) or [])
    if not fallback:
        # The router's fallback_hosts (a plain host list, not expanded) go
        # with the address it routed, as Exim copies them at routing time.
        fallback = hostlist.parse(_router_fallback(transport.config, addr))
    if opts["fallback_hosts"] is not None:
        fallback += hostlist.parse(ctx.expand(opts["fallback_hosts"], addr, transport=transport))
    if from_option and opts["hosts_randomize"]:
        hosts = hostlist.randomize_groups(hosts)
    lookup = "byname" if opts["gethostbyname"] else None
    out = []
    for host in hosts + fallback:
        if host is hostlist.GROUP_BREAK:
            continue
        if host.address:
            out.append(host)
            continue
        try:
            out.extend(hostlist.resolve(host, ctx, lookup))
        except LookupDefer:
            continue
    return out
