"""The ESMTP server protocol: exact replies, pipelining synchronisation, limits.

Unit level: the protocol on a StringTransport with a ServerPolicy built from
a real configuration file, comparing reply bytes.  Dialogue level: the same
server on a loopback socket, driven by smtplib and swaks.
"""

import os
import shutil
import smtplib
import subprocess
import tempfile

from twisted.internet import defer, reactor, task, threads
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from exim_py.config import load
from exim_py.log import Logger
from exim_py.smtp.policy import ServerPolicy
from exim_py.smtp.server import SMTPServerFactory, SMTPServerProtocol
from exim_py.smtp.spoolwriter import SpoolWriter
from exim_py.spool import Spool
from tests.support.peers import require_command

BASE_CONF = """\
primary_hostname = mx.test.example
smtp_banner = mx.test.example ESMTP Exim 4.96
spool_directory = {spool}
log_file_path = {spool}/%slog
pipelining_connect_advertise_hosts = :
{extra}
acl_smtp_rcpt = {rcpt_acl}
begin acl
accept_all:
  accept
deny_all:
  deny    message = no such user here
prdr_check:
  deny    local_parts = ^prdrreject
          message = this recipient does not want it
  accept
"""


def make_config(testcase, extra="", rcpt_acl="accept_all"):
    """A loaded configuration with its own spool directory."""
    spool = tempfile.mkdtemp(prefix="exim_py-smtp-")
    testcase.addCleanup(shutil.rmtree, spool, True)
    path = os.path.join(spool, "exim.conf")
    with open(path, "w") as f:
        f.write(BASE_CONF.format(spool=spool, extra=extra, rcpt_acl=rcpt_acl))
    return load(path), spool


def make_policy(testcase, extra="", rcpt_acl="accept_all"):
    config, spool_dir = make_config(testcase, extra, rcpt_acl)
    spool = Spool.from_config(config)
    return ServerPolicy(config, SpoolWriter(spool)), spool


class Dialogue:
    """The protocol on a StringTransport: send lines, read back the reply bytes."""

    def __init__(self, policy, clock=None, peer="192.0.2.7"):
        self.clock = clock or task.Clock()
        self.proto = SMTPServerProtocol(policy, clock=self.clock)
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", peer, 40000),
                                         hostAddress=IPv4Address("TCP", "127.0.0.1", 25))
        self.proto.makeConnection(self.transport)

    def take(self):
        out = self.transport.value().decode("utf-8")
        self.transport.clear()
        return out

    def send(self, data):
        self.proto.dataReceived(data.encode("utf-8") if isinstance(data, str) else data)
        return self.take()


class CommandReplyTests(unittest.TestCase):
    """Each command's replies, byte for byte as Exim 4.96 gives them."""

    def setUp(self):
        self.policy, _ = make_policy(self)
        self.d = Dialogue(self.policy)

    def test_banner(self):
        """The banner is 220 and the expanded smtp_banner."""
        self.assertEqual(self.d.take(), "220 mx.test.example ESMTP Exim 4.96\r\n")

    def test_ehlo_keywords(self):
        """EHLO lists the default extensions in Exim's order; no SMTPUTF8 without I18N config."""
        self.d.take()
        self.assertEqual(self.d.send("EHLO client.example\r\n"),
                         "250-mx.test.example Hello client.example [192.0.2.7]\r\n"
                         "250-SIZE 52428800\r\n250-8BITMIME\r\n250-PIPELINING\r\n"
                         "250-CHUNKING\r\n250 HELP\r\n")

    def test_helo_syntax(self):
        """HELO without a valid name is a syntax error naming the verb."""
        self.d.take()
        self.assertEqual(self.d.send("HELO\r\n"), "501 Syntactically invalid HELO argument(s)\r\n")
        self.assertEqual(self.d.send("EHLO a_b!\r\n"), "501 Syntactically invalid EHLO argument(s)\r\n")
        self.assertEqual(self.d.send("HELO [192.0.2.1]\r\n"),
                         "250 mx.test.example Hello [192.0.2.1] [192.0.2.7]\r\n")

    def test_mail_rcpt_sequence_errors(self):
        """RCPT before MAIL, a second MAIL, DATA without recipients get Exim's 503s."""
        self.d.take()
        self.d.send("EHLO c\r\n")
        self.assertEqual(self.d.send("RCPT TO:<a@b.example>\r\n"), "503 sender not yet given\r\n")
        self.assertEqual(self.d.send("DATA\r\n"),
                         "503-All RCPT commands were rejected with this error:\r\n"
                         "503-503 sender not yet given\r\n"
                         "503 valid RCPT command must precede DATA\r\n")
        self.assertEqual(self.d.send("MAIL FROM:<s@c.example>\r\n"), "250 OK\r\n")
        self.assertEqual(self.d.send("MAIL FROM:<s@c.example>\r\n"), "503 sender already given\r\n")

    def test_mail_unknown_parameter_is_malformed_address(self):
        """An ESMTP parameter that was not advertised stays part of the address."""
        self.d.take()
        self.d.send("EHLO c\r\n")
        self.assertEqual(self.d.send("MAIL FROM:<a@b> FOO=bar\r\n"),
                         "501 <a@b> FOO=bar: malformed address: FOO=bar may not follow <a@b> \r\n")
        self.assertEqual(self.d.send("MAIL FROM:<a@b> SIZE=999999999999\r\n"),
                         "552 Message size exceeds maximum permitted\r\n")
        self.assertEqual(self.d.send("MAIL FROM:<a@b> SIZE=100 BODY=8BITMIME\r\n"), "250 OK\r\n")
        self.assertEqual(self.d.proto.envelope.body_type, "8BITMIME")

    def test_size_option_expanded_or_taken_as_written(self):
        """message_size_limit without $ or backslash is taken as written; with
        them it is expanded per session (here for this client's address, and
        a backslash escape), as Exim's expand_string does."""
        for value, size in (("1M", 1048576), ("\\x31M", 1048576),
                            ("${if eq{$sender_host_address}{192.0.2.7}{10K}{20K}}", 10240)):
            policy, _ = make_policy(self, extra="message_size_limit = %s\n" % value)
            d = Dialogue(policy)
            d.take()
            self.assertIn("250-SIZE %d\r\n" % size, d.send("EHLO c\r\n"))

    def test_acl_accepting_at_once_is_not_run(self):
        """An ACL whose first statement is a bare accept (accept_all) is known
        to accept without being run, and RCPT gets its 250 at once; an ACL
        that starts with a condition or a deny, or is expanded, is run."""
        self.assertTrue(self.policy.acl_accepts_at_once("accept_all"))
        self.assertFalse(self.policy.acl_accepts_at_once("prdr_check"))
        self.assertFalse(self.policy.acl_accepts_at_once("deny_all"))
        self.assertFalse(self.policy.acl_accepts_at_once("$acl_c0"))
        self.assertFalse(self.policy.acl_accepts_at_once("no_such_acl"))
        self.d.take()
        self.d.send("EHLO c\r\n")
        self.d.send("MAIL FROM:<s@c.example>\r\n")
        self.assertEqual(self.d.send("RCPT TO:<ok@b.example>\r\n"), "250 Accepted\r\n")

    def test_helo_does_not_accept_parameters(self):
        """After HELO (not EHLO), SIZE= is not a parameter but junk after the address."""
        self.d.take()
        self.d.send("HELO c\r\n")
        self.assertEqual(self.d.send("MAIL FROM:<a@b> SIZE=10\r\n"),
                         "501 <a@b> SIZE=10: malformed address: SIZE=10 may not follow <a@b> \r\n")

    def test_rcpt_acl_and_address_errors(self):
        """RCPT replies: accepted, ACL denial with its message, unqualified, empty."""
        self.d.take()
        self.d.send("EHLO c\r\n")
        self.d.send("MAIL FROM:<a@b.example>\r\n")
        self.assertEqual(self.d.send("RCPT TO:<x@y.example>\r\n"), "250 Accepted\r\n")
        self.assertEqual(self.d.send("RCPT TO:<x>\r\n"), "501 <x>: recipient address must contain a domain\r\n")
        self.assertEqual(self.d.send("RCPT TO:<>\r\n"), "501 <>: missing or malformed local part\r\n")
        self.assertEqual(self.d.send("RCPT TO:\r\n"), "501 RCPT must have an address operand\r\n")

    def test_rcpt_acl_denial(self):
        """A deny in acl_smtp_rcpt gives 550 with the ACL's message; DATA then repeats the
        message (without its code) and, the client having pipelined, is not counted as an error."""
        policy, _ = make_policy(self, rcpt_acl="deny_all")
        d = Dialogue(policy)
        d.take()
        d.send("EHLO c\r\n")
        d.send("MAIL FROM:<a@b.example>\r\n")
        self.assertEqual(d.send("RCPT TO:<nobody@y.example>\r\n"), "550 no such user here\r\n")
        self.assertEqual(d.send("DATA\r\n"), "503-All RCPT commands were rejected with this error:\r\n"
                         "503-no such user here\r\n503 Valid RCPT command must precede DATA\r\n")

    def test_other_commands(self):
        """RSET, NOOP, HELP, VRFY, EXPN, ETRN, QUIT with Exim's default (no ACL) answers."""
        self.d.take()
        self.d.send("EHLO c\r\n")
        self.assertEqual(self.d.send("RSET\r\n"), "250 Reset OK\r\n")
        self.assertEqual(self.d.send("NOOP anything\r\n"), "250 OK\r\n")
        self.assertEqual(self.d.send("HELP\r\n"), "214-Commands supported:\r\n"
                         "214 AUTH HELO EHLO MAIL RCPT DATA BDAT NOOP QUIT RSET HELP\r\n")
        self.assertEqual(self.d.send("VRFY a@b\r\n"), "252 Administrative prohibition\r\n")
        self.assertEqual(self.d.send("EXPN a@b\r\n"), "550 Administrative prohibition\r\n")
        self.assertEqual(self.d.send("ETRN #x\r\n"), "458 Administrative prohibition\r\n")
        self.assertEqual(self.d.send("QUIT\r\n"), "221 mx.test.example closing connection\r\n")
        self.assertTrue(self.d.transport.disconnecting)

    def test_too_many_synprot_errors(self):
        """The fourth syntax/protocol error (smtp_max_synprot_errors = 3) ends the session."""
        self.d.take()
        self.d.send("EHLO c\r\n")
        for _ in range(3):
            self.assertEqual(self.d.send("RCPT TO:<a@b>\r\n"), "503 sender not yet given\r\n")
        self.assertEqual(self.d.send("QUIT now\r\n"),
                         "501-unexpected argument data\r\n501 Too many syntax or protocol errors\r\n")
        self.assertTrue(self.d.transport.disconnecting)

    def test_too_many_unknown_commands(self):
        """Unknown commands count as protocol errors and, beyond the limit, drop the call."""
        policy, _ = make_policy(self, "smtp_max_synprot_errors = 10\nsmtp_max_unknown_commands = 2")
        d = Dialogue(policy)
        d.take()
        self.assertEqual(d.send("FOO\r\n"), "500 unrecognized command\r\n")
        self.assertEqual(d.send("BAR\r\n"), "500 unrecognized command\r\n")
        self.assertEqual(d.send("BAZ\r\n"), "500 Too many unrecognized commands\r\n")
        self.assertTrue(d.transport.disconnecting)

    def test_recipients_max(self):
        """recipients_max: further RCPTs get 452 (552 with recipients_max_reject)."""
        for extra, code in (("recipients_max = 2", "452"), ("recipients_max = 2\nrecipients_max_reject", "552")):
            policy, _ = make_policy(self, extra)
            d = Dialogue(policy)
            d.take()
            d.send("EHLO c\r\n")
            d.send("MAIL FROM:<a@b.example>\r\n")
            self.assertEqual(d.send("RCPT TO:<1@b.example>\r\nRCPT TO:<2@b.example>\r\n"),
                             "250 Accepted\r\n250 Accepted\r\n")
            self.assertEqual(d.send("RCPT TO:<3@b.example>\r\n"), code + " too many recipients\r\n")

    def test_command_timeout(self):
        """smtp_receive_timeout: an idle client gets Exim's 421 and is dropped."""
        clock = task.Clock()
        d = Dialogue(self.policy, clock=clock)
        d.take()
        clock.advance(301)
        self.assertEqual(d.take(), "421 mx.test.example: SMTP command timeout - closing connection\r\n")
        self.assertTrue(d.transport.disconnecting)

    def test_timeout_counts_from_last_input(self):
        """The timeout runs from the client's last input, however often it wrote."""
        clock = task.Clock()
        d = Dialogue(self.policy, clock=clock)
        d.take()
        clock.advance(200)
        self.assertEqual(d.send("NOOP\r\n"), "250 OK\r\n")
        clock.advance(150)
        self.assertEqual(d.send("NOOP\r\n"), "250 OK\r\n")
        clock.advance(299)
        self.assertEqual(d.take(), "")
        self.assertFalse(d.transport.disconnecting)
        clock.advance(2)
        self.assertEqual(d.take(), "421 mx.test.example: SMTP command timeout - closing connection\r\n")
        self.assertTrue(d.transport.disconnecting)


class PolicyFailureTests(unittest.TestCase):
    """A policy that fails (at once or later) costs the client a 451, never the session."""

    def dialogue(self, failing):
        policy, _ = make_policy(self)
        policy.rcpt = failing
        self.d = Dialogue(policy)
        self.d.take()
        self.d.send("EHLO c\r\n")
        self.d.send("MAIL FROM:<s@c.example>\r\n")
        return self.d

    def test_policy_exception(self):
        """An exception from the policy gives Exim's 451; the next command is answered."""
        def rcpt(*args):
            raise RuntimeError("broken")
        d = self.dialogue(rcpt)
        self.assertEqual(d.send("RCPT TO:<a@b.example>\r\n"),
                         "451 Temporary local problem - please try later\r\n")
        self.assertEqual(d.send("NOOP\r\n"), "250 OK\r\n")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_policy_failed_deferred(self):
        """A Deferred that fails later gives the same 451, in order with later commands."""
        pending = defer.Deferred()
        d = self.dialogue(lambda *args: pending)
        self.assertEqual(d.send("RCPT TO:<a@b.example>\r\nNOOP\r\n"), "")
        pending.errback(RuntimeError("broken later"))
        self.assertEqual(d.take(), "451 Temporary local problem - please try later\r\n250 OK\r\n")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_policy_failure_paniclog(self):
        """The cause of the 451 goes to the panic log and the main log, with
        the client and the command, as Exim logs its internal errors."""
        policy, _ = make_policy(self)
        spool = policy.config.main.spool_directory
        policy.logger = Logger(policy.config)
        self.addCleanup(policy.logger.close)

        def rcpt(*args):
            raise RuntimeError("broken\nbadly")
        policy.rcpt = rcpt
        d = Dialogue(policy)
        d.send("EHLO c\r\n")
        d.send("MAIL FROM:<s@c.example>\r\n")
        self.assertEqual(d.send("RCPT TO:<a@b.example>\r\n"),
                         "451 Temporary local problem - please try later\r\n")
        self.flushLoggedErrors(RuntimeError)
        expected = ('H=(c) [192.0.2.7] internal error while answering "RCPT TO:<a@b.example>": '
                    'RuntimeError: broken\\nbadly')
        for name in ("paniclog", "mainlog"):
            with open(os.path.join(spool, name)) as f:
                lines = [line.rstrip("\n").split(" ", 2)[2] for line in f]
            self.assertIn(expected, lines, name)


class SynchronisationTests(unittest.TestCase):
    """smtp_enforce_sync: input that arrives too early is Exim's 554 and a drop."""

    def test_input_before_banner(self):
        """A client talking before the banner is dropped (no PIPECONNECT for it)."""
        policy, _ = make_policy(self, "acl_smtp_connect = delay_it\n")
        # the connect ACL is missing, so use a Deferred-returning policy step instead
        policy, _ = make_policy(self)
        waiting = defer.Deferred()
        policy.connect = lambda session: waiting
        d = Dialogue(policy)
        d.send("EHLO early\r\n")
        waiting.callback(None)
        self.assertEqual(d.take(), "554 SMTP synchronization error\r\n")
        self.assertTrue(d.transport.disconnecting)

    def test_pipelined_group_is_accepted(self):
        """With PIPELINING, MAIL/RCPT/DATA may come together; DATA ends the group."""
        policy, _ = make_policy(self)
        d = Dialogue(policy)
        d.take()
        d.send("EHLO c\r\n")
        self.assertEqual(d.send("MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n"),
                         '250 OK\r\n250 Accepted\r\n354 Enter message, ending with "." on a line by itself\r\n')

    def test_data_not_last_in_group(self):
        """Message content sent before the 354 is a synchronisation error."""
        policy, _ = make_policy(self)
        d = Dialogue(policy)
        d.take()
        d.send("EHLO c\r\n")
        out = d.send("MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\nSubject: x\r\n")
        self.assertEqual(out, "250 OK\r\n250 Accepted\r\n554 SMTP synchronization error\r\n")
        self.assertTrue(d.transport.disconnecting)

    def test_no_pipelining_before_ehlo(self):
        """Without PIPELINING (HELO), MAIL followed by more input is a synchronisation error."""
        policy, _ = make_policy(self)
        d = Dialogue(policy)
        d.take()
        d.send("HELO c\r\n")
        self.assertEqual(d.send("MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n"),
                         "554 SMTP synchronization error\r\n")

    def test_sync_not_enforced_when_disabled(self):
        """smtp_enforce_sync = false lets an impatient client through."""
        policy, _ = make_policy(self, "smtp_enforce_sync = false")
        d = Dialogue(policy)
        d.take()
        self.assertEqual(d.send("HELO c\r\nNOOP\r\n"), "250 mx.test.example Hello c [192.0.2.7]\r\n250 OK\r\n")


class LoopbackTests(unittest.TestCase):
    """The server on a real loopback socket, with real clients."""

    def setUp(self):
        self.policy, self.spool = make_policy(self)
        self.port = reactor.listenTCP(0, SMTPServerFactory(self.policy), interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)
        self.portnum = self.port.getHost().port

    def _smtplib(self, messages):
        def run():
            s = smtplib.SMTP("127.0.0.1", self.portnum, timeout=10)
            out = []
            for body in messages:
                s.ehlo("client.example")
                out.append(s.sendmail("a@b.example", ["c@d.example"], body))
            s.quit()
            return out
        return threads.deferToThread(run)

    @defer.inlineCallbacks
    def test_smtplib_messages_reach_the_spool(self):
        """Messages accepted over a socket are in the spool with their envelope and body."""
        yield self._smtplib(["Subject: one\r\n\r\nfirst\r\n", "Subject: two\r\n\r\n.leading dot\r\n"])
        ids = sorted(self.spool.message_ids())
        self.assertEqual(len(ids), 2)
        bodies = sorted(self.spool.read_body(i) for i in ids)
        self.assertIn(b".leading dot\n", bodies[0] + bodies[1])
        env = self.spool.read(ids[0])
        self.assertEqual(env.sender, "a@b.example")
        self.assertEqual([r.address for r in env.recipients], ["c@d.example"])

    @defer.inlineCallbacks
    def test_swaks_pipelining_and_chunking(self):
        """swaks with PIPELINING and with BDAT gets its message accepted."""
        swaks = require_command("swaks")
        for extra in (["--pipeline"], ["--pipeline", "--bdat"] if _swaks_has_bdat(swaks) else []):
            if not extra:
                continue
            args = [swaks, "--server", "127.0.0.1:%d" % self.portnum, "--from", "a@b.example",
                    "--to", "c@d.example", "--helo", "client.example"] + extra
            result = yield threads.deferToThread(subprocess.run, args, capture_output=True, text=True,
                                                 timeout=30)
            self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
            self.assertIn("250 OK id=", result.stdout)

    @defer.inlineCallbacks
    def test_abrupt_disconnect_in_data_stores_nothing(self):
        """A client that vanishes mid-DATA leaves nothing in the spool."""
        def run():
            import socket
            s = socket.create_connection(("127.0.0.1", self.portnum))
            f = s.makefile("rb")
            f.readline()
            s.sendall(b"EHLO c\r\n")
            while f.readline()[3:4] == b"-":
                pass
            for cmd in (b"MAIL FROM:<a@b.example>\r\n", b"RCPT TO:<c@d.example>\r\n", b"DATA\r\n"):
                s.sendall(cmd)
                f.readline()
            s.sendall(b"Subject: cut\r\n\r\nhalf a message\r\n")
            s.close()
        yield threads.deferToThread(run)
        yield task.deferLater(reactor, 0.2, lambda: None)
        self.assertEqual(list(self.spool.message_ids()), [])


def _swaks_has_bdat(swaks):
    help_text = subprocess.run([swaks, "--help"], capture_output=True, text=True).stdout
    return "--bdat" in help_text or "bdat" in help_text.lower()


class HostileInputTests(unittest.TestCase):
    """Odd bytes from the network get SMTP replies, never a traceback."""

    def test_odd_commands(self):
        """Non-UTF-8, NUL, control characters, huge and empty lines are all answered."""
        samples = [b"\xff\xfe\r\n", b"HELO \xc3\x28\r\n", b"MAIL FROM:<\x00@x>\r\n", b"\r\n",
                   b"EHLO " + b"a" * 20000 + b"\r\n", b"RCPT TO:<a@b> NOTIFY=\r\n",
                   b"MAIL FROM:<a@b> SIZE=\r\n", b"MAIL FROM:<a@b> BODY=\r\n", b"BDAT -1\r\n",
                   b"BDAT 99999999999999999999 LAST\r\n", b"AUTH\r\n", b"STARTTLS now\r\n",
                   b"VRFY <>\r\n", b"EXPN\r\n", b"ETRN\r\n", b"HELP me please\r\n"]
        for sample in samples:
            policy, _ = make_policy(self, "smtp_max_synprot_errors = 100")
            d = Dialogue(policy)
            d.take()
            d.send("EHLO c\r\n")
            out = d.send(sample)
            self.assertRegex(out, r"^[2-5]\d\d[ -]", repr(sample))
        self.assertEqual(self.flushLoggedErrors(), [])
