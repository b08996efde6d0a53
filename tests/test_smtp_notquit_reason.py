"""The not-QUIT ACL and $smtp_notquit_reason, as exim4 runs them.

Exim runs acl_smtp_notquit whenever a session ends without QUIT, for the
client's reasons (connection-lost) and for its own: a synchronisation error,
too many unknown commands (bad-commands), a command timeout.  The ACL here
logs the reason; exim_py's daemon and exim4 get the same dialogues, and
their main log lines (times and host details aside) must agree, in order.
"""

import os
import re
import socket
import time

from twisted.internet import defer, threads
from twisted.trial import unittest

from tests.support.end_to_end import Daemon, exim_py_script, free_port, read_text, wait_for
from tests.support.exim_peer import EximPeer

SETTINGS = """\
acl_smtp_notquit = warn logwrite = notquit reason=$smtp_notquit_reason
pipelining_connect_advertise_hosts = :
smtp_max_unknown_commands = 1
smtp_receive_timeout = 1s
"""

CONF = """\
primary_hostname = peer.test.example
spool_directory = {dir}/spool
log_file_path = {dir}/log/%slog
host_lookup =
tls_advertise_hosts =
""" + SETTINGS

KEEP = re.compile(r"notquit|synchronization error|dropped|timeout|rejected|NOTQUIT")


def play(port, flights):
    """Each flight after the banner, a pause between; then wait for the
    server to close (an empty last flight: say nothing and wait)."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        f = s.makefile("rb")
        f.readline()
        for flight in flights:
            if flight:
                s.sendall(flight)
            time.sleep(0.3)
        f.read()


def start_daemon(testcase, extra=""):
    """An exim_py daemon on CONF (plus ``extra``), stopped at the test's end:
    (Daemon, the path of its main log)."""
    directory = os.path.realpath(testcase.mktemp())
    for sub in ("spool", "log"):
        os.makedirs(os.path.join(directory, sub))
    config = os.path.join(directory, "exim.conf")
    with open(config, "w") as f:
        f.write(CONF.format(dir=directory) + extra)
    port = free_port()
    daemon = Daemon([exim_py_script(), "-C", config, "-oX", "127.0.0.1.%d" % port, "-bdf"],
                    port).start()
    testcase.addCleanup(daemon.stop)
    return daemon, os.path.join(directory, "log", "mainlog")


class NotquitReasonTests(unittest.TestCase):
    """Why the session ended, as the not-QUIT ACL sees it."""

    def setUp(self):
        self.ours, self.mainlog = start_daemon(self)
        self.theirs = EximPeer(tls=False, extra=SETTINGS).start()
        self.addCleanup(self.theirs.stop)
        # each start-up probe (connect, close) is a lost connection too
        wait_for(lambda: all(self.logs()), "the start-up probes' log lines")

    def lines(self, text):
        out = []
        for line in text.splitlines():
            line = line.split(" ", 2)[2]
            if KEEP.search(line):
                out.append(re.sub(r"H=\S+ |\(\S+\) |\[[\d.]+\]", "", line))
        return out

    def logs(self):
        return self.lines(read_text(self.mainlog)), self.lines(self.theirs.mainlog())

    @defer.inlineCallbacks
    def both(self, flights, count, play=play):
        """Play to both daemons; the ``count`` log lines each writes for it
        (after the start-up probes' lines), compared."""
        before = [len(lines) for lines in self.logs()]
        yield threads.deferToThread(play, self.ours.port, flights)
        yield threads.deferToThread(play, self.theirs.port, flights)
        wait_for(lambda: all(len(lines) >= start + count
                             for lines, start in zip(self.logs(), before)), "log lines")
        ours, theirs = [lines[start:] for lines, start in zip(self.logs(), before)]
        self.assertEqual(ours, theirs)
        return ours

    @defer.inlineCallbacks
    def test_synchronization_error(self):
        """MAIL sent behind EHLO without PIPECONNECT: the error is logged with
        the input made printable, then the ACL runs."""
        lines = yield self.both([b"EHLO client.example\r\nMAIL FROM:<a@b.example>\r\n"], 2)
        self.assertEqual(lines[1], "notquit reason=synchronization-error")
        self.assertIn('next input="MAIL FROM:<a@b.example>\\r\\n"', lines[0])

    @defer.inlineCallbacks
    def test_bad_commands(self):
        """Too many unknown commands: the ACL runs before the drop is logged."""
        lines = yield self.both([b"EHLO client.example\r\n", b"FOO\r\n", b"BAR\r\n"], 2)
        self.assertEqual(lines[0], "notquit reason=bad-commands")

    @defer.inlineCallbacks
    def test_command_timeout(self):
        """Silence past smtp_receive_timeout: the timeout line, then the ACL."""
        lines = yield self.both([b"EHLO client.example\r\n", b""], 2)
        self.assertEqual(lines[-1], "notquit reason=command-timeout")

    @defer.inlineCallbacks
    def test_connection_lost(self):
        """The client closes without QUIT."""
        def lost(port, flights):
            with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
                s.makefile("rb").readline()
                s.sendall(flights[0])
                time.sleep(0.3)
        lines = yield self.both([b"EHLO client.example\r\n"], 1, play=lost)
        self.assertEqual(lines, ["notquit reason=connection-lost"])


class AclDropTests(unittest.TestCase):
    """An ACL's drop ends the session: the not-QUIT ACL runs with acl-drop."""

    def test_rcpt_acl_drop(self):
        """drop in the RCPT ACL: the rejection is logged, then the ACL runs."""
        daemon, mainlog = start_daemon(self, "acl_smtp_rcpt = drop message = go away\n")
        port = daemon.port
        wait_for(lambda: "notquit" in read_text(mainlog), "the start-up probe's line")
        play(port, [b"EHLO client.example\r\n", b"MAIL FROM:<a@b.example>\r\n",
                    b"RCPT TO:<c@d.example>\r\n"])
        wait_for(lambda: "acl-drop" in read_text(mainlog), "the notquit line")
        lines = [line.split(" ", 2)[2] for line in read_text(mainlog).splitlines()][-2:]
        self.assertEqual(lines, ["H=(client.example) [127.0.0.1] F=<a@b.example> rejected RCPT "
                                 "<c@d.example>: go away", "notquit reason=acl-drop"])
