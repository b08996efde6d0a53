"""The dnslists condition and the DNS-based verifications, against a real DNS
server (tests/support/dnsserver.py: twisted.names in a child process).
"""

from twisted.trial import unittest

from exim_py.acl import DEFER, ERROR, FAIL, OK
from tests.support.acl import ListLog, config_from, run, session
from tests.support.dnsserver import DNSServer

BL_ZONE = """\
$ORIGIN bl.example.
$TTL 300
@        SOA  ns.test. hostmaster.test. 1 3600 600 86400 300
@        NS   ns.test.
4.3.2.1  A    127.0.0.2
4.3.2.1  TXT  "1.2.3.4 is listed, see http://bl.example/"
8.7.6.5  A    127.0.0.3
8.7.6.5  A    127.0.0.5
9.9.9.9  A    10.0.0.1
bad.domain.example  A  127.0.0.2
"""

MERGED_ZONE = """\
$ORIGIN merged.example.
$TTL 300
@        SOA  ns.test. hostmaster.test. 1 3600 600 86400 300
@        NS   ns.test.
4.3.2.1  A    127.0.0.4
8.7.6.5  A    127.0.0.9
"""

ACLS = """
check:
  deny message = $dnslist_domain|$dnslist_matched|$dnslist_value|$dnslist_text
       dnslists = ${acl_arg1}
  accept
"""


class DnsListTests(unittest.TestCase):
    """Lookups, address restrictions, keys, several lists, temporary errors."""

    def setUp(self):
        self.dns = DNSServer(zones={"bl.example": BL_ZONE, "merged.example": MERGED_ZONE})
        self.dns.start()
        self.addCleanup(self.dns.stop)
        self.config = config_from(self, ACLS, main="dns_nameservers = <; %s\n"
                                  % self.dns.nameservers)
        self.cache = {}

    def check(self, lists, address="1.2.3.4", where="rcpt", log=None):
        """(outcome, message) of dnslists = ``lists`` for a client at ``address``."""
        sess = session(address)
        result, _ = run(self.config, where, "require acl = check %s\naccept" % _quote(lists),
                        sess=sess, recipient="u@d", log=log, dns_cache=self.cache)
        return result.rc, result.user_message

    def test_listed(self):
        """A listed client: the variables describe the list, the key, the A and TXT data."""
        self.assertEqual(self.check("bl.example"), (FAIL, "bl.example|1.2.3.4|127.0.0.2|"
                                                         "1.2.3.4 is listed, see "
                                                         "http://bl.example/"))

    def test_not_listed(self):
        """A client that is not listed passes."""
        self.assertEqual(self.check("bl.example", address="9.8.7.6"), (OK, None))

    def test_first_listing_wins(self):
        """Several lists: the first that lists the client is the one reported."""
        rc, message = self.check("nolist.example : bl.example", address="5.6.7.8")
        self.assertEqual((rc, message), (FAIL, "bl.example|5.6.7.8|127.0.0.3, 127.0.0.5|"))

    def test_address_restrictions(self):
        """=, ==, &, =& and their negations, with two A records (.3 and .5)."""
        cases = [("bl.example=127.0.0.3", FAIL), ("bl.example=127.0.0.4", OK),
                 ("bl.example==127.0.0.3", OK), ("bl.example==127.0.0.3,127.0.0.5", FAIL),
                 ("bl.example!=127.0.0.3", OK), ("bl.example!==127.0.0.3", FAIL),
                 ("bl.example&0.0.0.4", FAIL), ("bl.example&0.0.0.8", OK),
                 ("bl.example=&0.0.0.1", FAIL), ("bl.example=&0.0.0.2", OK),
                 ("bl.example!&0.0.0.2", OK), ("bl.example!&0.0.0.8", FAIL),
                 ("bl.example!=&0.0.0.1", OK), ("bl.example!=&0.0.0.4", FAIL)]
        for lists, expected in cases:
            self.assertEqual(self.check(lists, address="5.6.7.8")[0], expected, lists)

    def test_explicit_keys(self):
        """/key: names are looked up as they are, addresses reversed; first hit wins."""
        self.assertEqual(self.check("bl.example/bad.domain.example", address="9.8.7.6"),
                         (FAIL, "bl.example|bad.domain.example|127.0.0.2|"))
        rc, message = self.check("bl.example/<;9.8.7.6;1.2.3.4", address="9.8.7.6")
        self.assertEqual((rc, message.split("|")[1]), (FAIL, "1.2.3.4"))
        self.assertEqual(self.check("bl.example/good.domain.example")[0], OK)

    def test_merged_list(self):
        """domain,checkdomain=ip: checked in the second, reported (and TXT) from the first."""
        self.assertEqual(self.check("bl.example,merged.example=127.0.0.4"),
                         (FAIL, "bl.example|1.2.3.4|127.0.0.2|"
                                "1.2.3.4 is listed, see http://bl.example/"))
        self.assertEqual(self.check("bl.example,merged.example=127.0.0.5")[0], OK)

    def test_temporary_errors(self):
        """A SERVFAIL list is skipped unless +defer_unknown or +include_unknown say otherwise."""
        self.assertEqual(self.check("servfail.test")[0], OK)
        self.assertEqual(self.check("+defer_unknown : servfail.test")[0], DEFER)
        self.assertEqual(self.check("+include_unknown : servfail.test")[0], FAIL)
        self.assertEqual(self.check("servfail.test : bl.example")[0], FAIL)

    def test_outside_127_ignored(self):
        """An answer outside 127.0.0.0/8 does not count, and is logged."""
        log = ListLog()
        self.assertEqual(self.check("bl.example", address="9.9.9.9", log=log)[0], OK)
        self.assertIn(("main", "DNS list lookup for 9.9.9.9 at bl.example returned 10.0.0.1;"
                               " not in 127.0/8 and discarded"), log.lines)

    def test_no_client_address(self):
        """Without a client address (local SMTP) a keyless list is skipped."""
        self.assertEqual(self.check("bl.example", address=None)[0], OK)

    def test_not_smtp_needs_a_key(self):
        """In the non-SMTP ACL a list without an explicit key is an error."""
        result, _ = run(self.config, "not_smtp", "accept dnslists = bl.example",
                        sess=session(None), dns_cache=self.cache)
        self.assertEqual((result.rc, result.log_message),
                         (ERROR, "cannot test dnslists condition in non-SMTP ACL"))

    def test_cached_per_connection(self):
        """The same question is asked once per connection (the cache is reused)."""
        self.check("bl.example")
        self.assertIn(("4.3.2.1.bl.example", "A"), self.cache)
        self.dns.stop()
        self.assertEqual(self.check("bl.example")[0], FAIL)


def _quote(text):
    return '"%s"' % text.replace("\\", "\\\\").replace('"', '\\"')


class ReverseAndHeloTests(unittest.TestCase):
    """verify = reverse_host_lookup and verify = helo through the DNS."""

    def setUp(self):
        self.dns = DNSServer()
        self.dns.start()
        self.addCleanup(self.dns.stop)
        self.config = config_from(self, """
reverse:
  accept verify = reverse_host_lookup
reverse_defer_ok:
  accept verify = reverse_host_lookup/defer_ok
helo:
  accept verify = helo
""", main="dns_nameservers = <; %s\n" % self.dns.nameservers)

    def test_reverse_lookup(self):
        """The PTR name must resolve back to the client's address."""
        result, _ = run(self.config, "mail", "reverse", sess=session("203.0.113.1"))
        self.assertEqual(result.rc, OK)
        result, _ = run(self.config, "mail", "reverse", sess=session("203.0.113.99"))
        self.assertEqual((result.rc, result.log_message),
                         (FAIL, "host lookup failed for reverse lookup check (203.0.113.99 "
                                "does not match any IP address for notreally.test)"))
        log = ListLog(selectors=("host_lookup_failed",))     # on by default in Exim
        result, _ = run(self.config, "mail", "reverse", sess=session("203.0.113.77"), log=log)
        self.assertEqual((result.rc, result.log_message),
                         (FAIL, "host lookup failed for reverse lookup check (failed to find "
                                "host name from IP address)"))
        self.assertEqual(log.texts(), ["no host name found for IP address 203.0.113.77"])

    def test_reverse_lookup_sets_host_name(self):
        """A verified name becomes the session's host name."""
        sess = session("203.0.113.1")
        run(self.config, "mail", "reverse", sess=sess)
        self.assertEqual(sess.sender_host_name, "a.host.test")

    def test_helo_name_resolves(self):
        """verify = helo: the HELO name must resolve to the client's address."""
        result, _ = run(self.config, "mail", "helo",
                        sess=session("203.0.113.20", helo="friend.test"))
        self.assertEqual(result.rc, OK)
        result, _ = run(self.config, "mail", "helo",
                        sess=session("203.0.113.21", helo="friend.test"))
        self.assertEqual(result.rc, FAIL)

    def test_helo_name_from_reverse_lookup(self):
        """A HELO name equal to the client's verified PTR name is accepted."""
        result, _ = run(self.config, "mail", "helo",
                        sess=session("203.0.113.1", helo="A.HOST.TEST"))
        self.assertEqual(result.rc, OK)
