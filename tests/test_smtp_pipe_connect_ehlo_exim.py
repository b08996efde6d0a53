"""PIPECONNECT on a later EHLO, against exim4 -bh.

Exim offers PIPECONNECT on an EHLO only while its early pipelining is still
possible: once the session has seen a DATA (whatever became of it), a later
EHLO leaves the keyword out.  A second EHLO before any DATA, even after a
MAIL and RSET, still offers it.
"""

from twisted.trial import unittest

from tests.support.bh import oracle, reply_lines, same_session
from tests.support.peers import QUIET_MAIN

CONF = QUIET_MAIN + "smtp_banner = mx ready\nacl_smtp_rcpt = accept\n"


class PipeConnectLaterEhloTests(unittest.TestCase):
    """How many EHLO replies offer PIPECONNECT, as exim4 counts them."""

    def offers(self, dialogue):
        exim = oracle(self)
        path = exim.write_config(CONF)
        replies = same_session(self, exim, path, dialogue, summary=lambda result: reply_lines(result.stdout))
        return sum(1 for reply in replies if reply.endswith("PIPECONNECT"))

    def test_second_ehlo_before_data_offers_it(self):
        """EHLO, MAIL, RSET, EHLO: both replies offer PIPECONNECT."""
        self.assertEqual(self.offers("EHLO x\r\nMAIL FROM:<a@b.example>\r\nRSET\r\nEHLO y\r\nQUIT\r\n"), 2)

    def test_ehlo_after_a_message_does_not(self):
        """After a message, the next EHLO leaves PIPECONNECT out."""
        dialogue = ("EHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n"
                    "Subject: x\r\n\r\nhi\r\n.\r\nEHLO y\r\nQUIT\r\n")
        self.assertEqual(self.offers(dialogue), 1)

    def test_ehlo_after_a_refused_data_does_not(self):
        """A DATA with no recipient (503) ends it too."""
        self.assertEqual(self.offers("EHLO x\r\nMAIL FROM:<a@b.example>\r\nDATA\r\nEHLO y\r\nQUIT\r\n"), 1)
