"""MAIL and RCPT operands: the address parse_path takes out of them.

Most clients send ``<local@domain>`` with plain dot-atoms, which takes a
short path; anything else (quotes, comments, source routes, literals,
malformed dots) goes through the full address parser.  Both must give the
same answers, which are Exim's.
"""

from twisted.trial import unittest

from exim_py.smtp.params import BadAddress, OptionScanner, parse_path


class ParsePathTests(unittest.TestCase):
    """parse_path: the mailbox of an operand, or Exim's complaint about it."""

    def test_addresses(self):
        """Simple and less simple paths give the address as written (case kept)."""
        for operand, address in (("<a@b.example>", "a@b.example"),
                                 (" <A.B@C.Example> ", "A.B@C.Example"),
                                 ("<a+tag=x@b-c.example>", "a+tag=x@b-c.example"),
                                 ('<"a b"@c.example>', '"a b"@c.example'),
                                 ("<@r1,@r2:u@d.example>", "u@d.example"),
                                 ("<a(comment)@b.example>", "a@b.example"),
                                 ("<a@[192.0.2.1]>", "a@[192.0.2.1]"),
                                 ("a@b.example", "a@b.example"),
                                 # exim4 takes empty words between dots too
                                 ("<a..b@c.example>", "a..b@c.example"),
                                 ("<.a@b.example>", ".a@b.example")):
            self.assertEqual(parse_path(operand, allow_empty=False), address, operand)
        self.assertEqual(parse_path("<>", allow_empty=True), "")

    def test_malformed(self):
        """Paths that look simple but are not get the full parser's reasons."""
        for operand, reason in (("<a@b..c>", "domain missing or malformed"),
                                ("<a@-b.example>", "domain missing or malformed"),
                                ("<a@b.example.>", "domain missing or malformed"),
                                ("<a@b.example", "'>' missing at end of address"),
                                ("<a@b.example>x", "malformed address: x may not follow <a@b.example>"),
                                ("<>", "missing or malformed local part")):
            with self.assertRaises(BadAddress) as caught:
                parse_path(operand, allow_empty=False)
            self.assertEqual(str(caught.exception), reason, operand)

    def test_parameters_then_path(self):
        """ESMTP parameters come off the end, the last first; the path is what is left."""
        scan = OptionScanner("<a@b.example> SIZE=10 BODY=8BITMIME")
        self.assertEqual([scan.next(), scan.next(), scan.next()],
                         [("BODY", "8BITMIME"), ("SIZE", "10"), None])
        self.assertEqual(parse_path(scan.operand, allow_empty=False), "a@b.example")
