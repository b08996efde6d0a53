"""The client's host name looked up when first needed, and kept.

Without ``host_lookup``, Exim looks the client's name up the first time
an expansion refers to ``$sender_host_name`` or a host-list item needs a
name, and keeps what it found (or that it found nothing) for the rest of
the session (spec, "Expansion variables": sender_host_name; "Host
lists").  Loopback dialogues are compared with Debian's exim4 under
``-bh``: there 127.0.0.1 has the /etc/hosts name "localhost", which the
DNS does not confirm, so the lookup fails silently.  Names that do
resolve come from the test DNS server (tests/support/zones): 203.0.113.1
is a.host.test, 203.0.113.77 has no PTR at all, 127.0.0.1 is
localhost.test.
"""

import os
import shutil
import smtplib
import tempfile

from twisted.trial import unittest

from tests.support.dnsserver import SERVFAIL, DNSServer, shared_server
from tests.support.bh import oracle, same_session, session
from tests.support.peers import run_exim_py
from tests.test_daemon import DaemonProcess
from tests.test_smtp_host_lookup import _spool_text

# Both configurations: no lookup as the session starts, two ACLs.
HEAD = """\
keep_environment =
host_lookup =
spool_directory = {spool}
acl_smtp_connect = connect
acl_smtp_helo = helo
{extra}
begin acl
"""

# Line A shows the flags before anything asks for the name; B asks for it
# and reads the flags later in the same string; the HELO ACL sees what B
# left behind.
REFERENCE_CONF = HEAD + """\
connect:
  warn logwrite = A failed=$host_lookup_failed full=$sender_fullhost
  warn logwrite = B name=<$sender_host_name> failed=$host_lookup_failed \\
                  deferred=$host_lookup_deferred full=$sender_fullhost
  accept
helo:
  warn logwrite = C name=<$sender_host_name> failed=$host_lookup_failed \\
                  rcv=$sender_rcvhost
  accept
"""

# The connect ACL needs the name for a host list only; the name (or the
# failure) is then in $sender_host_name for that ACL and the next.
HOSTS_CONF = HEAD + """\
connect:
  warn hosts = *.host.test
       logwrite = matched
  warn logwrite = A name=<$sender_host_name> failed=$host_lookup_failed \\
                  full=$sender_fullhost
  accept
helo:
  warn !hosts = *.nowhere.test
       logwrite = C name=<$sender_host_name> failed=$host_lookup_failed
  accept
"""


class _Checking:
    """``-bh`` runs of exim_py (and exim4) on a configuration."""

    def setUp(self):
        self.spool = tempfile.mkdtemp(prefix="exim_py-hostname-")
        os.chmod(self.spool, 0o777)
        self.addCleanup(shutil.rmtree, self.spool, True)

    def conf(self, template, extra=""):
        return template.format(spool=self.spool, extra=extra)

    def bh(self, template, address, extra="", dialogue="HELO client.example\r\nQUIT\r\n"):
        path = os.path.join(self.spool, "exim.conf")
        with open(path, "w") as f:
            f.write(self.conf(template, extra))
        return session(run_exim_py(["-C", path, "-bh", address], input=dialogue))

    def against_exim(self, template, dialogue="HELO client.example\r\nQUIT\r\n"):
        """exim_py's and exim4's replies and log lines for 127.0.0.1."""
        exim = oracle(self)
        path = exim.write_config(self.conf(template))
        return same_session(self, exim, path, dialogue)[1]

    def with_dns(self, server=None):
        return "dns_nameservers = %s" % (server or shared_server()).nameservers


class VariableLookupTests(_Checking, unittest.TestCase):
    """A reference to $sender_host_name looks the name up."""

    def test_loopback_matches_exim(self):
        """On 127.0.0.1 the flags are clear until $sender_host_name is used;
        then $host_lookup_failed is 1 later in the same string and in the
        next ACL, which does not ask again: exim4's lines exactly."""
        log = self.against_exim(REFERENCE_CONF)
        self.assertEqual(log, ["LOG: A failed=0 full=[127.0.0.1]",
                               "LOG: B name=<> failed=1 deferred=0 full=[127.0.0.1]",
                               "LOG: C name=<> failed=1 rcv=[127.0.0.1] (helo=client.example)"])

    def test_confirmed_name(self):
        """A PTR name that resolves back becomes $sender_host_name; the
        next expansions see it and $sender_fullhost / $sender_rcvhost and
        the HELO reply are rebuilt with it."""
        got, log = self.bh(REFERENCE_CONF, "203.0.113.1", self.with_dns())
        self.assertEqual(log, [
            "LOG: A failed=0 full=[203.0.113.1]",
            "LOG: B name=<a.host.test> failed=0 deferred=0 full=a.host.test [203.0.113.1]",
            "LOG: C name=<a.host.test> failed=0 rcv=a.host.test ([203.0.113.1] helo=client.example)"])
        self.assertEqual(got[1], "250 vm Hello a.host.test [203.0.113.1]")

    def test_failure_is_logged_once(self):
        """No PTR at all: Exim's host_lookup_failed line appears once, at
        the first reference; the later one takes the kept failure."""
        _, log = self.bh(REFERENCE_CONF, "203.0.113.77", self.with_dns())
        self.assertEqual(log, ["LOG: A failed=0 full=[203.0.113.77]",
                               "LOG: no host name found for IP address 203.0.113.77",
                               "LOG: B name=<> failed=1 deferred=0 full=[203.0.113.77]",
                               "LOG: C name=<> failed=1 rcv=[203.0.113.77] (helo=client.example)"])

    def test_servfail_defers(self):
        """A PTR lookup that gets SERVFAIL sets $host_lookup_deferred, not
        $host_lookup_failed, and logs nothing."""
        server = DNSServer(servfail=SERVFAIL + ("10.in-addr.arpa",)).start()
        self.addCleanup(server.stop)
        _, log = self.bh(REFERENCE_CONF, "10.1.2.3", self.with_dns(server))
        self.assertEqual(log[1], "LOG: B name=<> failed=0 deferred=1 full=[10.1.2.3]")

    def test_condition_and_message(self):
        """The name looked up for an ACL condition is in the same
        statement's message."""
        conf = REFERENCE_CONF.replace(
            "helo:\n", "helo:\n  deny condition = ${{if eq{{$sender_host_name}}{{a.host.test}}}}\n"
                       "       message = no mail from $sender_host_name\n")
        got, _ = self.bh(conf, "203.0.113.1", self.with_dns())
        self.assertEqual(got[1], "550 no mail from a.host.test")


class HostListLookupTests(_Checking, unittest.TestCase):
    """A name looked up for an ACL ``hosts`` condition stays the session's."""

    def test_loopback_failure_kept_matches_exim(self):
        """On 127.0.0.1 ``hosts = *.host.test`` fails to find a name; as in
        exim4, $host_lookup_failed is 1 afterwards, and the HELO ACL's
        negated name item is true without asking again."""
        log = self.against_exim(HOSTS_CONF)
        self.assertEqual(log, ["LOG: A name=<> failed=1 full=[127.0.0.1]",
                               "LOG: C name=<> failed=1"])

    def test_name_kept_for_later_acls(self):
        """The name the connect ACL's host list found is $sender_host_name
        (and in $sender_fullhost) there and in the HELO ACL."""
        got, log = self.bh(HOSTS_CONF, "203.0.113.1", self.with_dns())
        self.assertEqual(log, ["LOG: matched",
                               "LOG: A name=<a.host.test> failed=0 full=a.host.test [203.0.113.1]",
                               "LOG: C name=<a.host.test> failed=0"])
        self.assertEqual(got[1], "250 vm Hello a.host.test [203.0.113.1]")

    def test_aliases_kept_for_later_acls(self):
        """The confirmed aliases stay too: a pattern in the HELO ACL that
        only an alias of 203.0.113.20 (friend.test) fits matches there."""
        conf = HOSTS_CONF.replace("!hosts = *.nowhere.test", "hosts = *-alias.test")
        _, log = self.bh(conf, "203.0.113.20", self.with_dns())
        self.assertEqual(log[-1], "LOG: C name=<friend.test> failed=0")

    def test_failure_kept_for_later_acls(self):
        """No PTR: one host_lookup_failed line for the whole session,
        although two ACLs have name items."""
        _, log = self.bh(HOSTS_CONF, "203.0.113.77", self.with_dns())
        self.assertEqual(log, ["LOG: no host name found for IP address 203.0.113.77",
                               "LOG: A name=<> failed=1 full=[203.0.113.77]",
                               "LOG: C name=<> failed=1"])


# verify = reverse_host_lookup at HELO (optional) and MAIL.
REVERSE_CONF = """\
keep_environment =
host_lookup =
spool_directory = {spool}
acl_smtp_mail = mail
{extra}
begin acl
helo:
  warn !verify = reverse_host_lookup
       logwrite = V failed=$host_lookup_failed name=<$sender_host_name>
  accept
mail:
  deny !verify = reverse_host_lookup
  accept
"""
REVERSE_HELO_CONF = REVERSE_CONF.replace("{extra}", "{extra}\nacl_smtp_helo = helo")
MAIL_DIALOGUE = "HELO client.example\r\nMAIL FROM:<a@b.example>\r\nQUIT\r\n"


class ReverseVerifyTests(_Checking, unittest.TestCase):
    """verify = reverse_host_lookup is the session's lookup too."""

    def test_loopback_failure_matches_exim(self):
        """127.0.0.1: the /etc/hosts name does not resolve back; exim4's
        log line, reason and reply, and no "no host name found" line."""
        log = self.against_exim(REVERSE_HELO_CONF, MAIL_DIALOGUE)
        self.assertEqual(log, ["LOG: V failed=1 name=<>",
                               "LOG: H=(client.example) [127.0.0.1] rejected MAIL <a@b.example>: "
                               "host lookup failed (127.0.0.1 does not match any IP address for "
                               "localhost)"])

    def test_first_lookup_reason_matches_exim(self):
        """Without the HELO check, MAIL makes the lookup itself and says so."""
        log = self.against_exim(REVERSE_CONF, MAIL_DIALOGUE)
        self.assertEqual(log, ["LOG: H=(client.example) [127.0.0.1] rejected MAIL <a@b.example>: "
                               "host lookup failed for reverse lookup check (127.0.0.1 does not "
                               "match any IP address for localhost)"])

    def test_confirmed_name_passes_and_stays(self):
        """203.0.113.1 verifies; its name is then $sender_host_name."""
        got, log = self.bh(REVERSE_HELO_CONF,
                           "203.0.113.1", self.with_dns(), MAIL_DIALOGUE)
        self.assertEqual(log, [])
        self.assertEqual(got[1:3], ["250 vm Hello a.host.test [203.0.113.1]", "250 OK"])

    def test_no_name_reason(self):
        """No PTR: the failure is logged once, and the reason says no
        name was found."""
        _, log = self.bh(REVERSE_CONF, "203.0.113.77", self.with_dns(), MAIL_DIALOGUE)
        self.assertEqual(log, ["LOG: no host name found for IP address 203.0.113.77",
                               "LOG: H=(client.example) [203.0.113.77] rejected MAIL <a@b.example>: "
                               "host lookup failed for reverse lookup check (failed to find host "
                               "name from IP address)"])


class DaemonTests(unittest.TestCase):
    """The lookup in a real daemon, from an ACL run off the reactor."""

    def test_acl_name_reaches_log_and_received(self):
        """acl_smtp_mail chosen by $sender_host_name looks 127.0.0.1 up
        (localhost.test in the test DNS); the message is accepted and the
        name is in the arrival line and the Received: header."""
        d = DaemonProcess(self, "queue_only\nhost_lookup =\ndns_nameservers = %s\n"
                          "acl_smtp_mail = ${if eq{$sender_host_name}{localhost.test}"
                          "{accept_all}{deny_all}}\n" % shared_server().nameservers).start()
        self.addCleanup(d.stop)
        client = smtplib.SMTP("127.0.0.1", d.port, local_hostname="client.example", timeout=20)
        refused = client.sendmail("a@b.example", "c@d.example", "Subject: x\r\n\r\nhi\r\n")
        client.quit()
        self.assertEqual(refused, {})
        with open(os.path.join(d.spool_dir, "mainlog")) as f:
            log = f.read()
        self.assertIn(" <= a@b.example H=localhost.test (client.example) [127.0.0.1] ", log)
        spool = _spool_text(os.path.join(d.spool_dir, "input"))
        self.assertIn("Received: from localhost.test ([127.0.0.1] helo=client.example)", spool)
