"""exim_py.dns and the dnsdb lookup against the real test DNS server.

The server (tests/support/dnsserver.py) is a twisted.names process serving
tests/support/zones/ on 127.0.0.1; names under servfail.test. get SERVFAIL.
"""

import os
from concurrent.futures import ThreadPoolExecutor

import dns.flags
from twisted.trial import unittest

from exim_py import config as configmod
from exim_py import dns as edns
from exim_py import lookups
from exim_py.errors import LookupDefer
from exim_py.expand.context import ExpandContext
from tests.support.dnsserver import DNSServer, shared_server


def dns_context(test, extra="", retrans="2s", retry=1):
    """An ExpandContext whose configuration points DNS at the test server."""
    path = os.path.abspath(test.mktemp())
    with open(path, "w") as f:
        f.write("dns_nameservers = %s\ndns_retrans = %s\ndns_retry = %d\n%s"
                % (shared_server().nameservers, retrans, retry, extra))
    return ExpandContext(config=configmod.load(path))


class NameserverOptionTests(unittest.TestCase):
    def test_parse(self):
        """dns_nameservers items are IP or IP.port, IPv4 or IPv6."""
        table = [
            ("127.0.0.1", [("127.0.0.1", 53)]),
            ("127.0.0.1.5353", [("127.0.0.1", 5353)]),
            ("<; ::1.5353 ; 203.0.113.1", [("::1", 5353), ("203.0.113.1", 53)]),
            ("", []),
        ]
        for text, expected in table:
            self.assertEqual(edns.parse_nameservers(text), expected)
        self.assertRaises(ValueError, edns.parse_nameservers, "ns.example")

    def test_bad_setting_defers(self):
        """A bad dns_nameservers makes DNS questions defer with the reason."""
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            f.write("dns_nameservers = ns.example\n")
        e = self.assertRaises(LookupDefer, edns.get_resolver, configmod.load(path))
        self.assertIn("ns.example", str(e))

    def test_one_resolver_per_setting(self):
        """get_resolver returns the same shared Resolver for the same settings."""
        ctx = dns_context(self)
        self.assertIs(edns.get_resolver(ctx.config), edns.get_resolver(ctx.config))


class ResolverTests(unittest.TestCase):
    def setUp(self):
        self.resolver = edns.get_resolver(dns_context(self).config)

    def test_statuses(self):
        """Found, NXDOMAIN, no data, and SERVFAIL (AGAIN) are told apart."""
        table = [
            ("a.host.test", "A", edns.FOUND),
            ("nothere.test", "A", edns.NXDOMAIN),
            ("a.host.test", "MX", edns.NODATA),
            ("x.servfail.test", "A", edns.AGAIN),
        ]
        for name, rdtype, status in table:
            self.assertEqual(self.resolver.query(name, rdtype).status, status, (name, rdtype))

    def test_cname_followed(self):
        """A CNAME is followed to the records of its target."""
        answer = self.resolver.query("alias.test", "A")
        self.assertEqual([r.address for r in answer.records], ["203.0.113.1"])

    def test_mx_order(self):
        """MX hosts come by preference; equal preferences in random order."""
        firsts = set()
        for _ in range(40):
            mxs = self.resolver.mx_hosts("eqmx.test")
            self.assertEqual([mx.preference for mx in mxs], [10, 10, 10, 20])
            self.assertEqual(mxs[-1].host, "both.host.test")
            firsts.add(mxs[0].host)
        self.assertEqual(firsts, {"a.host.test", "b.host.test", "c.host.test"})
        self.assertEqual(self.resolver.mx_hosts("nomx.test"), [])
        self.assertEqual(self.resolver.mx_hosts("nullmx.test"), [edns.MX(0, ".")])

    def test_addresses_and_reverse(self):
        """addresses gives IPv6 then IPv4; reverse gives the PTR names."""
        self.assertEqual(self.resolver.addresses("both.host.test"), ["2001:db8::4", "203.0.113.4"])
        self.assertEqual(self.resolver.addresses("both.host.test", ipv4_only=True),
                         ["203.0.113.4"])
        self.assertEqual(self.resolver.addresses("nothere.test"), [])
        self.assertEqual(sorted(self.resolver.reverse("203.0.113.20")),
                         ["alias-of-friend.test", "friend-alias.test", "friend.test"])

    def test_temporary_errors_defer(self):
        """SERVFAIL raises LookupDefer from the helpers."""
        self.assertRaises(LookupDefer, self.resolver.mx_hosts, "x.servfail.test")
        self.assertRaises(LookupDefer, self.resolver.addresses, "x.servfail.test")

    def test_timeout(self):
        """A server that does not answer within dns_retrans is a temporary error."""
        ctx = dns_context(self, retrans="1s", retry=0)
        resolver = edns.get_resolver(ctx.config)
        self.assertRaises(LookupDefer, resolver.mx_hosts, "x.timeout.test")

    def test_thread_safe(self):
        """Many threads querying at once all get the right answers."""
        names = ["a.host.test", "b.host.test", "c.host.test", "multi.host.test"] * 25
        expected = {"a.host.test": ["203.0.113.1"], "b.host.test": ["203.0.113.2"],
                    "c.host.test": ["203.0.113.3"],
                    "multi.host.test": ["203.0.113.10", "203.0.113.11"]}
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(self.resolver.addresses, names))
        for name, result in zip(names, results):
            self.assertEqual(sorted(result), expected[name])


class ResolverPolicyTests(unittest.TestCase):
    def test_check_names_pattern(self):
        """A name failing dns_check_names_pattern is not found, without asking
        (a SERVFAIL name would otherwise defer); PTR questions are not checked."""
        resolver = edns.get_resolver(dns_context(self).config)
        self.assertEqual(resolver.query("bad!name.servfail.test", "A").status, edns.NXDOMAIN)
        self.assertEqual(resolver.query("ok.servfail.test", "A").status, edns.AGAIN)
        ctx = dns_context(self, "dns_check_names_pattern =\n")
        resolver = edns.get_resolver(ctx.config)
        self.assertEqual(resolver.query("bad!name.servfail.test", "A").status, edns.AGAIN)

    def test_again_means_nonexist(self):
        """dns_again_means_nonexist turns a temporary failure into "not found"."""
        ctx = dns_context(self, "dns_again_means_nonexist = *.servfail.test\n")
        resolver = edns.get_resolver(ctx.config)
        self.assertEqual(resolver.query("x.servfail.test", "A").status, edns.NXDOMAIN)
        self.assertEqual(resolver.addresses("x.servfail.test"), [])
        self.assertEqual(resolver.query("x.servfail.test", "TLSA").status, edns.AGAIN)

    def test_ipv4_lookup(self):
        """dns_ipv4_lookup domains get no AAAA question."""
        ctx = dns_context(self, "dns_ipv4_lookup = *.host.test\n")
        resolver = edns.get_resolver(ctx.config)
        self.assertEqual(resolver.addresses("both.host.test"), ["203.0.113.4"])
        self.assertEqual(resolver.addresses("localhost.test"), ["::1", "127.0.0.1"])


class DnsdbTests(unittest.TestCase):
    def setUp(self):
        self.ctx = dns_context(self)

    def find(self, query):
        return lookups.search("dnsdb", None, query, self.ctx)

    def test_record_types(self):
        """Each type is formatted as Exim's dnsdb formats it."""
        tlsa = "0123456789abcdef" * 4
        table = [
            ("a=a.host.test", "203.0.113.1"),
            ("aaaa=six.host.test", "2001:db8::6"),
            ("a+=both.host.test", "2001:db8::4\n203.0.113.4"),
            ("mx=onemx.test", "5 a.host.test"),
            ("mxh=onemx.test", "a.host.test"),
            ("txt.test", "v=spf1 -all"),
            ("txt=multi.txt.test", "first"),
            (">\n; txt=multi.txt.test", "firstsecondthird"),
            (">\n,: txt=multi.txt.test", "first:second:third"),
            ("spf=spf.test", "v=spf1 ip4:203.0.113.0/24 -all"),
            ("srv=_smtp._tcp.srv.test", "10 20 25 a.host.test"),
            (">\n,: srv=_smtp._tcp.srv.test", "10:20:25:a.host.test"),
            ("tlsa=_25._tcp.tlsa.test", "3 1 1 " + tlsa),
            ("ptr=203.0.113.1", "a.host.test"),
            ("ptr=2001:db8::4", "both.host.test"),
            ("ptr=<; 203.0.113.1 ; 2001:db8::4", "a.host.test\nboth.host.test"),
            ("cname=alias.test", "a.host.test"),
            ("ns=test", "ns.test"),
            ("zns=deep.sub.zone.test", "ns.test"),
            ("soa=deep.sub.zone.test", "ns.test"),
            (">:,; soa=test", "ns.test;hostmaster.test;1;3600;600;86400;300"),
            ("a=nothere.test", None),
            ("mx=a.host.test", None),
        ]
        for query, expected in table:
            self.assertEqual(self.find(query), expected, query)

    def test_separators_and_lists(self):
        """Several domains and several records join with the output separator."""
        self.assertEqual(self.find("a=a.host.test:b.host.test"), "203.0.113.1\n203.0.113.2")
        self.assertEqual(self.find(">, a=a.host.test:nothere.test:b.host.test"),
                         "203.0.113.1,203.0.113.2")
        self.assertEqual(self.find(">: a=<; a.host.test ; b.host.test"), "203.0.113.1:203.0.113.2")
        self.assertEqual(sorted(self.find("> a=multi.host.test").split(" ")),
                         ["203.0.113.10", "203.0.113.11"])
        self.assertEqual(sorted(self.find(">: txt=two.txt.test").split(":")), ["one", "two"])

    def test_defer_modes(self):
        """defer_lax (default) defers only when nothing was found; strict always;
        never treats a temporary error as not found."""
        self.assertEqual(self.find("a=a.host.test:x.servfail.test"), "203.0.113.1")
        self.assertRaises(LookupDefer, self.find, "a=x.servfail.test")
        self.assertRaises(LookupDefer, self.find, "defer_strict,a=a.host.test:x.servfail.test")
        self.assertIsNone(self.find("defer_never,a=x.servfail.test"))
        self.assertEqual(self.find("defer_never, retrans_1s, retry_1, a=a.host.test"),
                         "203.0.113.1")

    def test_dnssec_strict(self):
        """dnssec_strict refuses answers the server did not authenticate."""
        self.assertRaises(LookupDefer, self.find, "dnssec_strict,a=a.host.test")
        self.assertEqual(self.find("dnssec_lax,a=a.host.test"), "203.0.113.1")
        self.assertEqual(self.ctx.get("lookup_dnssec_authenticated"), "no")

    def test_bad_queries(self):
        """Unknown record types and modifiers defer with Exim's messages."""
        table = [
            ("xx=a.b", "unsupported DNS record type"),
            ("defer_foo,a=a.b", "unsupported dnsdb defer behaviour"),
            ("dnssec_foo,a=a.b", "unsupported dnsdb dnssec behaviour"),
            ("retrans_0s,a=a.b", "unsupported dnsdb timeout value"),
            ("defer_lax a=a.b", "dnsdb modifier syntax error"),
        ]
        for query, message in table:
            e = self.assertRaises(LookupDefer, self.find, query)
            self.assertEqual(str(e), message)


class DNSServerTests(unittest.TestCase):
    """The test fixture itself: extra zones, UDP and TCP, SERVFAIL origins."""

    ZONE = """\
$TTL 60
@     SOA  ns.example.org. hostmaster.example.org. 1 3600 600 86400 60
@     NS   ns.example.org.
@     MX   10 mail.example.org.
mail  A    127.0.0.1
"""

    def setUp(self):
        self.server = DNSServer(zones={"example.org": self.ZONE},
                                servfail=("broken.example.org",), stock=False).start()
        self.addCleanup(self.server.stop)

    def test_extra_zone_over_udp_and_tcp(self):
        """A zone given as text is served over UDP and TCP on the same port."""
        import dns.message
        import dns.query
        query = dns.message.make_query("mail.example.org", "A")
        for send in (dns.query.udp, dns.query.tcp):
            response = send(query, "127.0.0.1", port=self.server.port, timeout=5)
            self.assertEqual([r.to_text() for r in response.answer[0]], ["127.0.0.1"])
            self.assertTrue(response.flags & dns.flags.AA)

    def test_through_the_resolver(self):
        """dns_nameservers-style settings reach the server; SERVFAIL origins fail."""
        resolver = edns.Resolver(edns.parse_nameservers(self.server.nameservers), 2, 1)
        self.assertEqual(resolver.mx_hosts("example.org"), [edns.MX(10, "mail.example.org")])
        self.assertEqual(resolver.query("x.broken.example.org", "A").status, edns.AGAIN)
        self.assertEqual(resolver.query("a.host.test", "A").status, edns.NXDOMAIN)
