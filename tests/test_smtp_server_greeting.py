"""The greeting when the connect ACL accepts with a message.

Exim greets with an accepting connect ACL's ``message`` instead of
smtp_banner; a reply code at the message's start is used when it is a 2xx
one (with its enhanced code), and any other is dropped with a panic-log
line.  Each case is played to exim4 and exim_py under ``-bh``: the replies
and log lines must be the same.
"""

from twisted.trial import unittest

from tests.support.peers import RealExim, run_exim_py

CONF = """\
primary_hostname = mx.test.example
keep_environment =
host_lookup =
smtp_banner = the banner
acl_smtp_connect = {acl}
"""


def session(result):
    """The reply and LOG: lines of a -bh run."""
    replies = [line for line in result.stdout.splitlines() if line[:3].isdigit()]
    logs = [line for line in result.stderr.splitlines() if line.startswith("LOG: ")]
    return replies, logs


class ConnectGreetingTests(unittest.TestCase):
    """What the client is greeted with, as exim4 greets it."""

    def setUp(self):
        self.exim = RealExim()
        self.addCleanup(self.exim.cleanup)

    def greet(self, acl):
        """Both greetings for connect ACL ``acl``, compared; exim_py's."""
        path = self.exim.write_config(CONF.format(acl=acl))
        theirs = session(self.exim.run(path, ["-bh", "127.0.0.1"], input="QUIT\r\n"))
        ours = session(run_exim_py(["-C", path, "-bh", "127.0.0.1"], input="QUIT\r\n"))
        self.assertEqual(ours, theirs)
        return ours

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
