"""SMTP session details, byte for byte against Debian's exim4 4.96.

- The id on log lines later in a session.  Under ``-bh`` Exim's loop never
  clears its message_id once a message is accepted, so the session's next
  lines (a refused RCPT, an ACL's logwrite, a refused DATA) start with that
  id until the next message's data begins; a refused message, or one whose
  recipients were all discarded, leaves none.  A daemon clears it after
  each message: its later lines have no id.
- MAIL and RCPT parameters, taken off the end of the operand as Exim's
  extract_option does: an invalid or empty SIZE ends the scan and is
  dropped, of two the leftmost wins, a SIZE beyond an int (or negative) is
  INT_MAX; an unknown parameter stays in the operand, put back with a
  space (MAIL) or an "=" (RCPT, for a word without one).
- White space in operands: tabs separate parameters; a tab before a
  parameter that is put back becomes a space in the 501's echo; white
  space at the end goes.
- The smtp_syntax_error and smtp_protocol_error lines, and the
  "unexpected disconnection" of a -bs session that has a host address.

Replies and log lines of the same dialogue and configuration go through
exim4 and exim_py; message ids, times and pids are normalised.
"""

import os
import re
import smtplib
import time

from twisted.trial import unittest

from tests.support.end_to_end import Daemon, exim_py_script, free_port, read_text
from tests.support.peers import QUIET_MAIN, RealExim, run_exim_py

MESSAGE_ID = re.compile(r"\b[0-9A-Za-z]{6}-[0-9A-Za-z]{6}-[0-9A-Za-z]{2}\b")
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ")

HOST_CHECK = QUIET_MAIN + r"""
smtp_banner = mx ready
message_size_limit = 1k
smtp_max_synprot_errors = 1000
log_selector = +smtp_syntax_error +smtp_protocol_error
dsn_advertise_hosts = *
acl_smtp_mail = mail_acl
acl_smtp_rcpt = rcpt_acl
acl_smtp_predata = predata_acl
acl_smtp_data = data_acl

begin acl

mail_acl:
  deny    senders = refused@x.example
  warn    logwrite = MAIL ACL for <$sender_address>
  accept

rcpt_acl:
  discard local_parts = dropped
  deny    local_parts = no
          message = no such user
  defer   local_parts = later
  accept

predata_acl:
  deny    senders = nodata@x.example
  accept

data_acl:
  deny    condition = ${if def:h_x-refuse:}
          message = refused content
  accept
"""

OK_MESSAGE = ("MAIL FROM:<a@b.example>", "RCPT TO:<c@d.example>", "DATA",
              "Subject: s\r\n\r\nbody\r\n.")


def normalised(result):
    """The replies and LOG: lines of a -bh run, message ids replaced."""
    out = result.stdout.splitlines()
    replies = [MESSAGE_ID.sub("ID", line) for line in out if line[:3].isdigit()]
    logs = [MESSAGE_ID.sub("ID", line) for line in result.stderr.splitlines() if line.startswith("LOG: ")]
    return replies, logs


class HostCheckCase(unittest.TestCase):
    """Plays one dialogue to ``exim4 -bh`` and ``exim_py -bh``."""

    def setUp(self):
        self.exim = RealExim()
        self.addCleanup(self.exim.cleanup)

    def play(self, commands, conf=HOST_CHECK, leave_out=None):
        """Both runs' (replies, LOG: lines) after the greeting and EHLO,
        compared, without the replies that match regex ``leave_out``; exim4's."""
        path = self.exim.write_config(conf)
        script = "EHLO x\r\n" + "".join(c + "\r\n" for c in commands) + "QUIT\r\n"
        theirs, ours = [(
            [line for line in replies if leave_out is None or not re.search(leave_out, line)], logs)
            for replies, logs in (normalised(self.exim.run(path, ["-bh", "127.0.0.1"], input=script)),
                                  normalised(run_exim_py(["-C", path, "-bh", "127.0.0.1"],
                                                         input=script)))]
        self.maxDiff = None
        self.assertEqual(ours, theirs)
        replies, logs = theirs
        return [line for line in replies if not line.startswith("250-")][2:-1], logs


class HostCheckMessageIdTests(HostCheckCase):
    """-bh: which later lines start with the last message's id."""

    def test_lines_after_an_accepted_message_carry_its_id(self):
        """After a message is accepted, the next transaction's ACL lines,
        refusals and temporary refusals start with its id."""
        _, logs = self.play(OK_MESSAGE + ("MAIL FROM:<a@b.example>", "RCPT TO:<no@d.example>",
                                          "RCPT TO:<later@d.example>", "RSET",
                                          "MAIL FROM:<refused@x.example>",
                                          "MAIL FROM:<nodata@x.example>", "RCPT TO:<c@d.example>",
                                          "DATA"))
        self.assertEqual(logs[1:], [
            "LOG: ID <= a@b.example H=(x) [127.0.0.1] P=esmtp S=199",
            "LOG: ID MAIL ACL for <a@b.example>",
            "LOG: ID H=(x) [127.0.0.1] F=<a@b.example> rejected RCPT <no@d.example>: no such user",
            "LOG: ID H=(x) [127.0.0.1] F=<a@b.example> temporarily rejected RCPT <later@d.example>",
            "LOG: ID H=(x) [127.0.0.1] rejected MAIL <refused@x.example>",
            "LOG: ID MAIL ACL for <nodata@x.example>",
            "LOG: ID H=(x) [127.0.0.1] rejected DATA"])

    def test_refused_or_discarded_message_leaves_no_id(self):
        """A message refused by the DATA ACL or for its size, or one whose
        recipients were all discarded, has its own id on its lines and
        leaves none for the lines after it."""
        refused = ("MAIL FROM:<a@b.example>", "RCPT TO:<c@d.example>", "DATA",
                   "X-Refuse: 1\r\n\r\nbody\r\n.")
        too_big = ("MAIL FROM:<a@b.example>", "RCPT TO:<c@d.example>", "DATA",
                   "Subject: s\r\n\r\n" + "x" * 2000 + "\r\n.")
        dropped = ("MAIL FROM:<a@b.example>", "RCPT TO:<dropped@d.example>", "DATA",
                   "Subject: s\r\n\r\nbody\r\n.")
        after = ("MAIL FROM:<a@b.example>", "RCPT TO:<no@d.example>", "RSET")
        _, logs = self.play(OK_MESSAGE + refused + after + OK_MESSAGE + too_big + after
                            + OK_MESSAGE + dropped + after)
        refusals = [line for line in logs if "rejected RCPT <no@" in line]
        self.assertEqual(len(refusals), 3)
        self.assertTrue(all(line.startswith("LOG: H=(x)") for line in refusals), refusals)
        self.assertIn("LOG: ID H=(x) [127.0.0.1] F=<a@b.example> rejected after DATA: "
                      "refused content", logs)
        self.assertTrue(any(line.startswith("LOG: ID rejected from <a@b.example> H=(x) [127.0.0.1]: "
                                            "message too big") for line in logs), logs)
        self.assertIn("LOG: ID Completed", logs)


DAEMON = QUIET_MAIN + r"""
log_file_path = {dir}/log/%slog
spool_directory = {dir}/spool
queue_only = true
message_size_limit = 1k
log_selector = +smtp_incomplete_transaction +smtp_syntax_error +smtp_protocol_error
acl_smtp_mail = mail_acl
acl_smtp_rcpt = rcpt_acl

begin acl

mail_acl:
  warn    logwrite = MAIL ACL for <$sender_address>
  accept

rcpt_acl:
  deny    local_parts = no
          message = no such user
  accept

begin routers

blackhole:
  driver = redirect
  data = :blackhole:
"""


def daemon_logs(base):
    """A daemon's main and reject log lines: no times, ids or start-up line."""
    found = {}
    for which in ("main", "reject"):
        found[which] = [MESSAGE_ID.sub("ID", TIMESTAMP.sub("", line))
                        for line in read_text(os.path.join(base, "log", which + "log")).splitlines()
                        if "daemon started" not in line]
    return found


class DaemonMessageIdTests(unittest.TestCase):
    """A daemon's session: no line after a message carries its id."""

    def session(self, port):
        """Three transactions (the second refused at RCPT, the third for its
        size), an abandoned one with parameters exim4 ignores or refuses,
        then QUIT."""
        client = smtplib.SMTP("127.0.0.1", port, local_hostname="client.example", timeout=20)
        self.addCleanup(client.close)
        client.sendmail("a@b.example", ["c@d.example"], b"Subject: s\r\n\r\nbody\r\n")
        with self.assertRaises(smtplib.SMTPRecipientsRefused):
            client.sendmail("a@b.example", ["no@d.example"], b"Subject: s\r\n\r\nbody\r\n")
        client.mail("a@b.example")       # no SIZE=, so the data is sent
        client.rcpt("c@d.example")
        self.assertEqual(client.docmd("DATA")[0], 354)
        # the header section on its own, as a big message's first packet
        # (exim_py keeps what came before the size limit was passed)
        client.send(b"Subject: s\r\n\r\n")
        time.sleep(0.5)
        client.send(b"x" * 2000 + b"\r\n.\r\n")
        self.assertEqual(client.getreply()[0], 552)
        self.assertEqual(client.docmd("MAIL FROM:<a@b.example> SIZE=abc BODY=8BITMIME")[0], 250)
        # (smtplib drops the space at the end of the reply)
        self.assertEqual(client.docmd("RCPT TO:<c@d.example>\tXX=1"),
                         (501, b"<c@d.example> XX=1: malformed address: XX=1 may not follow "
                               b"<c@d.example>"))
        client.quit()

    def logs_of(self, exim, name, argv):
        base = exim.exim_user_dirs(name)
        conf = exim.write_config(DAEMON.format(dir=base), name + ".conf")
        port = free_port()
        daemon = Daemon(argv(conf, port, base), port).start()
        self.addCleanup(daemon.stop)
        self.session(port)
        deadline = time.monotonic() + 20
        while "(QUIT)" not in read_text(os.path.join(base, "log", "mainlog")):
            self.assertLess(time.monotonic(), deadline, "no QUIT line from " + name)
            time.sleep(0.05)
        return daemon_logs(base)

    def test_lines_after_a_message_carry_no_id(self):
        """exim4's and exim_py's main and reject logs agree: the refused
        RCPT after the accepted message has no id, the message refused for
        its size has one of its own."""
        exim = RealExim()
        self.addCleanup(exim.cleanup)
        theirs = self.logs_of(exim, "exim4", lambda conf, port, base: [
            exim.binary, "-C", conf, "-bdf", "-oX", str(port), "-oP", os.path.join(base, "pid")])
        ours = self.logs_of(exim, "exim_py", lambda conf, port, base: [
            exim_py_script(), "-C", conf, "-bdf", "-oX", "127.0.0.1.%d" % port])
        self.maxDiff = None
        self.assertEqual(ours, theirs)
        self.assertIn("H=(client.example) [127.0.0.1] F=<a@b.example> rejected RCPT <no@d.example>: "
                      "no such user", theirs["reject"])
        self.assertEqual(theirs["reject"][1:], [
            "ID rejected from <a@b.example> H=(client.example) [127.0.0.1]: message too big: "
            "read=2013 max=1024", "Envelope-from: <a@b.example>", "Envelope-to: <c@d.example>",
            "  Subject: s"])
        self.assertEqual(theirs["main"][-1], "H=(client.example) [127.0.0.1] incomplete transaction "
                                             "(QUIT) from <a@b.example>")


class MailSizeTests(HostCheckCase):
    """SIZE values on their own and with other parameters."""

    def test_invalid_size_with_other_parameters(self):
        """A SIZE that is no number, or empty, is dropped and ends the
        scan: the parameters to its right still count, those to its left
        are left in the operand (malformed)."""
        replies, logs = self.play(["MAIL FROM:<a@b.example> SIZE=abc BODY=8BITMIME", "RSET",
                                   "MAIL FROM:<a@b.example> SIZE= BODY=8BITMIME", "RSET",
                                   "MAIL FROM:<a@b.example> BODY=8BITMIME SIZE=abc",
                                   "MAIL FROM:<a@b.example> SIZE=abc BODY=bad",
                                   "MAIL FROM:<a@b.example> SIZE=5x PRDR SIZE=0x10",
                                   "MAIL FROM:<a@b.example> SIZE"])
        self.assertEqual(replies, [
            "250 OK", "250 Reset OK", "250 OK", "250 Reset OK",
            "501 <a@b.example> BODY=8BITMIME: malformed address: BODY=8BITMIME may not follow "
            "<a@b.example> ",
            "501 invalid data for BODY",
            "501 <a@b.example> SIZE=5x PRDR: malformed address: SIZE=5x PRDR may not follow "
            "<a@b.example> ",
            "250 OK"])
        self.assertEqual(logs[-2], 'LOG: SMTP syntax error in "MAIL FROM:<a@b.example> SIZE=5x PRDR '
                                   'SIZE=0x10" H=(x) [127.0.0.1] malformed address: SIZE=5x PRDR may '
                                   'not follow <a@b.example> ')

    def test_size_twice_and_out_of_range(self):
        """Of two SIZEs the leftmost counts; one past an int, or negative,
        is refused as ">=2147483647"; a "+" sign is allowed."""
        replies, logs = self.play(["MAIL FROM:<a@b.example> SIZE=2000 SIZE=20",
                                   "MAIL FROM:<a@b.example> SIZE=20 SIZE=2000", "RSET",
                                   "MAIL FROM:<a@b.example> SIZE=99999999999999999999 BODY=7BIT",
                                   "MAIL FROM:<a@b.example> SIZE=-5",
                                   "MAIL FROM:<a@b.example> SIZE=+5"])
        self.assertEqual(replies, ["552 Message size exceeds maximum permitted", "250 OK",
                                   "250 Reset OK"] + ["552 Message size exceeds maximum permitted"] * 2
                         + ["250 OK"])
        too_big = "LOG: rejected MAIL FROM:<a@b.example> H=(x) [127.0.0.1]: message too big: size%s max=1024"
        acl = "LOG: MAIL ACL for <a@b.example>"
        self.assertEqual(logs, [too_big % "=2000", acl, too_big % ">=2147483647",
                                too_big % ">=2147483647", acl])


class OperandWhiteSpaceTests(HostCheckCase):
    """Tabs and other white space in MAIL and RCPT operands."""

    def test_tabs_in_mail_operand(self):
        """A tab may separate the address and a parameter; put back, it is
        echoed as a space; a tab inside the address too; white space at
        either end goes."""
        replies, _ = self.play(["MAIL FROM:\t<a@b.example>\t", "RSET",
                                "MAIL FROM:<a@b.example>\tSIZE=10 \t", "RSET",
                                "MAIL FROM:<a@b.example>\tFOO=1",
                                "MAIL FROM:<a\tb@b.example>",
                                "MAIL  FROM:<a@b.example>"])
        self.assertEqual(replies, [
            "250 OK", "250 Reset OK", "250 OK", "250 Reset OK",
            "501 <a@b.example> FOO=1: malformed address: FOO=1 may not follow <a@b.example> ",
            '501 <a b@b.example>: "@" or "." expected after "a"',
            "500 unrecognized command"])

    def test_tabs_in_rcpt_operand(self):
        """DSN parameters after a tab are taken; an unknown word is joined
        back with "=" (so a space inside the address can make it valid)."""
        replies, logs = self.play(["MAIL FROM:<a@b.example>",
                                   "RCPT TO:<c@d.example>\tNOTIFY=NEVER\t",
                                   "RCPT TO:<c@d.example>\tXX",
                                   "RCPT TO:\t<c d@d.example>\t",
                                   "RCPT TO:<c@d.example>\tXX=1"])
        self.assertEqual(replies, [
            "250 OK", "250 Accepted",
            "501 <c@d.example>=XX: malformed address: =XX may not follow <c@d.example>",
            "250 Accepted",
            "501 <c@d.example> XX=1: malformed address: XX=1 may not follow <c@d.example> "])
        self.assertEqual(logs[-1], 'LOG: SMTP syntax error in "RCPT TO:<c@d.example>\tXX=1" '
                                   'H=(x) [127.0.0.1] malformed address: XX=1 may not follow '
                                   '<c@d.example> ')


    def test_white_space_after_a_command(self):
        """White space at the end of a command line goes before the command
        is recognised."""
        replies, _ = self.play(["NOOP\t", "RSET \t", "HELO x\t"])
        self.assertEqual(replies, ["250 OK", "250 Reset OK", "250 mx.test.example Hello x [127.0.0.1]"])


class UnqualifiedRecipientTests(HostCheckCase):
    """Addresses without a domain in RCPT and VRFY."""

    def test_postmaster_and_others(self):
        """A bare postmaster (any case) is qualified for any client; another
        local part is refused with a line of its own; VRFY's address is
        checked in the same way, and a malformed one is answered with the
        reason alone."""
        conf = HOST_CHECK.replace("begin acl", "acl_smtp_vrfy = accept\n\nbegin acl")
        replies, logs = self.play(["MAIL FROM:<a@b.example>", "RCPT TO:<postmaster>",
                                   "RCPT TO:<PostMaster>", "RCPT TO:<x>", "VRFY y", "VRFY <a b@c>",
                                   "VRFY postmaster"], conf)
        self.assertEqual(replies[1:6], ["250 Accepted", "250 Accepted",
                                        "501 <x>: recipient address must contain a domain",
                                        "501 y: recipient address must contain a domain",
                                        '501 "@" or "." expected after "a"'])
        self.assertEqual(logs[1:3], ["LOG: unqualified recipient rejected: <x> H=(x) [127.0.0.1]",
                                     "LOG: unqualified verify rejected: <y> H=(x) [127.0.0.1]"])


class ParameterErrorTests(HostCheckCase):
    """DSN and AUTH parameters given twice or with bad values."""

    def test_once_only_and_bad_values(self):
        """RET, ENVID, NOTIFY and ORCPT once only; RET, NOTIFY and AUTH
        values checked; an empty NOTIFY sets nothing; each a syntax error."""
        replies, logs = self.play([
            "MAIL FROM:<a@b.example> RET=HDRS RET=FULL", "MAIL FROM:<a@b.example> RET=X",
            "MAIL FROM:<a@b.example> ENVID=x ENVID=y", "MAIL FROM:<a@b.example> AUTH=+zz",
            "MAIL FROM:<a@b.example> AUTH=x+41", "RCPT TO:<c@d.example> NOTIFY=NEVER NOTIFY=NEVER",
            "RCPT TO:<c@d.example> ORCPT=rfc822;a@b ORCPT=rfc822;c@d",
            "RCPT TO:<c@d.example> NOTIFY=SUCCESS,,DELAY", "RCPT TO:<c@d.example> NOTIFY",
            "RCPT TO:<c@d.example> NOTIFY="])
        self.assertEqual(replies, [
            "501 RET can be specified once only", "501 Value for RET is invalid",
            "501 ENVID can be specified once only", "501 invalid data for AUTH", "250 OK",
            "501 NOTIFY can be specified once only", "501 ORCPT can be specified once only",
            "501 Invalid value for NOTIFY parameter", "501 Invalid value for NOTIFY parameter",
            "250 Accepted"])
        self.assertIn("LOG: ignoring AUTH=x+41 from H=(x) [127.0.0.1] (client not authenticated)",
                      logs)

    def test_protocol_errors_logged_as_such(self):
        """Commands out of order are protocol errors, malformed ones syntax
        errors; an unqualified sender has a line of its own."""
        _, logs = self.play(["MAIL FROM:", "RCPT TO:<c@d.example>", "MAIL FROM:<a@b.example>",
                             "MAIL FROM:<a@b.example>", "RCPT TO:<c@>", "AUTH PLAIN", "RSET",
                             "MAIL FROM:x"])
        self.assertEqual(logs, [
            'LOG: SMTP protocol error in "MAIL FROM:" H=(x) [127.0.0.1] MAIL must have an address operand',
            "LOG: MAIL ACL for <a@b.example>",
            'LOG: SMTP protocol error in "MAIL FROM:<a@b.example>" H=(x) [127.0.0.1] sender already given',
            'LOG: SMTP syntax error in "RCPT TO:<c@>" H=(x) [127.0.0.1] domain missing or malformed',
            'LOG: SMTP protocol error in "AUTH PLAIN" H=(x) [127.0.0.1] AUTH command used when not '
            'advertised',
            "LOG: unqualified sender rejected: <x> H=(x) [127.0.0.1]"])


    def test_etrn_argument_checked_as_syntax(self):
        """Without smtp_etrn_command an ETRN argument, empty or not, must
        start with "#": a syntax error, logged after the ETRN line."""
        conf = HOST_CHECK.replace("begin acl", "acl_smtp_etrn = accept\n\nbegin acl")
        replies, logs = self.play(["ETRN", "ETRN x", "ETRN #x"], conf)
        self.assertEqual(replies, ["501 argument must begin with #"] * 2 + ["250 OK"])
        self.assertEqual(logs[:2], ["LOG: ETRN  received from (x) [127.0.0.1]",
                                    'LOG: SMTP syntax error in "ETRN" H=(x) [127.0.0.1] argument must '
                                    'begin with #'])


class BdatArgumentTests(HostCheckCase):
    """BDAT's argument read as Exim's sscanf("%u %n"), and a transfer given up."""

    def test_size_then_last_or_anything(self):
        """An empty first chunk is taken; the chunk is the last only when
        "LAST" alone follows the size, anything else there is ignored.
        (The running total in the last chunk's reply is left out: exim4
        -bh's differs.)"""
        replies, _ = self.play(["MAIL FROM:<a@b.example>", "RCPT TO:<c@d.example>", "BDAT 0",
                                "BDAT 1 LAST x\r\nx" + "BDAT 1 2\r\ny" + "BDAT 1x\r\nz"
                                + "BDAT 0 last"], leave_out=r"^250- \d+ byte chunk, total")
        self.assertEqual(replies, ["250 OK", "250 Accepted", "250 0 byte chunk received",
                                   "250 1 byte chunk received", "250 1 byte chunk received",
                                   "250 1 byte chunk received", "250 OK id=ID"])

    def test_refused_transfer_takes_only_rset(self):
        """A later empty chunk, or another command between chunks, ends
        the transfer: then every command gets "only RSET accepted now" (a
        protocol error; a BDAT's data is read as commands).  (How exim4
        4.96 ends such a session, QUIT answered twice and RSET crashing it,
        is not copied.)"""
        path = self.exim.write_config(HOST_CHECK)
        script = ("EHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nBDAT 1\r\nx"
                  "BDAT 0\r\nNOOP\r\nBDAT 1 LAST\r\nx\r\nRCPT TO:<c@d.example>\r\nBDAT 1\r\nx"
                  "FOO\r\nEHLO y\r\n")
        runs = [normalised(self.exim.run(path, ["-bh", "127.0.0.1"], input=script)),
                normalised(run_exim_py(["-C", path, "-bh", "127.0.0.1"], input=script))]
        # up to the end of the input
        theirs, ours = [([line for line in replies if not line.startswith("250-")][2:-1],
                         [line for line in logs if "lost" not in line]) for replies, logs in runs]
        self.assertEqual(ours, theirs)
        self.assertEqual(theirs[0], ["250 OK", "250 Accepted", "250 1 byte chunk received",
                                     "504 zero size for BDAT command"]
                         + ["503 only RSET accepted now"] * 7)
        self.assertEqual(theirs[1][1:3], [
            'LOG: SMTP protocol error in "BDAT 0" H=(x) [127.0.0.1] zero size for BDAT command',
            'LOG: SMTP protocol error in "NOOP" H=(x) [127.0.0.1] only RSET accepted now'])


class LocalSessionEndTests(unittest.TestCase):
    """-bs: how the end of the input is named."""

    def test_host_address_makes_it_a_disconnection(self):
        """With -oMa the session has a host: "unexpected disconnection", as
        exim4 says; the main logs agree."""
        exim = RealExim()
        self.addCleanup(exim.cleanup)
        dialogue = "EHLO x\r\nMAIL FROM:<a@b.example>\r\n"
        found = {}
        for name, run in (("exim4", lambda conf: exim.run(conf, ["-bs", "-oMa", "192.0.2.1"],
                                                          input=dialogue)),
                          ("exim_py", lambda conf: run_exim_py(["-C", conf, "-bs", "-oMa", "192.0.2.1"],
                                                               input=dialogue))):
            base = exim.exim_user_dirs(name)
            conf = exim.write_config(QUIET_MAIN + "log_file_path = %s/log/%%slog\nspool_directory = "
                                     "%s/spool\n" % (base, base), name + ".conf")
            run(conf)
            found[name] = [line.split(" ", 2)[2] for line in
                           read_text(os.path.join(base, "log", "mainlog")).splitlines()]
        self.assertEqual(found["exim_py"], found["exim4"])
        self.assertRegex(found["exim4"][-1], r"^unexpected disconnection while reading SMTP command "
                                             r"from \(x\) \[192\.0\.2\.1\] U=\S+ D=0s$")
