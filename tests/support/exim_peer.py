"""Debian's real exim4 as the receiving MTA for the smtp client tests.

``EximPeer`` writes a small configuration (root-owned, as Exim insists for
-C), makes a spool owned by Debian-exim, and runs ``exim4 -bdf`` in its own
process group on a free loopback port.  Messages it accepts stay on its
queue (``queue_only``), so a test reads exactly what arrived from the -H and
-D spool files.

The configuration's policy is driven by local parts, so one peer serves many
tests: RCPT rejects ``reject*`` (550) and defers ``defer*`` (451); the PRDR
ACL rejects ``prdrreject*`` and defers ``prdrdefer*``; MAIL rejects the
sender ``bad@sender.example``; the DATA ACL rejects bodies containing
``REJECT-THIS-MESSAGE``.  AUTH PLAIN, LOGIN and CRAM-MD5 accept user
``fred`` with password ``secret``.
"""

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from tests.support.peers import require_command

CONFIG = """\
primary_hostname = peer.test.example
qualify_domain = test.example
spool_directory = {dir}/spool
log_file_path = {dir}/log/%slog
pid_file_path = {dir}/exim.pid
keep_environment =
host_lookup =
rfc1413_hosts =
queue_only = true
daemon_smtp_ports = {port}
local_interfaces = 127.0.0.1
smtp_accept_max = 50
prdr_enable = true
pipelining_advertise_hosts = {pipelining}
chunking_advertise_hosts = {chunking}
dsn_advertise_hosts = {dsn}
auth_advertise_hosts = *
tls_advertise_hosts = {tls_advertise}
{tls_lines}
acl_smtp_mail = acl_mail
acl_smtp_rcpt = acl_rcpt
acl_smtp_data_prdr = acl_prdr
acl_smtp_data = acl_data
{extra}

begin acl

acl_mail:
  deny    senders = bad@sender.example
          message = sender not welcome here
  accept

acl_rcpt:
  deny    local_parts = ^reject
          message = no such user here
  defer   local_parts = ^defer
          message = try this one later
  accept

acl_prdr:
  deny    local_parts = ^prdrreject
          message = this recipient does not want this message
  defer   local_parts = ^prdrdefer
          message = this recipient cannot take it right now
  accept

acl_data:
  deny    condition = ${{if match{{$message_body}}{{REJECT-THIS-MESSAGE}}}}
          message = content rejected
  accept

begin routers

everything:
  driver = redirect
  data = :blackhole:

begin authenticators

plain:
  driver = plaintext
  public_name = PLAIN
  server_condition = ${{if and {{{{eq{{$auth2}}{{fred}}}}{{eq{{$auth3}}{{secret}}}}}}}}
  server_set_id = $auth2

login:
  driver = plaintext
  public_name = LOGIN
  server_prompts = Username:: : Password::
  server_condition = ${{if and {{{{eq{{$auth1}}{{fred}}}}{{eq{{$auth2}}{{secret}}}}}}}}
  server_set_id = $auth1

cram:
  driver = cram_md5
  public_name = CRAM-MD5
  server_secret = ${{if eq{{$auth1}}{{fred}}{{secret}}fail}}
  server_set_id = $auth1
"""


def free_port():
    """A loopback TCP port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EximPeer:
    """A running exim4 daemon; call ``stop()`` (tests use ``addCleanup``)."""

    def __init__(self, tls_certificate=None, tls_privatekey=None, tls_ocsp_file=None,
                 pipelining=True, chunking=True, dsn=True, tls=True, extra="",
                 tls_on_connect=False):
        self.binary = require_command("exim4", "Debian package exim4-daemon-heavy")
        self.dir = tempfile.mkdtemp(prefix="exim-peer-")
        os.chmod(self.dir, 0o755)
        self.port = free_port()
        tls_lines = []
        if tls_certificate:
            tls_lines.append("tls_certificate = %s" % (tls_certificate,))
            tls_lines.append("tls_privatekey = %s" % (tls_privatekey or tls_certificate,))
        if tls_ocsp_file:
            tls_lines.append("tls_ocsp_file = %s" % (tls_ocsp_file,))
        if tls_on_connect:
            tls_lines.append("tls_on_connect_ports = %d" % (self.port,))
        self.config = os.path.join(self.dir, "exim.conf")
        with open(self.config, "w") as f:
            f.write(CONFIG.format(
                dir=self.dir, port=self.port, tls_lines="\n".join(tls_lines), extra=extra,
                pipelining="*" if pipelining else "", chunking="*" if chunking else "",
                dsn="*" if dsn else "", tls_advertise="*" if (tls and tls_certificate) else ""))
        os.chmod(self.config, 0o644)
        for sub in ("spool", "log"):
            os.mkdir(os.path.join(self.dir, sub))
            shutil.chown(os.path.join(self.dir, sub), "Debian-exim", "Debian-exim")
        self.process = None

    def start(self, timeout=10):
        """Start the daemon and wait until it accepts connections."""
        self.process = subprocess.Popen(
            [self.binary, "-C", self.config, "-bdf", "-oX", str(self.port),
             "-oP", os.path.join(self.dir, "exim.pid")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("exim4 exited: %s\n%s" % (
                    self.process.stderr.read().decode(errors="replace"), self.mainlog()))
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError("exim4 did not start listening on port %d" % (self.port,))

    def stop(self):
        """Stop the daemon and every child it forked (they share its process group)."""
        if self.process is not None and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self.process is not None:
            self.process.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def mainlog(self):
        path = os.path.join(self.dir, "log", "mainlog")
        if not os.path.exists(path):
            return ""
        with open(path, errors="replace") as f:
            return f.read()

    def messages(self):
        """Messages on the peer's queue as ``(header_file_text, body_bytes)``, oldest first."""
        out = []
        for h_path in sorted(glob.glob(os.path.join(self.dir, "spool", "input", "*-H"))):
            with open(h_path, errors="replace") as f:
                header = f.read()
            with open(h_path[:-1] + "D", "rb") as f:
                body = f.read().split(b"\n", 1)[1]
            out.append((header, body))
        return out
