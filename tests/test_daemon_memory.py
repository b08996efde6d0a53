"""Memory of daemon processes: what they load (exim_py/daemon_imports.py:
a daemon that offers TLS to no client runs without pyOpenSSL and
cryptography, and still starts TLS when it needs it) and what each idle
session holds.  The figures are bench/idle_memory_bench.py's.
"""

import copy
import os
import signal
import smtplib
import subprocess
import sys
import time

from twisted.trial import unittest

from exim_py.envelope import Session
from tests.support.end_to_end import MaildirPeer, Site, normalise_log, send_message
from tests.support.peers import require_command
from tests.test_daemon import ROOT, DaemonProcess
from tests.test_smtp_server import Dialogue, make_policy

# the shared library of the cryptography package, which pyOpenSSL needs
CRYPTOGRAPHY_LIBRARY = "cryptography/hazmat/bindings/_rust"


def process_tree(pid):
    """``pid`` and its children (the daemon's workers)."""
    with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
        return [pid] + [int(p) for p in f.read().split()]


def maps_text(pid):
    with open("/proc/%d/maps" % pid) as f:
        return f.read()


class DeferTwistedTLSTests(unittest.TestCase):
    """daemon_imports.defer_twisted_tls on its own, in a fresh interpreter."""

    def run_python(self, code):
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                             env=dict(os.environ, PYTHONPATH=ROOT), timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        return out.stdout.split()

    def test_reactor_modules_without_openssl(self):
        """Twisted's TCP transports keep startTLS, pyOpenSSL stays unimported, and a
        later import of twisted.protocols.tls gives the real module."""
        self.assertEqual(self.run_python(
            "import sys\n"
            "from exim_py import daemon_imports\n"
            "print(daemon_imports.defer_twisted_tls())\n"
            "from twisted.internet import _newtls, tcp\n"
            "import twisted.internet.epollreactor\n"
            "print(tcp.Server.startTLS is _newtls.ConnectionMixin.startTLS)\n"
            "print('OpenSSL' in sys.modules)\n"
            "from twisted.protocols import tls\n"
            "print(hasattr(tls, 'TLSMemoryBIOProtocol'), 'OpenSSL' in sys.modules)\n"),
            ["True", "True", "False", "True", "True"])

    def test_too_late_is_refused(self):
        """Once Twisted's TCP module is imported (with pyOpenSSL), nothing is changed."""
        self.assertEqual(self.run_python(
            "from twisted.internet import tcp\n"
            "from exim_py import daemon_imports\n"
            "print(daemon_imports.defer_twisted_tls())\n"), ["False"])


class DeferredTLSTests(unittest.TestCase):
    """pyOpenSSL is imported only by a process that needs TLS."""

    def daemon(self, extra, processes=1):
        d = DaemonProcess(self, extra)
        with open(d.conf_path) as f:
            text = f.read()
        with open(d.conf_path, "w") as f:
            f.write(text.replace("smtp_banner = mx.test.example ESMTP Exim 4.96", "smtp_banner = $pid"))
        d.start(processes=processes)
        self.addCleanup(d.stop)
        return d

    def send(self, d):
        """One message; returns (the pid in the banner, the EHLO keywords, the reply to DATA)."""
        with smtplib.SMTP(timeout=20) as s:
            pid = int(s.connect("127.0.0.1", d.port)[1].split()[0])
            s.ehlo("client.example")
            features = set(s.esmtp_features)
            s.mail("a@b.example")
            s.rcpt("c@d.example")
            return pid, features, s.data("Subject: t\r\n\r\nhi\r\n")

    def test_no_tls_libraries_without_tls(self):
        """With tls_advertise_hosts empty, neither the first process nor the
        worker maps cryptography's library, even after each received a message."""
        d = self.daemon("queue_only\ntls_advertise_hosts =", processes=2)
        served = set()
        deadline = time.monotonic() + 30
        while len(served) < 2 and time.monotonic() < deadline:
            pid, features, (code, _) = self.send(d)
            self.assertEqual(code, 250)
            self.assertNotIn("starttls", features)
            served.add(pid)
        pids = process_tree(d.process.pid)
        self.assertEqual(served, set(pids))
        for pid in pids:
            self.assertNotIn(CRYPTOGRAPHY_LIBRARY, maps_text(pid), pid)

    def test_tls_libraries_when_tls_is_offered(self):
        """When STARTTLS is advertised (tls_advertise_hosts unset means *), the
        libraries are loaded before the first session, as before."""
        d = self.daemon("queue_only")
        _, features, (code, _) = self.send(d)
        self.assertEqual(code, 250)
        self.assertIn("starttls", features)
        self.assertIn(CRYPTOGRAPHY_LIBRARY, maps_text(d.process.pid))

    def test_starttls_after_reload_offering_tls(self):
        """A daemon started without the TLS libraries, reloaded (SIGHUP) with
        tls_advertise_hosts = *, completes STARTTLS with a real client (swaks)
        and accepts the message over TLS."""
        swaks = require_command("swaks")
        d = self.daemon("queue_only\ntls_advertise_hosts =")
        self.assertNotIn(CRYPTOGRAPHY_LIBRARY, maps_text(d.process.pid))
        with open(d.conf_path) as f:
            text = f.read()
        with open(d.conf_path, "w") as f:
            f.write(text.replace("tls_advertise_hosts =", "tls_advertise_hosts = *"))
        d.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with smtplib.SMTP("127.0.0.1", d.port, timeout=20) as s:
                s.ehlo("client.example")
                if s.has_extn("starttls"):
                    break
            time.sleep(0.05)
        out = subprocess.run([swaks, "--tls", "-s", "127.0.0.1", "-p", str(d.port), "-f", "a@b.example",
                              "-t", "c@d.example", "--timeout", "20"], capture_output=True, text=True)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertIn("TLS started", out.stdout)
        self.assertIn(CRYPTOGRAPHY_LIBRARY, maps_text(d.process.pid))
        with open(d.spool_dir + "/mainlog") as f:
            self.assertRegex(f.read(), r" <= a@b\.example .* X=TLS1\.\d:")

    def test_outgoing_starttls_without_server_tls(self):
        """A daemon that offers TLS to no client still relays over STARTTLS:
        its smtp transport loads the TLS libraries when the next hop (a real
        exim4) offers STARTTLS, and the => line shows the TLS it used."""
        peer = MaildirPeer(self)
        peer.daemon.start()
        self.addCleanup(peer.daemon.stop)
        site = Site(self)
        with open(site.config) as f:
            text = f.read()
        with open(site.config, "w") as f:
            f.write(text.replace("tls_advertise_hosts = *", "tls_advertise_hosts ="))
        site.macros.append("-DE2E_PEER_PORT=%d" % peer.port)
        daemon = site.daemon().start()
        self.addCleanup(daemon.stop)
        self.assertNotIn(CRYPTOGRAPHY_LIBRARY, maps_text(daemon.process.pid))
        message_id = send_message(daemon.port, "sender@example.org", ["carol@relay.test.example"],
                                  "Subject: onwards\n\nrelay me\n")
        site.wait_completed(message_id)
        [delivery] = [line for line in normalise_log(site.mainlog(), message_id).splitlines()
                      if " => " in line]
        self.assertRegex(delivery, r" T=remote_smtp H=127\.0\.0\.1 \[127\.0\.0\.1\] X=TLS1\.3:\S+:256 ")


class IdleSessionStateTests(unittest.TestCase):
    """What each open session holds stays small (slots, shared EHLO keywords)
    without changing what the rest of exim_py can do with it."""

    def test_sessions_share_their_ehlo_keywords(self):
        """Two sessions offered the same EHLO keywords hold one set between them."""
        policy, _ = make_policy(self)
        first, second = Dialogue(policy), Dialogue(policy)
        for dialogue in (first, second):
            self.assertTrue(dialogue.take().startswith("220 "))
            self.assertTrue(dialogue.send("EHLO client.example\r\n").startswith("250-"))
        self.assertIn("PIPELINING", first.proto.extensions)
        self.assertIs(first.proto.extensions, second.proto.extensions)

    def test_session_takes_other_attributes_and_copies(self):
        """A Session keeps its fields in slots, still takes attributes other
        modules add, and copy.copy (the Received: header builder's) keeps both."""
        session = Session()
        session.sender_host_address = "192.0.2.1"
        session.helo_verified = True
        clone = copy.copy(session)
        self.assertEqual((clone.sender_host_address, clone.helo_verified), ("192.0.2.1", True))
        self.assertFalse(hasattr(Session(), "helo_verified"))
