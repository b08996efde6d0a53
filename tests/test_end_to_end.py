"""End to end: SMTP in → spool → routers → transports, across the whole program.

Each scenario drives exim_py as a user would, through its command line and
its daemon over real sockets (real swaks, smtplib, Debian's exim4 as the
relay's next hop), then checks what lands on disk: maildirs, mbox files, the
spool (-H/-D), the mainlog (ids and times normalised) and bounces (parsed as
RFC 3464 reports with Python's email package).  Ports are free ports,
directories temporary, so these tests run beside any others.
"""

import email
import email.policy
import glob
import mailbox
import os
import pwd
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time

from twisted.python import log
from twisted.trial import unittest

from exim_py.spool import Spool
from tests.support.peers import require_command
from tests.support.exim_peer import EximPeer
from tests.support.pki import ServerPKI

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
MESSAGE_ID = re.compile(r"[0-9A-Za-z]{6}-[0-9A-Za-z]{6}-[0-9A-Za-z]{2}\b")


def free_port():
    """A loopback TCP port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def exim_py_script():
    """The ``exim_py`` console script installed next to this interpreter (pip install -e)."""
    path = os.path.join(os.path.dirname(sys.executable), "exim_py")
    if not os.path.exists(path):
        raise unittest.SkipTest("exim_py is not installed next to %s (pip install -e .)"
                                % sys.executable)
    return path


def exim_py(args, input=None, timeout=60):
    """Run the exim_py command with ``args``; a CompletedProcess with text output."""
    return subprocess.run([exim_py_script()] + list(args), input=input, capture_output=True,
                          text=True, timeout=timeout)


def read_text(path):
    """The file's text, or "" when it does not exist (yet)."""
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def wait_for(predicate, what, timeout=20):
    """Poll ``predicate`` until it is true (another process is doing the work); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.05)


def normalise_log(text, *message_ids):
    """Log lines with times replaced by TIME and message ids by ID1, ID2 ... in
    order of appearance; only lines naming one of ``message_ids`` when given."""
    lines = text.splitlines()
    if message_ids:
        lines = [line for line in lines if any(m in line for m in message_ids)]
    names = {}

    def name(match):
        return names.setdefault(match.group(0), "ID%d" % (len(names) + 1))
    return "".join(MESSAGE_ID.sub(name, TIMESTAMP.sub("TIME", line)) + "\n" for line in lines)


def swaks(args, ok=True):
    """Run the real swaks with ``args``; its transcript.  ``ok``: it must exit 0."""
    binary = require_command("swaks", "Debian package swaks")
    result = subprocess.run([binary, "--timeout", "20"] + list(args), capture_output=True,
                            text=True, timeout=60)
    if ok and result.returncode != 0:
        raise AssertionError("swaks failed (%d):\n%s%s" % (result.returncode, result.stdout,
                                                           result.stderr))
    return result.stdout + result.stderr


class Daemon:
    """A listening process (exim_py -bdf, twistd -n exim_py) in its own process group."""

    def __init__(self, argv, port, env=None):
        self.argv, self.port, self.env = argv, port, env
        self.process = None

    def start(self, timeout=30):
        """Start it and wait until the port accepts connections."""
        self.process = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        start_new_session=True, env=self.env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError("%s exited with %s:\n%s" % (
                    " ".join(self.argv), self.process.returncode,
                    self.process.stdout.read().decode(errors="replace")))
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.kill()
        raise AssertionError("%s did not listen on port %d" % (" ".join(self.argv), self.port))

    def stop(self):
        """SIGTERM and wait (SIGKILL after ten seconds); returns its output."""
        if self.process is None:
            return ""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.output()

    def kill(self):
        """SIGKILL the whole process group: a crash, no chance to clean up."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def output(self):
        """What it wrote on stdout and stderr (read once, after it ended)."""
        if self.process.stdout.closed:
            return ""
        out = self.process.stdout.read().decode(errors="replace")
        self.process.stdout.close()
        return out


# One configuration serves every scenario; behaviour is chosen by local part
# and by -D macros (E2E_DIR for everything written, E2E_PEER_PORT for the
# relay's next hop (E2E_PEER_HOST, and E2E_PEER_CA to insist on verified TLS
# and AUTH there), E2E_QUEUE_ONLY to leave arrivals on the queue, E2E_USER
# for the local deliveries' user, which exim4 needs).
CONFIG = r"""
E2E_DIR = /nonexistent
E2E_PEER_PORT = 25
E2E_PEER_HOST = 127.0.0.1

primary_hostname = e2e.test.example
qualify_domain = test.example
domainlist local_domains = test.example
domainlist relay_to_domains = relay.test.example
spool_directory = E2E_DIR/spool
log_file_path = E2E_DIR/log/%slog
pid_file_path = E2E_DIR/exim_py.pid
keep_environment =
host_lookup =
rfc1413_hosts =
never_users =
acl_smtp_rcpt = acl_rcpt
dsn_advertise_hosts = *
tls_certificate = E2E_DIR/tls/mx-chain.pem
tls_privatekey = E2E_DIR/tls/mx.key
tls_advertise_hosts = *
.ifdef E2E_QUEUE_ONLY
queue_only
.endif

begin acl

acl_rcpt:
  accept  hosts = :
  require verify = recipient
  accept  domains = +local_domains : +relay_to_domains
  accept  authenticated = *
  deny    message = relay not permitted

begin routers

relay:
  driver = manualroute
  domains = +relay_to_domains
  route_list = * E2E_PEER_HOST::E2E_PEER_PORT byname
  self = send
  transport = remote_smtp

later:
  driver = redirect
  local_parts = later
  condition = ${if !exists{E2E_DIR/ready}}
  data = :defer: mailbox not ready yet
  allow_defer
  no_verify

gone:
  driver = redirect
  local_parts = gone
  data = :fail: this mailbox is closed
  allow_fail
  no_verify

specials:
  driver = redirect
  domains = +local_domains
  local_parts = piped : filed
  data = ${if eq{$local_part}{piped}{|/bin/sh -c "cat >> E2E_DIR/mbox/piped"}{E2E_DIR/mbox/filed}}
  pipe_transport = address_pipe
  file_transport = address_file

away:
  driver = accept
  domains = +local_domains
  local_parts = away
  transport = away_reply

mbox:
  driver = accept
  domains = +local_domains
  local_parts = mboxuser
  transport = mbox

maildir:
  driver = accept
  domains = +local_domains
  local_parts = dsearch;E2E_DIR/mail
  transport = maildir

begin transports

remote_smtp:
  driver = smtp
.ifdef E2E_PEER_CA
  hosts_require_tls = *
  tls_verify_certificates = E2E_PEER_CA
  tls_verify_hosts = *
  hosts_require_auth = *
.endif

mbox:
  driver = appendfile
  file = E2E_DIR/mbox/$local_part_data
  return_path_add
  envelope_to_add
  delivery_date_add
.ifdef E2E_USER
  user = E2E_USER
.endif

maildir:
  driver = appendfile
  directory = E2E_DIR/mail/$local_part_data/Maildir
  maildir_format
  create_directory
  return_path_add
  envelope_to_add
  delivery_date_add
.ifdef E2E_USER
  user = E2E_USER
.endif

address_pipe:
  driver = pipe
  return_output
.ifdef E2E_USER
  user = E2E_USER
.endif

address_file:
  driver = appendfile
  return_path_add
  envelope_to_add
.ifdef E2E_USER
  user = E2E_USER
.endif

away_reply:
  driver = autoreply
  from = away@test.example
  to = $sender_address
  subject = Away: $h_subject:
  text = I am away until next week.
.ifdef E2E_USER
  user = E2E_USER
.endif

begin retry

*   *   F,1d,10m

begin authenticators

plain:
  driver = plaintext
  public_name = PLAIN
  server_advertise_condition = ${if def:tls_in_cipher}
  server_condition = ${if and {{eq{$auth2}{fred}}{eq{$auth3}{secret}}}}
  server_set_id = $auth2
  client_send = ^fred^secret
"""

LOCAL_USERS = ("alice", "bob", "later", "gone", "crash")


class Site:
    """A directory with the configuration, the mail directories and a TLS key pair."""

    def __init__(self, test, owner=None):
        if owner is None:
            self.dir = os.path.realpath(test.mktemp())
        else:
            # exim4 works as ``owner`` (Debian-exim), which must reach and
            # write everything; trial's directory is not open to it.
            self.dir = tempfile.mkdtemp(prefix="exim_py-e2e-")
            test.addCleanup(shutil.rmtree, self.dir, True)
            os.chmod(self.dir, 0o755)
        for sub in ["mbox", "tls", "spool", "log", "mail"] + ["mail/" + u for u in LOCAL_USERS]:
            os.makedirs(os.path.join(self.dir, sub))
            if owner is not None:
                shutil.chown(os.path.join(self.dir, sub), owner, owner)
        self.config = os.path.join(self.dir, "exim.conf")
        with open(self.config, "w") as f:
            f.write(CONFIG)
        pki = ServerPKI(os.path.join(self.dir, "tls"))
        pki.server("mx", ["e2e.test.example"])
        self.ca_path = pki.root.cert_path
        self.macros = ["-DE2E_DIR=" + self.dir]
        self.spool = Spool(os.path.join(self.dir, "spool"))

    def args(self, *args):
        return ["-C", self.config] + self.macros + list(args)

    def run(self, *args, input=None):
        return exim_py(self.args(*args), input=input)

    def daemon(self, *extra):
        port = free_port()
        return Daemon([exim_py_script()] + self.args("-oX", "127.0.0.1.%d" % port, "-bdf", *extra),
                      port)

    def mainlog(self):
        return read_text(os.path.join(self.dir, "log", "mainlog"))

    def wait_completed(self, message_id):
        wait_for(lambda: "%s Completed" % message_id in self.mainlog(),
                 "%s Completed in the mainlog:\n%s" % (message_id, self.mainlog()))

    def spool_size(self, message_id):
        """The S= of a message: Exim's message size, read back from the mainlog's <= line."""
        return int(re.search(r"%s <= .* S=(\d+)" % message_id, self.mainlog()).group(1))

    def maildir(self, user):
        """The messages in ``user``'s maildir (new/), oldest first, as bytes."""
        out = []
        for path in sorted(glob.glob(os.path.join(self.dir, "mail", user, "Maildir", "new", "*")),
                           key=os.path.getmtime):
            with open(path, "rb") as f:
                out.append(f.read())
        return out


def send_message(port, sender, recipients, text):
    """Send ``text`` and return the id exim_py gave it (from the DATA reply)."""
    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.example", timeout=30) as s:
        s.ehlo()
        code, reply = s.mail(sender)
        assert code == 250, (code, reply)
        for rcpt in recipients:
            code, reply = s.rcpt(rcpt)
            assert code == 250, (code, reply)
        code, reply = s.data(text)
        assert code == 250, (code, reply)
    return re.match(rb"OK id=(\S+)", reply).group(1).decode()


def spool_listing(site):
    """``exim_py -bp`` output."""
    result = site.run("-bp")
    assert result.returncode == 0 and result.stderr == "", result
    return result.stdout


def parse(raw):
    return email.message_from_bytes(raw, policy=email.policy.compat32)


class LocalDeliveryTests(unittest.TestCase):
    """SMTP in → spool → local delivery, submission, refusal, deferral, bounces."""

    def setUp(self):
        self.site = Site(self)
        self.daemon = self.site.daemon().start()
        self.addCleanup(self.daemon.stop)

    def test_smtp_to_maildir_and_mbox(self):
        """One message for a maildir user and an mbox user: both copies carry
        Return-path, Envelope-to, Delivery-date and Exim's Received: header, the
        mbox has its From_ line, the queue is empty and the mainlog reads as
        Exim's (<=, => per recipient with R= and T=, Completed)."""
        message_id = send_message(self.daemon.port, "sender@example.org",
                                  ["alice@test.example", "mboxuser@test.example"],
                                  "Subject: one\n\nbody one\n")
        self.site.wait_completed(message_id)
        self.assertEqual(normalise_log(self.site.mainlog(), message_id), (
            "TIME ID1 <= sender@example.org H=(client.example) [127.0.0.1] P=esmtp S=209\n"
            "TIME ID1 => alice <alice@test.example> R=maildir T=maildir\n"
            "TIME ID1 => mboxuser <mboxuser@test.example> R=mbox T=mbox\n"
            "TIME ID1 Completed\n"))
        [raw] = self.site.maildir("alice")
        box = mailbox.mbox(os.path.join(self.site.dir, "mbox", "mboxuser"))
        [from_mbox] = list(box)
        self.assertEqual(from_mbox.get_from().split(" ", 1)[0], "sender@example.org")
        received = ("Received: from [127.0.0.1] (helo=client.example)\n"
                    "\tby e2e.test.example with esmtp (Exim 4.96)\n"
                    "\t(envelope-from <sender@example.org>)\n"
                    "\tid %s;\n" % message_id)
        for msg, rcpt in ((parse(raw), "alice"), (from_mbox, "mboxuser")):
            self.assertEqual(msg["Return-path"], "<sender@example.org>")
            self.assertEqual(msg["Envelope-to"], rcpt + "@test.example")
            self.assertTrue(msg["Delivery-date"])
            self.assertEqual(msg["Subject"], "one")
            self.assertEqual(msg.get_payload(), "body one\n")
            self.assertIn(received, msg.as_string())
        self.assertEqual(spool_listing(self.site), "")

    def test_local_submission_is_delivered(self):
        """`echo test | exim_py -C CONF bob@test.example` (background delivery, -odb)
        exits 0 and the message reaches bob's maildir, sent by the caller
        qualified with qualify_domain."""
        result = self.site.run("bob@test.example", input="test\n")
        self.assertEqual((result.returncode, result.stdout, result.stderr), (0, "", ""))
        wait_for(lambda: self.site.maildir("bob"), "a message in bob's maildir")
        [raw] = self.site.maildir("bob")
        msg = parse(raw)
        user = pwd.getpwuid(os.getuid()).pw_name
        self.assertEqual(msg["Return-path"], "<%s@test.example>" % user)
        self.assertEqual(msg["Envelope-to"], "bob@test.example")
        self.assertRegex(msg["Received"], r"^from %s by e2e\.test\.example with local \(Exim 4\.96\)" % user)
        self.assertEqual(msg.get_payload(), "test\n")
        [message_id] = re.findall(r"(\S+) <= ", self.site.mainlog())
        self.site.wait_completed(message_id)
        self.assertEqual(
            re.sub(r"S=\d+", "S=n", normalise_log(self.site.mainlog(), message_id)),
            "TIME ID1 <= %s@test.example U=%s P=local S=n\n"
            "TIME ID1 => bob <bob@test.example> R=maildir T=maildir\n"
            "TIME ID1 Completed\n" % (user, user))

    def test_unknown_local_user_refused_at_rcpt(self):
        """RCPT for a local part no router accepts gets Exim's 550, logged, and
        nothing is queued."""
        with smtplib.SMTP("127.0.0.1", self.daemon.port, local_hostname="client.example") as s:
            s.ehlo()
            s.mail("sender@example.org")
            self.assertEqual(s.rcpt("nobody@test.example"), (550, b"Unrouteable address"))
        wait_for(lambda: "rejected RCPT" in self.site.mainlog(), "the rejection")
        rejection = ("H=(client.example) [127.0.0.1] F=<sender@example.org> rejected RCPT "
                     "<nobody@test.example>: Unrouteable address\n")
        self.assertEqual(normalise_log(self.site.mainlog()), "TIME " + rejection)
        self.assertEqual(normalise_log(read_text(os.path.join(self.site.dir, "log", "rejectlog"))),
                         "TIME " + rejection)
        self.assertEqual(list(self.site.spool.message_ids()), [])

    def test_deferred_delivery_retried_with_M(self):
        """A :defer: redirect leaves the message queued (==, listed by -bp with
        its recipient); -M retries it (deferred again while the problem lasts);
        once it is fixed, -M delivers it and the queue is empty."""
        message_id = send_message(self.daemon.port, "sender@example.org", ["later@test.example"],
                                  "Subject: patience\n\nwait for it\n")
        wait_for(lambda: " == " in self.site.mainlog(), "the deferral")
        listing = spool_listing(self.site)
        self.assertRegex(listing, r"^ *\d+[smhd] +\d+ %s <sender@example\.org>\n"
                                  r" {10}later@test\.example\n\n$" % message_id)
        self.assertEqual(self.site.run("-M", message_id).returncode, 0)
        with open(os.path.join(self.site.dir, "ready"), "w"):
            pass
        result = self.site.run("-M", message_id)
        self.assertEqual((result.returncode, result.stderr), (0, ""))
        self.assertEqual(spool_listing(self.site), "")
        [raw] = self.site.maildir("later")
        self.assertEqual(parse(raw)["Subject"], "patience")
        self.assertEqual(normalise_log(self.site.mainlog(), message_id), (
            "TIME ID1 <= sender@example.org H=(client.example) [127.0.0.1] P=esmtp S=%d\n"
            "TIME ID1 == later@test.example R=later defer (-1): mailbox not ready yet\n"
            "TIME ID1 == later@test.example R=later defer (-1): mailbox not ready yet\n"
            "TIME ID1 => later <later@test.example> R=maildir T=maildir\n"
            "TIME ID1 Completed\n") % self.site.spool_size(message_id))

    def test_failure_returns_rfc3464_bounce(self):
        """A :fail: address produces a bounce to the sender: multipart/report
        (report-type=delivery-status) with a message/delivery-status part whose
        per-recipient fields give Final-Recipient, Action: failed and Status 5.x.x,
        and the original message returned; the logs link the bounce to its parent."""
        message_id = send_message(self.daemon.port, "alice@test.example", ["gone@test.example"],
                                  "Subject: two\n\nbody two\n")
        self.site.wait_completed(message_id)
        [raw] = self.site.maildir("alice")
        report = email.message_from_bytes(raw)
        self.assertEqual(report.get_content_type(), "multipart/report")
        self.assertEqual(report.get_param("report-type"), "delivery-status")
        self.assertEqual(report["Return-path"], "<>")
        self.assertEqual(report["To"], "alice@test.example")
        self.assertEqual(report["X-Failed-Recipients"], "gone@test.example")
        text, status, returned = report.get_payload()
        self.assertIn("gone@test.example\n    this mailbox is closed", text.get_payload())
        self.assertEqual(status.get_content_type(), "message/delivery-status")
        per_message, per_recipient = status.get_payload()
        self.assertEqual(per_message["Reporting-MTA"], "dns; e2e.test.example")
        self.assertEqual(per_recipient["Final-Recipient"], "rfc822;gone@test.example")
        self.assertEqual(per_recipient["Action"], "failed")
        self.assertRegex(per_recipient["Status"], r"^5\.\d+\.\d+$")
        self.assertEqual(returned.get_content_type(), "message/rfc822")
        [original] = returned.get_payload()
        self.assertEqual((original["Subject"], original.get_payload()), ("two", "body two\n"))
        self.assertEqual(re.sub(r"S=\d+", "S=n", normalise_log(self.site.mainlog())), (
            "TIME ID1 <= alice@test.example H=(client.example) [127.0.0.1] P=esmtp S=n\n"
            "TIME ID1 ** gone@test.example R=gone: this mailbox is closed\n"
            "TIME ID2 <= <> R=ID1 U=%s P=local S=n\n"
            "TIME ID2 => alice <alice@test.example> R=maildir T=maildir\n"
            "TIME ID2 Completed\n"
            "TIME ID1 Completed\n") % pwd.getpwuid(os.getuid()).pw_name)


PEER_CONFIG = """\
primary_hostname = peer.test.example
spool_directory = {dir}/spool
log_file_path = {dir}/log/%slog
keep_environment =
host_lookup =
rfc1413_hosts =
domainlist local_domains = relay.test.example
acl_smtp_rcpt = acl_rcpt

begin acl

acl_rcpt:
  deny    local_parts = ^reject
          message = no such user here
  defer   local_parts = ^defer
          message = try this one later
  accept  domains = +local_domains
  deny    message = relay not permitted

begin routers

local:
  driver = accept
  domains = +local_domains
  transport = maildir

begin transports

maildir:
  driver = appendfile
  directory = {dir}/Maildir
  maildir_format
  user = Debian-exim
  return_path_add
  envelope_to_add
"""


class MaildirPeer:
    """Debian's exim4 as a listening daemon that delivers relay.test.example into
    one maildir (it runs as Debian-exim, so its directories belong to that user)."""

    def __init__(self, test):
        self.binary = require_command("exim4", "Debian package exim4-daemon-heavy")
        # Under /tmp, not the trial directory: exim4 works as Debian-exim and
        # must be able to reach it.
        self.dir = tempfile.mkdtemp(prefix="exim_py-e2e-peer-")
        test.addCleanup(shutil.rmtree, self.dir, True)
        os.chmod(self.dir, 0o755)
        self.config = os.path.join(self.dir, "exim4.conf")
        with open(self.config, "w") as f:
            f.write(PEER_CONFIG.format(dir=self.dir))
        os.chmod(self.config, 0o644)
        for sub in ("spool", "log", "Maildir"):
            os.mkdir(os.path.join(self.dir, sub))
            shutil.chown(os.path.join(self.dir, sub), "Debian-exim", "Debian-exim")
        self.port = free_port()
        self.daemon = Daemon([self.binary, "-C", self.config, "-bdf", "-oX", str(self.port),
                              "-oP", os.path.join(self.dir, "exim.pid")], self.port)

    def mainlog(self):
        return read_text(os.path.join(self.dir, "log", "mainlog"))

    def messages(self):
        return [open(p, "rb").read()
                for p in glob.glob(os.path.join(self.dir, "Maildir", "new", "*"))]


class QueueRunnerTests(unittest.TestCase):
    """The daemon's own queue runner (-q<time>) with queue_only."""

    def test_queue_only_arrival_delivered_by_next_queue_run(self):
        """With queue_only and -q2s, an arrival is only queued; the daemon's next
        queue run (logged Start queue run / End queue run, as Exim) delivers it."""
        site = Site(self)
        site.macros.append("-DE2E_QUEUE_ONLY=yes")
        daemon = site.daemon("-q2s").start()
        self.addCleanup(daemon.stop)
        message_id = send_message(daemon.port, "sender@example.org", ["bob@test.example"],
                                  "Subject: queued\n\nlater, please\n")
        site.wait_completed(message_id)
        lines = [re.sub(r"pid=\d+", "pid=N", line)
                 for line in normalise_log(site.mainlog()).splitlines()]
        arrival = lines.index("TIME ID1 <= sender@example.org H=(client.example) [127.0.0.1] "
                              "P=esmtp S=%d" % site.spool_size(message_id))
        self.assertEqual(lines[arrival + 1:arrival + 5], [
            "TIME Start queue run: pid=N",
            "TIME ID1 => bob <bob@test.example> R=maildir T=maildir",
            "TIME ID1 Completed",
            "TIME End queue run: pid=N"])
        [raw] = site.maildir("bob")
        self.assertEqual(parse(raw)["Subject"], "queued")


class RelayTests(unittest.TestCase):
    """exim_py receives over SMTP and relays through its smtp transport to a real exim4."""

    def test_relay_to_exim4_peer(self):
        """A message for relay.test.example goes out by the manualroute router and the
        smtp transport (=> with H= and C="250 OK id=..." naming exim4's id); exim4
        delivers it to its maildir with both Received: headers, and exim_py's
        queue is empty."""
        peer = MaildirPeer(self)
        peer.daemon.start()
        self.addCleanup(peer.daemon.stop)
        site = Site(self)
        site.macros.append("-DE2E_PEER_PORT=%d" % peer.port)
        daemon = site.daemon().start()
        self.addCleanup(daemon.stop)
        message_id = send_message(daemon.port, "sender@example.org", ["carol@relay.test.example"],
                                  "Subject: onwards\n\nrelay me\n")
        site.wait_completed(message_id)
        [delivery] = [line for line in normalise_log(site.mainlog(), message_id).splitlines()
                      if " => " in line]
        # exim4 offers STARTTLS (a self-signed certificate) and CHUNKING: the
        # smtp transport uses both, as Exim does.
        match = re.match(r'TIME ID1 => carol@relay\.test\.example R=relay T=remote_smtp '
                         r'H=127\.0\.0\.1 \[127\.0\.0\.1\] X=TLS1\.3:\S+:256 CV=no K '
                         r'C="250- \d+ byte chunk, total \d+\\\\n250 OK id=ID2"$', delivery)
        self.assertTrue(match, delivery)
        peer_id = re.search(r'250 OK id=(\S+)"', site.mainlog()).group(1)
        wait_for(peer.messages, "the message in exim4's maildir")
        [raw] = peer.messages()
        msg = parse(raw)
        self.assertEqual(msg["Return-path"], "<sender@example.org>")
        self.assertEqual(msg["Envelope-to"], "carol@relay.test.example")
        self.assertEqual(msg.get_payload(), "relay me\n")
        peer_received, our_received = msg.get_all("Received")
        self.assertRegex(peer_received, r"^from \[127\.0\.0\.1\] \(helo=e2e\.test\.example\)\n"
                                        r"\tby peer\.test\.example with esmtps ")
        self.assertIn("id %s" % peer_id, peer_received)
        self.assertRegex(our_received, r"by e2e\.test\.example with esmtp \(Exim 4\.96\)")
        self.assertIn("id %s" % message_id, our_received)
        self.assertIn("%s <= sender@example.org H=(e2e.test.example) [127.0.0.1]" % peer_id,
                      peer.mainlog())
        self.assertEqual(spool_listing(site), "")


    def test_relay_requiring_verified_tls_and_auth(self):
        """With hosts_require_tls, tls_verify_hosts and hosts_require_auth, the
        smtp transport verifies exim4's certificate (the test PKI, name
        localhost), authenticates as fred with PLAIN and delivers: CV=yes and
        A=plain on exim_py's => line, P=esmtpsa and A=plain:fred on exim4's."""
        pki = ServerPKI(tempfile.mkdtemp(prefix="exim_py-e2e-pki-"))
        self.addCleanup(shutil.rmtree, pki.dir, True)
        leaf = pki.server("peer", ["localhost"])
        peer = EximPeer(tls_certificate=leaf.chain_path, tls_privatekey=leaf.key_path).start()
        self.addCleanup(peer.stop)
        site = Site(self)
        site.macros += ["-DE2E_PEER_PORT=%d" % peer.port, "-DE2E_PEER_HOST=localhost",
                        "-DE2E_PEER_CA=" + pki.root.cert_path]
        daemon = site.daemon().start()
        self.addCleanup(daemon.stop)
        message_id = send_message(daemon.port, "alice@test.example", ["carol@relay.test.example"],
                                  "Subject: secure\n\nbody\n")
        site.wait_completed(message_id)
        delivery = normalise_log(site.mainlog(), message_id).splitlines()[1]
        self.assertRegex(delivery, r"^TIME ID1 => carol@relay\.test\.example R=relay T=remote_smtp "
                                   r"H=localhost \[127\.0\.0\.1\] X=TLS1\.3:\S+ CV=yes A=plain K "
                                   r'C="250- \d+ byte chunk, total \d+\\\\n250 OK id=ID2"$')
        [(header, body)] = peer.messages()
        self.assertIn("\n-received_protocol esmtpsa\n", header)
        self.assertIn("\n--auth_id fred\n", header)
        self.assertEqual(body, b"body\n")
        self.assertRegex(peer.mainlog(), r" <= alice@test\.example H=\(e2e\.test\.example\) "
                                         r"\[127\.0\.0\.1\] P=esmtpsa X=\S+ CV=no A=plain:fred ")


class TlsAuthTests(unittest.TestCase):
    """STARTTLS with the test PKI's certificate, then AUTH PLAIN, into the daemon."""

    def test_starttls_then_auth_plain(self):
        """AUTH PLAIN is offered only after STARTTLS (server_advertise_condition);
        swaks verifies the certificate against the test CA, authenticates as fred
        and the message is delivered; the <= line carries X= and A=plain:fred and
        the Received: header says esmtpsa."""
        site = Site(self)
        daemon = site.daemon().start()
        self.addCleanup(daemon.stop)
        common = ["--server", "127.0.0.1:%d" % daemon.port, "--helo", "client.example",
                  "--from", "fred@example.org", "--to", "alice@test.example",
                  "--auth", "PLAIN", "--auth-user", "fred", "--auth-password", "secret"]
        cleartext = swaks(common, ok=False)
        self.assertNotIn("250-AUTH", cleartext)
        self.assertNotIn("Authentication succeeded", cleartext)
        out = swaks(common + ["--tls", "--tls-verify", "--tls-ca-path", site.ca_path,
                              "--tls-sni", "e2e.test.example",
                              "--header", "Subject: secret"])
        self.assertIn(" -> STARTTLS\n<-  220 TLS go ahead\n", out)
        self.assertIn("<~  235 Authentication succeeded", out)
        [message_id] = re.findall(r"<~  250 OK id=(\S+)", out)
        site.wait_completed(message_id)
        received = normalise_log(site.mainlog(), message_id).splitlines()[0]
        self.assertRegex(received, r"^TIME ID1 <= fred@example\.org H=\(client\.example\) "
                                   r"\[127\.0\.0\.1\] P=esmtpsa X=TLS1\.[23]:\S+:\d+ CV=no "
                                   r"A=plain:fred S=\d+ id=\S+$")
        [raw] = site.maildir("alice")
        msg = parse(raw)
        self.assertEqual(msg["Subject"], "secret")
        # Exim built with OpenSSL names the version as OpenSSL does (TLSv1.3).
        self.assertRegex(msg["Received"], r"\tby e2e\.test\.example with esmtpsa  \(TLSv1\.[23]\) "
                                          r"tls \S+\n\t\(Exim 4\.96\)\n")


class TwistdPluginTests(unittest.TestCase):
    """The same daemon under twistd, through twisted/plugins/exim_py_plugin.py."""

    def test_twistd_runs_exim_py(self):
        """`twistd --help` lists exim_py, and `twistd -n exim_py -C CONF --listen
        PORT` accepts a message over SMTP and delivers it."""
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        if not os.path.exists(twistd):
            raise unittest.SkipTest("no twistd next to " + sys.executable)
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        site = Site(self)
        listing = subprocess.run([twistd, "--help"], capture_output=True, text=True, env=env,
                                 cwd=site.dir, timeout=60)
        self.assertRegex(listing.stdout, r"\n +exim_py +exim_py mail transfer agent")
        port = free_port()
        daemon = Daemon([twistd, "-n", "--pidfile=", "exim_py", "-C", site.config]
                        + ["-D", site.macros[0][2:], "--listen", "127.0.0.1.%d" % port],
                        port, env=env)
        daemon.start()
        self.addCleanup(daemon.stop)
        message_id = send_message(port, "sender@example.org", ["alice@test.example"],
                                  "Subject: via twistd\n\nhello\n")
        site.wait_completed(message_id)
        [raw] = site.maildir("alice")
        self.assertEqual(parse(raw)["Subject"], "via twistd")
        self.assertIn("%s => alice <alice@test.example> R=maildir T=maildir" % message_id,
                      site.mainlog())


class CrashSafetyTests(unittest.TestCase):
    """SIGKILL of the daemon loses no acknowledged message (spec: a message is
    acknowledged only once its -H and -D files are on disk)."""

    CONNECTIONS = 20
    PER_CONNECTION = 10

    def test_sigkill_midway_loses_nothing(self):
        """200 messages over 20 concurrent connections into a queue_only daemon;
        SIGKILL after about half are acknowledged.  Every message that got its
        250 is then on the spool intact (-H parsed: sender, recipient; -D: the
        exact body).  Clients resend what was not acknowledged to a restarted
        daemon; a queue run (exim_py -q) is SIGKILLed halfway and a second one
        finishes: every message is in the maildir, none lost, each acknowledged
        id among the deliveries.  Duplicates (stored but not yet acknowledged at
        the first kill; delivered but not yet journalled at the second) are
        counted and logged."""
        site = Site(self)
        site.macros.append("-DE2E_QUEUE_ONLY=yes")
        daemon = site.daemon().start()
        self.addCleanup(lambda: current[0].stop())
        current = [daemon]
        acked = {}                      # token -> message id
        lock = threading.Lock()
        restarted = threading.Event()
        errors = []

        def client(number):
            todo = ["msg-%02d-%02d" % (number, i) for i in range(self.PER_CONNECTION)]
            while todo:
                try:
                    with smtplib.SMTP("127.0.0.1", daemon.port, local_hostname="client.example",
                                      timeout=30) as s:
                        s.ehlo()
                        while todo:
                            token = todo[0]
                            replies = [s.mail("sender@example.org"), s.rcpt("crash@test.example"),
                                       s.data("Subject: %s\n\n%s\n" % (token, body(token)))]
                            if [code for code, _ in replies] != [250, 250, 250]:
                                raise AssertionError(replies)
                            with lock:
                                acked[token] = re.match(rb"OK id=(\S+)", replies[2][1]).group(1).decode()
                            todo.pop(0)
                except smtplib.SMTPConnectError as e:
                    # 421 (smtp_accept_max, 20 by default: the readiness
                    # probe may still count): come back shortly, as MTAs do.
                    if e.smtp_code != 421:
                        errors.append((todo[0], e))
                        return
                    time.sleep(0.1)
                except (OSError, smtplib.SMTPException) as e:
                    # The daemon was killed under this connection: resend what
                    # was not acknowledged once it is back, as a client would.
                    if restarted.is_set():
                        errors.append((todo[0], e))
                        return
                    restarted.wait(60)
                except AssertionError as e:
                    errors.append((todo[0], e))
                    return

        threads = [threading.Thread(target=client, args=(n,)) for n in range(self.CONNECTIONS)]
        for t in threads:
            t.start()
        total = self.CONNECTIONS * self.PER_CONNECTION
        wait_for(lambda: len(acked) >= total // 2, "half the messages acknowledged", timeout=60)
        daemon.kill()
        with lock:
            before_kill = dict(acked)
        for token, message_id in before_kill.items():
            env = site.spool.read(message_id)
            self.assertEqual((env.sender, [r.address for r in env.recipients]),
                             ("sender@example.org", ["crash@test.example"]), message_id)
            self.assertEqual(site.spool.read_body(message_id), (body(token) + "\n").encode())
        current[0] = site.daemon()
        current[0].port = daemon.port
        current[0].argv[current[0].argv.index("-oX") + 1] = "127.0.0.1.%d" % daemon.port
        current[0].start()
        restarted.set()
        for t in threads:
            t.join(120)
        self.assertEqual((errors, len(acked)), ([], total))
        current[0].stop()
        # Now the delivery side: a queue run killed halfway, then another.
        runner = subprocess.Popen([exim_py_script()] + site.args("-q"), start_new_session=True,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(lambda: runner.poll() is None and os.killpg(runner.pid, signal.SIGKILL))
        wait_for(lambda: len(site.maildir("crash")) >= total // 2, "half the queue delivered")
        was_running = runner.poll() is None
        os.killpg(runner.pid, signal.SIGKILL)
        runner.wait()
        at_kill = len(site.maildir("crash"))
        result = site.run("-q")
        self.assertEqual((result.returncode, result.stderr), (0, ""))
        self.assertEqual(spool_listing(site), "")
        copies = {}                     # token -> {message id: deliveries}
        for raw in site.maildir("crash"):
            msg = parse(raw)
            token = msg["Subject"]
            self.assertEqual(msg.get_payload(), body(token) + "\n")
            message_id = re.search(r"\bid ([-0-9A-Za-z]+)", msg["Received"]).group(1)
            ids = copies.setdefault(token, {})
            ids[message_id] = ids.get(message_id, 0) + 1
        self.assertEqual(sorted(copies), sorted(acked))
        for token, message_id in acked.items():
            self.assertIn(message_id, copies[token])
        received_twice = sum(len(ids) - 1 for ids in copies.values())
        delivered_twice = sum(n - 1 for ids in copies.values() for n in ids.values())
        log.msg("crash safety: %d acknowledged before SIGKILL; %d stored twice (stored, "
                "not acknowledged, sent again); queue run killed after %d deliveries "
                "(running: %s); %d delivered twice"
                % (len(before_kill), received_twice, at_kill, was_running, delivered_twice))
        self.assertLessEqual(received_twice, self.CONNECTIONS)
        self.assertLessEqual(delivered_twice, 5)


def body(token):
    """A body that shows truncation or mixing: the token repeated on many lines."""
    return "\n".join("%s line %d" % (token, i) for i in range(40))


def normalise_mail(raw):
    """A delivered message with ids, dates, MIME boundaries and the local user
    that made a bounce replaced, for comparing exim_py's files with exim4's."""
    text = raw.decode("latin-1") if isinstance(raw, bytes) else raw
    text = MESSAGE_ID.sub("ID", text)
    text = re.sub(r"\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}", "DATE", text)
    text = re.sub(r"^From (\S+) \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}$", r"From \1 DATE", text,
                  flags=re.M)
    text = re.sub(r"\d+-eximdsn-\d+", "BOUNDARY", text)
    return re.sub(r"^Received: from (root|Debian-exim) by ", "Received: from USER by ", text,
                  flags=re.M)


def log_by_message(text):
    """The normalised mainlog as one list of lines per message, in order of
    arrival; exim4 delivers a bounce in another process, so lines of different
    messages interleave differently from run to run."""
    groups = {}
    for line in normalise_log(text).splitlines():
        line = re.sub(r" U=\S+ P=local S=\d+", " U=USER P=local S=n", line)
        # Cipher names: OpenSSL's (exim_py) and GnuTLS's (Debian's exim4).
        line = re.sub(r" X=TLS1\.3:\S+:256 ", " X=TLS1.3:CIPHER:256 ", line)
        words = line.split()
        if len(words) > 1 and words[1].startswith("ID"):
            groups.setdefault(words[1], []).append(line)
    return list(groups.values())


TRICKY = (b"Subject: awkward\r\n\r\n.leading dot\r\n..two dots\r\n.\r\nFrom the start\r\n"
          b">From quoted\r\n" + b"x" * 990 + b"\r\n8bit: \xe9\xe8\r\nbare\rcr and bare\nlf\r\n"
          b"last line without newline")


class SameAsEximTests(unittest.TestCase):
    """The same configuration and the same SMTP traffic through exim_py and
    through Debian's exim4: the same log lines and the same delivered bytes."""

    def run_site(self, command, peer):
        site = Site(self, owner="Debian-exim")
        port = free_port()
        daemon = Daemon([command, "-C", site.config, "-DE2E_DIR=" + site.dir,
                         "-DE2E_USER=Debian-exim", "-DE2E_PEER_PORT=%d" % peer.port,
                         "-oX", "127.0.0.1.%d" % port, "-bdf"], port)
        daemon.start()
        self.addCleanup(daemon.stop)
        first = send_message(port, "sender@example.org", ["alice@test.example", "mboxuser@test.example"],
                             "Subject: one\nX-Test: plain delivery\n\nbody one\n")
        site.wait_completed(first)
        second = send_message(port, "alice@test.example", ["gone@test.example"],
                              "Subject: two\n\nbody two\n")
        site.wait_completed(second)
        third = send_message(port, "alice@test.example", ["later@test.example"],
                             "Subject: three\n\nbody three\n")
        wait_for(lambda: "%s == " % third in site.mainlog(), "the deferral")
        fourth = send_message(port, "alice@test.example",
                              ["rejectme@relay.test.example", "deferme@relay.test.example",
                               "ok@relay.test.example"], "Subject: four\n\nbody four\n")
        wait_for(lambda: len(site.maildir("alice")) == 3 and
                 [len(lines) for lines in log_by_message(site.mainlog())] == [4, 3, 3, 2, 4, 3],
                 "every delivery and both bounces:\n" + site.mainlog())
        # RFC 3461/3464: headers only returned, an envelope id, the original
        # recipient, a success notification and a failure report.
        with smtplib.SMTP("127.0.0.1", port, local_hostname="client.example") as s:
            s.ehlo()
            s.mail("alice@test.example", ["RET=HDRS", "ENVID=env-123"])
            s.rcpt("bob@test.example", ["NOTIFY=SUCCESS", "ORCPT=rfc822;Bob@Test.Example"])
            s.rcpt("gone@test.example", ["NOTIFY=FAILURE"])
            self.assertEqual(s.data("Subject: five\n\nbody five\n")[0], 250)
        wait_for(lambda: len(site.maildir("alice")) == 5 and
                 [len(lines) for lines in log_by_message(site.mainlog())][6:] == [4, 3, 3],
                 "the success notification and the failure report:\n" + site.mainlog())
        # Transparency (RFC 5321 4.5.2), mbox From_ escaping, 8-bit data, bare
        # CR and LF, a long line and a last line without its newline, to a
        # maildir, an mbox and across SMTP to the next hop.
        with smtplib.SMTP("127.0.0.1", port, local_hostname="client.example") as s:
            s.ehlo()
            s.mail("alice@test.example", ["BODY=8BITMIME"])
            for rcpt in ("bob@test.example", "mboxuser@test.example", "ok@relay.test.example"):
                s.rcpt(rcpt)
            self.assertEqual(s.data(TRICKY)[0], 250)
        wait_for(lambda: len(site.maildir("bob")) == 2 and
                 len(log_by_message(site.mainlog())[9]) == 5, "the awkward message delivered")
        # A pipe and a file from a redirect router, and an autoreply.
        send_message(port, "alice@test.example",
                     ["piped@test.example", "filed@test.example", "away@test.example"],
                     "Subject: seven\n\nbody seven\n")
        wait_for(lambda: len(site.maildir("alice")) == 6 and
                 [len(lines) for lines in log_by_message(site.mainlog())][10:] == [5, 3],
                 "the pipe, file and autoreply deliveries:\n" + site.mainlog())
        daemon.stop()
        self.assertIn(fourth, site.mainlog())
        return site

    def test_same_logs_and_mail_as_exim4(self):
        """Plain delivery to a maildir and an mbox, a :fail: address with its
        bounce, a :defer: address, and a relayed message whose recipients the
        next hop (exim4) rejects, defers and accepts, and DSN parameters (RET=HDRS,
        ENVID, ORCPT, NOTIFY=SUCCESS / FAILURE), an awkward message (dots, From_,
        8-bit, bare CR/LF) and a pipe, a file and an autoreply from routers:
        exim_py's mainlog (per message), the bounces, the success notification,
        the autoreply and the maildir, mbox, file and pipe output equal exim4's
        once ids, dates and cipher names are normalised."""
        if os.getuid() != 0:
            raise unittest.SkipTest("exim4 with -C and local deliveries as Debian-exim need root")
        exim4 = require_command("exim4", "Debian package exim4-daemon-heavy")
        peer = MaildirPeer(self)
        peer.daemon.start()
        self.addCleanup(peer.daemon.stop)
        ours = self.run_site(exim_py_script(), peer)
        theirs = self.run_site(exim4, peer)
        self.assertEqual(log_by_message(ours.mainlog().replace(ours.dir, "DIR")),
                         log_by_message(theirs.mainlog().replace(theirs.dir, "DIR")))
        for user in ("alice", "bob"):
            self.assertEqual(sorted(normalise_mail(m) for m in ours.maildir(user)),
                             sorted(normalise_mail(m) for m in theirs.maildir(user)))
        self.assertEqual(normalise_mail(read_text(os.path.join(ours.dir, "mbox", "mboxuser"))),
                         normalise_mail(read_text(os.path.join(theirs.dir, "mbox", "mboxuser"))))
        for name in ("piped", "filed"):
            self.assertEqual(normalise_mail(read_text(os.path.join(ours.dir, "mbox", name))),
                             normalise_mail(read_text(os.path.join(theirs.dir, "mbox", name))))
        self.assertIn("\nSubject: seven\n\nbody seven\n",
                      read_text(os.path.join(ours.dir, "mbox", "piped")))
        relayed = sorted(normalise_mail(m) for m in peer.messages() if b"awkward" in m)
        self.assertEqual(len(relayed), 2)
        self.assertEqual(relayed[0], relayed[1])
        # Run as root, exim_py gives the files to the transport's user, as exim4 does.
        exim_uid = pwd.getpwnam("Debian-exim").pw_uid
        self.assertEqual({os.stat(p).st_uid for p in glob.glob(os.path.join(
            ours.dir, "mail", "alice", "Maildir", "new", "*"))}, {exim_uid})
        self.assertEqual(os.stat(os.path.join(ours.dir, "mbox", "mboxuser")).st_uid, exim_uid)

    def test_bs_session_same_as_exim4(self):
        """An SMTP session on standard input (-bs, a local program): the message
        is delivered before the command exits, as a local message (Message-Id:,
        From: and Date: added, P=local-esmtp); the log and the delivered message
        equal exim4's."""
        if os.getuid() != 0:
            raise unittest.SkipTest("exim4 with -C and local deliveries as Debian-exim need root")
        exim4 = require_command("exim4", "Debian package exim4-daemon-heavy")
        dialogue = (b"EHLO me\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<alice@test.example>\r\n"
                    b"DATA\r\nSubject: bs\r\n\r\nvia -bs\r\n.\r\nQUIT\r\n")
        results = []
        for command in (exim_py_script(), exim4):
            site = Site(self, owner="Debian-exim")
            result = subprocess.run([command, "-C", site.config, "-DE2E_DIR=" + site.dir,
                                     "-DE2E_USER=Debian-exim", "-bs"], input=dialogue,
                                    capture_output=True, timeout=60)
            self.assertEqual(result.returncode, 0)
            self.assertIn(b"\r\n221 ", result.stdout)
            if command != exim4:
                # exim_py delivers in the receiving process, before it exits.
                self.assertEqual(len(site.maildir("alice")), 1)
            # exim4 delivers in a process of its own, which may outlive the session.
            wait_for(lambda: site.maildir("alice"), "the delivery")
            [message_id] = re.findall(r"(\S+) <= ", site.mainlog())
            site.wait_completed(message_id)
            results.append((log_by_message(site.mainlog()),
                            [normalise_mail(m) for m in site.maildir("alice")]))
        self.assertEqual(results[0], results[1])
        [[arrival, _, _]], [delivered] = results[0]
        self.assertEqual(arrival, "TIME ID1 <= a@example.org U=root P=local-esmtp S=320")
        self.assertIn("\nMessage-Id: <EID@e2e.test.example>\nFrom: a@example.org\nDate: DATE\n",
                      delivered)

    def test_remote_retry_same_as_exim4(self):
        """A relayed message whose next hop is down: the deferral (Connection
        refused), a queue run before the retry time (-54 retry time not reached),
        and once the host is up a forced run (-qf) that delivers it: the same log
        lines as exim4, and the queue empty at the end."""
        if os.getuid() != 0:
            raise unittest.SkipTest("exim4 with -C and local deliveries as Debian-exim need root")
        exim4 = require_command("exim4", "Debian package exim4-daemon-heavy")
        peer = MaildirPeer(self)          # not started yet: its port refuses connections
        sites = []
        for command in (exim_py_script(), exim4):
            site = Site(self, owner="Debian-exim")
            base = [command, "-C", site.config, "-DE2E_DIR=" + site.dir, "-DE2E_USER=Debian-exim",
                    "-DE2E_PEER_PORT=%d" % peer.port]
            for args, text in ((["-odi", "carol@relay.test.example"], b"Subject: retry\n\nbody\n"),
                               (["-q"], None)):
                result = subprocess.run(base + args, input=text, capture_output=True, timeout=60)
                self.assertEqual(result.returncode, 0, result.stderr)
            sites.append((site, base))
        peer.daemon.start()
        self.addCleanup(peer.daemon.stop)
        logs = []
        for site, base in sites:
            self.assertEqual(subprocess.run(base + ["-qf"], capture_output=True,
                                            timeout=60).returncode, 0)
            site.wait_completed(re.search(r"(\S+) <= ", site.mainlog()).group(1))
            self.assertEqual(subprocess.run(base + ["-bp"], capture_output=True, text=True,
                                            timeout=60).stdout, "")
            lines = [re.sub(r"pid=\d+", "pid=N", line) for group in log_by_message(site.mainlog())
                     for line in group] + [
                re.sub(r"pid=\d+", "pid=N", line)
                for line in normalise_log(site.mainlog()).splitlines() if "queue run" in line]
            logs.append(lines)
        ours, theirs = logs
        # exim4 also writes a line per failed host ("H=127.0.0.1 [127.0.0.1]
        # Connection refused"), which exim_py's smtp transport does not write yet.
        self.assertIn("TIME ID1 H=127.0.0.1 [127.0.0.1] Connection refused", theirs)
        theirs.remove("TIME ID1 H=127.0.0.1 [127.0.0.1] Connection refused")
        self.assertEqual(ours, theirs)
        self.assertEqual(ours[:3] + ours[4:], [
            "TIME ID1 <= root@test.example U=USER P=local S=n",
            "TIME ID1 == carol@relay.test.example R=relay T=remote_smtp defer (111): "
            "Connection refused",
            "TIME ID1 == carol@relay.test.example R=relay T=remote_smtp defer (-54): "
            "retry time not reached for any host for 'relay.test.example'",
            "TIME ID1 Completed",
            "TIME Start queue run: pid=N",
            "TIME End queue run: pid=N",
            "TIME Start queue run: pid=N -qf",
            "TIME End queue run: pid=N -qf"])
        self.assertTrue(ours[3].startswith("TIME ID1 => carol@relay.test.example R=relay "
                                           "T=remote_smtp H=127.0.0.1 [127.0.0.1] "), ours[3])
