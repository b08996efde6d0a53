"""The not-QUIT ACL for a session that ends inside a mail transaction.

Exim's not-QUIT ACL sees the transaction it interrupts ($sender_address,
$recipients_count) and, when a data timeout abandons a message whose
header section has arrived, that message's id ($message_id, and the id on
the ACL's log lines).  A lost connection drops the id first; its log line
says whether the data stopped in the header section, and comes before the
ACL's lines, as the incomplete-transaction line does in the command phase.
exim_py's daemon and exim4 get the same dialogues; their main logs must
agree line for line (times, ids and connection counts aside).
"""

import os
import re
import socket
import time

from twisted.trial import unittest

from tests.support.exim_peer import EximPeer
from tests.test_daemon import DaemonProcess

# the inline ACL is expanded as it is read: \$ keeps the variables for its run
SETTINGS = ("acl_smtp_notquit = warn logwrite = notquit reason=\\$smtp_notquit_reason "
            "sender=<\\$sender_address> id=<\\$message_id> rcpts=\\$recipients_count\n"
            "smtp_receive_timeout = 1s\n"
            "log_selector = +smtp_connection +smtp_incomplete_transaction\n")

TRANSACTION = [b"EHLO client.example", b"MAIL FROM:<a@b.example>", b"RCPT TO:<c@d.example>"]
DATA = TRANSACTION + [b"DATA"]

# (commands, then data sent without waiting, then: "close" or "wait" for the server)
DIALOGUES = [
    (TRANSACTION, b"", "close"),
    (DATA, b"Subject: x\r\n", "close"),
    (DATA, b"Subject: x\r\n\r\nbody\r\n", "close"),
    (DATA, b"Subject: x\r\n", "wait"),
    (DATA, b"Subject: x\r\n\r\nbody\r\n", "wait"),
]

MESSAGE_ID = re.compile(r"\b\w{6}-\w{6}-\w{2,4}\b")


def play(port, commands, data, end):
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        f = s.makefile("rb")
        f.readline()
        for command in commands:
            s.sendall(command + b"\r\n")
            while f.readline()[3:4] == b"-":
                pass
        s.sendall(data)
        if end == "wait":
            f.read()       # until the server's data timeout closes
        else:
            time.sleep(0.2)
        f.close()


def lines(text):
    """The log's lines without times, ids and the connection-count lines."""
    out = []
    for line in text.splitlines():
        line = line.split(" ", 2)[2]
        if "TCP/IP connection count" in line or "daemon started" in line:
            continue
        out.append(MESSAGE_ID.sub("ID", line))
    return out


class NotquitTransactionTests(unittest.TestCase):
    """A session gone in MAIL, RCPT or DATA, to exim_py and to exim4."""

    def run_dialogues(self, port, read_log):
        start = len(lines(read_log()))
        for commands, data, end in DIALOGUES:
            before = len(lines(read_log()))
            play(port, commands, data, end)
            deadline = time.monotonic() + 20
            # each ends with its not-QUIT ACL line (and, in the command phase, one more)
            while not any("notquit" in line for line in lines(read_log())[before:]):
                self.assertLess(time.monotonic(), deadline, "no log lines for %r" % (commands,))
                time.sleep(0.05)
            time.sleep(0.2)
        return lines(read_log())[start:]

    def test_log_lines_match_exim(self):
        """The same lines, in the same order, from both daemons."""
        theirs = EximPeer(tls=False, extra=SETTINGS)
        self.addCleanup(theirs.stop)
        theirs.start()
        # the start-up probe's session ends with a not-QUIT line of its own
        deadline = time.monotonic() + 20
        while "notquit" not in theirs.mainlog():
            self.assertLess(time.monotonic(), deadline, "exim4's start-up probe left no line")
            time.sleep(0.05)
        ours = DaemonProcess(self, "queue_only\n" + SETTINGS).start()
        self.addCleanup(ours.stop)

        def our_log():
            path = os.path.join(ours.spool_dir, "mainlog")
            if not os.path.exists(path):
                return ""
            with open(path) as f:
                return f.read()

        mine = self.run_dialogues(ours.port, our_log)
        expected = self.run_dialogues(theirs.port, theirs.mainlog)
        self.maxDiff = None
        self.assertEqual(mine, expected)
        host = "(client.example) [127.0.0.1]"
        self.assertEqual(mine, [
            "H=%s incomplete transaction (connection lost) from <a@b.example> for c@d.example" % host,
            "notquit reason=connection-lost sender=<a@b.example> id=<> rcpts=1",
            "unexpected disconnection while reading SMTP command from %s D=0s" % host,
            "SMTP connection from %s lost while reading message data (after header)" % host,
            "notquit reason=connection-lost sender=<a@b.example> id=<> rcpts=1",
            "SMTP connection from %s lost while reading message data" % host,
            "notquit reason=connection-lost sender=<a@b.example> id=<> rcpts=1",
            "SMTP data timeout (message abandoned) on connection from %s F=<a@b.example>" % host,
            "notquit reason=data-timeout sender=<a@b.example> id=<> rcpts=1",
            "ID SMTP data timeout (message abandoned) on connection from %s F=<a@b.example>" % host,
            "ID notquit reason=data-timeout sender=<a@b.example> id=<ID> rcpts=1",
        ])
