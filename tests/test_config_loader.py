"""Tests for exim_py.config.loader: named lists, ACLs, drivers, retry and rewrite rules."""

import os
import pwd
import subprocess
import sys

from twisted.trial.unittest import TestCase

from exim_py import registry
from exim_py.config import load, load_collecting
from exim_py.errors import ConfigError
from tests.support.configs import register_test_router, write_config


class NamedListTests(TestCase):
    """domainlist, hostlist, addresslist and localpartlist."""

    def test_kinds_values_and_places(self):
        """Each kind of named list keeps its raw value and where it was defined."""
        path = write_config(self, "domainlist local = @ : example.com\n"
                                  "hostlist relay = <; 127.0.0.1 ; ::1\n"
                                  "addresslist bad = *@spam.example\n"
                                  "localpartlist admins = postmaster : abuse\n")
        lists = load(path).named_lists
        self.assertEqual(lists["domain"]["local"].value, "@ : example.com")
        self.assertEqual(lists["host"]["relay"].value, "<; 127.0.0.1 ; ::1")
        self.assertEqual(lists["address"]["bad"].value, "*@spam.example")
        self.assertEqual((lists["localpart"]["admins"].filename, lists["localpart"]["admins"].line),
                         (path, 4))

    def test_at_most_32_of_each_kind(self):
        """A 33rd named list of one kind is refused, as in Exim 4.96."""
        text = "".join("domainlist d%d = a\n" % i for i in range(33))
        e = self.assertRaises(ConfigError, load, write_config(self, text))
        self.assertEqual((e.line, e.message), (33, "too many named domain lists (max is 32)"))
        text = "".join("domainlist d%d = a\nhostlist h%d = b\n" % (i, i) for i in range(32))
        self.assertEqual(len(load(write_config(self, text)).named_lists["host"]), 32)

    def test_cache_flag(self):
        """A list with $ in it is not cached unless declared with _cache."""
        path = write_config(self, "domainlist plain = a\ndomainlist dyn = $primary_hostname\n"
                                  "domainlist_cache forced = $primary_hostname\n")
        lists = load(path).named_lists["domain"]
        self.assertEqual([lists[n].cache for n in ("plain", "dyn", "forced")], [True, False, True])


ACL_TEXT = """\
begin acl

check_rcpt:
  accept  hosts = :
  deny    !verify = sender
          message = sender verify failed: \\
                    try again
  warn    set acl_m_count = 1
  accept  endpass
          domains = +local

OTHER_MACRO = 1

check_data:
  accept
"""


class AclTests(TestCase):
    """ACL statements and their items, in order, with file and line."""

    def setUp(self):
        self.path = write_config(self, ACL_TEXT)
        self.acls = load(self.path).acls

    def test_acl_names_and_order(self):
        """ACLs are keyed by name; a macro definition between ACLs is allowed."""
        self.assertEqual(list(self.acls), ["check_rcpt", "check_data"])
        self.assertEqual(self.acls["check_data"].line, 14)

    def test_statement_order_and_items(self):
        """Verbs keep their order; items follow the verb across lines, negation kept."""
        statements = self.acls["check_rcpt"].statements
        self.assertEqual([s.verb for s in statements], ["accept", "deny", "warn", "accept"])
        deny = statements[1]
        self.assertEqual([(i.name, i.value, i.negated) for i in deny.items],
                         [("verify", "sender", True),
                          ("message", "sender verify failed: try again", False)])
        self.assertEqual([(i.line) for i in deny.items], [5, 7])

    def test_set_and_endpass(self):
        """set keeps 'variable = value'; endpass is an item with no value."""
        statements = self.acls["check_rcpt"].statements
        self.assertEqual((statements[2].items[0].name, statements[2].items[0].value),
                         ("set", "acl_m_count = 1"))
        self.assertEqual([(i.name, i.value) for i in statements[3].items],
                         [("endpass", None), ("domains", "+local")])

    def test_empty_statement(self):
        """A verb alone is a statement with no items."""
        self.assertEqual(self.acls["check_data"].statements[0].items, [])


class DriverTests(TestCase):
    """Routers (through a test driver), their generic and private options."""

    def setUp(self):
        register_test_router(self)

    def routers(self, text):
        return load(write_config(self, "begin routers\n" + text)).routers

    def test_generic_before_and_private_after_driver(self):
        """Generic options may precede driver; private ones follow it; order of routers is kept."""
        routers = self.routers("first:\n  domains = a\n  driver = testdrv\n  testdrv_limit = 3\n"
                               "second:\n  driver = testdrv\n")
        self.assertEqual([r.name for r in routers], ["first", "second"])
        options = routers[0].options
        self.assertEqual((options.domains, options.testdrv_limit, options.testdrv_flag), ("a", 3, False))
        self.assertEqual((routers[0].driver, routers[0].line), ("testdrv", 2))
        self.assertTrue(options.is_set("domains"))
        self.assertFalse(routers[1].options.is_set("domains"))

    def test_driver_generic_defaults(self):
        """A driver's GENERIC_DEFAULTS replace the generic defaults unless set."""
        routers = self.routers("a:\n  driver = testdrv\nb:\n  no_retry_use_local_part\n"
                               "  driver = testdrv\n")
        self.assertEqual([r.options.retry_use_local_part for r in routers], [True, False])

    def test_private_option_errors(self):
        """Exim's messages for private options before driver, unknown ones, and unknown drivers."""
        e = self.assertRaises(ConfigError, self.routers, "a:\n  testdrv_limit = 1\n")
        self.assertEqual(e.message, 'option "testdrv_limit" unknown ("driver" must be specified '
                                    'before any private options)')
        e = self.assertRaises(ConfigError, self.routers, "a:\n  driver = testdrv\n  nothing = 1\n")
        self.assertEqual((e.line, e.message), (4, 'option "nothing" unknown'))
        e = self.assertRaises(ConfigError, self.routers, "a:\n  driver = nosuchdriver\n")
        self.assertEqual(e.message, 'router a: cannot find router driver "nosuchdriver"')

    def test_structure_errors(self):
        """Two routers with one name, and a router without a driver, are refused."""
        e = self.assertRaises(ConfigError, self.routers, "a:\n driver = testdrv\na:\n driver = testdrv\n")
        self.assertEqual(e.message, 'there are two routers called "a"')
        e = self.assertRaises(ConfigError, self.routers, "a:\n domains = x\n")
        self.assertEqual(e.message, 'no driver defined for router "a"')

    def test_validate_hook(self):
        """A driver's validate() runs after its options are read and its error is reported."""
        e = self.assertRaises(ConfigError, self.routers, "a:\n driver = testdrv\n testdrv_limit = -1\n")
        self.assertIn("testdrv_limit must not be negative", str(e))

    def test_validate_may_fill_computed_defaults(self):
        """set_default() in validate() changes only options the file left unset."""
        module = register_test_router(self, "computing")

        def validate(dconf):
            dconf.options.set_default("testdrv_text", "computed")
            dconf.options.set_default("testdrv_limit", 99)
        module.validate = validate
        options = self.routers("a:\n driver = computing\n testdrv_limit = 3\n")[0].options
        self.assertEqual((options.testdrv_text, options.testdrv_limit), ("computed", 3))
        self.assertFalse(options.is_set("testdrv_text"))

    def test_repeatable_generic_options(self):
        """condition settings combine; headers_add settings accumulate, as in Exim."""
        options = self.routers("a:\n driver = testdrv\n condition = A\n condition = B\n"
                               " headers_add = X: 1\n headers_add = Y: 2\n")[0].options
        self.assertEqual(options.condition, "${if and{{bool_lax{A}}{bool_lax{B}}}}")
        self.assertEqual(options.headers_add, "X: 1\nY: 2")

    def test_user_and_expanded_user(self):
        """user by name sets uid and gid; a user with $ is kept for expansion."""
        root = pwd.getpwnam("root")
        routers = self.routers("a:\n driver = testdrv\n user = root\n"
                               "b:\n driver = testdrv\n user = ${local_part}\n")
        self.assertEqual((routers[0].options.user, routers[0].options.group), (root.pw_uid, root.pw_gid))
        self.assertEqual((routers[1].options.user, routers[1].options.group), ("${local_part}", None))

    def test_check_local_user_sets_retry_use_local_part(self):
        """Unless set, a router's retry_use_local_part follows check_local_user."""
        register_test_router(self, "plain")
        routers = self.routers("a:\n driver = plain\n check_local_user\n")
        self.assertTrue(routers[0].options.retry_use_local_part)

    def test_driver_module_that_fails_to_import(self):
        """A registered driver whose module does not import is a configuration error, not a crash."""
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        with open(os.path.join(directory, "exim_py_broken_router.py"), "w") as f:
            f.write("raise ImportError('half written')\n")
        sys.path.insert(0, directory)
        self.addCleanup(sys.path.remove, directory)
        routers = dict(registry.ROUTERS, broken="exim_py_broken_router")
        self.patch(registry, "ROUTERS", routers)
        self.patch(registry, "KINDS", dict(registry.KINDS, router=routers))
        e = self.assertRaises(ConfigError, self.routers,
                              "a:\n driver = broken\n.ifdef _OPT_ROUTERS_DOMAINS\n.endif\n")
        self.assertEqual(e.message, 'router a: cannot load router driver "broken": '
                                    'ImportError: half written')

    def test_unknown_pass_router(self):
        """pass_router must name a router of this configuration."""
        e = self.assertRaises(ConfigError, self.routers, "a:\n driver = testdrv\n pass_router = zz\n")
        self.assertEqual(e.message, 'new_router "zz" not found for "a" router')


class RuleTests(TestCase):
    """Retry and rewrite rules."""

    def test_retry_rules(self):
        """Each retry line becomes a pattern, an error, optional senders and F/G/H rules."""
        path = write_config(self, "begin retry\n"
                                  "example.com  timeout_connect_MX  F,1h,10m\n"
                                  '*  *  senders = "a@b : c@d"  F,2h,15m; G,16h,1h,1.5\n')
        rules = load(path).retry
        self.assertEqual((rules[0].pattern, rules[0].error, rules[0].senders, rules[0].rules),
                         ("example.com", "timeout_connect_MX", None, [("F", 3600, (600,))]))
        self.assertEqual(rules[1].senders, "a@b : c@d")
        self.assertEqual(rules[1].rules, [("F", 7200, (900,)), ("G", 57600, (3600, 1.5))])
        self.assertEqual(rules[1].line, 3)

    def test_rewrite_rules(self):
        """Each rewrite line is pattern, replacement and its flag letters as written."""
        path = write_config(self, 'begin rewrite\n*@old.example  "$1@new.example"  Tbcfrs\n'
                                  "^(.*)@x$  $1@y  S\n*@a b@c\n")
        rules = load(path).rewrite
        self.assertEqual([(r.pattern, r.replacement, r.flags) for r in rules],
                         [("*@old.example", "$1@new.example", "Tbcfrs"),
                          ("^(.*)@x$", "$1@y", "S"), ("*@a", "b@c", "")])


class CollectingTests(TestCase):
    """load_collecting() reports every problem, for -bV."""

    def test_all_errors_are_listed(self):
        """Errors in several lines and drivers are all reported, each with its line."""
        path = write_config(self, "foo = 1\nbar = 2\nqualify_domain = ok\nbegin routers\n"
                                  "a:\n driver = nosuch\n domains = x\nb:\n driver = nosuch2\n"
                                  "begin transports\nt:\n driver = nosuch3\n")
        config, errors = load_collecting(path)
        self.assertIsNone(config)
        self.assertEqual([(e.line, e.message) for e in errors], [
            (1, 'main option "foo" unknown'),
            (2, 'main option "bar" unknown'),
            (6, 'router a: cannot find router driver "nosuch"'),
            (9, 'router b: cannot find router driver "nosuch2"'),
            (12, 'transport t: cannot find transport driver "nosuch3"'),
        ])

    def test_acl_errors_are_all_listed(self):
        """A broken ACL header skips to the next ACL; each broken statement is listed."""
        path = write_config(self, "begin acl\n  accept\n  deny\na:\n  frob x = 1\n"
                                  "b:\n  accept hosts\n  deny !message = x\n")
        _config, errors = load_collecting(path)
        self.assertEqual([(e.line, e.message) for e in errors], [
            (2, "missing or malformed ACL name"),
            (5, 'error in ACL: unknown ACL verb "frob" in "frob x = 1"'),
            (7, 'error in ACL: "=" missing after ACL "hosts" condition'),
            (8, 'error in ACL: ACL error: negation is not allowed with "message"'),
        ])

    def test_clean_file_has_no_errors(self):
        """A good file gives its Config and no errors."""
        config, errors = load_collecting(write_config(self, "qualify_domain = a\n"))
        self.assertEqual((config.main.qualify_domain, errors), ("a", []))


_IMPORT_PROBE = """
import sys
from exim_py.config import load
config = load(sys.argv[1])
heavy = ("twisted.internet.reactor", "OpenSSL", "dns.resolver", "exim_py.smtp.client",
         "exim_py.transports.smtp", "sqlite3")
print(" ".join(m for m in heavy if m in sys.modules))
print(config.macros["_OPT_TRANSPORT_SMTP_HOSTS_REQUIRE_TLS"])
print(" ".join(m for m in heavy if m in sys.modules))
"""


class LazyImportTests(TestCase):
    """Reading a configuration imports option tables, not the machinery behind them."""

    def test_reading_imports_no_network_stack(self):
        """A configuration with smtp, appendfile, pipe and autoreply transports and a
        dnslookup router loads without Twisted's reactor, OpenSSL, dnspython, sqlite3
        or the SMTP client; Config.macros still has every driver option macro."""
        path = write_config(self, "begin routers\n"
                                  "r:\n  driver = dnslookup\n  transport = t\n"
                                  "begin transports\n"
                                  "t:\n  driver = smtp\n  hosts_require_tls = *\n"
                                  "a:\n  driver = appendfile\n  file = /tmp/x\n"
                                  "p:\n  driver = pipe\n  command = /bin/true\n"
                                  "ar:\n  driver = autoreply\n  to = x@y\n")
        env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(
            os.path.abspath(__file__))))
        out = subprocess.run([sys.executable, "-c", _IMPORT_PROBE, path], env=env,
                             capture_output=True, text=True, timeout=60)
        self.assertEqual((out.stdout, out.stderr), ("\ny\n\n", ""))
