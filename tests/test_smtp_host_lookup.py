"""host_lookup: the client's name is looked up as the session starts.

Loopback dialogues are compared with Debian's exim4 (``-bh`` and a real
daemon), which here finds "localhost" for 127.0.0.1 in /etc/hosts but no
address for it in the DNS, so the name is refused.  Names that do resolve
back come from the test DNS server (tests/support/zones: 203.0.113.1 is
a.host.test both ways, 203.0.113.99 has a PTR whose name has no address,
127.0.0.1 is localhost.test), through ``exim_py -bh`` and a daemon.
"""

import os
import re
import shutil
import smtplib
import tempfile

from twisted.trial import unittest

from tests.support.dnsserver import SERVFAIL, DNSServer, shared_server
from tests.support.exim_peer import EximPeer
from tests.support.bh import oracle, same_session, session
from tests.support.peers import run_exim_py
from tests.test_daemon import DaemonProcess

CONF = """\
primary_hostname = mx.test.example
keep_environment =
host_lookup = {lookup}
spool_directory = {spool}
log_file_path = {spool}/%slog
acl_smtp_connect = connect
{extra}
begin acl
connect:
  warn    logwrite = name=<$sender_host_name> failed=$host_lookup_failed \\
                     deferred=$host_lookup_deferred
  deny    hosts = *.host.test
          message = named $sender_host_name
  accept
"""


class HostLookupCheckingTests(unittest.TestCase):
    """The connection-time lookup as ``-bh`` shows it."""

    def setUp(self):
        self.spool = tempfile.mkdtemp(prefix="exim_py-hostlookup-")
        os.chmod(self.spool, 0o777)
        self.addCleanup(shutil.rmtree, self.spool, True)

    def write(self, lookup="*", extra=""):
        path = os.path.join(self.spool, "exim.conf")
        with open(path, "w") as f:
            f.write(CONF.format(spool=self.spool, lookup=lookup, extra=extra))
        return path

    def bh(self, address, lookup="*", extra=""):
        result = run_exim_py(["-C", self.write(lookup, extra), "-bh", address], input="QUIT\r\n")
        return session(result)

    def with_dns(self, server=None):
        return "dns_nameservers = %s" % (server or shared_server()).nameservers

    def test_loopback_matches_exim(self):
        """On 127.0.0.1 exim_py sets the same variables and logs the same
        lines as exim4: /etc/hosts names "localhost", which the DNS does
        not confirm, so the lookup fails without a log line."""
        exim = oracle(self)
        path = exim.write_config(CONF.format(spool=self.spool, lookup="*", extra=""))
        replies, logs = same_session(self, exim, path, "QUIT\r\n")
        self.assertEqual(logs, ["LOG: name=<> failed=1 deferred=0"])

    def test_confirmed_name_before_connect_acl(self):
        """A PTR name that resolves back is $sender_host_name in the connect
        ACL, and name patterns in host lists match it."""
        got, log = self.bh("203.0.113.1", extra=self.with_dns())
        self.assertEqual(log, ["LOG: name=<a.host.test> failed=0 deferred=0",
                               'LOG: H=a.host.test [203.0.113.1] rejected connection in "connect" ACL: '
                               'named a.host.test'])
        self.assertEqual(got[0], "550 named a.host.test")

    def test_unconfirmed_name_is_refused_silently(self):
        """A PTR name without the client's address is not taken: the lookup
        failed, but nothing is logged, since a name was found."""
        _, log = self.bh("203.0.113.99", extra=self.with_dns())
        self.assertEqual(log, ["LOG: name=<> failed=1 deferred=0"])

    def test_no_name_is_logged(self):
        """No PTR and nothing in /etc/hosts: Exim's host_lookup_failed line."""
        _, log = self.bh("203.0.113.77", extra=self.with_dns())
        self.assertEqual(log, ["LOG: no host name found for IP address 203.0.113.77",
                               "LOG: name=<> failed=1 deferred=0"])

    def test_selector_off_hides_the_line(self):
        """log_selector = -host_lookup_failed leaves the failure unlogged."""
        _, log = self.bh("203.0.113.77", extra=self.with_dns() + "\nlog_selector = -host_lookup_failed")
        self.assertEqual(log, ["LOG: name=<> failed=1 deferred=0"])

    def test_servfail_defers(self):
        """A PTR lookup that gets SERVFAIL sets $host_lookup_deferred, not
        $host_lookup_failed, and logs nothing."""
        server = DNSServer(servfail=SERVFAIL + ("10.in-addr.arpa",)).start()
        self.addCleanup(server.stop)
        _, log = self.bh("10.1.2.3", extra=self.with_dns(server))
        self.assertEqual(log, ["LOG: name=<> failed=0 deferred=1"])

    def test_unmatched_host_is_looked_up_when_named(self):
        """A client outside host_lookup gets no lookup as the session
        starts, but the connect ACL's $sender_host_name asks for it then,
        as in exim4 (tests/test_acl_host_name.py has the details)."""
        _, log = self.bh("203.0.113.1", lookup="10.0.0.0/8", extra=self.with_dns())
        self.assertEqual(log[0], "LOG: name=<a.host.test> failed=0 deferred=0")


    def test_name_found_for_an_option_list_is_kept(self):
        """host_reject_connection with a name item looks the name up; as in
        Exim it is then $sender_host_name for the connect ACL."""
        _, log = self.bh("203.0.113.1", lookup="",
                         extra=self.with_dns() + "\nhost_reject_connection = *.nowhere.test")
        self.assertEqual(log[0], "LOG: name=<a.host.test> failed=0 deferred=0")


class HostLookupDaemonTests(unittest.TestCase):
    """The looked-up name in a daemon's log lines and Received: header."""

    def deliver(self, extra):
        d = DaemonProcess(self, "queue_only\nhost_lookup = *\n" + extra).start()
        self.addCleanup(d.stop)
        with smtplib.SMTP("127.0.0.1", d.port, timeout=20) as s:
            s.ehlo("client.example")
            s.sendmail("a@b.example", ["c@d.example"], "Subject: x\r\n\r\nhi\r\n")
        with open(os.path.join(d.spool_dir, "mainlog")) as f:
            log = f.read()
        return log, _spool_text(os.path.join(d.spool_dir, "input"))

    def test_confirmed_name_in_log_and_received(self):
        """127.0.0.1 named localhost.test by the test DNS: H= carries the
        name, HELO and address, and Received: says "from NAME ([IP] helo=)"."""
        log, spool = self.deliver("dns_nameservers = %s" % shared_server().nameservers)
        self.assertIn(" <= a@b.example H=localhost.test (client.example) [127.0.0.1] ", log)
        self.assertIn("Received: from localhost.test ([127.0.0.1] helo=client.example)", spool)
        self.assertIn("\n--host_name localhost.test\n", spool)
        self.assertNotIn("-host_lookup_failed", spool)

    def test_failed_lookup_flag_in_spool(self):
        """Without a confirmed name the -H file carries -host_lookup_failed
        and the log shows only the HELO name and address, as exim4 does."""
        log, spool = self.deliver("")
        self.assertIn(" <= a@b.example H=(client.example) [127.0.0.1] ", log)
        self.assertIn("Received: from [127.0.0.1] (helo=client.example)", spool)
        self.assertIn("\n-host_lookup_failed\n", spool)


class LazyHostLookupTests(unittest.TestCase):
    """Without host_lookup, a host list item that needs the name looks it up."""

    def test_name_pattern_on_loopback_matches_exim(self):
        """``hosts = *host`` on 127.0.0.1 does not match in exim4 (the
        /etc/hosts name "localhost" is not confirmed by the DNS), nor in
        exim_py: the same replies and log lines."""
        exim = oracle(self)
        path = exim.write_config("keep_environment =\nhost_lookup =\nacl_smtp_connect = connect\n"
                                 "begin acl\nconnect:\n  deny hosts = *host\n"
                                 "       message = named <$sender_host_name>\n  accept\n")
        replies, _ = same_session(self, exim, path, "QUIT\r\n")
        self.assertTrue(replies[0].startswith("220 "), replies)


def _spool_text(directory):
    """Every -H file under ``directory``, joined."""
    text = ""
    for root, _, files in os.walk(directory):
        for name in sorted(files):
            if name.endswith("-H"):
                with open(os.path.join(root, name), encoding="latin-1") as f:
                    text += f.read()
    return text


def _host_facts(log, spool):
    """What the lookup decides in a log and a -H file: the H= of the
    arrival line, the Received: first line and the -H host lines."""
    arrival = re.search(r" <= \S+ (H=.*?) P=", log)
    received = re.search(r"Received: (from .*)", spool)
    flags = sorted(set(re.findall(r"^-+host_(?:name|lookup_failed).*$", spool, re.M)))
    return (arrival and arrival.group(1), received and received.group(1), flags)


class HostLookupAgainstEximTests(unittest.TestCase):
    """exim_py's daemon and exim4's, both with host_lookup = *, take the
    same message from 127.0.0.1 and record the client the same way."""

    def send(self, port):
        with smtplib.SMTP("127.0.0.1", port, timeout=20) as s:
            s.ehlo("client.example")
            s.sendmail("a@b.example", ["c@d.example"], "Subject: x\r\n\r\nhi\r\n")

    def test_log_received_and_spool_agree(self):
        """H=(helo) [ip], "Received: from [ip] (helo=...)" and the -H flag
        -host_lookup_failed are the same as exim4's."""
        theirs = EximPeer(tls=False)
        # the peer's configuration turns host_lookup off, and Exim refuses an
        # option set twice: turn it on in the written file
        with open(theirs.config) as f:
            text = f.read()
        with open(theirs.config, "w") as f:
            f.write(text.replace("\nhost_lookup =\n", "\nhost_lookup = *\n"))
        theirs.start()
        self.addCleanup(theirs.stop)
        ours = DaemonProcess(self, "queue_only\nhost_lookup = *\n").start()
        self.addCleanup(ours.stop)
        self.send(theirs.port)
        self.send(ours.port)
        their_spool = "".join(header for header, _ in theirs.messages())
        with open(os.path.join(ours.spool_dir, "mainlog")) as f:
            our_log = f.read()
        expected = _host_facts(theirs.mainlog(), their_spool)
        self.assertEqual(expected, ("H=(client.example) [127.0.0.1]",
                                    "from [127.0.0.1] (helo=client.example)",
                                    ["-host_lookup_failed"]))
        self.assertEqual(_host_facts(our_log, _spool_text(os.path.join(ours.spool_dir, "input"))),
                         expected)
