"""The smtp transport end to end: exim_py's delivery engine sending to a real Exim.

The same scenario is run twice against the same receiving exim4: once with
real Exim 4.96 as the sender and once with exim_py, from configurations
made from one template.  The delivery log lines (=>, **, ==) must agree once
message ids, byte counts, SIZE= values and the TLS cipher name (GnuTLS and OpenSSL name
ciphers differently) are normalised.
"""

import datetime
import os
import re
import shutil
import subprocess
import tempfile

from twisted.internet import defer, threads
from twisted.trial import unittest

from exim_py import config as exim_config
from exim_py.delivery import engine
from exim_py.envelope import Envelope, Header, Recipient
from exim_py.log import Logger
from exim_py.spool import Spool
from tests.support.exim_peer import EximPeer, free_port
from tests.support.peers import RealExim, require_command, run_exim_py
from tests.support.pki_client import TestPKI
from tests.support.scripted_smtp import STALL, ScriptedSMTPServer

TEMPLATE = """\
primary_hostname = client.example
spool_directory = {dir}/spool
log_file_path = {dir}/log/%slog
keep_environment =
host_lookup =

begin routers

r:
  driver = manualroute
  route_list = * 127.0.0.1::{port}
  self = send
  transport = t

begin transports

t:
  driver = smtp
  allow_localhost
  tls_verify_certificates = {ca}
{transport_options}

begin retry

* * F,1h,10m
{authenticators}
"""

BODY = b".dot line\nbody\n"


def delivery_lines(log_text):
    """The first =>, ->, ** or == line of each non-bounce recipient, normalised."""
    out = []
    seen = set()
    for line in log_text.splitlines():
        m = re.match(r"^\S+ \S+ \S+ (=>|->|\*\*|==) (\S+) (.*)$", line)
        if not m or m.group(2).startswith("s@") or m.group(2) in seen:
            continue
        # Only the first attempt counts: Exim may start a second delivery
        # process for the same message once the bounce is sent.
        seen.add(m.group(2))
        rest = m.group(3)
        rest = re.sub(r"id=[0-9A-Za-z]{6}-[0-9A-Za-z]{6}-[0-9A-Za-z]{2}", "id=ID", rest)
        rest = re.sub(r"\d+ byte chunk, total \d+", "N byte chunk, total N", rest)
        rest = re.sub(r"BDAT \d+ LAST", "BDAT N LAST", rest)
        # Exim's own submission adds headers ours (stored directly) lacks.
        rest = re.sub(r"SIZE=\d+", "SIZE=N", rest)
        rest = re.sub(r"X=\S+", "X=CIPHER", rest)
        out.append("%s %s %s" % (m.group(1), m.group(2), rest))
    return sorted(out)


class _Comparison(unittest.TestCase):
    """Runs a scenario with exim4 and with exim_py as the sender, against one peer."""

    def setUp(self):
        self.exim = require_command("exim4", "Debian package exim4-daemon-heavy")
        self.pki = TestPKI()
        self.addCleanup(shutil.rmtree, self.pki.dir, True)
        server = self.pki.issue("server", "mx.test.example", sans=["mx.test.example"])
        self.peer = EximPeer(tls_certificate=server.cert_path,
                             tls_privatekey=server.key_path).start()
        self.addCleanup(self.peer.stop)

    authenticators = ""

    def config_text(self, directory, transport_options="", port=None):
        return TEMPLATE.format(dir=directory, port=port or self.peer.port, ca=self.pki.ca.cert_path,
                               transport_options=transport_options,
                               authenticators=self.authenticators)

    def run_real_exim(self, recipients, transport_options="", port=None):
        directory = tempfile.mkdtemp(prefix="exim-sender-")
        self.addCleanup(shutil.rmtree, directory, True)
        os.chmod(directory, 0o755)
        for sub in ("spool", "log"):
            os.mkdir(os.path.join(directory, sub))
            shutil.chown(os.path.join(directory, sub), "Debian-exim", "Debian-exim")
        path = os.path.join(directory, "exim.conf")
        with open(path, "w") as f:
            f.write(self.config_text(directory, transport_options, port))
        os.chmod(path, 0o644)
        subprocess.run([self.exim, "-C", path, "-odi", "-f", "s@client.example"] + recipients,
                       input=b"Subject: test\n\n" + BODY, capture_output=True, timeout=60)
        with open(os.path.join(directory, "log", "mainlog")) as f:
            return f.read()

    @defer.inlineCallbacks
    def run_exim_py(self, recipients, transport_options="", port=None):
        directory = tempfile.mkdtemp(prefix="exim-py-sender-")
        self.addCleanup(shutil.rmtree, directory, True)
        path = os.path.join(directory, "exim.conf")
        with open(path, "w") as f:
            f.write(self.config_text(directory, transport_options, port))
        config = exim_config.load(path)
        spool = Spool(os.path.join(directory, "spool"))
        envelope = Envelope()
        envelope.sender = "s@client.example"
        envelope.recipients = [Recipient(r) for r in recipients]
        envelope.headers = [Header("Subject: test\n")]
        message_id = spool.store(envelope, BODY)
        yield engine.deliver_message(config, spool, message_id, logger=Logger(config))
        with open(os.path.join(directory, "log", "mainlog")) as f:
            defer.returnValue(f.read())

    @defer.inlineCallbacks
    def compare(self, recipients, transport_options="", port=None):
        # Real Exim runs in a thread: the receiving side may be in this reactor.
        theirs = delivery_lines((yield threads.deferToThread(
            self.run_real_exim, recipients, transport_options, port)))
        ours = delivery_lines((yield self.run_exim_py(recipients, transport_options, port)))
        self.assertEqual(ours, theirs)
        defer.returnValue(ours)


class SenderComparisonTests(_Comparison):
    """exim_py's smtp transport logs what Exim's logs, for the same deliveries."""

    @defer.inlineCallbacks
    def test_rcpt_outcomes_over_tls(self):
        """Accepted, rejected and deferred RCPTs over STARTTLS: same => ** == lines."""
        lines = yield self.compare(["ok@test.example", "reject1@test.example",
                                    "defer1@test.example"])
        self.assertEqual(len(lines), 3)

    @defer.inlineCallbacks
    def test_two_recipients_one_delivery(self):
        """Two accepted recipients in one delivery: => for the first, -> for the next."""
        lines = yield self.compare(["ok@test.example", "ok2@test.example"])
        self.assertEqual([line[:2] for line in lines], ["->", "=>"])

    @defer.inlineCallbacks
    def test_prdr_outcomes(self):
        """PRDR with per-recipient accept, reject and defer: same lines as Exim."""
        lines = yield self.compare(["ok@test.example", "prdrreject@test.example",
                                    "prdrdefer@test.example"])
        self.assertTrue(any(" PRDR " in line for line in lines), lines)

    @defer.inlineCallbacks
    def test_without_tls_and_chunking(self):
        """hosts_avoid_tls and hosts_try_chunking empty: DATA in clear, same lines."""
        lines = yield self.compare(["ok@test.example", "reject1@test.example"],
                                   "  hosts_avoid_tls = *\n  hosts_try_chunking =")
        self.assertNotIn("X=", " ".join(lines))

    @defer.inlineCallbacks
    def test_connection_refused(self):
        """Nobody listening: the deferral is logged as Exim logs it."""
        yield self.compare(["ok@test.example"], port=free_port())

    @defer.inlineCallbacks
    def test_tls_required_verification_fails(self):
        """hosts_require_tls + tls_verify_hosts, certificate not naming the host
        (127.0.0.1): deferred with Exim's "(certificate verification failed)"."""
        lines = yield self.compare(["ok@test.example"],
                                   "  hosts_require_tls = *\n  tls_verify_hosts = *")
        self.assertIn("defer (-37)", lines[0])
        self.assertEqual(self.peer.messages(), [])

    @defer.inlineCallbacks
    def test_verification_failure_falls_back_to_clear(self):
        """tls_verify_hosts without hosts_require_tls: tls_tempfail_tryclear makes a
        new connection in clear, and the message goes (no X= field)."""
        lines = yield self.compare(["ok@test.example"], "  tls_verify_hosts = *")
        self.assertTrue(lines[0].startswith("=> ok@test.example"), lines)
        self.assertNotIn("X=", lines[0])

    @defer.inlineCallbacks
    def test_synonym_tls_verify_cert_hostname(self):
        """tls_verify_cert_hostname (the experimental name) sets the same list:
        emptied, the certificate's name is not checked and the host verifies."""
        ours = delivery_lines((yield self.run_exim_py(
            ["ok@test.example"],
            "  hosts_require_tls = *\n  tls_verify_hosts = *\n  tls_verify_cert_hostname =")))
        self.assertTrue(ours[0].startswith("=> ok@test.example"), ours)
        self.assertIn("CV=yes", ours[0])

    @defer.inlineCallbacks
    def test_ocsp_required_without_staple(self):
        """hosts_require_ocsp and a server with no staple: Exim's status-check text."""
        lines = yield self.compare(
            ["ok@test.example"], "  hosts_require_tls = *\n  hosts_require_ocsp = *")
        self.assertIn("TLS session: (certificate status check failed)", lines[0])


class FailureComparisonTests(_Comparison):
    """Errors at each stage from a scripted server: Exim's texts and error numbers."""

    @defer.inlineCallbacks
    def compare_scripted(self, **overrides):
        server = ScriptedSMTPServer(overrides=overrides)
        self.addCleanup(server.stop)
        lines = yield self.compare(["a@test.example"], "  command_timeout = 1s",
                                   port=server.port_number)
        defer.returnValue(lines)

    @defer.inlineCallbacks
    def test_mail_rejected(self):
        """550 to a pipelined MAIL: ** with "after pipelined MAIL FROM:<...> SIZE=n"."""
        lines = yield self.compare_scripted(MAIL="550 no sender")
        self.assertIn("after pipelined MAIL FROM:<s@client.example>", lines[0])

    @defer.inlineCallbacks
    def test_data_deferred(self):
        """450 to a pipelined DATA: defer (-46)."""
        lines = yield self.compare_scripted(DATA="450 no data now")
        self.assertIn("defer (-46)", lines[0])

    @defer.inlineCallbacks
    def test_end_of_data_deferred(self):
        """451 to the final dot: defer (-46) "after end of data"."""
        lines = yield self.compare_scripted(**{".": "451 later"})
        self.assertIn("after end of data: 451 later", lines[0])

    @defer.inlineCallbacks
    def test_end_of_data_rejected(self):
        """550 to the final dot: the recipient fails."""
        lines = yield self.compare_scripted(**{".": "550 rejected content"})
        self.assertTrue(lines[0].startswith("** a@test.example"))

    @defer.inlineCallbacks
    def test_helo_temporary_error(self):
        """EHLO and HELO both 421: host error, defer (0)."""
        lines = yield self.compare_scripted(EHLO="421 closing", HELO="421 closing")
        self.assertIn("defer (0)", lines[0])

    @defer.inlineCallbacks
    def test_helo_permanent_error(self):
        """EHLO and HELO both 554: every address fails."""
        lines = yield self.compare_scripted(EHLO="554 no", HELO="554 no")
        self.assertIn("after HELO client.example: 554 no", lines[0])

    @defer.inlineCallbacks
    def test_broken_tls_retried_in_clear(self):
        """STARTTLS accepted but no TLS follows: tls_tempfail_tryclear makes a second
        connection that sends the message in clear, as Exim does."""
        server = ScriptedSMTPServer(overrides={
            "EHLO": "250-test.example\r\n250-STARTTLS\r\n250 PIPELINING",
            "STARTTLS": "220 go ahead\r\nthis is not a TLS handshake"})
        self.addCleanup(server.stop)
        lines = yield self.compare(["a@test.example"], "  command_timeout = 2s",
                                   port=server.port_number)
        self.assertTrue(lines[0].startswith("=> a@test.example"), lines)
        self.assertEqual(len(server.messages), 2)

    @defer.inlineCallbacks
    def test_rcpt_timeout_text(self):
        """A stall after RCPT: deferred with errno 110 and Exim's timeout text."""
        server = ScriptedSMTPServer(overrides={"RCPT": STALL})
        self.addCleanup(server.stop)
        ours = delivery_lines((yield self.run_exim_py(["a@test.example"],
                                                      "  command_timeout = 1s",
                                                      port=server.port_number)))
        self.assertEqual(len(ours), 1)
        self.assertIn("defer (110)", ours[0])
        self.assertTrue(ours[0].endswith(": SMTP timeout after RCPT TO:<a@test.example>"), ours)


class AuthComparisonTests(_Comparison):
    """The client side of the plaintext and cram_md5 authenticators, as Exim uses them."""

    AUTHS = {
        "PLAIN": "  driver = plaintext\n  public_name = PLAIN\n  client_send = ^fred^secret\n",
        "LOGIN": "  driver = plaintext\n  public_name = LOGIN\n"
                 "  client_send = : fred : secret\n",
        "CRAM-MD5": "  driver = cram_md5\n  public_name = CRAM-MD5\n  client_name = fred\n"
                    "  client_secret = secret\n",
    }

    @defer.inlineCallbacks
    def check(self, mechanism):
        self.authenticators = "\nbegin authenticators\n\nclient_auth:\n" + self.AUTHS[mechanism]
        lines = yield self.compare(["ok@test.example"], "  hosts_require_auth = *")
        self.assertTrue(lines[0].startswith("=> ok@test.example"), lines)
        self.assertIn("A=client_auth", lines[0])
        self.assertIn("A=%s:fred" % (mechanism.lower().replace("-", "_")
                                     if mechanism != "CRAM-MD5" else "cram",),
                      self.peer.mainlog())

    def test_plain(self):
        """AUTH PLAIN from client_send = ^fred^secret."""
        return self.check("PLAIN")

    def test_login(self):
        """AUTH LOGIN answering the server's two prompts from client_send."""
        return self.check("LOGIN")

    def test_cram_md5(self):
        """AUTH CRAM-MD5 with client_name and client_secret."""
        return self.check("CRAM-MD5")

    @defer.inlineCallbacks
    def test_required_auth_fails(self):
        """A wrong password with hosts_require_auth: deferred as Exim defers it."""
        self.authenticators = ("\nbegin authenticators\n\nclient_auth:\n"
                               "  driver = plaintext\n  public_name = PLAIN\n"
                               "  client_send = ^fred^wrong\n")
        lines = yield self.compare(["ok@test.example"], "  hosts_require_auth = *")
        self.assertTrue(lines[0].startswith("== ok@test.example"), lines)

    @defer.inlineCallbacks
    def test_authenticated_sender_expanded_after_starttls(self):
        """authenticated_sender is expanded once TLS is up ($tls_out_cipher is set)
        and sent as AUTH= after AUTH succeeded; Exim records it in its -H file."""
        self.authenticators = ("\nbegin authenticators\n\nclient_auth:\n"
                               + self.AUTHS["PLAIN"])
        lines = delivery_lines((yield self.run_exim_py(
            ["ok@test.example"], "  hosts_require_auth = *\n"
            "  authenticated_sender = ${if def:tls_out_cipher{tls}{clear}}@client.example")))
        self.assertTrue(lines[0].startswith("=> ok@test.example"), lines)
        # Exim marks the (tainted) value with a second dash in its -H file.
        self.assertIn("\n--auth_sender tls@client.example\n", self.peer.messages()[0][0])


class OptionTableTests(unittest.TestCase):
    """The smtp transport's options as -bP shows them, and those it cannot honour."""

    CONF = ("primary_hostname = client.example\nkeep_environment =\n"
            "begin transports\nt:\n  driver = smtp\n  hosts_require_tls = *\n"
            "  tls_verify_cert_hostnames = mx.example\n")

    def test_bP_transport_matches_exim(self):
        """exim_py -bP transport t prints exactly what exim4 prints (every option,
        defaults included)."""
        exim = RealExim()
        self.addCleanup(exim.cleanup)
        path = exim.write_config(self.CONF)
        theirs = exim.run(path, ["-bP", "transport", "t"]).stdout
        ours = run_exim_py(["-C", path, "-bP", "transport", "t"]).stdout
        self.assertEqual(ours, theirs)
        self.assertIn("tls_verify_cert_hostnames = mx.example\n", ours)

    def test_synonym_sets_the_current_option(self):
        """tls_verify_cert_hostname (exim_py extension) sets tls_verify_cert_hostnames."""
        directory = tempfile.mkdtemp(prefix="exim-py-bp-")
        self.addCleanup(shutil.rmtree, directory, True)
        path = os.path.join(directory, "exim.conf")
        with open(path, "w") as f:
            f.write(self.CONF.replace("tls_verify_cert_hostnames", "tls_verify_cert_hostname"))
        ours = run_exim_py(["-C", path, "-bP", "transport", "t"]).stdout
        self.assertIn("tls_verify_cert_hostnames = mx.example\n", ours)

    @defer.inlineCallbacks
    def test_unsupported_option_defers(self):
        """A transport that needs DKIM signing defers instead of sending unsigned."""
        directory = tempfile.mkdtemp(prefix="exim-py-unsup-")
        self.addCleanup(shutil.rmtree, directory, True)
        path = os.path.join(directory, "exim.conf")
        with open(path, "w") as f:
            f.write("primary_hostname = client.example\nspool_directory = %s/spool\n"
                    "log_file_path = %s/log/%%slog\n"
                    "begin routers\nr:\n  driver = manualroute\n  route_list = * 127.0.0.1\n"
                    "  self = send\n  transport = t\n"
                    "begin transports\nt:\n  driver = smtp\n  allow_localhost\n"
                    "  dkim_domain = client.example\n  dkim_selector = s\n"
                    "  dkim_private_key = /nonexistent.key\n" % (directory, directory))
        config = exim_config.load(path)
        spool = Spool(os.path.join(directory, "spool"))
        envelope = Envelope()
        envelope.sender = "s@client.example"
        envelope.recipients = [Recipient("a@test.example")]
        message_id = spool.store(envelope, b"body\n")
        yield engine.deliver_message(config, spool, message_id, logger=Logger(config))
        with open(os.path.join(directory, "log", "mainlog")) as f:
            log = f.read()
        self.assertIn("== a@test.example R=r T=t defer (0): t transport: dkim_private_key = "
                      "/nonexistent.key is not supported by exim_py", log)


class OCSPComparisonTests(_Comparison):
    """hosts_require_ocsp against Exim's staples: exim_py decides as exim4 does."""

    def setUp(self):
        self.exim = require_command("exim4", "Debian package exim4-daemon-heavy")
        self.pki = TestPKI()
        self.addCleanup(shutil.rmtree, self.pki.dir, True)
        self.server = self.pki.issue("server", "mx.test.example", sans=["mx.test.example"])

    def staple(self, **kw):
        self.peer = EximPeer(tls_certificate=self.server.cert_path,
                             tls_privatekey=self.server.key_path,
                             tls_ocsp_file=self.pki.ocsp_response("staple", self.server, **kw))
        self.peer.start()
        self.addCleanup(self.peer.stop)
        return self.compare(["ok@test.example"], "  hosts_require_tls = *\n"
                            "  hosts_require_ocsp = *\n  tls_verify_cert_hostnames =")

    @defer.inlineCallbacks
    def test_good(self):
        """A good staple: delivered, CV=yes, on both."""
        lines = yield self.staple()
        self.assertIn("CV=yes", lines[0])

    @defer.inlineCallbacks
    def test_recent_without_next_update(self):
        """No nextUpdate, a day old: accepted by both."""
        now = datetime.datetime.now(datetime.timezone.utc)
        lines = yield self.staple(next_update=None, this_update=now - datetime.timedelta(days=1))
        self.assertTrue(lines[0].startswith("=> "), lines)

    @defer.inlineCallbacks
    def test_old_without_next_update(self):
        """No nextUpdate, 16 days old: both fail the status check."""
        now = datetime.datetime.now(datetime.timezone.utc)
        lines = yield self.staple(next_update=None, this_update=now - datetime.timedelta(days=16))
        self.assertIn("(certificate status check failed)", lines[0])
