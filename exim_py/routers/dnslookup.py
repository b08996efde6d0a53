"""The dnslookup router: routing a domain by its MX records, or by its
address records when it has none (spec chapter "The dnslookup router";
RFC 5321 section 5.1).

MX hosts come in preference order with equal preferences in random order,
each expanded to its IPv6 and IPv4 addresses.  When this host is among the
MX hosts, it and every host of equal or lower priority are dropped; when it
is the most preferred, the generic ``self`` option decides.  A domain that
does not exist makes the router decline (after trying ``widen_domains``); a
temporary DNS failure defers (or passes, with ``pass_on_timeout``).

``check_srv`` looks for SRV records of the named services first (RFC 2782
order: priority, then weighted random; a lone "." target means no such
service).  ``qualify_single`` and ``search_parents`` let a domain be
completed with the resolver's search domains, as the C resolver's
RES_DEFNAMES and RES_DNSRCH do; a completed domain reroutes the address.
``same_domain_copy_routing`` gives later addresses of the message with the
same domain the hosts found for the first one.
"""

import random

from exim_py.config.options import BOOL, DOMAINLIST, LIST, STRING, Option, OptionTable
from exim_py.delivery.address import Address, Host, RouterResult, OK, DECLINE, DEFER, FAIL, \
    PASS, REROUTED
from exim_py.errors import ExpansionError, ForcedFail, LookupDefer
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
        copied = self._copied_routing(addr, ctx)
        if copied is not None:
            return self._finish(addr, ctx, copied)
        resolver = dns.get_resolver(ctx.config)
        ipv4_only = (self.expand_opt("ipv4_only", addr, ctx) or "").strip().lower() \
            in ("1", "yes", "true")
        try:
            services = self._services(addr, ctx)
        except ExpansionError as e:
            return RouterResult(DEFER, 'failed to expand "%s": %s'
                                % (self.options["check_srv"], e))
        hosts, why, found_name = None, "unknown domain", addr.domain
        try:
            for name in dns.candidate_names(addr.domain, self.options["qualify_single"],
                                            self.options["search_parents"]):
                hosts, why = self._find_hosts(name, addr, ctx, resolver, ipv4_only, services)
                if hosts is not None or why == "no such service":
                    found_name = name
                    break
        except LookupDefer as e:
            if self.options["pass_on_timeout"]:
                return RouterResult(PASS)
            if self._in_list("fail_defer_domains", addr.domain, addr, ctx):
                return RouterResult(FAIL, str(e))
            return RouterResult(DEFER, str(e))
        if why == "no such service":
            return RouterResult(DECLINE, why)
        if hosts is None:
            return self._widen(addr, ctx, resolver, ipv4_only, why, services)
        if found_name.lower() != addr.domain.lower():
            # The resolver completed the domain: route the full address.
            child = Address("%s@%s" % (addr.local_part, found_name), parent=addr)
            return RouterResult(REROUTED, new=[child])
        return self._finish(addr, ctx, hosts)

    def _services(self, addr, ctx):
        """The check_srv service names (none when unset or forced to fail)."""
        try:
            text = self.expand_opt("check_srv", addr, ctx)
        except ForcedFail:
            return []
        from exim_py.match import iter_list
        return [s for s in iter_list(text or "") if s]

    def _find_hosts(self, domain, addr, ctx, resolver, ipv4_only, services=()):
        """(hosts, reason): hosts None when the domain has no usable records."""
        from exim_py import dns
        for service in services:
            srv = self._srv_hosts(service, domain, addr, ctx, resolver, ipv4_only)
            if srv is not None:
                return srv
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

    def _srv_hosts(self, service, domain, addr, ctx, resolver, ipv4_only):
        """(hosts, reason) from the SRV records of _service._tcp.domain, or
        None when there are none (MX records are then looked for)."""
        from exim_py import dns
        name = "_%s._tcp.%s" % (service, domain)
        answer = resolver.query(name, "SRV")
        if answer.status == dns.AGAIN:
            if self._in_list("srv_fail_domains", domain, addr, ctx):
                return None
            raise LookupDefer('DNS lookup of "%s" (SRV) gave a temporary error' % name)
        if answer.status != dns.FOUND or not answer.records:
            return None
        targets = [r.target.to_text(omit_final_dot=True) for r in answer.records]
        if len(answer.records) == 1 and targets[0] in ("", "."):
            return [], "no such service"
        hosts = []
        for r in srv_order(answer.records):
            target = r.target.to_text(omit_final_dot=True)
            for ip in resolver.addresses(target, ipv4_only=ipv4_only):
                hosts.append(Host(target, ip, port=r.port, mx=r.priority))
        if not hosts:
            return [], "all relevant SRV records point to non-existent hosts"
        return hosts, None

    def _copied_routing(self, addr, ctx):
        """same_domain_copy_routing: the hosts an earlier address of this
        message with the same domain was routed to by this router, if any."""
        if not self.options["same_domain_copy_routing"]:
            return None
        hosts = ctx.__dict__.get("_copied_routes", {}).get((self.name, addr.domain.lower()))
        return [Host(h.name, h.address, port=h.port, mx=h.mx) for h in hosts] \
            if hosts is not None else None

    def _remember_routing(self, addr, ctx):
        # Only unchanged routing may be copied: no header changes (spec).
        if self.options["same_domain_copy_routing"] and addr.transport is not None and \
                addr.transport.remote and not self.options["headers_add"] and \
                not self.options["headers_remove"]:
            routes = ctx.__dict__.setdefault("_copied_routes", {})
            routes.setdefault((self.name, addr.domain.lower()), list(addr.host_list))

    def _widen(self, addr, ctx, resolver, ipv4_only, why, services=()):
        """widen_domains: try the domain with each suffix; a hit reroutes the address."""
        text = self.options["widen_domains"]
        if text:
            for suffix in [s.strip() for s in text.split(":") if s.strip()]:
                wider = "%s.%s" % (addr.domain, suffix)
                try:
                    hosts, _ = self._find_hosts(wider, addr, ctx, resolver, ipv4_only,
                                                services)
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
        self._remember_routing(addr, ctx)
        return RouterResult(OK)


def srv_order(records):
    """SRV records in RFC 2782 order: by priority, and within one priority
    by repeated weighted random choice (weight 0 rarely first)."""
    out = []
    by_priority = {}
    for r in records:
        by_priority.setdefault(r.priority, []).append(r)
    for priority in sorted(by_priority):
        group = sorted(by_priority[priority], key=lambda r: r.weight)
        while group:
            total = sum(r.weight for r in group)
            pick = random.randint(0, total)
            running = 0
            for i, r in enumerate(group):
                running += r.weight
                if running >= pick:
                    out.append(group.pop(i))
                    break
    return out
