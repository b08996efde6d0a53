"""verify = csa (Client SMTP Authorization) against SRV records served by the
test DNS server: each outcome, $csa_status, the parent-domain assertion, the
reverse zone for IP literals, and temporary failures (which pass)."""

from twisted.trial import unittest

from exim_py.acl import FAIL, OK
from tests.support.acl import config_from, run, session
from tests.support.dnsserver import DNSServer

CSA_ZONE = """\
$ORIGIN csa.example.
$TTL 300
@                      SOA  ns.test. hostmaster.test. 1 3600 600 86400 300
@                      NS   ns.test.
_client._smtp.good     SRV  1 2 0 good.csa.example.
good                   A    192.0.2.10
_client._smtp.refused  SRV  1 1 0 refused.csa.example.
_client._smtp.elsewhere SRV 1 2 0 elsewhere.csa.example.
elsewhere              A    192.0.2.99
_client._smtp.nowhere  SRV  1 2 0 .
_client._smtp.maybe    SRV  1 3 0 maybe.csa.example.
_client._smtp.strict   SRV  1 0 1 .
_client._smtp.v2       SRV  2 2 0 good.csa.example.
"""

REVERSE_ZONE = """\
$ORIGIN 2.0.192.in-addr.arpa.
$TTL 300
@                      SOA  ns.test. hostmaster.test. 1 3600 600 86400 300
@                      NS   ns.test.
_client._smtp.10       SRV  1 2 0 good.csa.example.
"""

ACLS = """
csa:
  deny   !verify = csa${acl_arg1}
  accept
"""


class CsaTests(unittest.TestCase):
    """The outcomes of Exim's acl_verify_csa, decided by the client's SRV records."""

    def setUp(self):
        self.dns = DNSServer(zones={"csa.example": CSA_ZONE,
                                    "2.0.192.in-addr.arpa": REVERSE_ZONE})
        self.dns.start()
        self.addCleanup(self.dns.stop)

    def check(self, helo, address="192.0.2.10", arg="", main=""):
        """(outcome, $csa_status, message) of verify = csa for a client."""
        config = config_from(self, ACLS, main="dns_nameservers = <; %s\n%s"
                             % (self.dns.nameservers, main))
        spec = "require acl = csa %s\naccept" % (arg or '""')
        result, ctx = run(config, "rcpt", spec, sess=session(address, helo), recipient="u@d")
        return result.rc, ctx.get_variable("csa_status"), result.user_message

    def test_authorized(self):
        """Weight 2 and the client's address among the target's: ok."""
        self.assertEqual(self.check("good.csa.example"), (OK, "ok", None))

    def test_not_authorized(self):
        """Weight below 2: the host name is not authorized."""
        self.assertEqual(self.check("refused.csa.example"),
                         (FAIL, "fail", "client SMTP authorization failed (host name not authorized)"))

    def test_address_mismatch(self):
        """Authorized, but the target's address is not the client's."""
        self.assertEqual(self.check("elsewhere.csa.example")[1:],
                         ("fail", "client SMTP authorization failed (client address mismatch)"))

    def test_target_dot(self):
        """A target of "." has no addresses at all."""
        self.assertEqual(self.check("nowhere.csa.example")[1:],
                         ("fail", "client SMTP authorization failed (no authorized addresses)"))

    def test_unknown(self):
        """Weight 3, another CSA version, or no record at all: unknown, and the condition passes."""
        for helo in ("maybe.csa.example", "v2.csa.example", "other.csa.example"):
            self.assertEqual(self.check(helo), (OK, "unknown", None), helo)

    def test_parent_requires_explicit(self):
        """A parent domain with port bit 1 makes an unlisted subdomain fail."""
        self.assertEqual(self.check("host.strict.csa.example")[1:],
                         ("fail", "client SMTP authorization failed (explicit authorization required)"))
        self.assertEqual(self.check("host.strict.csa.example", main="dns_csa_search_limit = 0")[1],
                         "unknown")

    def test_ip_literal_uses_reverse_zone(self):
        """An address literal is looked up in the reverse zone, unless
        dns_csa_use_reverse is false."""
        self.assertEqual(self.check("[192.0.2.10]")[1], "ok")
        self.assertEqual(self.check("[192.0.2.10]", main="dns_csa_use_reverse = false")[1], "unknown")

    def test_explicit_domain(self):
        """csa/DOMAIN checks that domain rather than the HELO name."""
        self.assertEqual(self.check("whatever.example", arg="/refused.csa.example")[1], "fail")

    def test_dns_failure_passes(self):
        """A SERVFAIL is "defer", and the condition still succeeds."""
        self.assertEqual(self.check("x.servfail.test"), (OK, "defer", None))
