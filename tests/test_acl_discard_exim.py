"""The ``discard`` verb in the MAIL, RCPT and DATA ACLs, against exim4.

A discarding ACL accepts, but what it discards is never delivered: at RCPT
the recipient (a main and reject log line "discarded by RCPT ACL"), at MAIL
every recipient that follows (no RCPT ACL is run for them; each gets a
"discarded by MAIL ACL" line with the MAIL ACL's log message), after DATA
all recipients.  A message left without recipients is still taken: the
"<=" line, "=> blackhole (... ACL discarded recipients)" and "Completed",
and the DATA ACL is not run for it.  The dialogues are played to exim4 and
exim_py under ``-bh``; a ``-bs`` run shows what reaches exim_py's spool.
"""

import glob
import os

from twisted.trial import unittest

from tests.support.bh import oracle, same_session
from tests.support.peers import QUIET_MAIN, run_exim_py

ACLS = """\
smtp_banner = mx ready
acl_smtp_mail = a_mail
acl_smtp_rcpt = a_rcpt
acl_smtp_data = a_data

begin acl

a_mail:
  discard senders = m@x.example
          log_message = mail said no
  accept

a_rcpt:
  discard local_parts = d
          log_message = rcpt said no
  accept

a_data:
  discard condition = ${if eq{$h_subject:}{drop}}
          log_message = data said no
  deny    condition = ${if eq{$h_subject:}{refuse}}
  accept
"""


def message(sender, recipients, subject="s"):
    """One transaction's commands and data."""
    return ("MAIL FROM:<%s>\r\n" % sender + "".join("RCPT TO:<%s>\r\n" % r for r in recipients)
            + "DATA\r\nSubject: %s\r\n\r\nbody\r\n.\r\n" % subject)


class DiscardHostCheckTests(unittest.TestCase):
    """``-bh``: replies and log lines of discarding ACLs, as exim4's."""

    def setUp(self):
        self.exim = oracle(self)

    def play(self, transactions):
        """Both programs' -bh sessions, compared; exim4's log lines."""
        path = self.exim.write_config(QUIET_MAIN + ACLS)
        script = "EHLO x\r\n" + "".join(transactions) + "QUIT\r\n"
        return same_session(self, self.exim, path, script)[1]

    def test_rcpt_discard(self):
        """A discarded recipient is logged and left out; with none left the
        message is blackholed."""
        logs = self.play([message("o@x.example", ["d@y.example"])])
        self.assertEqual(logs, [
            "LOG: H=(x) [127.0.0.1] F=<o@x.example> RCPT <d@y.example>: discarded by RCPT ACL: rcpt said no",
            "LOG: ID <= o@x.example H=(x) [127.0.0.1] P=esmtp S=182",
            "LOG: ID => blackhole (RCPT ACL discarded recipients)",
            "LOG: ID Completed"])

    def test_rcpt_discard_keeps_the_others(self):
        """The other recipient stays: the message is received for it alone
        (its Received: header says "for", hence the size)."""
        logs = self.play([message("o@x.example", ["d@y.example", "e@y.example"])])
        self.assertEqual(logs[1], "LOG: ID <= o@x.example H=(x) [127.0.0.1] P=esmtp S=199")
        self.assertEqual(len(logs), 2)

    def test_mail_discard(self):
        """After MAIL's discard no RCPT ACL runs (the recipient the RCPT ACL
        would discard is logged as MAIL's), and no DATA ACL either."""
        logs = self.play([message("m@x.example", ["a@y.example", "d@y.example"], subject="refuse")])
        self.assertEqual(logs[:2], [
            "LOG: H=(x) [127.0.0.1] F=<m@x.example> RCPT <a@y.example>: discarded by MAIL ACL: mail said no",
            "LOG: H=(x) [127.0.0.1] F=<m@x.example> RCPT <d@y.example>: discarded by MAIL ACL: mail said no"])
        self.assertEqual(logs[-2:], ["LOG: ID => blackhole (MAIL ACL discarded recipients)", "LOG: ID Completed"])

    def test_data_discard(self):
        """The DATA ACL's discard drops every recipient, with its log message."""
        logs = self.play([message("o@x.example", ["e@y.example", "f@y.example"], subject="drop")])
        self.assertEqual(logs[1:], ["LOG: ID => blackhole (DATA ACL discarded recipients): data said no",
                                    "LOG: ID Completed"])


class DiscardSpoolTests(unittest.TestCase):
    """``-bs``: a discarded recipient never reaches exim_py's spool."""

    def test_discarded_recipient_not_stored(self):
        """Only the kept recipient is in the -H file; a message with all
        recipients discarded leaves no spool files."""
        base = os.path.realpath(self.mktemp())
        os.makedirs(os.path.join(base, "log"))
        conf = os.path.join(base, "exim.conf")
        with open(conf, "w") as f:
            f.write(QUIET_MAIN + "queue_only = true\nspool_directory = %s/spool\n"
                    "log_file_path = %s/log/%%slog\n" % (base, base) + ACLS)
        script = ("EHLO x\r\n" + message("o@x.example", ["d@y.example", "e@y.example"])
                  + message("o@x.example", ["d@y.example"]) + "QUIT\r\n")
        result = run_exim_py(["-C", conf, "-bs", "-oMa", "10.0.0.1"], input=script)
        self.assertEqual(result.stdout.count("250 OK id="), 2, result.stdout)
        headers = glob.glob(os.path.join(base, "spool", "input", "*-H"))
        self.assertEqual(len(headers), 1)
        with open(headers[0]) as f:
            text = f.read()
        self.assertIn("\n1\ne@y.example\n", text)
        self.assertNotIn("d@y.example", text)
