"""manualroute's route_list, split once per router: exim_py -bt against exim4.

The router keeps its route_list split into rules and answers a "*" rule
without an expansion context; these tests pin down that the routing stays
Exim's: $0 in the host list of a "*" rule is the domain, rules are tried in
order, and a later message sees the same rules.
"""

from twisted.trial import unittest

from tests.support.peers import RealExim, run_exim_py

CONFIG = """\
primary_hostname = myhost.test
qualify_domain = localdomain
keep_environment =
begin routers
ordered:
  driver = manualroute
  domains = ! *.star.example
  route_list = first.example 198.51.100.1 ; \\
               *.wild.example 198.51.100.2:198.51.100.3 ; \\
               second.example "198.51.100.4 : 198.51.100.5::2525"
  transport = smtp
star:
  driver = manualroute
  route_list = * "${if eq{$0}{a.star.example}{198.51.100.6}{198.51.100.7}}" smtp
begin transports
smtp:
  driver = smtp
"""

ADDRESSES = ["u@first.example", "u@x.wild.example", "u@second.example",
             "u@a.star.example", "u@b.star.example", "u@first.example", "u@other.example"]


class RouteListTests(unittest.TestCase):
    """Routing by route_list gives exim4's -bt output."""

    def setUp(self):
        self.exim = RealExim()
        self.addCleanup(self.exim.cleanup)
        self.conf = self.exim.write_config(CONFIG)

    def test_rules_and_star_match_exim(self):
        """Ordered rules, a wildcard rule, a quoted host list with a port,
        and "*" rules whose host list uses $0, for several addresses in one
        run (the same rule used twice): output and exit status as exim4's."""
        real = self.exim.run(self.conf, ["-bt"] + ADDRESSES)
        ours = run_exim_py(["-C", self.conf, "-bt"] + ADDRESSES)
        self.assertIn("198.51.100.6", real.stdout)
        self.assertEqual(ours.stdout.splitlines(), real.stdout.splitlines(), ours.stderr)
        self.assertEqual(ours.returncode, real.returncode)
