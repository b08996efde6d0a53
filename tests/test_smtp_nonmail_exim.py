"""smtp_accept_max_nonmail, domain literals in MAIL/RCPT and STARTTLS under
-bh, each played to exim4 and exim_py under ``-bh``: replies and log lines
must be the same.

Exim counts every command but MAIL, RCPT, DATA, BDAT and QUIT, except that
while a new message is expected one RSET, one HELO or EHLO and one STARTTLS
are free, and so is the first AUTH; a limit of 0 lets no counted command
through.  An address with a domain literal is refused unless
allow_domain_literals is set.
"""

from twisted.trial import unittest

from tests.support.bh import host_checks, oracle, same_session, session
from tests.support.peers import QUIET_MAIN
from tests.support.pki import ServerPKI

CONF = QUIET_MAIN + """\
smtp_banner = mx ready
smtp_accept_max_nonmail = {limit}
{extra}
acl_smtp_rcpt = accept
"""

MESSAGE = "MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\n"


class NonmailLimitTests(unittest.TestCase):
    """Which commands count towards smtp_accept_max_nonmail, as exim4 counts."""

    def setUp(self):
        self.exim = oracle(self)

    def play(self, dialogue, limit=0, extra=""):
        """Both -bh sessions' (replies, log lines), compared; exim_py's."""
        path = self.exim.write_config(CONF.format(limit=limit, extra=extra))
        return same_session(self, self.exim, path, dialogue)

    def test_zero_lets_no_counted_command_through(self):
        """Limit 0: the first EHLO and RSET are free, the second RSET (sent in
        lower case, and logged so) ends the session with 554."""
        replies, logs = self.play("EHLO x\r\nRSET\r\nrset now\r\nQUIT\r\n")
        self.assertEqual(replies[-1], "554 Too many nonmail commands")
        self.assertEqual(logs, ['LOG: SMTP call from (x) [127.0.0.1] dropped: too many nonmail '
                                'commands (last was "rset")'])

    def test_helo_after_ehlo_and_noop_count(self):
        """HELO after EHLO is counted, and so is NOOP from the start."""
        replies, _ = self.play("EHLO x\r\nHELO x\r\nQUIT\r\n")
        self.assertEqual(replies[-1], "554 Too many nonmail commands")
        replies, _ = self.play("HELO x\r\nNOOP\r\nQUIT\r\n")
        self.assertEqual(replies[-1], "554 Too many nonmail commands")

    def test_a_message_frees_rset_and_helo_again(self):
        """After a message one RSET and one HELO are free again; the next RSET
        is not.  (Only the replies are compared: exim4 puts the last
        message's id on the dropped line, which exim_py does not yet.)"""
        dialogue = "EHLO x\r\nRSET\r\n" + MESSAGE + "RSET\r\nHELO y\r\nRSET\r\nQUIT\r\n"
        path = self.exim.write_config(CONF.format(limit=0, extra=""))
        theirs, ours = host_checks(self.exim, path, dialogue)
        replies, _ = session(ours)
        self.assertEqual(replies, session(theirs)[0])
        self.assertEqual(replies[-3:], ["250 Reset OK", "250 mx.test.example Hello y [127.0.0.1]",
                                        "554 Too many nonmail commands"])

    def test_default_limit_counts_noops(self):
        """With the default limit of 10 the eleventh NOOP is refused."""
        replies, _ = self.play("EHLO x\r\n" + "NOOP\r\n" * 11 + "QUIT\r\n", limit=10)
        self.assertEqual(replies[-2:], ["250 OK", "554 Too many nonmail commands"])


class DomainLiteralTests(unittest.TestCase):
    """allow_domain_literals (default false) in MAIL, RCPT and VRFY."""

    def setUp(self):
        self.exim = oracle(self)

    def play(self, extra):
        dialogue = ("EHLO x\r\nMAIL FROM:<a@[192.0.2.1]>\r\nMAIL FROM:<a@b.example>\r\n"
                    "RCPT TO:<c@[192.0.2.1]>\r\nQUIT\r\n")
        path = self.exim.write_config(CONF.format(limit=10, extra=extra))
        return same_session(self, self.exim, path, dialogue)[0]

    def test_refused_by_default(self):
        """``<a@[192.0.2.1]>`` gets "501 ...: domain literals not allowed"."""
        replies = self.play("")
        self.assertEqual(replies[-4:-1], ["501 <a@[192.0.2.1]>: domain literals not allowed", "250 OK",
                                          "501 <c@[192.0.2.1]>: domain literals not allowed"])

    def test_allowed_when_set(self):
        """With allow_domain_literals the same addresses are taken (the
        second MAIL is then a nested one)."""
        replies = self.play("allow_domain_literals")
        self.assertEqual([reply[:3] for reply in replies[-4:-1]], ["250", "503", "250"])


class StartTlsUnderBhTests(unittest.TestCase):
    """-bh has no socket to start TLS on: exim4 says go ahead, its handshake
    fails on what follows, and the session ends with the TLS error line."""

    def test_go_ahead_then_the_session_ends(self):
        exim = oracle(self)
        leaf = ServerPKI().server("mx", ["mx.test.example"])
        conf = CONF.replace("tls_advertise_hosts =\n", "tls_advertise_hosts = *\n")
        path = exim.write_config(conf.format(limit=10, extra="tls_certificate = %s\ntls_privatekey = %s"
                                             % (leaf.chain_path, leaf.key_path)))
        dialogue = "EHLO x\r\nSTARTTLS\r\nQUIT\r\n"
        theirs, result = host_checks(exim, path, dialogue)
        theirs, ours = session(theirs), session(result)
        self.assertNotIn("Traceback", result.stderr)
        self.assertEqual(ours[0], theirs[0])
        self.assertEqual(ours[0][-1], "220 TLS go ahead")
        # the library's words differ (GnuTLS there, OpenSSL here)
        self.assertEqual([line.split("] ")[0] for line in ours[1]],
                         [line.split("] ")[0] for line in theirs[1]])
        self.assertTrue(ours[1][-1].startswith("LOG: TLS error on connection from (x) [127.0.0.1] "))
