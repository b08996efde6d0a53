"""The greeting: an accepting connect ACL's message, or smtp_banner.

Exim greets with an accepting connect ACL's ``message`` instead of
smtp_banner; a reply code at the message's start is used when it is a 2xx
one (with its enhanced code), and any other is dropped with a panic-log
line.  A banner that cannot be expanded is logged and the connection closed
without a greeting.  Each case is played to exim4 and exim_py under
``-bh``: the replies and log lines must be the same.
"""

from twisted.trial import unittest

from tests.support.bh import oracle, same_session

CONF = """\
primary_hostname = mx.test.example
keep_environment =
host_lookup =
smtp_banner = {banner}
acl_smtp_connect = {acl}
"""


class GreetingTests(unittest.TestCase):
    """What the client is greeted with, as exim4 greets it."""

    def setUp(self):
        self.exim = oracle(self)

    def greet(self, acl="accept", banner="the banner"):
        """Both sessions' (replies, log lines) for this connect ACL and
        banner, compared; exim_py's."""
        path = self.exim.write_config(CONF.format(acl=acl, banner=banner))
        return same_session(self, self.exim, path, "QUIT\r\n")

    def test_accept_message_replaces_the_banner(self):
        """``accept message = ...`` is the 220 text."""
        self.assertEqual(self.greet("accept message = hello there")[0][0], "220 hello there")

    def test_plain_accept_keeps_the_banner(self):
        """Without a message the banner stays."""
        self.assertEqual(self.greet("accept")[0][0], "220 the banner")

    def test_2xx_code_and_enhanced_code_are_used(self):
        """A 2xx code, with an enhanced code, at the message's start is the reply's."""
        self.assertEqual(self.greet("accept message = 221 2.0.0 hi there")[0][0], "221 2.0.0 hi there")

    def test_other_code_is_dropped_and_logged(self):
        """A 5xx code in an accepting message is dropped: 220 and a panic-log line."""
        replies, logs = self.greet("accept message = 550 nope")
        self.assertEqual(replies[0], "220 nope")
        self.assertEqual(logs, ['LOG: configured error code starts with incorrect digit (expected 2) '
                                'in "550 nope"'])

    def test_forced_failure_closes_without_greeting(self):
        """A banner whose expansion is forced to fail is logged and the
        connection closed: no reply at all."""
        self.assertEqual(self.greet(banner="x${if eq{a}{b}{y}fail}"), ([], [
            'LOG: Expansion of "x${if eq{a}{b}{y}fail}" (smtp_banner) failed: '
            '"if" failed and "fail" requested']))

    def test_bad_expansion_closes_without_greeting(self):
        """So is one that cannot be expanded (also a panic-log line)."""
        replies, logs = self.greet(banner="x${nosuchop{a}}")
        self.assertEqual(replies, [])
        self.assertEqual(len(logs), 1)
        self.assertTrue(logs[0].startswith('LOG: Expansion of "x${nosuchop{a}}" (smtp_banner) failed: '),
                        logs)
