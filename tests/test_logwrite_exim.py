"""The ``logwrite`` ACL modifier, byte for byte against Debian's exim4.

Exim passes the text through string_printing before it logs it: control
characters become C or octal escapes, a tab stays a real tab, bytes above 127
are octal escapes unless print_topbitchars is set (and so is a warn
statement's log_message).  The logwrite text goes to exactly
the logs named between colons (the main log alone by default).  ``-bh`` shows
each line once on standard error as ``LOG: text``; ``-bs`` writes the log
files.  The same configuration and dialogue go through exim4 and exim_py.
"""

from twisted.trial import unittest

from tests.support.bh import logged, oracle, same_session
from tests.support.peers import QUIET_MAIN, run_exim_py

ACLS = r"""
acl_smtp_helo = helo_acl
begin acl
helo_acl:
  warn logwrite = tab[\t]nl[\n]cr[\r]bell[\x07]esc[\x1b]del[\x7f]bs[\\]quote["]
  warn logwrite = utf8[é] helo[$sender_helo_name]
  warn logwrite = :main,reject: to both tab[\t]
  warn logwrite = :panic: panic only[\t]
  warn logwrite = :reject:   reject only[\t]\nnext
  warn logwrite = :bogus: x
  warn log_message = warned tab[\t]nl[\n]bell[\x07]utf8[é]
  accept
"""

MAIN = QUIET_MAIN + """\
log_file_path = %(dir)s/log/%%slog
spool_directory = %(dir)s/spool
"""

DIALOGUE = "HELO ab\r\nQUIT\r\n"


class LogwriteHostCheckTests(unittest.TestCase):
    """``-bh``: the LOG: lines logwrite makes are exim4's."""

    def setUp(self):
        self.exim = oracle(self)

    def compare(self, extra=""):
        conf = self.exim.write_config(MAIN % {"dir": self.exim.dir} + extra + ACLS)
        return same_session(self, self.exim, conf, DIALOGUE, summary=logged)

    def test_escapes_and_real_tab(self):
        """Control characters are escaped, a tab stays a tab, UTF-8 bytes are octal,
        every line is shown once whatever its logs, an unknown log name is reported."""
        lines = self.compare()
        self.assertEqual(lines[0], 'LOG: tab[\t]nl[\\n]cr[\\r]bell[\\007]esc[\\033]del[\\177]'
                                   'bs[\\]quote["]')
        self.assertEqual(lines[1], "LOG: utf8[\\303\\251] helo[ab]")
        self.assertEqual(lines[-2], 'LOG: unknown log name in ":bogus: x" in "logwrite" '
                                    'in EHLO or HELO ACL')
        self.assertEqual(len(lines), 7)

    def test_warn_log_message(self):
        """A warn statement's log_message is escaped in the same way."""
        self.assertEqual(self.compare()[-1], "LOG: H=(ab) [127.0.0.1] Warning: warned "
                                             "tab[\t]nl[\\n]bell[\\007]utf8[\\303\\251]")

    def test_print_topbitchars(self):
        """With print_topbitchars the UTF-8 bytes are written as they are."""
        lines = self.compare("print_topbitchars = true\n")
        self.assertEqual(lines[1], "LOG: utf8[é] helo[ab]")


class LogwriteFilesTests(unittest.TestCase):
    """``-bs``: the main, reject and panic logs get what exim4's get."""

    def setUp(self):
        self.exim = oracle(self)

    def run_one(self, name, command):
        """Run ``command`` (exim4's argv maker or run_exim_py) on a config
        whose logs and spool are under a directory of its own; the three logs'
        lines without their timestamps."""
        base = self.exim.exim_user_dirs(name)
        conf = self.exim.write_config(MAIN % {"dir": base} + ACLS, name + ".conf")
        command(conf)
        return self.exim.logs(base, ("main", "reject", "panic"))

    def test_each_log_gets_its_lines(self):
        """A line goes to the logs named only: :panic: and :reject: lines stay
        out of the main log; the escaped text is exim4's byte for byte."""
        theirs = self.run_one("exim4", lambda conf: self.exim.run(conf, ["-bs"], input=DIALOGUE))
        ours = self.run_one("exim_py", lambda conf: run_exim_py(["-C", conf, "-bs"], input=DIALOGUE))
        self.assertEqual(ours, theirs)
        self.assertIn(b"reject only[\t]\\nnext", theirs["reject"])
        self.assertNotIn(b"reject only[\t]\\nnext", theirs["main"])
        self.assertIn(b"panic only[\t]", theirs["panic"])
        self.assertNotIn(b"panic only[\t]", theirs["main"])
