"""PIPECONNECT on a later EHLO, against exim4 -bh.

Exim offers PIPECONNECT on an EHLO only while its early pipelining is still
possible: once the session has seen a DATA (whatever became of it), a later
EHLO leaves the keyword out.  A second EHLO before any DATA, even after a
MAIL and RSET, still offers it.
"""

from twisted.trial import unittest

from tests.support.peers import QUIET_MAIN, RealExim, run_exim_py
from tests.test_acl_message_code_exim import session

CONF = QUIET_MAIN + "smtp_banner = mx ready\nacl_smtp_rcpt = accept\n"


class PipeConnectLaterEhloTests(unittest.TestCase):
    """How many EHLO replies offer PIPECONNECT, as exim4 counts them."""

    def offers(self, dialogue):
        exim = RealExim()
        self.addCleanup(exim.cleanup)
        path = exim.write_config(CONF)
        theirs = session(exim.run(path, ["-bh", "127.0.0.1"], input=dialogue))
        ours = session(run_exim_py(["-C", path, "-bh", "127.0.0.1"], input=dialogue))
        self.assertEqual(ours[0], theirs[0])
        return sum(1 for reply in ours[0] if reply.endswith("PIPECONNECT"))

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
