"""What every router shares: option access and the generic post-routing steps.

The delivery engine (delivery/route.py) checks a router's preconditions
(domains, local_parts, senders, condition ...) and applies the generic
options after it; a router module only implements ``route(addr, ctx)`` for
its own driver (spec chapter "Generic options for routers").  The helpers
here are the pieces several drivers need: choosing the transport, and
looking a host list up by name or in the DNS.
"""

import time

from exim_py.delivery.drivers import DriverBase
from exim_py.delivery.address import RouterResult, DEFER, FAIL
from exim_py.errors import ExpansionError, ForcedFail


class RouterBase(DriverBase):
    """Base class for router drivers: ``self.name``, ``self.opt(name)``."""

    def expand_opt(self, name, addr, ctx, forced_none=False):
        """Option ``name`` expanded for ``addr``; None when unset.

        With ``forced_none`` a forced failure gives None instead of raising.
        """
        value = self.options[name]
        if value is None:
            return None
        try:
            return ctx.expand(value, addr)
        except ForcedFail:
            if forced_none:
                return None
            raise

    def route(self, addr, ctx):
        """Route ``addr``; returns a RouterResult.  Drivers override this."""
        raise NotImplementedError

    # -- helpers for drivers ------------------------------------------------

    def set_transport(self, addr, ctx, option="transport"):
        """Expand the transport option and attach the transport to ``addr``.

        Returns None on success or a RouterResult(DEFER) saying why not, as
        Exim defers an address whose transport name does not expand or name
        a transport (spec: the generic ``transport`` option).
        """
        value = self.options[option]
        if value is None:
            addr.transport = None
            return None
        try:
            tname = ctx.expand(value, addr).strip()
        except ExpansionError as e:
            return RouterResult(DEFER, "failed to expand transport \"%s\" in %s router: %s"
                                % (value, self.name, e))
        try:
            addr.transport = ctx.transport(tname)
        except KeyError:
            return RouterResult(DEFER, "transport \"%s\" not found in %s router"
                                % (tname, self.name))
        return None


# Exim finds the interfaces once per process (host_find_interfaces), and
# its delivery processes live for one message; a daemon lives for months,
# so its list is read again when it is this many seconds old.
LOCAL_ADDRESSES_TTL = 10.0
_local_cache = (None, frozenset())      # (monotonic time read, addresses)


def local_addresses():
    """The IP addresses of this host's interfaces (Exim's idea of "the local host").

    Read from /proc (IPv4 from fib_trie's LOCAL entries, IPv6 from
    if_inet6), so that no socket or subprocess is needed, at most once
    every LOCAL_ADDRESSES_TTL seconds (every remote routing asks).
    """
    global _local_cache
    now = time.monotonic()
    when, found = _local_cache
    if when is None or not 0 <= now - when < LOCAL_ADDRESSES_TTL:
        found = frozenset(_read_local_addresses())
        _local_cache = (now, found)
    return found


def _read_local_addresses():
    found = {"127.0.0.1", "::1"}
    try:
        with open("/proc/net/fib_trie") as f:
            lines = f.read().splitlines()
        for prev, line in zip(lines, lines[1:]):
            if "/32 host LOCAL" in line:
                found.add(prev.split()[-1])
    except OSError:
        pass
    try:
        import ipaddress
        with open("/proc/net/if_inet6") as f:
            for line in f:
                raw = line.split()[0]
                found.add(str(ipaddress.ip_address(int(raw, 16))))
    except (OSError, ValueError):
        pass
    return found


def host_is_local(host, ctx):
    """Whether ``host`` is this machine: one of our interface addresses, or
    in hosts_treat_as_local (spec: the generic ``self`` option)."""
    if host.address and host.address in local_addresses():
        return True
    treat = ctx.config.main.get("hosts_treat_as_local") if ctx.config else None
    if treat and host.name:
        from exim_py import match
        return match.match_domain(host.name, treat, ctx.expand_context())
    return False


def apply_self(router, addr, hosts, ctx, why):
    """Handle a routing whose first host is the local host (generic ``self`` option).

    Returns None to go ahead (``self = send``), or the RouterResult to give.
    ``why`` is the reason Exim logs, e.g. "lowest numbered MX record points
    to local host".
    """
    from exim_py.delivery.address import PASS, REROUTED, Address
    setting = (router.options["self"] or "freeze").strip()
    addr.self_hostname = hosts[0].name if hosts else None
    if setting == "send":
        return None
    if setting == "pass":
        return RouterResult(PASS)
    if setting == "fail":
        return RouterResult(FAIL, why)
    if setting.startswith("reroute:"):
        target = setting[len("reroute:"):].strip()
        rewrite = target.startswith("rewrite:")
        if rewrite:
            target = target[len("rewrite:"):]
        child = Address("%s@%s" % (addr.local_part, target), parent=addr)
        return RouterResult(REROUTED, new=[child])
    if setting == "defer":
        return RouterResult(DEFER, why)
    # self = freeze: the log says why, naming the address when verifying.
    if ctx.logger is not None:
        if ctx.message is not None:
            ctx.logger.main("%s: %s" % (why, addr.domain), ctx.message.id)
        else:
            ctx.logger.main("%s: %s (while routing <%s>)" % (why, addr.domain, addr.address))
    addr.special = "freeze"
    return RouterResult(DEFER, why)
