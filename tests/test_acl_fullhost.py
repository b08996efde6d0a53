"""$sender_fullhost and $sender_rcvhost in the ACLs before DATA.

Exim sets both as the connection starts and rebuilds them after HELO (and
after the host name lookup), so a connect, MAIL or RCPT ACL can already log
them.  The same configuration and dialogue go through ``exim4 -bh`` and
``exim_py -bh``; the lines the ACLs write must be the same.
"""

from twisted.trial import unittest

from tests.support.bh import host_checks, oracle, script

MAIN = """\
primary_hostname = mx.test.example
keep_environment =
host_lookup =
rfc1413_hosts =
tls_advertise_hosts =
"""

CONF = MAIN + """\
acl_smtp_connect = a_conn
acl_smtp_mail = a_mail
acl_smtp_rcpt = a_rcpt
begin acl
a_conn:
  warn logwrite = C FH=<$sender_fullhost> RH=<$sender_rcvhost>
  accept
a_mail:
  warn logwrite = M FH=<$sender_fullhost> RH=<$sender_rcvhost>
  accept
a_rcpt:
  warn logwrite = R FH=<$sender_fullhost> RH=<$sender_rcvhost>
  accept
"""


def acl_lines(text):
    return [line for line in text.splitlines() if line.startswith("LOG: ") and "FH=<" in line]


class SenderFullhostTests(unittest.TestCase):
    """The host strings ACLs see before DATA match exim4's."""

    def setUp(self):
        self.exim = oracle(self)
        self.conf = self.exim.write_config(CONF)

    def compare(self, commands):
        theirs, ours = host_checks(self.exim, self.conf, script(commands), "10.1.2.3")
        theirs = acl_lines(theirs.stderr)
        self.assertEqual(len(theirs), 3)
        self.assertEqual(acl_lines(ours.stdout + ours.stderr), theirs)
        return theirs

    def test_set_at_connect_and_after_helo(self):
        """Before HELO they are the bracketed address; after EHLO they carry the name."""
        lines = self.compare(["EHLO client.example", "MAIL FROM:<a@b.example>",
                              "RCPT TO:<c@d.example>", "QUIT"])
        self.assertIn("C FH=<[10.1.2.3]>", lines[0])
        self.assertIn("(client.example) [10.1.2.3]", lines[1])

    def test_ip_literal_helo(self):
        """A HELO that is the connection's own IP literal is left out of $sender_rcvhost."""
        self.compare(["HELO [10.1.2.3]", "MAIL FROM:<a@b.example>", "RCPT TO:<c@d.example>", "QUIT"])


AUTHRESULTS_CONF = MAIN + """\
acl_smtp_connect = a_conn
begin acl
a_conn:
  warn logwrite = AR ${authresults{vm}}
  accept
"""


class AuthResultsLookupTests(unittest.TestCase):
    """${authresults} uses the host name as known; it starts no lookup."""

    def test_no_lookup_for_authresults(self):
        """Without host_lookup, exim4 writes no iprev clause for 127.0.0.1; neither may exim_py."""
        exim = oracle(self)
        conf = exim.write_config(AUTHRESULTS_CONF)

        def lines(text):
            return [line for line in text.splitlines() if line.startswith("LOG: AR")]

        theirs, ours = host_checks(exim, conf, "QUIT\r\n")
        theirs = lines(theirs.stderr)
        self.assertEqual(theirs, ["LOG: AR Authentication-Results: vm"])
        self.assertEqual(lines(ours.stdout + ours.stderr), theirs)
