"""Tests for the command line front end (exim_py.cli): help, version, usage errors, dispatch."""

import os
import subprocess
import sys

from twisted.trial.unittest import TestCase

from exim_py import EXIM_COMPAT_VERSION, __version__, cli
from tests.support.configs import capture
from tests.support.peers import run_exim_py


class CommandLineTests(TestCase):
    """What the exim_py command prints and returns for its own flags."""

    def test_help(self):
        """--help prints the usage text on stdout and succeeds."""
        result = run_exim_py(["--help"])
        self.assertEqual((result.returncode, result.stdout, result.stderr), (0, cli.USAGE, ""))

    def test_version(self):
        """--version names exim_py's version and the Exim version it follows."""
        result = run_exim_py(["--version"])
        self.assertEqual(result.returncode, 0)
        self.assertEqual(result.stdout, "exim_py version %s (Exim %s compatible)\n"
                                        % (__version__, EXIM_COMPAT_VERSION))

    def test_unknown_flag(self):
        """An unknown flag is a usage error (status 1) naming the flag, followed by the usage."""
        result = run_exim_py(["-Zq"])
        self.assertEqual(result.returncode, 1)
        self.assertEqual(result.stderr,
                         "exim_py: unknown, unsupported or incomplete option: -Zq\n" + cli.USAGE)
        self.assertEqual(result.stdout, "")

    def test_missing_flag_argument(self):
        """A flag that needs a value and has none is a usage error."""
        result = run_exim_py(["-C"])
        self.assertEqual(result.returncode, 1)
        self.assertTrue(result.stderr.startswith("exim_py: -C requires an argument\n"), result.stderr)

    def test_mode_not_available(self):
        """A mode whose module is not part of this build says so and exits with status 2."""
        self.patch(cli, "MODES", dict(cli.MODES, version=("exim_py.no_such_module", "version_mode")))
        status, out, err = capture(cli.main, ["exim_py", "-bV"])
        self.assertEqual((status, out), (2, ""))
        self.assertEqual(err, "exim_py: -bV is not available in this version of exim_py yet\n")

    def test_configuration_error_is_reported_not_raised(self):
        """A mode that meets a configuration error prints Exim's text and exits 1."""
        status, out, err = capture(cli.main, ["exim_py", "-C", "/nonexistent/exim.conf", "-bP"])
        self.assertEqual((status, out), (1, ""))
        self.assertEqual(err, "configuration error: non-existent configuration file(s): "
                              "/nonexistent/exim.conf\n")

    def test_macro_flags_are_collected_in_order(self):
        """-DNAME=value and -D NAME=value are both accepted; a bad name is a usage error."""
        inv = cli.parse_args(["-DONE=1", "-D", "TWO=2", "-DTHREE", "-bP"])
        self.assertEqual(list(inv.macros.items()), [("ONE", "1"), ("TWO", "2"), ("THREE", "")])
        result = run_exim_py(["-Dlower=1", "-bP"])
        self.assertEqual(result.returncode, 1)
        self.assertIn("must start with an upper-case letter", result.stderr)


_MODULES_PROBE = """
import sys
from exim_py import cli
status = cli.main(["exim_py"] + sys.argv[1:])
heavy = ("twisted.internet.reactor", "OpenSSL", "dns.resolver", "sqlite3",
         "exim_py.smtp.client", "exim_py.transports.smtp", "exim_py.daemon")
sys.stdout.write("status %d; loaded: %s\\n" % (status, " ".join(m for m in heavy if m in sys.modules)))
"""


class StartupTests(TestCase):
    """Commands that only read the configuration and the spool start light."""

    def test_read_only_modes_load_no_network_stack(self):
        """-bpc, -bV and -bP on the shipped configuration (which names the smtp
        transport and the dnslookup router) run without importing Twisted's
        reactor, OpenSSL, dnspython, sqlite3, the SMTP client or the daemon."""
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        conf = os.path.join(root, "etc", "exim.conf")
        spool = self.mktemp()
        env = dict(os.environ, PYTHONPATH=root)
        for flags in (["-bpc"], ["-bV"], ["-bP", "transports"]):
            out = subprocess.run([sys.executable, "-c", _MODULES_PROBE, "-C", conf,
                                  "-DEXIM_PY_VAR=" + spool] + flags, env=env,
                                 capture_output=True, text=True, timeout=60)
            self.assertEqual(out.stderr, "", flags)
            self.assertTrue(out.stdout.endswith("status 0; loaded: \n"), (flags, out.stdout))
