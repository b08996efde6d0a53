"""tcp_nodelay: the daemon sets TCP_NODELAY on its listening sockets (so that
every accepted connection has it) unless the option is false, as Exim does.

The option's effect is a system call, so the tests watch the daemon's
system calls with strace, and real exim4 is watched the same way for the
comparison.
"""

import os
import signal
import smtplib
import socket
import subprocess
import sys
import time

from twisted.trial import unittest

from tests.support.exim_peer import EximPeer
from tests.support.peers import require_command
from tests.test_daemon import ROOT, DaemonProcess, free_port

NODELAY_CALL = "TCP_NODELAY, [1]"


def traced(argv, trace_file, env=None, ready=None, timeout=20):
    """Run ``argv`` under strace (setsockopt calls only) until ``ready()`` is
    true; then end it and return the trace's setsockopt lines."""
    # its own process group: strace, the daemon and every process the daemon
    # forks end together (killing strace alone would leave the daemon running)
    process = subprocess.Popen(["strace", "-f", "-qq", "-e", "trace=setsockopt", "-o", trace_file] + argv,
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            if process.poll() is not None:
                raise AssertionError("daemon exited: %s" % process.stderr.read().decode())
            if time.monotonic() > deadline:
                raise AssertionError("daemon not ready after %ss" % timeout)
            time.sleep(0.05)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        process.stderr.close()
    with open(trace_file) as f:
        return f.read()


class TcpNodelayTests(unittest.TestCase):
    """main option tcp_nodelay (default true)."""

    def setUp(self):
        require_command("strace", "strace")

    def exim_py_trace(self, extra, processes):
        d = DaemonProcess(self, "queue_only\n" + extra)
        env = dict(os.environ, PYTHONPATH=ROOT, EXIM_PY_DAEMON_PROCESSES=str(processes))
        trace_file = os.path.join(d.spool_dir, "strace.out")

        def answers():
            # a message goes through: the listening socket and the
            # connections it accepts are all in the trace by then
            try:
                with smtplib.SMTP("127.0.0.1", d.port, timeout=5) as s:
                    s.sendmail("a@b.example", ["c@d.example"], "Subject: x\r\n\r\nhi\r\n")
                return True
            except OSError:
                return False

        return traced([sys.executable, "-m", "exim_py", "-C", d.conf_path, "-bdf", "-oX", str(d.port),
                       "-oP", d.pid_file], trace_file, env=env, ready=answers)

    def test_set_on_listening_sockets_by_default(self):
        """With the default, the listening socket gets TCP_NODELAY, with one
        daemon process (Twisted's port) and with two (the first process's
        own socket, shared with the workers)."""
        for processes in (1, 2):
            self.assertIn(NODELAY_CALL, self.exim_py_trace("", processes), processes)

    def test_false_leaves_nagle_on(self):
        """tcp_nodelay = false: no socket of the daemon gets TCP_NODELAY."""
        for processes in (1, 2):
            self.assertNotIn("TCP_NODELAY", self.exim_py_trace("tcp_nodelay = false", processes), processes)

    def test_exim4_does_the_same(self):
        """Real exim4 with the same options: TCP_NODELAY by default, none with
        tcp_nodelay = false."""
        for extra, expected in (("", True), ("tcp_nodelay = false", False)):
            peer = EximPeer(tls=False, extra=extra)
            self.addCleanup(peer.stop)

            def listening():
                try:
                    socket.create_connection(("127.0.0.1", peer.port), timeout=1).close()
                    return True
                except OSError:
                    return False

            trace = traced([peer.binary, "-C", peer.config, "-bdf", "-oX", str(peer.port),
                            "-oP", os.path.join(peer.dir, "exim.pid")],
                           os.path.join(peer.dir, "strace.out"), ready=listening)
            self.assertEqual(NODELAY_CALL in trace, expected, extra)
