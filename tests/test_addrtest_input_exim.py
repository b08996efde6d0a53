"""Where -bt and -bv take their addresses from, against exim4.

Each command-line argument is a comma-separated list (commas and white
space after an address skipped; an empty item before a comma is tested
and refused as an "empty address"; an empty argument has none).  Without
arguments every line of standard input is one address, read after a "> "
prompt; a blank line is refused too, a line ending in a backslash goes on
in the next, and the end of input gets a newline after the last prompt.
"""

from twisted.trial import unittest

from tests.support.bh import oracle
from tests.support.peers import run_both

CONF = """\
keep_environment =
primary_hostname = mx.test.example
begin routers
r:
  driver = accept
  transport = t
begin transports
t:
  driver = appendfile
  file = /dev/null
"""


class AddressTestInputTests(unittest.TestCase):
    """-bt and -bv read their addresses as exim4 does."""

    def setUp(self):
        self.exim = oracle(self)
        self.conf = self.exim.write_config(CONF)

    def same(self, args, input=None):
        """exim_py's output and exit status, asserted to be exim4's."""
        theirs, ours = run_both(self.exim, self.conf, args, input)
        self.assertEqual((ours.stdout, ours.returncode), (theirs.stdout, theirs.returncode))
        return ours.stdout, ours.returncode

    def test_arguments_are_lists(self):
        """Addresses after commas are tested in turn; a quoted or commented
        comma does not split; a leading comma is an empty address."""
        out, status = self.same(["-bt", "a@b.example, c@d.example", '"x,y"@b.example, (c,d) e@f.example',
                                 "g@h.example,,i@j.example", ", k@l.example", ""])
        self.assertEqual([line for line in out.splitlines() if not line.startswith(" ")],
                         ["a@b.example", "c@d.example", '"x,y"@b.example', "e@f.example", "g@h.example",
                          "i@j.example", "syntax error: empty address", "k@l.example"])
        self.assertEqual(status, 2)

    def test_blank_argument_is_refused(self):
        """An argument of spaces is an empty address (exit status 2)."""
        self.assertEqual(self.same(["-bv", " "]), ("syntax error: empty address\n", 2))

    def test_standard_input_lines(self):
        """One address a line, each after a prompt; a blank line is refused, a
        backslash continues the line, a comma does not split it."""
        out, status = self.same(["-bt"], "a@b.example\n\nq\\\n  @r.example\nc@d, e@f\n")
        self.assertEqual(out.split("> ")[1:], [
            "a@b.example\n  router = r, transport = t\n", "syntax error: empty address\n",
            "q@r.example\n  router = r, transport = t\n",
            "syntax error: malformed address: , e@f may not follow c@d\n", "\n"])
        self.assertEqual(status, 2)

    def test_empty_input(self):
        """No input at all: the prompt and a newline, exit status 0."""
        self.assertEqual(self.same(["-bv"], ""), ("> \n", 0))
