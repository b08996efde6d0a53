"""The "SMTP call from ... dropped" lines, byte for byte against exim4.

When a session ends for too many syntax or protocol errors Exim logs the
client (host_and_ident without H=: the caller's login name under -bs, the
address and HELO name from a host), the last command through
string_printing, and the C= list of the commands seen (the last 20, with
"C=..." once Exim's ring of 20 is full).  Too many unknown commands give
a shorter line without C=.  ``-bs`` is compared through the log files,
``-bh`` through its LOG: lines.
"""

import os
import pwd

from twisted.trial import unittest

from tests.support.bh import host_checks, logged, oracle, same_session
from tests.support.peers import QUIET_MAIN, run_exim_py

FILES = QUIET_MAIN + """\
log_file_path = %(dir)s/log/%%slog
spool_directory = %(dir)s/spool
acl_smtp_rcpt = accept
"""

MAIL = "MAIL FROM:<a@b.example>\r\n"


class DropLineFilesTests(unittest.TestCase):
    """``-bs``: the main and reject logs get exim4's dropped lines."""

    def setUp(self):
        self.exim = oracle(self)

    def logs(self, name, command):
        """Run ``command`` on a config with its own logs; the main and reject
        log lines without timestamps."""
        base = self.exim.exim_user_dirs(name)
        conf = self.exim.write_config(FILES % {"dir": base}, name + ".conf")
        command(conf)
        return self.exim.logs(base, ("main", "reject"))

    def compare(self, dialogue):
        """Both programs' logs for a -bs dialogue, compared; exim4's main log."""
        theirs = self.logs("exim4", lambda conf: self.exim.run(conf, ["-bs"], input=dialogue))
        ours = self.logs("exim_py", lambda conf: run_exim_py(["-C", conf, "-bs"], input=dialogue))
        self.assertEqual(ours, theirs)
        return theirs["main"]

    def test_synprot_drop_names_caller_and_commands(self):
        """The caller's name, the escaped last command and C= in order."""
        login = pwd.getpwuid(os.getuid()).pw_name
        main = self.compare("EHLO x\r\n" + MAIL + "RCPT TO:<c@d.example>\r\nNOOP\r\n" + MAIL * 3
                            + "MAIL FROM:<a@b\x01.example>\r\nQUIT\r\n")
        self.assertEqual(main, [('SMTP call from %s dropped: too many syntax or protocol errors '
                                 '(last command was "MAIL FROM:<a@b\\001.example>",  '
                                 'C=EHLO,MAIL,RCPT,NOOP,MAIL,MAIL,MAIL,MAIL)' % login).encode()])

    def test_full_ring_is_marked(self):
        """With 20 commands seen the list starts "C=...", as Exim's full ring."""
        main = self.compare("EHLO x\r\n" + (MAIL + "RSET\r\n") * 7 + MAIL * 5 + "QUIT\r\n")
        self.assertIn(b"C=...EHLO,MAIL,RSET,", main[0])

    def test_unknown_commands_drop(self):
        """Too many unknown commands: the last one escaped, no C= list."""
        main = self.compare("EHLO x\r\nFOO\x01\r\nBAR\r\nBAZ\r\nQUX\x01y\r\nQUIT\r\n")
        self.assertTrue(main[0].endswith(b'dropped: too many unrecognized commands (last was "QUX\\001y")'),
                        main)


class DropLineHostTests(unittest.TestCase):
    """``-bh``: a remote client is named by address and HELO name."""

    def logs(self, dialogue):
        """Both -bh runs' LOG: lines, compared; exim4's."""
        exim = oracle(self)
        path = exim.write_config(QUIET_MAIN)
        return same_session(self, exim, path, dialogue, summary=logged)

    def test_host_form(self):
        """``SMTP call from (x) [127.0.0.1] dropped: ...`` with C=."""
        self.assertEqual(self.logs("HELO x\r\n" + MAIL * 5 + "QUIT\r\n"), [
            'LOG: SMTP call from (x) [127.0.0.1] dropped: too many syntax or protocol '
            'errors (last command was "MAIL FROM:<a@b.example>",  C=HELO,MAIL,MAIL,MAIL,MAIL,MAIL)'])

    def test_command_with_unexpected_argument_not_listed(self):
        """DATA or QUIT with an argument is refused before it counts as a
        command: it is not in the C= list."""
        self.assertEqual(self.logs("HELO x\r\nDATA x\r\nQUIT x\r\nRSET x\r\nRSET y\r\nQUIT\r\n"), [
            'LOG: SMTP call from (x) [127.0.0.1] dropped: too many syntax or protocol '
            'errors (last command was "RSET y",  C=HELO)'])


class LostInDataTests(unittest.TestCase):
    """``-bh`` ending in the message data: where Exim says it stopped."""

    def test_where_the_data_stopped(self):
        """" (header)" before a whole line, " (after header)" while the last
        line read may still be a header, nothing once the body has begun."""
        exim = oracle(self)
        path = exim.write_config(QUIET_MAIN + "acl_smtp_rcpt = accept\n")
        start = "EHLO x\r\n" + MAIL + "RCPT TO:<c@d.example>\r\nDATA\r\n"
        cases = {"": " (header)", "Subj": " (header)", "Subject: x\r\n": " (after header)",
                 "QUIT\r\n": " (after header)", "Subject: x\r\nmore\r\n": " (after header)",
                 "QUIT\r\nmore\r\n": "", "Subject: x\r\n\r\n": ""}
        for data, where in cases.items():
            lines = []
            for result in host_checks(exim, path, start + data):
                lines.append([line for line in result.stderr.splitlines() if " lost " in line])
            self.assertEqual(lines[1], lines[0], data)
            self.assertEqual(lines[0], ["LOG: SMTP connection from (x) [127.0.0.1] lost while reading "
                                        "message data" + where], data)
