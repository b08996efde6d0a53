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

    def config(self, who):
        return self.exim.write_config(
            "keep_environment =\nhost_lookup =\nspool_directory = {d}/spool\n"
            "log_file_path = {d}/log/%slog\n{sel}\nacl_smtp_rcpt = accept\n"
            .format(d=self.dirs[who], sel=SELECTORS), who + ".conf")

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

    def test_bh_lines_match_exim(self):
        """-bh shows the lines it would log, with the host it pretends to be."""
        text = "EHLO x\r\nMAIL FROM:<a@b>\r\nRSET\r\nQUIT\r\n"
        theirs = self.exim.run(self.config("theirs"), ["-bh", "10.2.2.2"], input=text)
        ours = run_exim_py(["-C", self.config("ours"), "-bh", "10.2.2.2"], input=text)

        def logs(out):
            return [line for line in out.splitlines() if line.startswith("LOG: ")]
        self.assertEqual(logs(ours.stderr), logs(theirs.stderr))
        self.assertIn("LOG: SMTP connection from (x) [10.2.2.2] closed by QUIT", logs(ours.stderr))
