"""``${acl{name}{arg}...}`` and the ``acl{{name}...}`` condition run an ACL from
an expansion: inside an ACL (a nested run that leaves the caller's
``$acl_arg``s alone), in a router's ``condition`` and under ``-be``.  Every
result is compared with Debian's exim4 given the same configuration.
"""

import os
import shutil
import tempfile

from twisted.trial import unittest

from tests.support.bh import oracle
from tests.support.peers import run_both

CONF = """\
primary_hostname = mx.test.example
keep_environment =
host_lookup =
spool_directory = {spool}
log_file_path = {spool}/%slog
acl_smtp_rcpt = rcpt
begin acl
foo:
  accept condition = ${{if eq{{$acl_arg1}}{{yes}}}}
         message = got $acl_arg1 n=$acl_narg
  deny   message = refused $acl_arg1
bar:
  defer  message = later
outer:
  warn   set acl_m_inner = ${{acl{{foo}}{{yes}}}}
  warn   logwrite = outer arg1=$acl_arg1 narg=$acl_narg inner=$acl_m_inner
  accept
rcpt:
  require acl = outer first second
  accept condition = ${{if acl{{{{foo}}{{$local_part}}}}}}
  deny   message = no: ${{acl{{foo}}{{$local_part}}}}
begin routers
r:
  driver = accept
  condition = ${{if acl{{{{foo}}{{$local_part}}}}}}
  transport = t
begin transports
t:
  driver = appendfile
  file = /dev/null
"""


class AclExpansionTests(unittest.TestCase):
    """${acl} gives the same answers as exim4 wherever an expansion can run it."""

    def setUp(self):
        self.exim = oracle(self)
        spool = tempfile.mkdtemp(prefix="exim_py-aclexp-")
        os.chmod(spool, 0o777)
        self.addCleanup(shutil.rmtree, spool, True)
        self.conf = self.exim.write_config(CONF.format(spool=spool))

    def both(self, args, input=None):
        theirs, ours = run_both(self.exim, self.conf, args, input)
        return ours, theirs

    def test_be_results_and_failures(self):
        """-be: the ACL's message is the result; DEFER is a forced failure and
        an unknown ACL an ERROR, both named as Exim names them."""
        ours, theirs = self.both(["-be", "[${acl{foo}{yes}}]", "[${acl{foo}{no}{b}}]",
                                  "[${acl{bar}}]", "${if acl{{foo}{yes}}{Y}{N}}",
                                  "${if acl{{foo}{no}}{Y}{N}}", "[${acl{nonexistent}}]"])
        self.assertEqual(ours.stdout, theirs.stdout, ours.stderr)
        self.assertIn("[got yes n=1]\n[refused no]\n", ours.stdout)
        self.assertIn('Failed: DEFER from acl "bar"', ours.stdout)

    def test_router_condition(self):
        """-bt: a router whose condition runs an ACL accepts or declines as it answers."""
        ours, theirs = self.both(["-bt", "yes@x.example", "no@x.example"])
        self.assertEqual(ours.stdout, theirs.stdout, ours.stderr)
        self.assertIn("no@x.example is undeliverable", ours.stdout)

    def test_acl_condition_in_rcpt_acl(self):
        """-bh: ${acl} in a RCPT ACL's condition and message; a nested ${acl}
        does not disturb the calling ACL's $acl_arg1 and $acl_narg."""
        dialogue = ("HELO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<yes@x.example>\r\n"
                    "RCPT TO:<no@x.example>\r\nQUIT\r\n")
        ours, theirs = self.both(["-bh", "192.0.2.9"], input=dialogue)
        replies = [line for line in ours.stdout.splitlines() if line[:3].isdigit()]
        self.assertEqual(replies[3:5], ["250 Accepted", "550 no: refused no"])
        self.assertEqual(replies[1:], [line for line in theirs.stdout.splitlines()
                                       if line[:3].isdigit()][1:])

        def logs(text):
            return [line for line in text.splitlines() if line.startswith("LOG:")]
        self.assertEqual(logs(ours.stderr), logs(theirs.stderr))
        self.assertIn("LOG: outer arg1=first narg=2 inner=got yes n=1", logs(ours.stderr))
