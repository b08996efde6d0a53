"""MAIL parameters, and the VRFY/EXPN/ETRN log lines, against exim4.

Exim knows a fixed set of MAIL parameters (SIZE, BODY, AUTH, PRDR, RET,
ENVID, SMTPUTF8): one whose extension was not offered is ignored (SMTPUTF8
is refused), a SIZE that is not a number is ignored, a declared size over
the limit is refused after the address is read and logged (size_reject),
and a PRDR request is noted in the 250.  VRFY, EXPN and ETRN refusals log
the argument as received; ETRN is logged as it arrives.  A message sent
with BDAT is flagged K on its "<=" line.  Each dialogue is
played to exim4 and exim_py under ``-bh``.
"""

from twisted.trial import unittest

from tests.support.bh import oracle, same_session, script
from tests.support.peers import QUIET_MAIN

CONF = QUIET_MAIN + """\
smtp_banner = mx ready
message_size_limit = 1M
{extra}
acl_smtp_rcpt = accept
acl_smtp_vrfy = deny
acl_smtp_expn = deny
acl_smtp_etrn = deny
"""


class MailParameterTests(unittest.TestCase):
    """What exim4 answers and logs for MAIL's parameters."""

    def setUp(self):
        self.exim = oracle(self)

    def play(self, commands, extra=""):
        """Both -bh sessions' (replies, log lines) after EHLO, compared."""
        path = self.exim.write_config(CONF.format(extra=extra))
        replies, logs = same_session(self, self.exim, path, script(["EHLO x"] + commands + ["QUIT"]))
        return [line for line in replies if not line.startswith("250-")][2:-1], logs

    def test_parameters_not_offered_are_ignored(self):
        """RET, ENVID, PRDR, BODY without their extensions, and a SIZE that
        is not a number: 250; SMTPUTF8 not offered: 501."""
        replies, _ = self.play(["MAIL FROM:<a@b.example> BODY=8BITMIME RET=HDRS ENVID=x PRDR", "RSET",
                                "MAIL FROM:<a@b.example> SIZE=x", "RSET",
                                "MAIL FROM:<a@b.example> SMTPUTF8"],
                               extra="accept_8bitmime = false")
        self.assertEqual(replies, ["250 OK", "250 Reset OK", "250 OK", "250 Reset OK",
                                   "501 SMTPUTF8 used when not advertised"])

    def test_prdr_requested(self):
        """With PRDR offered, MAIL's 250 says it was requested."""
        replies, _ = self.play(["MAIL FROM:<a@b.example> PRDR"], extra="prdr_enable = true")
        self.assertEqual(replies, ["250 OK, PRDR Requested"])

    def test_size_over_limit_logged(self):
        """SIZE over message_size_limit: 552 and the size_reject line; a
        size beyond a C int is shown as ">=2147483647"."""
        replies, logs = self.play(["MAIL FROM:<a> SIZE=2000000", "MAIL FROM:<a@b.example> SIZE=99999999999"])
        self.assertEqual(replies, ["552 Message size exceeds maximum permitted"] * 2)
        self.assertEqual(logs, [
            "LOG: rejected MAIL FROM:<a> H=(x) [127.0.0.1]: message too big: size=2000000 max=1048576",
            "LOG: rejected MAIL FROM:<a@b.example> H=(x) [127.0.0.1]: message too big: "
            "size>=2147483647 max=1048576"])

    def test_vrfy_expn_etrn_logged_with_argument(self):
        """The refusals name the argument as received; ETRN is logged on arrival."""
        _, logs = self.play(["VRFY <a@b.example>", "EXPN list", "ETRN #x"])
        self.assertEqual(logs, ["LOG: H=(x) [127.0.0.1] rejected VRFY <a@b.example>",
                                "LOG: H=(x) [127.0.0.1] rejected EXPN list",
                                "LOG: ETRN #x received from (x) [127.0.0.1]",
                                "LOG: H=(x) [127.0.0.1] rejected ETRN #x"])

    def test_bdat_message_flagged_k(self):
        """A message sent with BDAT has K on its <= line, and BDAT's replies."""
        replies, logs = self.play(["MAIL FROM:<a@b.example>", "RCPT TO:<c@d.example>",
                                   "BDAT 17 LAST\r\nSubject: s\r\n\r\nb"])
        self.assertEqual(replies[-1], "250 OK id=ID")
        self.assertRegex(logs[-1], r"^LOG: ID <= a@b\.example .* P=esmtp K S=\d+$")
