"""A HELO or EHLO whose argument is not a valid name, against exim4.

Exim answers 501, and writes a main and reject log line naming the client
(as host_and_ident without H=) and the argument through string_printing
("(no argument given)" when there is none).  The error counts towards
smtp_max_synprot_errors; the one that passes the limit closes the session
with the 501 alone and the "dropped" line with the C= list of commands.
Each dialogue is played to exim4 and exim_py under ``-bh``.  A local
caller's EHLO (``-bs``) is compared too: PIPECONNECT needs a client address.
"""

from twisted.trial import unittest

from tests.support.bh import oracle, same_session
from tests.support.peers import QUIET_MAIN, run_exim_py

CONF = QUIET_MAIN + "smtp_banner = mx ready\n"


class InvalidHeloTests(unittest.TestCase):
    """What exim4 says and logs for a bad HELO/EHLO argument."""

    def setUp(self):
        self.exim = oracle(self)

    def play(self, dialogue):
        """Both -bh sessions' (replies, log lines), compared; exim_py's."""
        path = self.exim.write_config(CONF)
        return same_session(self, self.exim, path, dialogue)

    def test_control_character_is_escaped_in_the_log(self):
        """``EHLO a<ctrl-A>b``: 501 and the argument as ``a\\001b``."""
        replies, logs = self.play("EHLO a\x01b\r\nQUIT\r\n")
        self.assertEqual(replies[1], "501 Syntactically invalid EHLO argument(s)")
        self.assertEqual(logs, ["LOG: rejected EHLO from [127.0.0.1]: "
                                "syntactically invalid argument(s): a\\001b"])

    def test_earlier_helo_name_is_in_the_log(self):
        """After a good HELO the line names the client by that name."""
        _, logs = self.play("HELO good\r\nHELO a b\r\nQUIT\r\n")
        self.assertEqual(logs, ["LOG: rejected HELO from (good) [127.0.0.1]: "
                                "syntactically invalid argument(s): a b"])

    def test_missing_argument_and_top_bit_bytes(self):
        """No argument is "(no argument given)"; UTF-8 bytes are octal escapes."""
        _, logs = self.play("HELO a\u00e9\r\nEHLO\r\nQUIT\r\n")
        self.assertEqual([line.rsplit(": ", 1)[1] for line in logs],
                         ["a\\303\\251", "(no argument given)"])

    def test_too_many_bad_helos_drop_the_session(self):
        """The fourth error closes the session: 501 alone, then the
        dropped line with the commands used."""
        replies, logs = self.play("EHLO a\x01b\r\nHELO a b\r\nHELO ;\r\nEHLO\r\nQUIT\r\n")
        self.assertEqual(replies[-1], "501 Syntactically invalid EHLO argument(s)")
        self.assertEqual(logs[-1], 'LOG: SMTP call from [127.0.0.1] dropped: too many syntax or protocol '
                                   'errors (last command was "EHLO",  C=EHLO,HELO,HELO,EHLO)')


class EhloLocalCallerTests(unittest.TestCase):
    """``-bs``: the EHLO reply to a local caller, as exim4 gives it."""

    def test_no_pipeconnect_without_an_address(self):
        """PIPECONNECT needs a client address: offered under -bs only with -oMa."""
        exim = oracle(self)
        path = exim.write_config(CONF)
        dialogue = "EHLO x\r\nQUIT\r\n"
        for extra in ([], ["-oMa", "10.0.0.1"]):
            theirs = exim.run(path, ["-bs"] + extra, input=dialogue).stdout.splitlines()[1:]
            ours = run_exim_py(["-C", path, "-bs"] + extra, input=dialogue).stdout.splitlines()[1:]
            self.assertEqual(ours, theirs)
            self.assertEqual("250-PIPECONNECT" in ours, bool(extra))
