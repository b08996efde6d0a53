"""The log lines about connections themselves (selectors smtp_connection,
smtp_incomplete_transaction, smtp_no_mail and the default
lost_incoming_connection), compared with what a real exim4 daemon writes for
the same dialogues, and for -bs and -bh with exim4's own -bs and -bh.
"""

import os
import re
import shutil
import socket
import tempfile
import time

from twisted.internet import threads
from twisted.trial import unittest

from tests.support.exim_peer import EximPeer
from tests.support.peers import RealExim, run_exim_py
from tests.test_daemon import DaemonProcess

SELECTORS = "log_selector = +smtp_connection +smtp_incomplete_transaction +smtp_no_mail"

# (commands, bytes sent after them before the client hangs up; None: the
# client sent QUIT and waits for the server to close)
DIALOGUES = [
    (["EHLO client.example", "QUIT"], None),
    (["EHLO client.example", "MAIL FROM:<a@b.example>", "RCPT TO:<x@test.example>", "RSET",
      "QUIT"], None),
    (["HELO c", "MAIL FROM:<a@b.example>", "RCPT TO:<x@test.example>"], b""),
    (["EHLO client.example", "NOOP", "HELP"], b""),
    (["HELO c", "MAIL FROM:<a@b.example>", "RCPT TO:<x@test.example>", "DATA"],
     b"Subject: x\r\n\r\npartial"),
]


def talk(port, commands, tail, source="127.0.0.1", wait=False):
    """One connection: the commands (each reply read), then ``tail`` and a
    hang-up; with ``tail`` None or ``wait``, the server closes first."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    replies = sock.makefile("rb")
    replies.readline()
    for line in commands:
        sock.sendall(line.encode() + b"\r\n")
        while replies.readline()[3:4] == b"-":
            pass
    if tail is not None:
        sock.sendall(tail)
    if tail is None or wait:
        replies.read()              # the server closes after 221, or on a timeout
    sock.close()


def normalise(lines):
    out = []
    for line in lines:
        line = re.sub(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ", "", line)
        line = re.sub(r"count = \d+", "count = N", line)
        line = re.sub(r"^\w{6}-\w{6}-\w{2} ", "ID ", line)
        out.append(line)
    return sorted(out)


def wait_for_lines(read, count, timeout=10):
    """The lines of a log once it has ``count`` of them (the servers write
    after they notice a hang-up, in their own time)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = read()
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


class ConnectionLogTests(unittest.TestCase):
    """exim_py's daemon logs connections as exim4's daemon does."""

    def compare(self, extra, dialogues, count):
        """Run ``dialogues`` (commands, tail, source address) against both
        daemons; a Deferred firing with (our lines, theirs) once each log has
        ``count`` new lines."""
        peer = EximPeer(extra=extra, tls=False)
        self.addCleanup(peer.stop)
        peer.start()
        ours = DaemonProcess(self, extra).start()
        self.addCleanup(ours.stop)
        ours_log = os.path.join(ours.spool_dir, "mainlog")

        def read_ours():
            with open(ours_log) as f:
                return [line for line in f.read().splitlines() if "daemon started" not in line]

        def run():
            # the start line and the three of EximPeer's own probe connection
            theirs_before = len(wait_for_lines(lambda: peer.mainlog().splitlines(), 4))
            for dialogue in dialogues:
                talk(peer.port, *dialogue)
                talk(ours.port, *dialogue)
            theirs = wait_for_lines(lambda: peer.mainlog().splitlines()[theirs_before:], count)
            return wait_for_lines(read_ours, count), theirs
        return threads.deferToThread(run)

    def test_daemon_lines_match_exim(self):
        """Open, closed by QUIT, lost, incomplete transactions, no MAIL with
        D= and C=, and a connection lost in the data: the same lines (times
        and connection counts aside) from both daemons."""
        def check(result):
            mine, theirs = result
            self.maxDiff = None
            self.assertEqual(normalise(mine), normalise(theirs))
            self.assertIn("SMTP connection from [127.0.0.1] (TCP/IP connection count = 1)",
                          " ".join(mine))
            self.assertIn("no MAIL in SMTP connection from (client.example) [127.0.0.1] D=0s "
                          "C=EHLO,NOOP,HELP", " ".join(mine))
        return self.compare(SELECTORS, DIALOGUES, 14).addCallback(check)

    def test_timeout_and_nolog_hosts(self):
        """Command and data timeouts are logged (without the connection's
        close lines; the data one with the message's id and sender);
        hosts_connection_nolog silences the open and close lines of its hosts
        but not their no-MAIL line."""
        extra = SELECTORS + "\nsmtp_receive_timeout = 1s\nhosts_connection_nolog = 127.0.0.2"
        dialogues = [(["HELO c", "MAIL FROM:<a@b.example>"], None),
                     (["HELO c", "MAIL FROM:<a@b.example>", "RCPT TO:<x@test.example>", "DATA"],
                      b"Subject: x\r\n\r\npartial", "127.0.0.1", True),
                     (["HELO c", "QUIT"], None, "127.0.0.2")]

        def check(result):
            mine, theirs = result
            self.assertEqual(normalise(mine), normalise(theirs))
            self.assertIn("SMTP command timeout on connection from (c) [127.0.0.1]", " ".join(mine))
            self.assertIn("SMTP data timeout (message abandoned) on connection from (c) [127.0.0.1] "
                          "F=<a@b.example>", " ".join(mine))
            self.assertEqual(len(mine), 5, mine)
        return self.compare(extra, dialogues, 5).addCallback(check)


class LocalSessionLogTests(unittest.TestCase):
    """-bs logs the caller's login, -bh the host it pretends to be."""

    def setUp(self):
        self.exim = RealExim()
        self.addCleanup(self.exim.cleanup)
        self.dirs = {}
        for who in ("ours", "theirs"):
            path = self.dirs[who] = tempfile.mkdtemp(prefix="exim_py-connlog-")
            self.addCleanup(shutil.rmtree, path, True)
            for sub in ("spool", "log"):
                os.mkdir(os.path.join(path, sub))
                shutil.chown(os.path.join(path, sub), "Debian-exim", "Debian-exim")
            os.chmod(path, 0o755)

    def config(self, who, extra=""):
        return self.exim.write_config(
            "keep_environment =\nhost_lookup =\nspool_directory = {d}/spool\n"
            "log_file_path = {d}/log/%slog\n{sel}\nacl_smtp_rcpt = accept\n{extra}\n"
            .format(d=self.dirs[who], sel=SELECTORS, extra=extra), who + ".conf")

    def mainlog(self, who):
        path = os.path.join(self.dirs[who], "log", "mainlog")
        if not os.path.exists(path):
            return []
        with open(path) as f:
            return normalise(f.read().splitlines())

    def test_bs_lines_match_exim(self):
        """-bs: 'SMTP connection from <login>', QUIT with an open transaction,
        and an input that just ends."""
        sessions = ["EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nQUIT\r\n", "EHLO x\r\n",
                    "EHLO x\r\nMAIL FROM:<a@b>\r\n"]
        for text in sessions:
            self.exim.run(self.config("theirs"), ["-bs"], input=text)
            run_exim_py(["-C", self.config("ours"), "-bs"], input=text)
        ours = self.mainlog("ours")
        self.assertEqual(ours, self.mainlog("theirs"))
        self.assertIn("SMTP connection from root closed by QUIT", ours)
        self.assertIn("unexpected EOF while reading SMTP command from root D=0s", ours)

    def test_nolog_for_local_callers(self):
        """hosts_connection_nolog = : (an empty item) silences the connection
        lines of -bs callers, but not of -bs -oMa sessions, which have a host."""
        for args in (["-bs"], ["-bs", "-oMa", "10.1.1.1"]):
            text = "EHLO x\r\nQUIT\r\n"
            self.exim.run(self.config("theirs", "hosts_connection_nolog = :"), args, input=text)
            run_exim_py(["-C", self.config("ours", "hosts_connection_nolog = :")] + args, input=text)
        ours = self.mainlog("ours")
        self.assertEqual(ours, self.mainlog("theirs"))
        self.assertEqual(len(ours), 4, ours)

    def test_bh_lines_match_exim(self):
        """-bh shows the lines it would log, with the host it pretends to be."""
        text = "EHLO x\r\nMAIL FROM:<a@b>\r\nRSET\r\nQUIT\r\n"
        theirs = self.exim.run(self.config("theirs"), ["-bh", "10.2.2.2"], input=text)
        ours = run_exim_py(["-C", self.config("ours"), "-bh", "10.2.2.2"], input=text)

        def logs(out):
            return [line for line in out.splitlines() if line.startswith("LOG: ")]
        self.assertEqual(logs(ours.stderr), logs(theirs.stderr))
        self.assertIn("LOG: SMTP connection from (x) [10.2.2.2] closed by QUIT", logs(ours.stderr))


class RefusedConnectionTests(unittest.TestCase):
    """smtp_accept_max, smtp_accept_reserve and smtp_accept_max_per_host:
    the 421 and the connection_reject log line, as exim4's daemon gives them."""

    def second_connection(self, port, settle=False):
        """Hold one connection open; the reply to a second one.  With
        ``settle``, try again until the first is accepted and the second is
        not (exim4's daemon counts its children when it notices them, so its
        startup probe may still count for a moment)."""
        deadline = time.monotonic() + 10
        while True:
            first = socket.create_connection(("127.0.0.1", port), timeout=10)
            banner = first.makefile("rb").readline().decode()
            second = socket.create_connection(("127.0.0.1", port), timeout=10)
            reply = second.makefile("rb").readline().decode()
            second.close()
            first.close()
            if not settle or (banner.startswith("220") and reply.startswith("421")) \
                    or time.monotonic() > deadline:
                return reply
            time.sleep(0.2)

    def both(self, extra):
        peer = EximPeer(tls=False, extra=extra)
        # the peer's own smtp_accept_max would be a second setting of the option
        with open(peer.config) as f:
            text = f.read().replace("smtp_accept_max = 50\n", "")
        with open(peer.config, "w") as f:
            f.write(text)
        self.addCleanup(peer.stop)
        peer.start()
        ours = DaemonProcess(self, extra).start()
        self.addCleanup(ours.stop)

        def read_ours():
            with open(os.path.join(ours.spool_dir, "mainlog")) as f:
                return [line for line in f.read().splitlines() if "daemon started" not in line]

        def run():
            theirs_before = len(wait_for_lines(lambda: peer.mainlog().splitlines(), 1))
            replies = (self.second_connection(ours.port).replace("mx.test.example", "HOST"),
                       self.second_connection(peer.port, True).replace("peer.test.example", "HOST"))
            logs = (wait_for_lines(read_ours, 1),
                    wait_for_lines(lambda: peer.mainlog().splitlines()[theirs_before:], 1))
            return replies, logs
        return threads.deferToThread(run)

    def check(self, extra, expected_reply, expected_log):
        def compare(result):
            (ours, theirs), (our_log, their_log) = result
            self.assertEqual(ours, theirs)
            self.assertEqual(ours, expected_reply)
            self.assertIn(expected_log, normalise(their_log))
            self.assertEqual(normalise(our_log), [expected_log])
        return self.both(extra).addCallback(compare)

    def test_accept_max(self):
        """Beyond smtp_accept_max: refused, with Exim's texts."""
        return self.check("smtp_accept_max = 1",
                          "421 Too many concurrent SMTP connections; please try again later.\r\n",
                          "Connection from [127.0.0.1] refused: too many connections")

    def test_accept_reserve(self):
        """The reserved slots: the host name in the 421, and the counts in the log."""
        return self.check("smtp_accept_max = 2\nsmtp_accept_reserve = 1",
                          "421 HOST: Too many concurrent SMTP connections; please try again later\r\n",
                          "temporarily refused connection from [127.0.0.1]: not in reserve list: "
                          "connected=1 max=2 reserve=1")

    def test_accept_max_per_host(self):
        """smtp_accept_max_per_host: Exim's per-address texts."""
        return self.check("smtp_accept_max_per_host = 1",
                          "421 Too many concurrent SMTP connections from this IP address; "
                          "please try again later.\r\n",
                          "Connection from [127.0.0.1] refused: too many connections from that "
                          "IP address")
