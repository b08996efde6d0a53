"""$sender_helo_dnssec and $sender_host_dnssec: how far DNSSEC vouches for a HELO name.

Exim's smtp_verify_helo takes a HELO name that is the client's host name
(found by the reverse lookup) to be exactly as trustworthy as that lookup:
$sender_helo_dnssec is then $sender_host_dnssec, which needs the resolver's
AD bit on the PTR answer and on the forward lookups that confirmed the name.
Only a name that does not match that way is looked up forwards, and then the
AD bit of that answer decides.  The test DNS server (tests/support/
dnsserver.py) sets AD on answers under the origins it is told are secure.
"""

import os
import shutil
import tempfile

from twisted.trial import unittest

from tests.support.dnsserver import DNSServer
from tests.support.peers import run_exim_py

CONF = """\
primary_hostname = mx.test.example
keep_environment =
host_lookup =
spool_directory = {spool}
log_file_path = {spool}/%slog
dns_nameservers = <; {nameservers}
helo_try_verify_hosts = *
acl_smtp_mail = mail
begin acl
mail:
  warn    verify = helo
          logwrite = verified=yes helo_dnssec=$sender_helo_dnssec \\
            host_dnssec=$sender_host_dnssec host=$sender_host_name
  warn    !verify = helo
          logwrite = verified=no
  accept
"""

REVERSE = "113.0.203.in-addr.arpa"


class HeloDnssecTests(unittest.TestCase):
    """Which DNS answers make a verified HELO name DNSSEC-vouched."""

    def outcome(self, secure, address, helo):
        dns = DNSServer(secure=secure).start()
        self.addCleanup(dns.stop)
        spool = tempfile.mkdtemp(prefix="exim_py-helo-dnssec-")
        self.addCleanup(shutil.rmtree, spool, True)
        config = os.path.join(spool, "exim.conf")
        with open(config, "w") as f:
            f.write(CONF.format(spool=spool, nameservers=dns.nameservers))
        result = run_exim_py(["-C", config, "-bh", address],
                             input="HELO %s\r\nMAIL FROM:<a@b.example>\r\nQUIT\r\n" % helo)
        lines = [line[5:] for line in result.stderr.splitlines() if line.startswith("LOG: verified=")]
        self.assertEqual(len(lines), 1, result.stdout + result.stderr)
        return lines[0]

    def test_host_name_from_secure_lookups(self):
        """The HELO name is the host name, and the PTR and A answers were both
        authenticated: the HELO is vouched for as the host name is."""
        self.assertEqual(self.outcome([REVERSE, "test"], "203.0.113.1", "a.host.test"),
                         "verified=yes helo_dnssec=yes host_dnssec=yes host=a.host.test")

    def test_host_name_from_unsigned_reverse_zone(self):
        """An unauthenticated PTR answer: the host name is not vouched for, and
        neither is the HELO that matched it, though its A record is signed
        (no forward lookup of the HELO name is made then)."""
        self.assertEqual(self.outcome(["test"], "203.0.113.1", "a.host.test"),
                         "verified=yes helo_dnssec=no host_dnssec=no host=a.host.test")

    def test_host_name_confirmed_by_unsigned_forward_zone(self):
        """A signed PTR whose name is confirmed by an unauthenticated A answer
        is not vouched for."""
        self.assertEqual(self.outcome([REVERSE], "203.0.113.1", "a.host.test"),
                         "verified=yes helo_dnssec=no host_dnssec=no host=a.host.test")

    def test_forward_lookup_of_the_helo_name(self):
        """No PTR record: the HELO name's own signed A record verifies it and
        vouches for it."""
        self.assertEqual(self.outcome(["test"], "203.0.113.30", "nameless.test"),
                         "verified=yes helo_dnssec=yes host_dnssec=no host=")
