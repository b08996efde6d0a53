"""What the end-to-end tests share: running exim_py (and exim4) as a user
would, one configuration for every scenario, and normalising what they write.

``Site`` is a directory with that configuration, its mail directories and a
TLS key pair; ``Daemon`` a listening process in its own process group;
``MaildirPeer`` Debian's exim4 as a next hop that delivers into a maildir.
``normalise_log``, ``log_by_message`` and ``normalise_mail`` replace ids,
times and other run-dependent text, so that runs (and exim4's output)
compare equal.
"""

import email
import email.policy
import glob
import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time

from twisted.trial import unittest

from exim_py.spool import Spool
from tests.support.peers import require_command
from tests.support.pki import ServerPKI

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

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


DAEMON_STARTED = re.compile(r"^\S+ \S+ exim \S+ daemon started: ")


def normalise_log(text, *message_ids):
    """Log lines with times replaced by TIME and message ids by ID1, ID2 ... in
    order of appearance; only lines naming one of ``message_ids`` when given.

    The daemon's "daemon started" line (its pid and ports vary) is left out:
    tests/test_daemon.py pins its text against exim4's.
    """
    lines = [line for line in text.splitlines() if not DAEMON_STARTED.search(line)]
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
