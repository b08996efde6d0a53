"""The dovecot authenticator against a real Dovecot, with exim4 as the oracle.

A private Dovecot (its own base_dir, a passwd-file with one user, no
protocols) offers PLAIN and LOGIN on its auth-client socket, both as a Unix
socket and on a loopback TCP port.  exim_py's daemon and exim4's run the same
configuration; each dialogue is played against both, and the replies and the
log lines they write must be the same.
"""

import base64
import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import time

from twisted.internet import defer, threads
from twisted.trial import unittest

from tests.support.end_to_end import Daemon, exim_py_script, free_port, read_text, wait_for
from tests.support.peers import require_command

DOVECOT_CONF = """\
protocols =
base_dir = {dir}/run
state_dir = {dir}/state
log_path = {dir}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
passdb {{
  driver = passwd-file
  args = {dir}/passwd
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={dir}
}}
service auth {{
  unix_listener auth-client {{
    mode = 0666
  }}
  inet_listener auth-inet {{
    address = 127.0.0.1
    port = {port}
  }}
}}
service anvil {{
  chroot =
}}
"""

EXIM_CONF = """\
primary_hostname = peer.test.example
spool_directory = {dir}/spool
log_file_path = {dir}/log/%slog
keep_environment =
host_lookup =
queue_only = true
acl_smtp_rcpt = accept
begin authenticators
plain:
  driver = dovecot
  public_name = PLAIN
  server_socket = 127.0.0.1 {dovecot_port}
  server_set_id = $auth1
login:
  driver = dovecot
  public_name = LOGIN
  server_socket = {dovecot_dir}/run/auth-client
  server_set_id = $auth1
cram:
  driver = dovecot
  public_name = CRAM-MD5
  server_socket = {dovecot_dir}/run/auth-client
nodovecot:
  driver = dovecot
  public_name = XNONE
  server_socket = {dovecot_dir}/run/no-such-socket
recorded:
  driver = dovecot
  public_name = XREC
  server_socket = 127.0.0.1 {recorder_port}
"""

LOG_TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ", re.M)
MESSAGE_ID = re.compile(r"\b[0-9A-Za-z]{6}-[0-9A-Za-z]{6}-[0-9A-Za-z]{2}\b")


def b64(data):
    return base64.b64encode(data).decode("ascii")


class Dovecot:
    """A private Dovecot whose auth service listens on a socket and a port."""

    def __init__(self):
        binary = require_command("dovecot", "Debian package dovecot-core")
        self.dir = tempfile.mkdtemp(prefix="dovecot-auth-")
        os.chmod(self.dir, 0o755)
        self.port = free_port()
        for sub in ("run", "state"):
            os.mkdir(os.path.join(self.dir, sub))
        with open(os.path.join(self.dir, "passwd"), "w") as f:
            f.write("goodman:{PLAIN}secret::::::\n")
        config = os.path.join(self.dir, "dovecot.conf")
        with open(config, "w") as f:
            f.write(DOVECOT_CONF.format(dir=self.dir, port=self.port))
        self.process = subprocess.Popen([binary, "-F", "-c", config], stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True)
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                if os.path.exists(os.path.join(self.dir, "run", "auth-client")):
                    break
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError("dovecot did not start:\n" + read_text(
                    os.path.join(self.dir, "dovecot.log")))
            time.sleep(0.05)

    def stop(self):
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class _Site:
    """One MTA's directory and daemon, on the shared configuration."""

    def __init__(self, argv0, dovecot, recorder_port, owner=None):
        self.dir = tempfile.mkdtemp(prefix="dovecot-mta-")
        os.chmod(self.dir, 0o755)
        for sub in ("spool", "log"):
            os.mkdir(os.path.join(self.dir, sub))
            if owner:
                shutil.chown(os.path.join(self.dir, sub), owner, owner)
        config = os.path.join(self.dir, "exim.conf")
        with open(config, "w") as f:
            f.write(EXIM_CONF.format(dir=self.dir, dovecot_port=dovecot.port,
                                     dovecot_dir=dovecot.dir, recorder_port=recorder_port))
        os.chmod(config, 0o644)
        self.port = free_port()
        self.daemon = Daemon(argv0 + ["-C", config, "-oX", "127.0.0.1.%d" % self.port, "-bdf"],
                             self.port).start()

    def log(self):
        """The mainlog after the daemon-started line, with times and ids replaced."""
        text = read_text(os.path.join(self.dir, "log", "mainlog"))
        lines = [line for line in text.splitlines() if " daemon started: " not in line]
        return [MESSAGE_ID.sub("ID", LOG_TIME.sub("", line)) for line in lines]

    def stop(self):
        self.daemon.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def converse(port, lines):
    """EHLO, then each of ``lines`` (a command, an answer to a 334, or a
    message's lines ending with the dot) with its reply; then QUIT.  The
    replies as (code, text) pairs."""
    replies = []
    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.example", timeout=20) as s:
        s.ehlo()
        for line in lines:
            s.send(line.encode("ascii") + b"\r\n")
            code, text = s.getreply()
            replies.append((code, MESSAGE_ID.sub("ID", text.decode())))
    return replies


class _Recorder:
    """Plays Dovecot's auth socket for one connection at a time, as Exim's
    test 3901 does: it offers XREC, keeps the request it is sent and says OK."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.requests = []

    def serve(self):
        conn, _ = self.listener.accept()
        with conn:
            conn.settimeout(10)
            conn.sendall(b"VERSION\t1\t2\nMECH\tXREC\tplaintext\nSPID\t7\nCUID\t1\nDONE\n")
            data = b""
            while b"\nAUTH\t" not in data or not data.endswith(b"\n"):
                data += conn.recv(4096)
            self.requests.append(data.decode())
            conn.sendall(b"OK\t1\tuser=recorded\n")

    def close(self):
        self.listener.close()


class DovecotAuthenticatorTests(unittest.TestCase):
    """AUTH through Dovecot: exim_py and exim4 give the same replies and logs."""

    def setUp(self):
        dovecot = Dovecot()
        self.addCleanup(dovecot.stop)
        self.recorder = _Recorder()
        self.addCleanup(self.recorder.close)
        self.ours = _Site([exim_py_script()], dovecot, self.recorder.port)
        self.addCleanup(self.ours.stop)
        self.theirs = _Site([require_command("exim4", "Debian package exim4-daemon-heavy")],
                            dovecot, self.recorder.port, owner="Debian-exim")
        self.addCleanup(self.theirs.stop)

    @defer.inlineCallbacks
    def both(self, lines, log_lines=0):
        """The replies of exim_py and exim4 to ``lines``, checked equal; with
        ``log_lines``, the last that many new mainlog lines of each, checked
        equal too.  Returns exim_py's replies and log lines."""
        before = [len(self.ours.log()), len(self.theirs.log())]
        ours, theirs = yield defer.gatherResults([
            threads.deferToThread(converse, self.ours.port, lines),
            threads.deferToThread(converse, self.theirs.port, lines)])
        self.assertEqual(ours, theirs)
        logs = []
        for site, start in zip((self.ours, self.theirs), before):
            wait_for(lambda: len(site.log()) >= start + log_lines, "%d log lines" % log_lines)
            logs.append(site.log()[start:])
        self.assertEqual(logs[0], logs[1])
        return ours, logs[0]

    @defer.inlineCallbacks
    def test_plain_initial_response_over_tcp(self):
        """PLAIN with the credentials on the AUTH command, Dovecot on a TCP
        port: 235, and the message received is logged with A=plain:goodman."""
        replies, log = yield self.both(
            ["AUTH PLAIN " + b64(b"\0goodman\0secret"), "MAIL FROM:<a@b.example>",
             "RCPT TO:<c@d.example>", "DATA", "Subject: x\r\n\r\nbody\r\n."], log_lines=1)
        self.assertEqual(replies[0], (235, "Authentication succeeded"))
        self.assertRegex(log[0], r"^ID <= a@b.example H=\(client.example\) \[127.0.0.1\] "
                                 r"P=esmtpa A=plain:goodman S=\d+")

    @defer.inlineCallbacks
    def test_plain_challenge_and_wrong_password(self):
        """PLAIN without an initial response: Dovecot's empty challenge is an
        empty 334; a wrong password is 535, logged with set_id from Dovecot's
        user field."""
        replies, log = yield self.both(["AUTH PLAIN", b64(b"\0goodman\0wrong")], log_lines=1)
        self.assertEqual(replies, [(334, ""), (535, "Incorrect authentication data")])
        self.assertEqual(log, ["plain authenticator failed for (client.example) [127.0.0.1]: "
                               "535 Incorrect authentication data (set_id=goodman)"])

    @defer.inlineCallbacks
    def test_login_over_unix_socket(self):
        """LOGIN through the Unix socket: Dovecot's prompts are relayed as they
        are, and the answers go back to it."""
        replies, _ = yield self.both(["AUTH LOGIN", b64(b"goodman"), b64(b"secret")])
        self.assertEqual(replies, [(334, "VXNlcm5hbWU6"), (334, "UGFzc3dvcmQ6"),
                                   (235, "Authentication succeeded")])

    @defer.inlineCallbacks
    def test_cancel(self):
        """A ``*`` answer cancels the exchange: 501."""
        replies, _ = yield self.both(["AUTH LOGIN", "*"])
        self.assertEqual(replies[-1], (501, "Authentication cancelled"))

    @defer.inlineCallbacks
    def test_mechanism_dovecot_does_not_offer(self):
        """A public_name missing from Dovecot's MECH lines: 435, and the reason
        in the log."""
        replies, log = yield self.both(["AUTH CRAM-MD5"], log_lines=1)
        self.assertEqual(replies, [(435, "Unable to authenticate at present")])
        self.assertEqual(log, ["cram authenticator failed for (client.example) [127.0.0.1]: "
                               "435 Unable to authenticate at present: Dovecot did not "
                               'advertise mechanism "CRAM-MD5" to us'])

    @defer.inlineCallbacks
    def test_socket_missing(self):
        """No Dovecot behind server_socket: 435, logged with the connect error."""
        replies, log = yield self.both(["AUTH XNONE"], log_lines=1)
        self.assertEqual(replies, [(435, "Unable to authenticate at present")])
        self.assertRegex(log[0], r"^nodovecot authenticator failed for \(client.example\) "
                                 r"\[127.0.0.1\]: 435 Unable to authenticate at present: "
                                 r"unable to connect to UNIX socket \(.*/no-such-socket\): "
                                 r"No such file or directory$")

    @defer.inlineCallbacks
    def test_request_as_exim_sends_it(self):
        """What goes to Dovecot, byte for byte as exim4 sends it (the process
        id aside): VERSION, CPID, then AUTH with service, "secured" for a
        local client, the addresses, "nologin" and the initial response."""
        requests = []
        for site in (self.ours, self.theirs):
            served = threads.deferToThread(self.recorder.serve)
            replies = yield threads.deferToThread(converse, site.port,
                                                  ["AUTH XREC " + b64(b"\0u\0p")])
            yield served
            self.assertEqual(replies, [(235, "Authentication succeeded")])
            requests.append(re.sub(r"CPID\t\d+", "CPID\tPID", self.recorder.requests[-1]))
        self.assertEqual(requests[0], requests[1])
        self.assertEqual(requests[0], "VERSION\t1\t0\nCPID\tPID\nAUTH\t1\tXREC\tservice=smtp\t"
                                      "secured\trip=127.0.0.1\tlip=127.0.0.1\tnologin\t"
                                      "resp=AHUAcA==\n")
