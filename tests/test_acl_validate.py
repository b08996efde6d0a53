"""Load-time checks of ACLs: Exim's "error in ACL" configuration errors.

The configuration loader calls exim_py.acl.validate.validate_acl; every
error must carry the file and line of the offending item and Exim's text.
The same files are read by real Exim to confirm the text.
"""

from twisted.trial import unittest

from exim_py.config import load
from exim_py.errors import ConfigError
from tests.support.acl import write_config
from tests.support.peers import RealExim

HEADER = "keep_environment =\nacl_smtp_rcpt = r1\nbegin acl\nr1:\n"

CASES = [
    # (ACL lines after "r1:", line number of the error, Exim's message)
    ("  accept\n  foo = bar\n", 6,
     'error in ACL: unknown ACL condition/modifier in "foo = bar"'),
    ("  accept !message = x\n", 5,
     'error in ACL: ACL error: negation is not allowed with "message"'),
    ("  deny endpass\n", 5,
     'error in ACL: ACL error: "endpass" is not allowed with "deny"'),
    ("  accept set foo = 1\n", 5,
     'error in ACL: invalid variable name after "set" in ACL modifier "set foo = 1" '
     '(must start "acl_c" or "acl_m")'),
    ("  accept set acl_mfoo = 1\n", 5,
     'error in ACL: invalid variable name after "set" in ACL modifier "set acl_mfoo = 1" '
     '(digit or underscore must follow acl_c or acl_m)'),
    ("  accept hosts = *\n  warn set acl_m0\n", 6,
     'error in ACL: "=" missing after ACL "set" modifier'),
]


class ValidateTests(unittest.TestCase):
    """Errors Exim reports when it reads an ACL."""

    def test_errors_with_file_and_line(self):
        """Each malformed item gives Exim's message with its file and line."""
        for body, line, message in CASES:
            path = write_config(self, HEADER + body)
            try:
                load(path)
            except ConfigError as e:
                self.assertEqual((e.filename, e.line, e.message), (path, line, message), body)
                self.assertEqual(str(e), "configuration error in line %d of %s:\n  %s"
                                 % (line, path, message))
            else:
                self.fail("no error for %r" % body)

    def test_same_text_as_exim(self):
        """Real Exim reports the same line and message for each case."""
        exim = RealExim()
        self.addCleanup(exim.cleanup)
        for body, line, message in CASES:
            path = exim.write_config(HEADER + body)
            out = exim.run(path, ["-bh", "1.2.3.4"], input="QUIT\r\n")
            expected = "configuration error in line %d of %s:\n  %s" % (line, path, message)
            self.assertIn(expected, out.stderr, body)

    def test_phase_is_not_checked_at_load(self):
        """A condition that is wrong for the phase that uses the ACL loads fine (Exim
        only finds out when the ACL runs)."""
        path = write_config(self, "acl_smtp_connect = c\nbegin acl\nc:\n  accept domains = x\n")
        config = load(path)
        self.assertIn("c", config.acls)

    def test_good_acl(self):
        """Every condition and modifier name loads."""
        path = write_config(self, HEADER + """  accept hosts = *
         set acl_c_x = 1
         set acl_m9 = 2
         add_header = X: y
         control = queue_only
         delay = 1s
         logwrite = hello
         log_message = l
         message = m
  discard endpass
         !verify = sender
""")
        config = load(path)
        self.assertEqual([st.verb for st in config.acls["r1"].statements], ["accept", "discard"])
