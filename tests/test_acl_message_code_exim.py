"""An accepting ACL's ``message`` as the reply, with the code at its start.

When an ACL accepts with a message, Exim sends the message in place of the
default reply, and a reply code (with any enhanced code) at its start is
used when its first digit is the default's: 2 for MAIL, RCPT, HELO/EHLO
and the end of DATA, 3 for the DATA command.  Another code is dropped and
logged to the main and panic logs.  A HELO/EHLO message is one line: the
code goes on every EHLO line, the enhanced code on the first, and a newline
cuts the message with a panic-log line.  Each case is played to exim4 and
exim_py under ``-bh``; replies and log lines must be the same.
"""

from twisted.trial import unittest

from tests.support.bh import oracle, same_session, script

CONF = """\
primary_hostname = mx.test.example
keep_environment =
host_lookup =
smtputf8_advertise_hosts =
smtp_banner = mx ready
acl_smtp_helo = a_helo
acl_smtp_mail = a_mail
acl_smtp_rcpt = a_rcpt
acl_smtp_predata = a_predata
acl_smtp_data = a_data

begin acl

a_helo:
  accept condition = ${{if eq{{$sender_helo_name}}{{h}}}}
         message = {helo}
  accept

a_mail:
  accept message = {mail}

a_rcpt:
  accept local_parts = fwd
         message = 251 forwarded
  accept local_parts = wrong
         message = 551 5.1.1 not a 2xx
  accept local_parts = enh
         message = 252 2.1.5 will try
  accept local_parts = plain
         message = just text
  accept local_parts = multi
         message = 251 first line\\nsecond line
  accept

a_predata:
  accept message = {predata}

a_data:
  accept message = {data}
"""

class AcceptMessageCodeTests(unittest.TestCase):
    """Codes at the start of an accepting ACL's message, as exim4 uses them."""

    def setUp(self):
        self.exim = oracle(self)

    def play(self, commands, helo="hello", mail="sender ok", predata="go ahead", data="got it"):
        """Both -bh sessions' (replies, log lines), compared; exim_py's."""
        path = self.exim.write_config(CONF.format(helo=helo, mail=mail, predata=predata, data=data))
        return same_session(self, self.exim, path, script(commands + ["QUIT"]))

    def test_rcpt_2xx_codes_are_the_reply(self):
        """``251 forwarded`` is sent as such, an enhanced code is kept, a
        message without a code gets 250, and a multi-line one repeats the
        code."""
        replies, logs = self.play(["EHLO x", "MAIL FROM:<a@b.example>", "RCPT TO:<fwd@b.example>",
                                   "RCPT TO:<enh@b.example>", "RCPT TO:<plain@b.example>",
                                   "RCPT TO:<multi@b.example>"])
        self.assertEqual(replies[-6:-1], ["251 forwarded", "252 2.1.5 will try", "250 just text",
                                          "251-first line", "251 second line"])
        self.assertEqual(logs, [])

    def test_rcpt_other_code_is_dropped_and_logged(self):
        """A 5xx code (and its enhanced code) in an accepting message is cut
        off: 250 with the rest, and a panic-log line."""
        replies, logs = self.play(["EHLO x", "MAIL FROM:<a@b.example>", "RCPT TO:<wrong@b.example>"])
        self.assertEqual(replies[-2], "250 not a 2xx")
        self.assertEqual(logs, ['LOG: configured error code starts with incorrect digit (expected 2) '
                                'in "551 5.1.1 not a 2xx"'])

    def test_mail_code(self):
        """MAIL's accepting message gives its 2xx code."""
        replies, _ = self.play(["EHLO x", "MAIL FROM:<a@b.example>"], mail="251 2.1.0 sender fine")
        self.assertEqual(replies[-2], "251 2.1.0 sender fine")

    def test_ehlo_code_on_every_line(self):
        """EHLO: the message's code on every line, the enhanced code on the first only."""
        replies, _ = self.play(["EHLO h"], helo="251 2.0.0 hi there")
        ehlo = replies[1:-1]
        self.assertEqual(ehlo[0], "251-2.0.0 hi there")
        self.assertTrue(all(line.startswith("251") for line in ehlo), ehlo)

    def test_helo_newline_truncates(self):
        """A HELO message with a newline is cut there, with a panic-log line."""
        replies, logs = self.play(["HELO h"], helo="hi\\nthere")
        self.assertEqual(replies[1], "250 hi")
        self.assertEqual(logs, ["LOG: EHLO/HELO response must not contain newlines: "
                                "message truncated: 250 hi\\nthere"])

    def test_helo_wrong_code(self):
        """A 4xx code on an accepting HELO message is dropped and logged."""
        replies, logs = self.play(["HELO h"], helo="451 nope")
        self.assertEqual(replies[1], "250 nope")
        self.assertEqual(len(logs), 1)

    def test_data_command_and_end_of_data(self):
        """The DATA command's accepting message may give a 3xx code; the DATA
        ACL's message replaces "OK id=..." at the end."""
        replies, _ = self.play(["EHLO x", "MAIL FROM:<a@b.example>", "RCPT TO:<fwd@b.example>", "DATA",
                                "Subject: s", "", "body", "."],
                               predata="352 send it", data="251 2.6.0 queued")
        self.assertEqual(replies[-3:-1], ["352 send it", "251 2.6.0 queued"])


OTHER_CONF = """\
primary_hostname = mx.test.example
keep_environment =
host_lookup =
smtputf8_advertise_hosts =
smtp_banner = mx ready
acl_smtp_quit = a_quit
acl_smtp_vrfy = a_msg
acl_smtp_expn = a_msg
acl_smtp_etrn = a_msg

begin acl

a_quit:
  {quit}

a_msg:
  accept message = 252 2.1.0 maybe
"""


class OtherCommandMessageTests(unittest.TestCase):
    """QUIT, VRFY, EXPN and ETRN with an accepting ACL's message, as exim4."""

    def play(self, quit):
        """Both -bh sessions (replies after EHLO, log lines), compared."""
        exim = oracle(self)
        path = exim.write_config(OTHER_CONF.format(quit=quit))
        ours = same_session(self, exim, path, "EHLO x\r\nVRFY a@b.example\r\nEXPN x\r\nETRN #x\r\nQUIT\r\n")
        return [line for line in ours[0] if not line.startswith("250-")][2:], ours[1]

    def test_messages(self):
        """VRFY and EXPN go on to verify and expand; ETRN takes the code;
        QUIT puts 221 before the whole message; a failed VRFY is logged."""
        replies, logs = self.play("accept message = 221 2.0.0 bye now")
        self.assertEqual(replies, ["550 <a@b.example> Unrouteable address",
                                   "553 x@mx.test.example is undeliverable",
                                   "252 2.1.0 maybe", "221 221 2.0.0 bye now"])
        self.assertEqual(logs[0], "LOG: VRFY failed for a@b.example H=(x) [127.0.0.1]")

    def test_quit_acl_may_not_fail(self):
        """A deny in the QUIT ACL is an error, logged; the reply is the usual 221."""
        replies, logs = self.play("deny message = 550 no")
        self.assertEqual(replies[-1], "221 550 no")
        self.assertEqual(logs[-1], "LOG: ACL for QUIT returned ERROR: QUIT or not-QUIT toplevel ACL "
                                   "may not fail ('deny' verb used incorrectly)")
