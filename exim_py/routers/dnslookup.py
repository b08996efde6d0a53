"""The dnslookup router: routing a domain by its MX records, or by its
address records when it has none (spec chapter "The dnslookup router";
RFC 5321 section 5.1).

MX hosts come in preference order with equal preferences in random order,
each expanded to its IPv6 and IPv4 addresses.  When this host is among the
MX hosts, it and every host of equal or lower priority are dropped; when it
is the most preferred, the generic ``self`` option decides.  A domain that
does not exist makes the router decline (after trying ``widen_domains``); a
temporary DNS failure defers (or passes, with ``pass_on_timeout``).
"""

import random

from exim_py.config.options import BOOL, DOMAINLIST, LIST, STRING, Option, OptionTable
from exim_py.delivery.address import Address, Host, RouterResult, OK, DECLINE, DEFER, FAIL, \
    PASS, REROUTED
from exim_py.errors import LookupDefer
from exim_py.routers import hostlist
from exim_py.routers.base import RouterBase, apply_self, host_is_local

OPTIONS = OptionTable([
    Option("check_secondary_mx", BOOL, False, "decline unless this host is a secondary MX"),
    Option("check_srv", STRING, None, "SRV service to look up first", expand=True),
    Option("fail_defer_domains", DOMAINLIST, None, "domains whose DNS defers become failures"),
    Option("ipv4_only", STRING, None, "use only IPv4 addresses", expand=True),
    Option("ipv4_prefer", STRING, None, "prefer IPv4 addresses", expand=True),
    Option("mx_domains", DOMAINLIST, None, "domains that must have MX records"),
    Option("mx_fail_domains", DOMAINLIST, None, "domains whose MX lookup failures fail"),
    Option("qualify_single", BOOL, True, "let the resolver qualify single-component names"),
    Option("rewrite_headers", BOOL, True, "rewrite headers when the domain is widened"),
    Option("same_domain_copy_routing", BOOL, False, "reuse the routing for the same domain"),
    Option("search_parents", BOOL, False, "let the resolver search parent domains"),
    Option("srv_fail_domains", DOMAINLIST, None, "domains whose SRV lookup failures fail"),
    Option("widen_domains", LIST, None, "suffixes to try when the domain is not found"),
])


class Router(RouterBase):
    """driver = dnslookup"""

    def _in_list(self, option, domain, addr, ctx):
        value = self.options[option]
        if value is None:
            return False
        from exim_py import match
        return match.match_domain(domain, value, ctx.expand_context(addr))

    def route(self, addr, ctx):
        from exim_py import dns
        resolver = dns.get_resolver(ctx.config)
        ipv4_only = (self.expand_opt("ipv4_only", addr, ctx) or "").strip().lower() \
            in ("1", "yes", "true")
        try:
            hosts, why = self._find_hosts(addr.domain, addr, ctx, resolver, ipv4_only)
        except LookupDefer as e:
            if self.options["pass_on_timeout"]:
                return RouterResult(PASS)
            if self._in_list("fail_defer_domains", addr.domain, addr, ctx):
                return RouterResult(FAIL, str(e))
            return RouterResult(DEFER, str(e))
        if hosts is None:
            return self._widen(addr, ctx, resolver, ipv4_only, why)
        return self._finish(addr, ctx, hosts)

    def _find_hosts(self, domain, addr, ctx, resolver, ipv4_only):
        """(hosts, reason): hosts None when the domain has no usable records."""
        from exim_py import dns
        answer = resolver.query(domain, "MX")
        if answer.status == dns.AGAIN:
            raise LookupDefer('DNS lookup of "%s" (MX) gave a temporary error' % domain)
        if answer.status == dns.FOUND and answer.records:
            prefs = {}
            for r in answer.records:
                name = r.exchange.to_text(omit_final_dot=True)
                prefs.setdefault(r.preference, []).append(name)
            hosts = []
            for pref in sorted(prefs):
                names = prefs[pref]
                random.shuffle(names)
                for name in names:
                    if name in ("", "."):
                        return None, "null MX"
                    for ip in resolver.addresses(name, ipv4_only=ipv4_only):
                        hosts.append(Host(name, ip, mx=pref))
            if not hosts:
                return [], "all relevant MX records point to non-existent hosts"
            return hosts, None
        if self._in_list("mx_domains", domain, addr, ctx):
            return None, "no MX record"
        ips = resolver.addresses(domain, ipv4_only=ipv4_only)
        if not ips:
            return None, "unknown domain"
        return [Host(domain, ip) for ip in ips], None

    def _widen(self, addr, ctx, resolver, ipv4_only, why):
        """widen_domains: try the domain with each suffix; a hit reroutes the address."""
        text = self.options["widen_domains"]
        if text:
            for suffix in [s.strip() for s in text.split(":") if s.strip()]:
                wider = "%s.%s" % (addr.domain, suffix)
                try:
                    hosts, _ = self._find_hosts(wider, addr, ctx, resolver, ipv4_only)
                except LookupDefer:
                    continue
                if hosts:
                    child = Address("%s@%s" % (addr.local_part, wider), parent=addr)
                    return RouterResult(REROUTED, new=[child])
        return RouterResult(DECLINE, why)

    def _finish(self, addr, ctx, hosts):
        if not hosts:
            return RouterResult(FAIL, "all relevant MX records point to non-existent hosts")
        hosts = hostlist.remove_ignored(hosts, self, addr, ctx)
        if not hosts:
            return RouterResult(DECLINE, "all hosts were ignored")
        local = [h for h in hosts if host_is_local(h, ctx)]
        if local:
            best = hosts[0].mx
            if best is not None and min(h.mx for h in local) > best:
                # Drop this host and everything no better than it (RFC 5321 5.1).
                cut = min(h.mx for h in local)
                hosts = [h for h in hosts if h.mx < cut]
            else:
                outcome = apply_self(self, addr, hosts, ctx,
                                     "lowest numbered MX record points to local host"
                                     if best is not None else
                                     "remote host address is the local host")
                if outcome is not None:
                    return outcome
        elif self.options["check_secondary_mx"]:
            return RouterResult(DECLINE)
        failed = self.set_transport(addr, ctx)
        if failed is not None:
            return failed
        addr.host_list = hosts
        return RouterResult(OK)
