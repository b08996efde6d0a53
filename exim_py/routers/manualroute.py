"""The manualroute router: routing by domain to a configured host list
(spec chapter "The manualroute router").

A routing rule is ``<domain pattern> <host list> <options>``, from
``route_list`` (rules separated by semicolons) or ``route_data`` (the host
list and options for this domain).  Options are ``randomize`` /
``no_randomize``, ``byname`` / ``bydns`` and a transport name.
"""

import re

from exim_py.config.options import BOOL, STRING, LIST, Option, OptionTable
from exim_py.delivery.address import Host, RouterResult, OK, DECLINE, DEFER, FAIL, PASS
from exim_py.errors import ExpansionError, ForcedFail, LookupDefer
from exim_py.routers import hostlist
from exim_py.routers.base import RouterBase, apply_self, host_is_local

OPTIONS = OptionTable([
    Option("host_all_ignored", STRING, "defer", "what to do when every host is ignored"),
    Option("host_find_failed", STRING, "freeze", "what to do when a host has no address"),
    Option("hosts_randomize", BOOL, False, "randomize the order of each host list"),
    Option("route_data", STRING, None, "host list and options for the domain", expand=True),
    Option("route_list", LIST, None, "routing rules, separated by semicolons"),
    Option("same_domain_copy_routing", BOOL, False, "reuse the routing for the same domain"),
])

_FAILED_ACTIONS = ("decline", "defer", "fail", "freeze", "ignore", "pass")


def split_rules(text):
    """route_list → rules, separated by semicolons (';;' is a literal ';')."""
    return hostlist.split_items(text, ";")


def split_words(text):
    """Split a rule into white-space separated words; a word may be
    double-quoted (with backslash escapes), as Exim's string_dequote."""
    from exim_py.config.options import dequote
    words = []
    text = text.strip()
    while text:
        if text.startswith('"'):
            value, text, _ = dequote(text)
            words.append(value)
        else:
            m = re.match(r"\S+", text)
            words.append(m.group(0))
            text = text[m.end():]
        text = text.lstrip()
    return words


class Router(RouterBase):
    """driver = manualroute"""

    def __init__(self, dconf, config):
        super().__init__(dconf, config)
        for name in ("host_find_failed", "host_all_ignored"):
            value = self.options[name]
            if value not in _FAILED_ACTIONS or (name == "host_all_ignored" and value == "ignore"):
                from exim_py.errors import ConfigError
                raise ConfigError("unrecognized setting for %s in %s router" % (name, self.name),
                                  dconf.filename, dconf.line)

    def _rules(self):
        """route_list split into rules and words, once per router instance
        (one per configuration): the option is not expanded as a whole."""
        rules = self.__dict__.get("_route_rules")
        if rules is None:
            rules = self._route_rules = [split_words(rule) for rule in
                                         split_rules(self.options["route_list"] or "")]
        return rules

    def _find_rule(self, addr, ctx):
        """(host list text, option words, extra variables) or None to decline."""
        if self.options["route_data"] is not None:
            try:
                data = ctx.expand(self.options["route_data"], addr)
            except ForcedFail:
                return None
            words = split_words(data)
            if not words:
                return None
            return words[0], words[1:], {}
        from exim_py import match
        for words in self._rules():
            pattern = words[0]
            if pattern == "*":
                # Every domain, with nothing captured: no expansion context
                # is needed to say so.
                return (words[1] if len(words) > 1 else ""), words[2:], \
                    {"numeric": [addr.domain]}
            mctx = ctx.expand_context(addr)
            if match.match_domain(addr.domain, pattern, mctx):
                numeric = list(mctx.numeric) or [addr.domain]
                numeric[0] = addr.domain
                extra = {"numeric": numeric}
                if mctx.lookup_value is not None:
                    extra["value"] = mctx.lookup_value
                return (words[1] if len(words) > 1 else ""), words[2:], extra
        return None

    def route(self, addr, ctx):
        found = self._find_rule(addr, ctx)
        if found is None:
            return RouterResult(DECLINE)
        hosts_text, words, extra = found
        randomize = self.options["hosts_randomize"]
        lookup_type = None
        transport_name = None
        for w in words:
            if w == "randomize":
                randomize = True
            elif w == "no_randomize":
                randomize = False
            elif w in ("byname", "bydns"):
                lookup_type = w
            elif w in ("ipv4_prefer", "ipv6_prefer", "ipv4_only", "ipv6_only"):
                continue
            else:
                transport_name = w
        try:
            hosts_text = ctx.expand(hosts_text, addr, extra=extra) if hosts_text else ""
        except ExpansionError:
            return RouterResult(DECLINE)

        if transport_name is not None:
            try:
                addr.transport = ctx.transport(transport_name)
            except KeyError:
                return RouterResult(DEFER, "unknown transport name %s in %s router"
                                    % (transport_name, self.name))
        else:
            failed = self.set_transport(addr, ctx)
            if failed is not None:
                return failed

        items = hostlist.parse(hosts_text)
        if randomize:
            items = hostlist.randomize_groups(items)
        items = [h for h in items if h is not hostlist.GROUP_BREAK]

        # A local transport gets the host list as one unresolved item, its
        # text available as $host.
        if addr.transport is not None and not addr.transport.remote:
            addr.host_list = [Host(hosts_text)] if hosts_text else []
            return RouterResult(OK)
        if addr.transport is None and ctx.mode == "deliver":
            return RouterResult(DEFER, "no transport set by %s router" % self.name)
        if not items:
            return RouterResult(DEFER, "no hosts in host list for %s router" % self.name)
        return self._resolve(addr, ctx, items, lookup_type)

    def _resolve(self, addr, ctx, items, lookup_type):
        """Look up each host's addresses, applying host_find_failed and self."""
        # As in Exim, the unresolved list stays on the address even when the
        # router then declines, and a later router may show it (-bt does).
        addr.host_list = [h.copy() for h in items]
        hosts = []
        # Once the first host is the local host and self = send goes on, the
        # list is kept whole (Exim stops scanning for local hosts there).
        local_checked = False
        for index, item in enumerate(items):
            try:
                found = hostlist.resolve(item, ctx, lookup_type)
            except LookupDefer:
                if self.options["pass_on_timeout"]:
                    return RouterResult(PASS)
                return RouterResult(DEFER, "host lookup for %s did not complete" % item.name)
            if not found:
                action = self.options["host_find_failed"]
                if action == "ignore":
                    continue
                return self._failed(action, addr, 'lookup of host "%s" failed in %s router'
                                    % (item.name, self.name))
            found = hostlist.remove_ignored(found, self, addr, ctx)
            local = [] if local_checked else [h for h in found if host_is_local(h, ctx)]
            if local:
                if index == 0 and not hosts:
                    why = "remote host address is the local host"
                    outcome = apply_self(self, addr, found, ctx, why)
                    if outcome is not None:
                        addr.host_list = []
                        return outcome
                    local_checked = True
                else:
                    break   # the local host and everything after it are dropped
            hosts.extend(found)
        if not hosts:
            return self._failed(self.options["host_all_ignored"], addr,
                                "all hosts found by %s router were ignored" % self.name)
        addr.host_list = hosts
        return RouterResult(OK)

    def _failed(self, action, addr, message):
        if action == "decline":
            return RouterResult(DECLINE)
        if action == "pass":
            return RouterResult(PASS)
        if action == "fail":
            return RouterResult(FAIL, message)
        if action == "freeze":
            addr.special = "freeze"
        return RouterResult(DEFER, message)


__all__ = ["Router", "OPTIONS", "split_rules", "split_words"]
