"""SIGTERM with a session open, as exim4 handles it.

Exim's session process, told SIGTERM while it waits for a command, logs
"SMTP connection from ... closed after SIGTERM", runs acl_smtp_notquit with
$smtp_notquit_reason "signal-exit" and says 421.  exim_py's daemon and
exim4's get the same session and the same signal; the client's last reply
and the main log lines must agree.
"""

import os
import re
import signal
import time

from twisted.trial import unittest

from exim_py.spool import Spool
from tests.support.exim_peer import EximPeer
from tests.support.peers import ehlo_session
from tests.test_daemon import DaemonProcess

NOTQUIT = "acl_smtp_notquit = warn logwrite = notquit reason=$smtp_notquit_reason\n"
# (exim4's start-up probe leaves a connection-lost run before them)
KEEP = re.compile(r"closed after SIGTERM|notquit reason=signal")


def session_process(daemon_pid, timeout=10):
    """The pid of the exim4 process serving the one open session (the daemon's child)."""
    path = "/proc/%d/task/%d/children" % (daemon_pid, daemon_pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(path) as f:
            children = f.read().split()
        if len(children) == 1:
            return int(children[0])
        time.sleep(0.05)
    raise AssertionError("exim4's daemon has %d children, not one session process" % len(children))


def reading(pid):
    """Whether process ``pid`` is asleep in a read (its wchan names one)."""
    with open("/proc/%d/stat" % pid) as f:
        state = f.read().rsplit(")", 1)[1].split()[0]
    with open("/proc/%d/wchan" % pid) as f:
        wchan = f.read()
    return state == "S" and wchan not in ("", "0")


def wanted(text):
    """The SIGTERM lines of a main log, without time and host names."""
    out = []
    for line in text.splitlines():
        line = line.split(" ", 2)[-1]
        if KEEP.search(line):
            out.append(line)
    return out


def wait_for(condition, what, timeout=20):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("no %s after %ss" % (what, timeout))
        time.sleep(0.05)


class SigtermSessionTests(unittest.TestCase):
    """A daemon stopped while a client waits between commands."""

    def test_idle_session_ends_like_exim(self):
        """Both daemons answer the waiting client 421 "Service not
        available" at once and log the close and the signal-exit ACL run."""
        theirs = EximPeer(tls=False, extra=NOTQUIT)
        self.addCleanup(theirs.stop)
        theirs.start()
        ours = DaemonProcess(self, "queue_only\n" + NOTQUIT).start()
        self.addCleanup(ours.stop)
        our_log = os.path.join(ours.spool_dir, "mainlog")

        their_socket, their_file = ehlo_session(theirs.port)
        self.addCleanup(their_socket.close)
        # the signal goes to exim4's session process only: a SIGTERM to the
        # whole group reaches the daemon as well, which then races the session
        session = session_process(theirs.process.pid)
        # exim4 notices a SIGTERM only once it is blocked reading the next
        # command; one that lands between its 250 and that read sets a flag
        # nobody looks at, and the session waits out its timeout
        wait_for(lambda: reading(session), "exim4 waiting for a command")
        time.sleep(0.3)
        os.kill(session, signal.SIGTERM)
        their_reply = their_file.readline()

        our_socket, our_file = ehlo_session(ours.port)
        self.addCleanup(our_socket.close)
        started = time.monotonic()
        ours.process.send_signal(signal.SIGTERM)
        our_reply = our_file.readline()
        # at once, not after the grace given to sessions storing a message
        self.assertLess(time.monotonic() - started, 5)

        for reply in (their_reply, our_reply):
            self.assertRegex(reply, rb"^421 \S+: Service not available - closing connection\r\n$")
        wait_for(lambda: len(wanted(theirs.mainlog())) >= 2, "exim4 log lines")

        def ours_logged():
            with open(our_log) as f:
                return len(wanted(f.read())) >= 2
        wait_for(ours_logged, "exim_py log lines")
        with open(our_log) as f:
            mine = wanted(f.read())
        self.assertEqual(mine, wanted(theirs.mainlog()))
        self.assertEqual(mine, ["SMTP connection from (client.example) [127.0.0.1] closed after SIGTERM",
                                "notquit reason=signal-exit"])


def message_session(port):
    """A raw session that has said MAIL, RCPT and DATA and sent the start of
    a message: (socket, its reading file)."""
    s, f = ehlo_session(port)
    for command in (b"MAIL FROM:<a@b.example>", b"RCPT TO:<c@d.example>", b"DATA"):
        s.sendall(command + b"\r\n")
        f.readline()
    s.sendall(b"Subject: x\r\n\r\nthe first line\r\n")
    return s, f


def connection_of(sock, process):
    """The pid of the exim4 process (a child of ``process``) serving the
    connection ``sock`` is the client end of."""
    port = sock.getsockname()[1]
    inodes = set()
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[2].endswith(":%04X" % port):
                inodes.add("socket:[%s]" % fields[9])
    with open("/proc/%d/task/%d/children" % (process.pid, process.pid)) as f:
        children = [int(pid) for pid in f.read().split()]
    for pid in children:
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                if os.readlink("/proc/%d/fd/%s" % (pid, fd)) in inodes:
                    return pid
            except OSError:
                continue
    raise AssertionError("no exim4 process holds the connection from port %d" % port)


class SigtermMessageTests(unittest.TestCase):
    """A daemon stopped while a client is sending a message."""

    def daemon(self, extra=""):
        ours = DaemonProcess(self, "queue_only\n" + NOTQUIT + extra).start()
        self.addCleanup(ours.stop)
        return ours

    def assert_ended_by_sigterm(self, daemon, prefix=""):
        """The daemon exited cleanly, having logged the session's close for
        SIGTERM and its not-QUIT ACL run (signal-exit), each line after
        ``prefix`` (with message ids as "ID")."""
        self.assertEqual(daemon.process.wait(timeout=20), 0)
        with open(os.path.join(daemon.spool_dir, "mainlog")) as f:
            logged = [re.sub(r"^\w{6}-\w{6}-\w{2,4} ", "ID ", line) for line in wanted(f.read())]
        self.assertEqual(logged, [
            prefix + "SMTP connection from (client.example) [127.0.0.1] closed after SIGTERM",
            prefix + "notquit reason=signal-exit"])

    def test_message_in_progress_is_still_taken(self):
        """exim4 keeps reading a message when its session is told SIGTERM
        in DATA, and takes it; so does exim_py, which then ends the session
        at once as one waiting for a command: 421, "closed after SIGTERM"
        and the not-QUIT ACL with signal-exit."""
        theirs = EximPeer(tls=False, extra=NOTQUIT)
        self.addCleanup(theirs.stop)
        theirs.start()
        their_socket, their_file = message_session(theirs.port)
        self.addCleanup(their_socket.close)
        session = connection_of(their_socket, theirs.process)
        wait_for(lambda: reading(session), "exim4 reading the message")
        os.kill(session, signal.SIGTERM)
        time.sleep(0.3)
        their_socket.sendall(b".\r\n")
        their_reply = their_file.readline()

        ours = self.daemon()
        our_socket, our_file = message_session(ours.port)
        self.addCleanup(our_socket.close)
        started = time.monotonic()
        ours.process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        our_socket.sendall(b".\r\n")
        our_reply = our_file.readline()
        for reply in (their_reply, our_reply):
            self.assertRegex(reply, rb"^250 OK id=\S+\r\n$")
        self.assertRegex(our_file.readline(), rb"^421 \S+: Service not available - closing connection\r\n$")
        self.assertLess(time.monotonic() - started, 5)
        self.assert_ended_by_sigterm(ours)

    def test_session_busy_storing_ends_once_answered(self):
        """A session whose message is still being checked (a DATA ACL
        delay stands in for a slow spool write) when SIGTERM comes gets its
        250, then 421 at once, not at the end of the daemon's grace."""
        ours = self.daemon("acl_smtp_data = accept delay = 1s\n")
        s, f = message_session(ours.port)
        self.addCleanup(s.close)
        s.sendall(b".\r\n")
        time.sleep(0.3)
        started = time.monotonic()
        ours.process.send_signal(signal.SIGTERM)
        self.assertRegex(f.readline(), rb"^250 OK id=\S+\r\n$")
        self.assertRegex(f.readline(), rb"^421 \S+: Service not available - closing connection\r\n$")
        self.assertLess(time.monotonic() - started, 5)
        self.assert_ended_by_sigterm(ours)

    def test_unfinished_message_is_abandoned(self):
        """A message still unfinished when the daemon's grace runs out is
        abandoned as Exim's receive_bomb_out does it: "closed after
        SIGTERM", the not-QUIT ACL with signal-exit, and receive.c's 421;
        nothing is stored.  Its header section was in, so it had an id,
        which both lines carry."""
        ours = self.daemon()
        s, f = message_session(ours.port)
        self.addCleanup(s.close)
        ours.process.send_signal(signal.SIGTERM)
        self.assertEqual(f.readline(), b"421 mx.test.example Service not available - SIGTERM or SIGINT "
                                       b"received - closing connection.\r\n")
        self.assert_ended_by_sigterm(ours, prefix="ID ")
        self.assertEqual(list(Spool(ours.spool_dir).message_ids()), [])
