"""exim_py's configuration reading compared with real Exim 4.96 on the same files.

Each case is a configuration; Exim (``exim4 -C FILE -bV`` or ``-bP``) and
exim_py must give the same error (line and message) or the same -bP text.
"""

import os
import re
import subprocess

from twisted.trial.unittest import SkipTest, TestCase

from exim_py.cli import parse_args
from exim_py.config import load, load_collecting
from exim_py.config import show
from exim_py.config.show import print_options_mode
from exim_py.errors import ConfigError
from tests.support.configs import capture, register_plain_router
from tests.support.peers import RealExim, require_command

_EXIM_ERROR = re.compile(r"Exim configuration error(?: in line (\d+) of \S+| for ([^:]+))?:\n {2}(.*)")

# Configurations Exim refuses; every one must fail the same way in exim_py.
BROKEN = [
    "foo = 1\n",
    "qualify_domain = a\nqualify_domain = b\n",
    "no_qualify_domain\n",
    "qualify_domain\n",
    "qualify_domain 3\n",
    "accept_8bitmime = maybe\n",
    "accept_8bitmime = true x\n",
    "no_accept_8bitmime = true\n",
    "smtp_accept_max = abc\n",
    "smtp_accept_max = 12x\n",
    "smtp_accept_max = 99999999999\n",
    "auto_thaw = 1x\n",
    "auto_thaw = 5\n",
    "queue_only_load = x\n",
    "exim_user = nosuchuser\n",
    "exim_group = nosuchgroup\n",
    "never_users = root:nosuchuser\n",
    "1abc = 2\n",
    "X = 1\nX = 2\n",
    "X == 2\n",
    "Foo bar\n",
    "M" * 70 + " = 1\n",
    "MACRO_ONE = 1\nbegin acl\nMACRO_TWO 2\n",
    "XY = 1\nXYZ = 2\n",
    "X = 1\nXY\n",
    'qualify_domain = "abc\n',
    "delay_warning = 2h:1h\n",
    "begin foo\n",
    "begin routers\nbegin routers\n",
    "begin routers\nr1:\n  transport = x\n",
    "begin routers\nr1:\n  foo = 1\n",
    "begin routers\n  driver = accept\n",
    "begin routers\nr1: x\n  driver = accept\n",
    ".ifdef X\n",
    "\n.endif\n",
    ".include /nonexistent/file\n",
    ".include_if_exists relative\n",
    "domainlist a = x\ndomainlist a = y\n",
    "domainlist a x\n",
    "domainlistx a = x\n",
    'hostlist relay_hosts = "XXXX" and junk\n',
    "hide  hostlist h = a\n",
    "return_size_limit = 1K\nreturn_size_limit = 2K\n",
    "smtp_accept_max = 0\nsmtp_accept_queue = 3\n",
    "begin acl\n  accept\n",
    "begin acl\na:\n accept\na:\n accept\n",
    "begin acl\nacl1:\n  frob hosts = x\n",
    "begin acl\na:\n !accept\n",
    "begin acl\nacl1:\n  accept\n  foo = 1\n",
    "begin acl\na:\n accept hosts\n",
    "begin acl\na:\n accept !message = x\n",
    "begin acl\na:\n accept message x\n",
    "begin acl\na:\n accept set foo = 1\n",
    "begin acl\na:\n deny endpass\n",
    "begin acl\na:\n accept hosts = x\n    domains\n",
    "begin retry\n* foo F,1h,5m\n",
    "begin retry\n*\n",
    "begin retry\n* * X,1h,5m\n",
    "begin retry\n* * F,1h\n",
    "begin retry\n* * G,1h,5m,0.5\n",
    "begin retry\n* * F,1h,5m G,2h,1h,2\n",
    "begin retry\n* rcpt_4z F,1h,5m\n",
    "begin rewrite\n*@a\n",
    "begin rewrite\n*@a b@c Z\n",
    "begin rewrite\n*@a b@c S\n",
    "begin local_scan\n",
    "syslog_facility = foo\n",
    "spool_directory = /var/spool/${if eq{1}{1}{x}\n",
    "log_selector = +nosuch\n",
    "log_selector = + smtp_connection\n",
    "log_selector = +smtp_connection,+x\n",
    "never_users = ${if eq{1}{1}{games}\n",
    "smtp_ratelimit_mail = 1,2\n",
    "errors_reply_to = foo\n",
    "localhost_number = 300\n",
    "localhost_number = x\n",
    "log_file_path = /tmp/%s/%x\n",
    "delay_warning = 1h:2h:3h:4h:5h:6h:7h:8h:9h:10h:11h\n",
    "local_from_check\nlocal_sender_retain\n",
    "log_file_path = /tmp/x\n",
    "begin transports\nt:\n driver = pipe\n headers_rewrite = a@b c@d E\n",
    "begin transports\nt:\n driver = pipe\n headers_rewrite = a@b c@d h : x@y\n",
    "begin transports\nt:\n driver = pipe\n body_only\n headers_only\n",
    "begin transports\nt:\n driver = pipe\n user = 2048\n",
    "begin routers\nr:\n driver = accept\n transport = t\n self = abc\n",
    "begin authenticators\na:\n driver = plaintext\n server_condition = y\n"
    "b:\n driver = plaintext\n public_name = A\n server_condition = y\n",
]

# Options whose -bP text is the same in Exim and exim_py for these settings.
SETTINGS = """\
keep_environment =
accept_8bitmime = false
auto_thaw = 1d2h3m4s
return_size_limit = 12K
bounce_return_size_limit = 2048
check_spool_space = 10000
check_log_space = 2G
delay_warning = 1h:2h:1d
deliver_queue_load_max = 1.25
dns_dnssec_ok = 0x10
hide tls_privatekey = /secret/key
never_users = root : daemon
admin_groups = ${if eq{1}{1}{tty}{root}}
qualify_domain = "tab\\there"
primary_hostname = "a\\001b\\033c\\177 f\\303\\270 \\377 \\x41"
qualify_recipient = f\u00f8\u00f8.example
queue_only_load = 3
smtp_accept_max = 017
smtp_banner = $smtp_active_hostname ESMTP
timeout_frozen_after = 90m
log_selector = +smtp_connection+incoming_port -retry_defer
smtp_receive_timeout = ${if eq{1}{1}{5m}{1m}}
domainlist local_domains = @ : localhost
hostlist relay_hosts = 127.0.0.1
hide addresslist secret_senders = "a@b.example : c@d.example"
"""

PRINTED = ("accept_8bitmime auto_thaw bounce_return_size_limit check_spool_space check_log_space "
           "delay_warning deliver_queue_load_max dns_dnssec_ok tls_privatekey never_users "
           "qualify_domain primary_hostname qualify_recipient queue_only_load smtp_accept_max "
           "smtp_banner timeout_frozen_after "
           "smtp_load_reserve admin_groups smtp_receive_timeout no_such_option "
           "+local_domains +relay_hosts +secret_senders +missing").split()

# Main options whose defaults Exim fixes when it is built, and exim_py at run
# time (README.rst, "Configuration"), and exim_py's own extension.
BUILD_DEPENDENT = {"exim_group", "exim_path", "exim_user", "log_file_path", "pid_file_path",
                   "process_log_path", "spool_directory", "dns_nameservers"}


class EximComparisonTests(TestCase):
    """The same configuration gives the same errors and -bP output in Exim and exim_py."""

    def setUp(self):
        self.exim = RealExim()
        self.addCleanup(self.exim.cleanup)

    def exim_error(self, text):
        """(line, message) of Exim's configuration error for ``text``, or None."""
        path = self.exim.write_config(text)
        result = self.exim.run(path, ["-bV"])
        m = _EXIM_ERROR.search(result.stderr)
        if m:
            prefix = "for %s: " % m.group(2) if m.group(2) else ""
            return (int(m.group(1)) if m.group(1) else None), prefix + m.group(3)
        lines = [re.sub(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ", "", line)
                 for line in result.stderr.splitlines() if "environment" not in line
                 and "keep_environment" not in line and line.strip()]
        return (None, lines[0]) if result.returncode else None

    def our_error(self, text):
        path = os.path.join(self.exim.dir, "ours.conf")
        with open(path, "w") as f:
            f.write(text)
        try:
            load(path)
        except ConfigError as e:
            return e.line, ("for %s: " % e.driver if e.driver else "") + e.message
        return None

    def test_same_errors(self):
        """Every broken configuration fails with Exim's line and message."""
        for text in BROKEN:
            text = "keep_environment =\n" + text
            expected = self.exim_error(text)
            self.assertIsNotNone(expected, "Exim accepted %r" % text)
            self.assertEqual(self.our_error(text), expected, "for %r" % text)

    def test_same_option_printing(self):
        """-bP NAME ... prints the same text for every option type."""
        path = self.exim.write_config(SETTINGS)
        expected = self.exim.run(path, ["-bP"] + PRINTED)
        inv = parse_args(["-C", path, "-bP"] + PRINTED)
        status, out, _err = capture(print_options_mode, inv)
        self.assertEqual(out, expected.stdout)
        self.assertEqual(status, 1 if expected.returncode else 0)

    def test_same_values_without_labels(self):
        """-bP -n prints only the values, where Exim drops the labels."""
        path = self.exim.write_config(SETTINGS + "NAMEDMAC = macro value\n")
        args = ["-bP", "-n"] + PRINTED + ["macro", "NAMEDMAC"]
        expected = self.exim.run(path, args)
        _status, out, _err = capture(print_options_mode, parse_args(["-C", path] + args))
        self.assertEqual(out, expected.stdout)

    def test_same_main_option_list(self):
        """-bP with no names lists the same options, with the same defaults where they are fixed."""
        path = self.exim.write_config("keep_environment =\n")
        expected = self.exim.run(path, ["-bP"]).stdout.splitlines()
        _status, out, _err = capture(print_options_mode, parse_args(["-C", path, "-bP"]))
        ours = out.splitlines()

        def name(line):
            return re.match(r"(?:no_)?(\w+)", line).group(1)
        self.assertEqual([name(x) for x in ours if name(x) != "dns_nameservers"],
                         [name(x) for x in expected])
        self.assertEqual([x for x in ours if name(x) not in BUILD_DEPENDENT],
                         [x for x in expected if name(x) not in BUILD_DEPENDENT])

    def test_same_macro_values(self):
        """-bP macro NAME shows a macro after -D and file definitions, as the harness reads it."""
        path = self.exim.write_config("keep_environment =\nMYMACRO = file\nOTHERMAC = o\n")
        args = ["-DMYMACRO=cmd", "-bP", "macro", "MYMACRO", "macro", "OTHERMAC", "macro", "NOPE"]
        expected = self.exim.run(path, args)
        status, out, _err = capture(print_options_mode, parse_args(["-C", path] + args))
        self.assertEqual(out, expected.stdout)
        self.assertEqual(status, expected.returncode)

    def test_same_parsed_config(self):
        """-bP config prints the file as read (macros replaced, includes marked) as Exim does."""
        self.exim.write_config("INCMACRO = 1\nsmtp_accept_max = 0x10\n", name="inc.conf")
        path = self.exim.write_config(
            "keep_environment =\nDOMAC = example\nqualify_domain = mail.DOMAC\n"
            "domainlist   local  =  @ : DOMAC\n.include inc.conf\n"
            "primary_hostname = a.\\\n   DOMAC\n"
            "begin acl\ncheck:\n  deny  message =  \"two  spaces\"\n        hosts = !   :\n"
            "  accept  condition =  ${if eq{1}{1}}\n"
            "begin retry\n*   *   F,2h,15m\nbegin rewrite\n*@x  $1@y   Ffr\n")
        expected = self.exim.run(path, ["-bP", "config"])
        status, out, _err = capture(print_options_mode, parse_args(["-C", path, "-bP", "config"]))
        self.assertEqual(out, expected.stdout)
        self.assertEqual(status, 0)

    def test_hidden_values_for_non_admin_callers(self):
        """Values set with hide, macros and hidden config lines are withheld from non-admins."""
        runuser = require_command("runuser")
        if os.geteuid() != 0:
            raise SkipTest("running Exim as nobody needs root")
        path = self.exim.write_config(
            "keep_environment =\nhide tls_privatekey = /x\nqualify_domain = q\n"
            "SECRETMAC = s\nbegin routers\nr:\n driver = accept\n hide address_data = secret\n"
            " transport = t\n")
        register_plain_router(self, "accept", {"log_as_local": True})
        self.patch(show, "is_admin", lambda config: False)
        for args in (["tls_privatekey", "qualify_domain", "macro", "SECRETMAC"],
                     ["router", "r"], ["config"]):
            expected = subprocess.run([runuser, "-u", "nobody", "--", self.exim.binary, "-C", path,
                                       "-bP"] + args, capture_output=True, text=True)
            status, out, err = capture(print_options_mode, parse_args(["-C", path, "-bP"] + args))
            self.assertEqual((out, err), (expected.stdout, expected.stderr), args)

    def test_same_reading_of_awkward_lines(self):
        """Trailing spaces, continuations ending in blank lines or at the end of the file,
        comment lines inside continuations and macros inside words read as in Exim."""
        path = self.exim.write_config(
            "keep_environment =\nMAC_A = a=b  \nMAC_B=  spaced value   \n"
            "qualify_domain = x.MAC_A.MAC_B.y\nprimary_hostname = one \\\n\n"
            "smtp_banner = two \\\n   # not a comment? \\\n   three\n    \n  # comment\n"
            "helo_allow_chars = _MAC_A_\nmessage_id_header_text = \\\n")
        names = ["qualify_domain", "primary_hostname", "smtp_banner", "helo_allow_chars",
                 "message_id_header_text", "macros"]
        expected = self.exim.run(path, ["-bP"] + names)
        _status, out, _err = capture(print_options_mode, parse_args(["-C", path, "-bP"] + names))
        ours = [line for line in out.splitlines() if not line.startswith("_")]
        self.assertEqual(ours, [line for line in expected.stdout.splitlines()
                                if not line.startswith("_")])

    def test_same_environment(self):
        """-bP environment shows what keep_environment keeps and add_environment adds."""
        path = self.exim.write_config("keep_environment = PATH : ^LANG : *_HOME\n"
                                      "add_environment = FOO=bar : PATH=/x\n")
        self.patch(os, "environ", dict(os.environ, LANGUAGE="c", JAVA_HOME="/j", OTHER="no"))
        expected = subprocess.run([self.exim.binary, "-C", path, "-bP", "environment"],
                                  capture_output=True, text=True, env=os.environ)
        _status, out, _err = capture(print_options_mode,
                                     parse_args(["-C", path, "-bP", "environment"]))
        self.assertEqual(out, expected.stdout)
        self.assertIn("JAVA_HOME=/j\n", out)

    def test_same_expanded_paths(self):
        """spool_directory, log_file_path and pid_file_path are expanded once, when read."""
        path = self.exim.write_config(
            "keep_environment =\nprimary_hostname = ph.example\n"
            "spool_directory = /var/spool/${primary_hostname}/x\n"
            "log_file_path = ${if eq{1}{1}{/tmp/log/%slog}}\npid_file_path = ${spool_directory}/p\n")
        names = ["spool_directory", "log_file_path", "pid_file_path", "process_log_path"]
        expected = self.exim.run(path, ["-bP"] + names)
        _status, out, _err = capture(print_options_mode, parse_args(["-C", path, "-bP"] + names))
        self.assertEqual(out, expected.stdout)


EXIM_TESTS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "shared", "exim-test")

# Samples of Exim's own test-suite configurations: ones that load, and ones
# that Exim refuses (unset macros, options of other builds...).
CORPUS_LOADING = ["0000", "0009", "0019", "0028", "0038", "0047", "0056", "0065", "0075",
                  "0085", "0095", "0105", "0115", "0125", "0145", "0154", "0163", "0178",
                  "0190", "0199", "0208", "0217", "0226", "0237", "0249"]
CORPUS_REFUSED = ["0001", "0135", "0442", "1023", "3407", "3828", "4017", "4033", "4202",
                  "4213", "4510", "4531", "4608", "5408", "5680", "5801", "5861",
                  "5900"]


class EximTestSuiteConfigurationTests(TestCase):
    """Configurations from Exim's own test suite read as Exim reads them."""

    def setUp(self):
        confs = os.path.join(EXIM_TESTS, "confs")
        if not os.path.isdir(confs):
            raise SkipTest("Exim's test suite is not at %s" % EXIM_TESTS)
        self.confs = confs
        # The harness's DIR, with the two files every configuration includes.
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(self.dir, "aux-var"))
        for name in ("std_conf_prefix", "tls_conf_prefix"):
            with open(os.path.join(EXIM_TESTS, "aux-var-src", name)) as f:
                text = f.read()
            with open(os.path.join(self.dir, "aux-var", name), "w") as f:
                f.write(text)
        os.symlink(os.path.join(EXIM_TESTS, "aux-fixed"), os.path.join(self.dir, "aux-fixed"))
        os.chmod(self.dir, 0o755)
        # The harness edits these names into each file; -D does the same here
        # (longer names first: a macro is replaced inside longer words).
        self.macros = [("CALLER_NAME", "Root User"), ("CALLER_UID", "0"), ("CALLER_GID", "0"),
                       ("CALLER", "root"), ("EXIM_PATH", "/usr/sbin/exim4"), ("DIR", self.dir),
                       ("HOSTIPV4", "127.0.0.1"), ("HOSTNAME", "vm"), ("PORT_D", "1225"),
                       ("MAILGROUP", "mail")]

    def test_no_configuration_crashes_the_loader(self):
        """Every configuration of the suite loads or gives ConfigErrors, nothing else."""
        count = 0
        for name in sorted(os.listdir(self.confs)):
            path = os.path.join(self.confs, name)
            if os.path.isfile(path):
                config, errors = load_collecting(path, dict(self.macros))
                self.assertTrue(config is not None or errors, name)
                self.assertTrue(all(isinstance(e, ConfigError) for e in errors), name)
                count += 1
        self.assertGreater(count, 1000)

    def test_same_main_options_as_exim(self):
        """-bP of every main option matches Exim's, apart from build-dependent defaults."""
        exim = RealExim()
        self.addCleanup(exim.cleanup)
        defines = ["-D%s=%s" % m for m in self.macros]
        for name in CORPUS_LOADING:
            path = os.path.join(self.confs, name)
            expected = exim.run(path, defines + ["-bP"])
            _status, out, _err = capture(print_options_mode,
                                         parse_args(["-C", path] + defines + ["-bP"]))

            def kept(text):
                return [line for line in text.splitlines()
                        if re.match(r"(?:no_)?(\w+)", line).group(1) not in BUILD_DEPENDENT]
            self.assertEqual(kept(out), kept(expected.stdout), name)

    def test_file_setting_every_option(self):
        """Test 0001 sets nearly every main option: -bP all must print what Exim prints."""
        with open(os.path.join(self.confs, "0001")) as f:
            text = "".join(line.replace("TESTNUM", "0001") for line in f
                           if "panic_coredump" not in line)      # an Exim 4.97 option
        with open(os.path.join(EXIM_TESTS, "aux-var-src", "0001.trusted")) as f:
            trusted = f.read().replace("CALLER_UID", "0")
        with open(os.path.join(self.dir, "aux-var", "0001.trusted"), "w") as f:
            f.write(trusted)
        exim = RealExim()
        self.addCleanup(exim.cleanup)
        path = exim.write_config(text)
        defines = ["-D%s=%s" % m for m in self.macros]
        expected = exim.run(path, defines + ["-bP"])
        _status, out, _err = capture(print_options_mode, parse_args(["-C", path] + defines + ["-bP"]))

        def kept(lines):
            return [line for line in lines.splitlines()
                    if re.match(r"(?:no_)?(\w+)", line).group(1) not in BUILD_DEPENDENT]
        self.assertEqual(expected.returncode, 0, expected.stderr)
        self.assertEqual(kept(out), kept(expected.stdout))

    def test_same_refusals_as_exim(self):
        """Files Exim refuses are refused with the same line and message."""
        exim = RealExim()
        self.addCleanup(exim.cleanup)
        defines = ["-D%s=%s" % m for m in self.macros]
        for name in CORPUS_REFUSED:
            expected = exim.run(os.path.join(self.confs, name), defines + ["-bV"])
            m = _EXIM_ERROR.search(expected.stderr)
            self.assertIsNotNone(m, name)
            try:
                load(os.path.join(self.confs, name), dict(self.macros))
            except ConfigError as e:
                self.assertEqual((e.line, e.message),
                                 (int(m.group(1)) if m.group(1) else None, m.group(3)), name)
            else:
                self.fail("%s loaded, Exim said: %s" % (name, m.group(3)))
