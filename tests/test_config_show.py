"""Tests for -bP and -bV (exim_py.config.show)."""

import os
import re

from twisted.trial.unittest import TestCase

from exim_py.cli import parse_args
from exim_py.config.show import print_options_mode, version_mode
from tests.support.configs import (capture, register_plain_router, register_test_router,
                                   write_config)
from tests.support.peers import RealExim, run_exim_py

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE = os.path.join(os.path.dirname(ROOT), "shared", "reference", "configure.default")

ROUTERS = """\
keep_environment =
begin routers
r1:
  driver = accept
  domains = ! +local_domains : example.com
  condition = ${if eq{$local_part}{a}}
  condition = yes
  headers_add = X-One: 1
  headers_add = X-Two: 2
  headers_remove = X-Old
  more = ${if eq{1}{1}}
  no_verify
  self = pass
  user = root
  transport = t1
r2:
  driver = accept
  unseen
  cannot_route_message = "no\\troute"
  transport = t2
  headers_remove = <; A ; B
  headers_remove = C:
  headers_remove = D::E
  set = a = 1 ;  b = 2;;c
  set =   d = 4
  set =
  headers_add = X: 1
  headers_add = "Y: 2\\nZ: 3"
"""


def bp(*args):
    """Run -bP in this process with ``args``: (status, stdout, stderr)."""
    return capture(print_options_mode, parse_args(list(args)))


class DriverPrintingTests(TestCase):
    """-bP for routers, compared with real Exim's accept router (it has no private options)."""

    def setUp(self):
        self.exim = RealExim()
        self.addCleanup(self.exim.cleanup)
        self.path = self.exim.write_config(ROUTERS)

    def accept_router(self):
        """A test driver registered as "accept", with Exim's accept defaults."""
        register_plain_router(self, "accept", {"log_as_local": True})

    def test_router_named(self):
        """-bP router NAME prints every generic option as Exim does."""
        self.accept_router()
        for name in ("r1", "r2"):
            expected = self.exim.run(self.path, ["-bP", "router", name]).stdout
            status, out, _err = bp("-C", self.path, "-bP", "router", name)
            self.assertEqual(out, expected)
            self.assertEqual(status, 0)

    def test_all_routers_and_lists(self):
        """-bP routers gives a header per router; router_list gives the names."""
        self.accept_router()
        for args in (["routers"], ["router_list"], ["router", "nope"], ["transport_list"]):
            expected = self.exim.run(self.path, ["-bP"] + args)
            status, out, _err = bp("-C", self.path, "-bP", *args)
            self.assertEqual(out, expected.stdout, args)
            self.assertEqual(status, expected.returncode, args)


class PrintOptionsTests(TestCase):
    """-bP details that need no comparison peer."""

    def test_config_file(self):
        """-bP config_file prints the file's name."""
        path = write_config(self, "qualify_domain = a\n")
        self.assertEqual(bp("-C", path, "-bP", "config_file")[1], path + "\n")

    def test_private_driver_options_follow_generic(self):
        """A driver's private options are printed after the generic ones."""
        register_test_router(self)
        path = write_config(self, "begin routers\nr:\n  driver = testdrv\n  testdrv_limit = 7\n")
        lines = bp("-C", path, "-bP", "router", "r")[1].splitlines()
        self.assertEqual(lines[-3:], ["no_testdrv_flag", "testdrv_limit = 7", "testdrv_text = "])
        self.assertEqual(lines[0], "address_data = ")

    def test_macros(self):
        """-bP macros lists name=value; macro_list only names."""
        path = write_config(self, "ONEMAC = 1\nTWOMAC = two\n")
        out = bp("-C", path, "-bP", "macros")[1].splitlines()
        self.assertIn("ONEMAC=1", out)
        self.assertIn("TWOMAC=two", out)
        self.assertIn("_OPT_MAIN_QUALIFY_DOMAIN=y", out)
        self.assertIn("TWOMAC", bp("-C", path, "-bP", "macro_list")[1].splitlines())

    def test_configuration_error(self):
        """A broken file makes -bP fail with the configuration error, not a traceback."""
        path = write_config(self, "foo = 1\n")
        result = run_exim_py(["-C", path, "-bP", "qualify_domain"])
        self.assertEqual(result.returncode, 1)
        self.assertEqual(result.stderr, "configuration error in line 1 of %s:\n"
                                        '  main option "foo" unknown\n' % path)


class VersionTests(TestCase):
    """-bV."""

    def test_layout_and_drivers(self):
        """-bV names exim_py and Exim's version, lists drivers, then the file; 0 when clean."""
        register_test_router(self)
        path = write_config(self, "qualify_domain = a\n")
        status, out, err = capture(version_mode, parse_args(["-C", path, "-bV"]))
        lines = out.splitlines()
        self.assertTrue(re.match(r"Exim version 4\.96 \(exim_py \S+\)$", lines[0]), lines[0])
        self.assertEqual([line.split(":")[0] for line in lines[1:]],
                         ["Support for", "Lookups (built-in)", "Authenticators", "Routers",
                          "Transports", "Configuration file is %s" % path])
        self.assertIn(" testdrv", lines[4])
        self.assertEqual((status, err), (0, ""))

    def test_every_problem_on_one_line(self):
        """Problems are listed one per line, with file and line, and the status is 1."""
        path = write_config(self, "foo = 1\nbegin routers\nr:\n  driver = nosuch\n")
        status, _out, err = capture(version_mode, parse_args(["-C", path, "-bV"]))
        self.assertEqual(err.splitlines(), [
            'configuration error in line 1 of %s: main option "foo" unknown' % path,
            'configuration error in line 4 of %s: router r: cannot find router driver "nosuch"'
            % path])
        self.assertEqual(status, 1)

    def test_reference_configuration_never_tracebacks(self):
        """Exim's configure.default gives a clean report (maybe of missing drivers), no traceback."""
        if not os.path.exists(REFERENCE):
            self.skipTest("no reference configure.default at %s" % REFERENCE)
        result = run_exim_py(["-C", REFERENCE, "-bV"])
        self.assertIn(result.returncode, (0, 1))
        self.assertNotIn("Traceback", result.stderr)
        for line in result.stderr.splitlines():
            self.assertTrue(line.startswith("configuration error in line "), line)
        self.assertIn("Configuration file is %s" % REFERENCE, result.stdout)

    def test_project_configuration_loads(self):
        """etc/exim.conf loads cleanly, with its spool under EXIM_PY_VAR (overridable by -D)."""
        conf = os.path.join(ROOT, "etc", "exim.conf")
        result = run_exim_py(["-C", conf, "-bV"])
        self.assertEqual((result.returncode, result.stderr), (0, ""))
        status, out, _err = bp("-C", conf, "-DEXIM_PY_VAR=/srv/test", "-bP", "spool_directory",
                               "daemon_smtp_ports", "local_interfaces")
        self.assertEqual(out, "spool_directory = /srv/test/spool\ndaemon_smtp_ports = 2525\n"
                              "local_interfaces = 127.0.0.1\n")
