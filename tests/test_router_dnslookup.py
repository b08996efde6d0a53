"""The dnslookup router against a real DNS server (tests/support/dnsserver.py).

MX preference order with equal preferences shuffled, the address-record
fallback, unknown domains, temporary failures, widen_domains, the local
host as primary or secondary MX (the generic ``self`` option), and
ignore_target_hosts.
"""

import os
import shutil
import tempfile

from twisted.trial import unittest

from exim_py import config as configmod
from exim_py.delivery.address import Address, OK, DEFER, FAIL, REROUTED
from exim_py.delivery.context import DeliveryContext
from exim_py.delivery.route import route_address
from tests.support.dnsserver import shared_server

CONFIG = """\
primary_hostname = myhost.test
dns_nameservers = <; NAMESERVERS
begin routers
dl:
  driver = dnslookup
  domains = ! onemx.test
  transport = t
  widen_domains = test
  self = SELF
  no_more
ign:
  driver = dnslookup
  domains = onemx.test
  transport = t
  ignore_target_hosts = 203.0.113.0/24
begin transports
t:
  driver = smtp
"""


class DnslookupTests(unittest.TestCase):
    """Routing through DNS answers."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="exim_py-dnslookup-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.nameservers = shared_server().nameservers

    def route(self, address, self_option="freeze"):
        path = os.path.join(self.dir, "exim.conf")
        with open(path, "w") as f:
            f.write(CONFIG.replace("NAMESERVERS", self.nameservers).replace("SELF", self_option))
        ctx = DeliveryContext(configmod.load(path), mode="test")
        addr = Address(address)
        return addr, route_address(addr, ctx)

    def test_mx_order(self):
        """Hosts come by MX preference; equal preferences in some order; a host
        with two addresses gives two entries (IPv6 first)."""
        seen_orders = set()
        for _ in range(12):
            addr, result = self.route("u@eqmx.test")
            self.assertIs(result.code, OK)
            names = [h.name for h in addr.host_list]
            self.assertEqual(sorted(names[:3]), ["a.host.test", "b.host.test", "c.host.test"])
            self.assertEqual(names[3:], ["both.host.test", "both.host.test"])
            self.assertEqual([h.mx for h in addr.host_list], [10, 10, 10, 20, 20])
            self.assertEqual([h.address for h in addr.host_list[3:]],
                             ["2001:db8::4", "203.0.113.4"])
            seen_orders.add(tuple(names[:3]))
        self.assertGreater(len(seen_orders), 1, "equal preferences were never reordered")

    def test_address_fallback(self):
        """A domain without MX records is routed to its own address records."""
        addr, result = self.route("u@nomx.test")
        self.assertIs(result.code, OK)
        self.assertEqual([(h.name, h.address, h.mx) for h in addr.host_list],
                         [("nomx.test", "203.0.113.1", None)])

    def test_unknown_domain_is_unrouteable(self):
        """A domain that does not exist: the router declines, the address fails."""
        addr, result = self.route("u@no-such-domain.test")
        self.assertIs(result.code, FAIL)
        self.assertEqual(result.message, "Unrouteable address")

    def test_temporary_failure_defers(self):
        """SERVFAIL defers the address."""
        addr, result = self.route("u@x.servfail.test")
        self.assertIs(result.code, DEFER)

    def test_widen_domains(self):
        """An unknown single-label domain is retried with the widen_domains suffix."""
        addr, result = self.route("u@onemx")
        self.assertIs(result.code, REROUTED)
        self.assertEqual([a.address for a in result.new], ["u@onemx.test"])

    def test_local_primary_mx_freezes(self):
        """The local host as lowest MX: self = freeze defers and freezes."""
        addr, result = self.route("u@primary-local.test")
        self.assertIs(result.code, DEFER)
        self.assertEqual(result.message, "lowest numbered MX record points to local host")
        self.assertEqual(addr.special, "freeze")

    def test_local_primary_mx_self_fail_and_send(self):
        """self = fail fails the address; self = send keeps the hosts."""
        _, result = self.route("u@primary-local.test", "fail")
        self.assertIs(result.code, FAIL)
        addr, result = self.route("u@primary-local.test", "send")
        self.assertIs(result.code, OK)
        self.assertEqual(addr.host_list[0].name, "localhost.test")

    def test_local_secondary_mx_dropped(self):
        """The local host as a secondary MX is dropped with everything after it."""
        addr, result = self.route("u@secondary-local.test")
        self.assertIs(result.code, OK)
        self.assertEqual([h.name for h in addr.host_list], ["a.host.test"])

    def test_ignore_target_hosts(self):
        """When every host of an existing domain is ignored the router declines,
        so the address is unrouteable."""
        addr, result = self.route("u@onemx.test")
        self.assertIs(result.code, FAIL)
        self.assertEqual(result.message, "Unrouteable address")


SRV_CONFIG = """\
primary_hostname = myhost.test
dns_nameservers = <; NAMESERVERS
begin routers
dl:
  driver = dnslookup
  transport = t
  OPTIONS
begin transports
t:
  driver = smtp
"""


class DnslookupOptionTests(unittest.TestCase):
    """check_srv, qualify_single, search_parents and same_domain_copy_routing
    (zone tests/support/zones/srv.example)."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="exim_py-dnslookup-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.nameservers = shared_server().nameservers
        old = os.environ.get("LOCALDOMAIN")
        os.environ["LOCALDOMAIN"] = "srv.example"
        self.addCleanup(lambda: os.environ.__setitem__("LOCALDOMAIN", old) if old is not None
                        else os.environ.pop("LOCALDOMAIN", None))

    def context(self, options):
        path = os.path.join(self.dir, "exim.conf")
        with open(path, "w") as f:
            f.write(SRV_CONFIG.replace("NAMESERVERS", self.nameservers)
                    .replace("OPTIONS", options))
        return DeliveryContext(configmod.load(path), mode="test")

    def route(self, address, options="", ctx=None):
        ctx = ctx or self.context(options)
        addr = Address(address)
        return addr, route_address(addr, ctx)

    def test_srv_records_come_first_in_priority_order(self):
        """check_srv: SRV hosts by priority with their ports; MX ignored."""
        addr, result = self.route("u@svc.srv.example", "check_srv = smtp")
        self.assertIs(result.code, OK)
        self.assertEqual([(h.name, h.port, h.mx) for h in addr.host_list],
                         [("h1.srv.example", 2525, 10), ("h2.srv.example", 2526, 20),
                          ("h3.srv.example", 587, 30)])

    def test_without_check_srv_mx_is_used(self):
        """SRV records are not looked at unless check_srv is set."""
        addr, result = self.route("u@svc.srv.example")
        self.assertEqual([(h.name, h.port) for h in addr.host_list], [("h3.srv.example", None)])

    def test_dot_target_means_no_service(self):
        """A lone "." SRV target makes the router decline (even with an MX)."""
        _, result = self.route("u@nosvc.srv.example", "check_srv = smtp")
        self.assertIs(result.code, FAIL)
        self.assertEqual(result.message, "Unrouteable address")

    def test_no_srv_falls_back_to_mx(self):
        """With no SRV record the MX record is used."""
        addr, result = self.route("u@nosrv.srv.example", "check_srv = smtp")
        self.assertEqual([h.name for h in addr.host_list], ["h2.srv.example"])

    def test_service_list_and_forced_failure(self):
        """Services are tried in turn; a forced expansion failure ignores check_srv."""
        addr, result = self.route("u@sub.srv.example", "check_srv = smtp : submission")
        self.assertEqual([(h.name, h.port) for h in addr.host_list], [("h3.srv.example", 587)])
        addr, result = self.route("u@svc.srv.example", "check_srv = ${if eq{1}{2}{smtp}fail}")
        self.assertEqual([h.name for h in addr.host_list], ["h3.srv.example"])

    def test_qualify_single_completes_the_domain(self):
        """A one-component domain gets the search domain and is rerouted."""
        _, result = self.route("u@single")
        self.assertIs(result.code, REROUTED)
        self.assertEqual([a.address for a in result.new], ["u@single.srv.example"])
        _, result = self.route("u@single", "no_qualify_single")
        self.assertIs(result.code, FAIL)

    def test_search_parents(self):
        """search_parents completes a dotted domain too (after trying it as is)."""
        _, result = self.route("u@deep.part")
        self.assertIs(result.code, FAIL)
        _, result = self.route("u@deep.part", "search_parents")
        self.assertIs(result.code, REROUTED)
        self.assertEqual([a.address for a in result.new], ["u@deep.part.srv.example"])

    def test_same_domain_copy_routing(self):
        """Later addresses with the same domain get the first one's host list,
        in the same (otherwise shuffled) order."""
        ctx = self.context("same_domain_copy_routing")
        first, _ = self.route("a@eqmx.test", ctx=ctx)
        orders = set()
        for i in range(8):
            addr, result = self.route("b%d@eqmx.test" % i, ctx=ctx)
            self.assertIs(result.code, OK)
            orders.add(tuple(h.name for h in addr.host_list))
        self.assertEqual(orders, {tuple(h.name for h in first.host_list)})
