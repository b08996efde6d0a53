"""HELO/EHLO verification: helo_verify_hosts refuses a name that does not
match the client, helo_try_verify_hosts only records it for ``verify = helo``.

IP literals need no DNS, so those dialogues are compared line by line with
``exim4 -bh``; names are checked with ``exim_py -bh`` against the test DNS
server (tests/support/zones: 203.0.113.1 is a.host.test both ways,
203.0.113.20 has aliases, nameless.test has no PTR record).
"""

import os
import shutil
import smtplib
import tempfile

from twisted.internet import threads
from twisted.trial import unittest

from tests.support.dnsserver import shared_server
from tests.support.bh import host_checks, log_lines, oracle, reply_lines, script, session
from tests.support.peers import run_exim_py
from tests.test_daemon import DaemonProcess

CONF = """\
primary_hostname = mx.test.example
keep_environment =
host_lookup =
spool_directory = {spool}
log_file_path = {spool}/%slog
pipelining_connect_advertise_hosts = :
tls_advertise_hosts =
smtputf8_advertise_hosts =
helo_verify_hosts = 10.0.0.0/8 : 203.0.113.0/25
helo_try_verify_hosts = 192.168.0.0/16 : 203.0.113.128/25
acl_smtp_mail = mail
{extra}
begin acl
mail:
  warn    logwrite = helo dnssec=$sender_helo_dnssec
  deny    !verify = helo
          message = helo not verified
  accept
"""


class HeloVerifyTests(unittest.TestCase):
    """HELO names checked against the client's address, as Exim checks them."""

    def setUp(self):
        self.exim = oracle(self)
        self.spool = tempfile.mkdtemp(prefix="exim_py-helo-")
        os.chmod(self.spool, 0o777)
        self.addCleanup(shutil.rmtree, self.spool, True)

    def config(self, extra=""):
        return self.exim.write_config(CONF.format(spool=self.spool, extra=extra))

    def dialogue(self, *commands):
        return script(commands + ("QUIT",))

    def compare(self, address, *commands):
        """exim_py -bh and exim4 -bh give the same replies and log lines."""
        path = self.config()
        dialogue = self.dialogue(*commands)
        theirs, ours = host_checks(self.exim, path, dialogue, address)
        self.assertEqual(reply_lines(ours.stdout), reply_lines(theirs.stdout), ours.stderr)
        self.assertEqual(log_lines(ours.stderr), log_lines(theirs.stderr))
        return session(ours)

    def test_literal_refused_for_helo_verify_hosts(self):
        """A literal that is not the client's address gets 550 and a reject log
        line; the right literal is then accepted."""
        lines, logged = self.compare("10.0.0.1", "EHLO [10.0.0.2]", "HELO [10.0.0.1]",
                                     "MAIL FROM:<a@b.example>")
        self.assertEqual(lines[1], "550 EHLO argument does not match calling host")
        self.assertEqual(lines[2:4], ["250 mx.test.example Hello [10.0.0.1] [10.0.0.1]", "250 OK"])
        self.assertIn('LOG: rejected "EHLO [10.0.0.2]" from ([10.0.0.2]) [10.0.0.1]', logged)

    def test_literal_recorded_for_try_verify_hosts(self):
        """helo_try_verify_hosts: the HELO goes through; verify = helo fails
        later for the wrong literal and passes for the right one."""
        lines, logged = self.compare("192.168.0.1", "EHLO [192.168.0.2]", "MAIL FROM:<a@b.example>",
                                     "HELO [192.168.0.1]", "MAIL FROM:<a@b.example>")
        self.assertTrue(lines[1].startswith("250-mx.test.example Hello [192.168.0.2]"))
        self.assertIn("550 helo not verified", lines)
        self.assertEqual(lines[-2], "250 OK")

    def test_mail_before_helo(self):
        """helo_verify_hosts makes HELO compulsory: MAIL first gets 503."""
        lines, logged = self.compare("10.0.0.1", "MAIL FROM:<a@b.example>")
        self.assertEqual(lines[1], "503 HELO or EHLO required")

    def test_own_name_makes_a_lookup(self):
        """A client that calls itself by our name (helo_lookup_domains) gets
        its real name looked up; here there is none, and that is logged."""
        lines, logged = self.compare("172.16.0.1", "HELO mx.test.example", "HELO other.example")
        self.assertEqual(lines[1:3], ["250 mx.test.example Hello mx.test.example [172.16.0.1]",
                                      "250 mx.test.example Hello other.example [172.16.0.1]"])
        self.assertEqual(logged, ["LOG: no host name found for IP address 172.16.0.1"])

    def run_dns(self, address, *commands):
        path = self.config("dns_nameservers = <; %s" % shared_server().nameservers)
        return session(run_exim_py(["-C", path, "-bh", address], input=self.dialogue(*commands)))

    def test_name_from_reverse_lookup(self):
        """The client's PTR name (confirmed forwards) verifies and becomes its host name."""
        lines, logged = self.run_dns("203.0.113.1", "EHLO a.host.test", "MAIL FROM:<a@b.example>")
        self.assertTrue(lines[1].startswith("250-mx.test.example Hello a.host.test [203.0.113.1]"),
                        lines)
        self.assertEqual(lines[-2], "250 OK")
        self.assertIn("LOG: helo dnssec=no", logged)

    def test_alias_from_reverse_lookup(self):
        """A second PTR name of the client verifies too."""
        lines, _ = self.run_dns("203.0.113.20", "HELO friend-alias.test", "MAIL FROM:<a@b.example>")
        self.assertEqual(lines[1], "250 mx.test.example Hello friend.test [203.0.113.20]")
        self.assertEqual(lines[2], "250 OK")

    def test_name_from_forward_lookup(self):
        """Without a PTR record, the HELO name's own A record must hold the address."""
        lines, _ = self.run_dns("203.0.113.30", "HELO nameless.test", "MAIL FROM:<a@b.example>")
        self.assertEqual(lines[1:3], ["250 mx.test.example Hello nameless.test [203.0.113.30]",
                                      "250 OK"])

    def test_wrong_name_refused(self):
        """A name that resolves elsewhere is refused with 550 and logged."""
        lines, logged = self.run_dns("203.0.113.30", "HELO a.host.test", "HELO nameless.test")
        self.assertEqual(lines[1], "550 HELO argument does not match calling host")
        self.assertIn('LOG: rejected "HELO a.host.test" from (a.host.test) [203.0.113.30]', logged)
        self.assertEqual(lines[2], "250 mx.test.example Hello nameless.test [203.0.113.30]")

    def test_try_verify_failure_seen_by_acl(self):
        """helo_try_verify_hosts with a name that does not resolve (SERVFAIL):
        the HELO is accepted and verify = helo fails in the MAIL ACL."""
        lines, _ = self.run_dns("203.0.113.200", "HELO x.servfail.test", "MAIL FROM:<a@b.example>")
        self.assertEqual(lines[1:3], ["250 mx.test.example Hello x.servfail.test [203.0.113.200]",
                                      "550 helo not verified"])


class HeloVerifyDaemonTests(unittest.TestCase):
    """The check over a real socket, in the daemon (its DNS questions run
    off the reactor): 127.0.0.1 is localhost.test in the test DNS."""

    def test_daemon_checks_helo(self):
        """A matching name is greeted with the host's name; another is refused
        with 550 and the session goes on."""
        extra = ("helo_verify_hosts = 127.0.0.1\ndns_nameservers = <; %s"
                 % shared_server().nameservers)
        daemon = DaemonProcess(self, extra).start()
        self.addCleanup(daemon.stop)

        def run():
            with smtplib.SMTP("127.0.0.1", daemon.port, timeout=20) as client:
                refused = client.helo("a.host.test")
                accepted = client.ehlo("localhost.test")
            return refused, accepted
        d = threads.deferToThread(run)

        def check(result):
            refused, accepted = result
            self.assertEqual(refused, (550, b"HELO argument does not match calling host"))
            self.assertEqual(accepted[0], 250)
            self.assertTrue(accepted[1].startswith(b"mx.test.example Hello localhost.test [127.0.0.1]"),
                            accepted)
            with open(os.path.join(daemon.spool_dir, "mainlog")) as f:
                # the reverse lookup made for the check names the host, as in Exim
                self.assertIn('rejected "HELO a.host.test" from localhost.test (a.host.test) [127.0.0.1]',
                              f.read())
        return d.addCallback(check)

    def test_own_name_lookup_finds_the_name(self):
        """Without any HELO checking, a client calling itself by our name is
        looked up (helo_lookup_domains) and greeted by its real name."""
        daemon = DaemonProcess(self, "dns_nameservers = <; %s" % shared_server().nameservers).start()
        self.addCleanup(daemon.stop)

        def run():
            with smtplib.SMTP("127.0.0.1", daemon.port, timeout=20) as client:
                return client.helo("mx.test.example")
        d = threads.deferToThread(run)
        d.addCallback(self.assertEqual, (250, b"mx.test.example Hello localhost.test [127.0.0.1]"))
        return d
