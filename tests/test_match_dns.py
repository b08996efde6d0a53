"""List items that ask the DNS: host names, reverse lookups, @mx_*, dnsdb items.

Runs against the real test DNS server (tests/support/dnsserver.py); the
zones are in tests/support/zones/.
"""

from twisted.trial import unittest

from exim_py import config as configmod
from exim_py import match
from exim_py.errors import LookupDefer
from exim_py.expand.context import ExpandContext
from tests.support.dnsserver import DNSServer
from tests.test_dns import dns_context
from tests.test_match_lists import Host


class HostNameTests(unittest.TestCase):
    def setUp(self):
        self.ctx = dns_context(self)

    def check(self, address, liststring, name=None):
        return match.match_host(Host(address, name), liststring, self.ctx)

    def test_forward_lookup_items(self):
        """A plain host name matches the addresses it resolves to."""
        table = [
            ("203.0.113.1", "a.host.test", True),
            ("203.0.113.2", "a.host.test", False),
            ("203.0.113.11", "multi.host.test", True),
            ("2001:db8::4", "both.host.test", True),
            ("203.0.113.1", "alias.test", True),
            # A name that does not resolve makes the list fail ...
            ("203.0.113.1", "nothere.test : 203.0.113.1", False),
            # ... unless +ignore_unknown or +include_unknown say otherwise.
            ("203.0.113.1", "+ignore_unknown : nothere.test : 203.0.113.1", True),
            ("203.0.113.9", "+include_unknown : nothere.test : 203.0.113.1", True),
        ]
        for address, liststring, expected in table:
            self.assertEqual(self.check(address, liststring), expected, (address, liststring))

    def test_reverse_lookup_items(self):
        """*suffix and ^regex items use names found by a PTR lookup, kept only
        when they resolve back to the address."""
        table = [
            ("203.0.113.20", "*.test", True),
            ("203.0.113.20", "*friend.test", True),
            ("203.0.113.20", "\\N^friend\\.test$\\N", True),
            # alias-of-friend.test has no address record: not confirmed.
            ("203.0.113.20", "^alias-of", False),
            # No PTR at all, or only an unconfirmed name: the list fails.
            ("203.0.113.30", "*.test : 203.0.113.30", False),
            ("203.0.113.99", "*.test : 203.0.113.99", False),
            ("203.0.113.99", "+ignore_unknown : *.test : 203.0.113.99", True),
            ("203.0.113.99", "+include_unknown : *.nomatch", True),
            # The address items before the name item need no lookup.
            ("203.0.113.30", "203.0.113.30 : *.test", True),
            ("2001:db8::4", "*.host.test", True),
        ]
        for address, liststring, expected in table:
            self.assertEqual(self.check(address, liststring), expected, (address, liststring))

    def test_primary_hostname_item(self):
        """@ in a host list is the primary host name, looked up forwards."""
        ctx = dns_context(self, "primary_hostname = a.host.test\n")
        self.assertTrue(match.match_host(Host("203.0.113.1"), "@", ctx))
        self.assertFalse(match.match_host(Host("203.0.113.2"), "@", ctx))

    def test_not_an_address(self):
        """A host whose address is not an IP address matches no address item
        and finds no name, without a traceback."""
        self.assertFalse(self.check("not-an-ip", "203.0.113.0/24 : *.test"))
        self.assertFalse(self.check("not-an-ip", "net24-lsearch;/etc/hosts"))
        self.assertTrue(self.check("not-an-ip", "+ignore_unknown : *.test : *"))

    def test_known_name_is_used(self):
        """A host whose name is already known is not looked up again."""
        self.assertTrue(self.check("203.0.113.30", "*.given.example", name="h.given.example"))

    def test_found_name_recorded(self):
        """The name found by the reverse lookup is stored on the host."""
        host = Host("203.0.113.1")
        self.assertTrue(match.match_host(host, "*.host.test", self.ctx))
        self.assertEqual(host.name, "a.host.test")

    def test_aliases_kept(self):
        """Every confirmed name is tried, also after the first was stored on the host."""
        host = Host("203.0.113.20")
        self.assertFalse(match.match_host(host, "*.nomatch.test", self.ctx))
        self.assertIn(host.name, ("friend.test", "friend-alias.test"))
        self.assertTrue(match.match_host(host, "^friend-alias", self.ctx))
        self.assertTrue(match.match_host(host, "\\N^friend\\.test$\\N", self.ctx))

    def test_name_lookup_by_key(self):
        """A single-key lookup item in a host list uses the host name as key."""
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("friend.test: yes\n")
        self.assertTrue(self.check("203.0.113.20", "lsearch;" + path))
        self.assertFalse(self.check("203.0.113.1", "lsearch;" + path))

    def test_temporary_failure(self):
        """SERVFAIL defers the list, unless +ignore_defer or +include_defer."""
        self.assertRaises(LookupDefer, self.check, "203.0.113.1", "x.servfail.test : 203.0.113.1")
        self.assertTrue(self.check("203.0.113.1", "+ignore_defer : x.servfail.test : 203.0.113.1"))
        self.assertTrue(self.check("203.0.113.9", "+include_defer : x.servfail.test"))

    def test_query_style_item(self):
        """A query-style lookup item matches when the query finds something."""
        self.assertTrue(self.check("203.0.113.1", "dnsdb;a=a.host.test"))
        self.assertEqual(self.ctx.get("host_data"), "203.0.113.1")
        self.assertFalse(self.check("203.0.113.1", "dnsdb;a=nothere.test"))


class MxItemTests(unittest.TestCase):
    def setUp(self):
        self.ctx = dns_context(self)

    def test_mx_items(self):
        """@mx_any / @mx_primary / @mx_secondary look for this host among the MX targets."""
        table = [
            ("primary-local.test", "@mx_any", True),
            ("primary-local.test", "@mx_primary", True),
            ("primary-local.test", "@mx_secondary", False),
            ("secondary-local.test", "@mx_any", True),
            ("secondary-local.test", "@mx_primary", False),
            ("secondary-local.test", "@mx_secondary", True),
            ("eqmx.test", "@mx_any", False),
            ("nomx.test", "@mx_any", False),
            ("primary-local.test", "<? @mx_any/ignore=<;127.0.0.1;::1", False),
        ]
        for domain, liststring, expected in table:
            self.assertEqual(match.match_domain(domain, liststring, self.ctx), expected,
                             (domain, liststring))

    def test_hosts_treat_as_local(self):
        """An MX target named in hosts_treat_as_local counts as this host."""
        ctx = dns_context(self, "hosts_treat_as_local = *.host.test\n")
        self.assertTrue(match.match_domain("onemx.test", "@mx_primary", ctx))

    def test_mx_defer(self):
        """A temporary DNS failure while looking up MX records defers."""
        self.assertRaises(LookupDefer, match.match_domain, "x.servfail.test", "@mx_any",
                          self.ctx)

    def test_dnsdb_domain_item(self):
        """A dnsdb item in a domain list; its data lands in $domain_data."""
        self.assertTrue(match.match_domain("any.example", "dnsdb;mxh=onemx.test", self.ctx))
        self.assertEqual(self.ctx.get("domain_data"), "a.host.test")


class HostsFileTests(unittest.TestCase):
    def test_hosts_file_fallback(self):
        """With no PTR record, names come from /etc/hosts, as Exim's byaddr
        does; as in Exim, such a name counts only when the DNS gives it the
        address back."""
        def context(zones):
            server = DNSServer(zones=zones, stock=False).start()
            self.addCleanup(server.stop)
            path = self.mktemp()
            with open(path, "w") as f:
                f.write("dns_nameservers = %s\n" % server.nameservers)
            return ExpandContext(config=configmod.load(path))
        ctx = context({"localhost": "$ORIGIN localhost.\n$TTL 300\n"
                                    "@ SOA ns.test. hostmaster.test. 1 3600 600 86400 300\n"
                                    "@ NS ns.test.\n@ A 127.0.0.1\n"})
        self.assertTrue(match.match_host(Host("127.0.0.1"), "localhost", ctx))
        self.assertTrue(match.match_host(Host("127.0.0.1"), "^localhost", ctx))
        self.assertFalse(match.match_host(Host("127.0.0.2"), "^localhost", ctx))
        unconfirmed = context({})
        self.assertFalse(match.match_host(Host("127.0.0.1"), "^localhost", unconfirmed))
