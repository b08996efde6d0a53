"""PRDR when the per-recipient ACL refuses every recipient, against exim4.

Exim answers with its per-recipient lines and "250 id=... message accepted
for some recipients" (sic), but with no recipient left it neither runs the
DATA ACL nor logs an arrival; no recipient was discarded, so the discard
path's blackhole lines do not apply either.
"""

from twisted.trial import unittest

from tests.support.bh import oracle, same_session
from tests.support.peers import QUIET_MAIN

CONF = QUIET_MAIN + """\
smtp_banner = mx ready
prdr_enable = true
acl_smtp_rcpt = accept
acl_smtp_data_prdr = prdr_acl
acl_smtp_data = data_acl

begin acl

prdr_acl:
  defer   local_parts = usery
  deny    local_parts = userz
  accept

data_acl:
  accept  logwrite = data ACL ran
"""


class PrdrAllRefusedTests(unittest.TestCase):
    """Every recipient refused by acl_smtp_data_prdr."""

    def test_replies_and_log_as_exim4(self):
        """Both refused (a deferral twice): the same 353, 450 lines, final
        reply and log lines as exim4: the PRDR lines only."""
        exim = oracle(self)
        path = exim.write_config(CONF)
        dialogue = ("EHLO x\r\nMAIL FROM:<> PRDR\r\nRCPT TO:<usery@test.example>\r\n"
                    "RCPT TO:<usery@test.example>\r\nDATA\r\nSender: s@some.where\r\n.\r\nQUIT\r\n")
        ours = same_session(self, exim, path, dialogue)
        self.assertEqual(ours[0][-4:-2], ["450 PRDR R=<usery@test.example> temporary refusal"] * 2)
        self.assertEqual(ours[1], ["LOG: ID PRDR R=<usery@test.example> temporary refusal"] * 2)
