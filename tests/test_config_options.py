"""Tests for option types: reading good and bad values, and printing them as -bP does."""

import grp
import pwd

from twisted.trial.unittest import TestCase

from exim_py import registry
from exim_py.config import load, options
from exim_py.config.generic_options import GENERIC
from exim_py.config.main_options import MAIN_OPTIONS
from exim_py.config.options import (BOOL, FIXED, INT, KSIZE, OCTINT, SIZE, STRING, TIME,
                                    TIMELIST, GID, UID, UIDLIST, Option, OptionTable,
                                    OptionValues, SettingParser, format_time, format_value,
                                    read_time)
from exim_py.errors import ConfigError
from tests.support.configs import write_config

TABLE = OptionTable([
    Option("flag", BOOL, False),
    Option("count", INT, 5),
    Option("mode", OCTINT, 0o600),
    Option("load", FIXED, None),
    Option("wait", TIME, 60),
    Option("limit", SIZE, 0),
    Option("space", KSIZE, 0),
    Option("text", STRING, None),
    Option("owner_user", UID, None),
    Option("owner_group", GID, None),
    Option("users", UIDLIST, None),
    Option("warnings", TIMELIST, [86400], max_items=3),
    Option("headers", STRING, None, repeat="\n"),
])


def setting(*lines):
    """Apply ``lines`` to fresh values of TABLE; return the values."""
    values = OptionValues(TABLE)
    for number, line in enumerate(lines, 1):
        SettingParser("test.conf", number).apply(values, line, 'option "%s" unknown')
    return values


def error(*lines):
    """The message of the ConfigError that applying ``lines`` raises."""
    try:
        setting(*lines)
    except ConfigError as e:
        return e.message
    raise AssertionError("no error for %r" % (lines,))


def printed(values, name):
    return format_value(TABLE.get(name), values[name], values.is_hidden(name))


class BooleanTests(TestCase):
    """name, no_name, not_name, name = true|false|yes|no."""

    def test_forms(self):
        """Every spelling Exim accepts sets the expected value."""
        self.assertTrue(setting("flag").flag)
        self.assertFalse(setting("no_flag").flag)
        self.assertFalse(setting("not_flag").flag)
        self.assertTrue(setting("flag = yes").flag)
        self.assertFalse(setting("flag = FALSE").flag)

    def test_bad_values(self):
        """Bad boolean values get Exim's messages."""
        self.assertEqual(error("flag = maybe"), '"maybe" is not a valid value for the "flag" option')
        self.assertEqual(error("flag = true x"), 'extra characters follow "true" for boolean option flag')
        self.assertEqual(error("no_flag = true"), "extra characters follow boolean option no_flag")
        self.assertEqual(error("no_count"), "negation prefix applied to a non-boolean option")

    def test_printing(self):
        """-bP shows name or no_name."""
        self.assertEqual(printed(setting("flag"), "flag"), "flag")
        self.assertEqual(printed(setting("no_flag"), "flag"), "no_flag")


class IntegerTests(TestCase):
    """Integers: decimal, octal, hex, K/M/G suffixes, overflow."""

    def test_bases_and_suffixes(self):
        """0x is hex, a leading 0 octal, and K/M/G multiply by powers of 1024."""
        self.assertEqual(setting("count = 0x1f").count, 31)
        self.assertEqual(setting("count = 017").count, 15)
        self.assertEqual(setting("count = 2K").count, 2048)
        self.assertEqual(setting("count = 3m").count, 3 * 1024 * 1024)
        self.assertEqual(setting("count = -4").count, -4)

    def test_bad_values(self):
        """Exim's messages for missing digits, junk after the number and overflow."""
        self.assertEqual(error("count = abc"), "integer expected for count")
        self.assertEqual(error("count = 12x"), "extra characters follow integer value for count")
        self.assertEqual(error("count = 1 # two"), "extra characters follow integer value for count"
                                                   " (# is comment only at line start)")
        self.assertEqual(error("count = 99999999999"),
                         'absolute value of integer "99999999999" is too large (overflow)')
        self.assertEqual(error("count"), "unexpected end of line (data missing) after count")
        self.assertEqual(error("count 3"), 'missing "=" after count')

    def test_octal_integer(self):
        """Octal options read octal digits and print with a leading zero."""
        values = setting("mode = 0640")
        self.assertEqual(values.mode, 0o640)
        self.assertEqual(printed(values, "mode"), "mode = 0640")
        self.assertEqual(error("mode = 9"), "octal integer expected for mode")

    def test_sizes_print_with_units(self):
        """SIZE prints exact K/M multiples with the unit; KSIZE is held in K and prints up to T."""
        self.assertEqual(printed(setting("limit = 2048"), "limit"), "limit = 2K")
        self.assertEqual(printed(setting("limit = 5M"), "limit"), "limit = 5M")
        self.assertEqual(printed(setting("limit = 1000"), "limit"), "limit = 1000")
        self.assertEqual(setting("space = 10M").space, 10 * 1024 * 1024)
        self.assertEqual(printed(setting("space = 10000"), "space"), "space = 10000K")
        self.assertEqual(printed(setting("space = 2G"), "space"), "space = 2G")


class FixedPointTests(TestCase):
    """Fixed-point numbers with three decimals."""

    def test_values_and_printing(self):
        """1.25 reads as 1.25 and prints as Exim does; unset prints with no value."""
        self.assertEqual(setting("load = 1.25").load, 1.25)
        self.assertEqual(printed(setting("load = 1.25"), "load"), "load = 1.25")
        self.assertEqual(printed(setting("load = 2"), "load"), "load = 2.0")
        self.assertEqual(printed(setting(), "load"), "load =")

    def test_bad_values(self):
        """Non-numbers are refused with Exim's message."""
        self.assertEqual(error("load = x"), "fixed-point number expected for load")
        self.assertEqual(error("load = 1.5y"), "extra characters follow fixed-point value for load")


class TimeTests(TestCase):
    """Time values and time lists."""

    def test_read_and_print(self):
        """1d2h30m10s reads to seconds and prints back in the same form."""
        self.assertEqual(read_time("1d2h30m10s"), 95410)
        self.assertEqual(read_time("2w"), 14 * 86400)
        self.assertEqual(read_time("5"), -1)
        self.assertEqual(format_time(95410), "1d2h30m10s")
        self.assertEqual(format_time(0), "0s")
        self.assertEqual(format_time(7 * 86400), "1w")
        self.assertEqual(printed(setting("wait = 90m"), "wait"), "wait = 1h30m")

    def test_bad_time(self):
        """A bare number or unknown unit is an invalid time value."""
        self.assertEqual(error("wait = 5"), "invalid time value for wait")
        self.assertEqual(error("wait = 1x"), "invalid time value for wait")

    def test_time_list(self):
        """A time list must increase; too many values is an error; a leading 0 means none."""
        values = setting("warnings = 1h:2h : 1d")
        self.assertEqual(values.warnings, [3600, 7200, 86400])
        self.assertEqual(printed(values, "warnings"), "warnings = 1h:2h:1d")
        self.assertEqual(setting("warnings = 0s").warnings, [])
        self.assertEqual(error("warnings = 2h:1h"), "time value out of order for warnings")
        self.assertEqual(error("warnings = 1h:2h:3h:4h"), "too many time values for warnings")


class StringTests(TestCase):
    """Strings: verbatim, or quoted with escapes."""

    def test_verbatim_and_quoted(self):
        """Unquoted values are taken as written; quoted ones have escapes processed."""
        self.assertEqual(setting(r"text = a\tb").text, "a\\tb")
        self.assertEqual(setting(r'text = "a\tb\x41\101\\"').text, "a\tbAA\\")

    def test_printing_escapes_non_printing_characters(self):
        """-bP shows a tab as \\t, as Exim's string_printing does."""
        self.assertEqual(printed(setting(r'text = "a\tb"'), "text"), "text = a\\tb")
        self.assertEqual(printed(setting(), "text"), "text = ")

    def test_quote_errors(self):
        """An unterminated quote, or text after the closing quote, is an error."""
        self.assertEqual(error('text = "abc'), "missing quote at end of string value for text")
        self.assertEqual(error('text = "abc" x'), "extra characters follow string value for text")

    def test_set_twice(self):
        """A second setting is an error unless the option accumulates."""
        self.assertEqual(error("text = a", "text = b"), '"text" option set for the second time')
        self.assertEqual(setting("headers = A: 1", "headers = B: 2").headers, "A: 1\nB: 2")

    def test_hide(self):
        """hide marks the value secret: -bP shows it only to admin users."""
        values = setting("hide text = secret")
        self.assertEqual(values.text, "secret")
        self.assertTrue(values.is_hidden("text"))
        self.assertEqual(printed(values, "text"), "text = <value not displayable>")

    def test_unknown(self):
        """An unknown option gets the table's message; a non-name is not an option line."""
        self.assertEqual(error("nothing = 1"), 'option "nothing" unknown')
        self.assertEqual(error("1abc = 2"), "option setting expected: 1abc = 2")


class IdTests(TestCase):
    """Users, groups and user lists, looked up as Exim does."""

    def test_user_sets_group(self):
        """A user given by name also sets the matching group, unless it was set."""
        root = pwd.getpwnam("root")
        values = setting("owner_user = root")
        self.assertEqual((values.owner_user, values.owner_group), (root.pw_uid, root.pw_gid))
        self.assertEqual(printed(values, "owner_user"), "owner_user = root")
        self.assertEqual(printed(values, "owner_group"),
                         "owner_group = %s" % grp.getgrgid(root.pw_gid).gr_name)
        self.assertEqual(setting("owner_user = 4242").owner_user, 4242)

    def test_unknown_user_and_group(self):
        """Names that do not exist are errors."""
        self.assertEqual(error("owner_user = no-such-user-x"), "user no-such-user-x was not found")
        self.assertEqual(error("owner_group = no-such-group-x"), "group no-such-group-x was not found")
        self.assertEqual(error("users = root : no-such-user-x"), "user no-such-user-x was not found")

    def test_user_list_printing(self):
        """A uid list prints names joined by colons; unset prints without a value."""
        self.assertEqual(printed(setting("users = root : 0"), "users"), "users = root:root")
        self.assertEqual(printed(setting(), "users"), "users =")


class MainTableTests(TestCase):
    """The main option table as a whole."""

    def test_every_default_prints(self):
        """Every main option's default can be formatted (the -bP all path)."""
        for opt in MAIN_OPTIONS:
            line = format_value(opt, opt.default)
            self.assertTrue(line.startswith((opt.name, "no_" + opt.name)), line)

    def test_table_is_in_alphabetical_order(self):
        """-bP lists main options alphabetically, as Exim does."""
        names = [o.name for o in MAIN_OPTIONS if not o.hidden]
        self.assertEqual(names, sorted(names))

    def test_main_section_duplicate_and_unknown(self):
        """The main section refuses unknown options and options set twice, naming the line."""
        e = self.assertRaises(ConfigError, load,
                              write_config(self, "qualify_domain = a\nqualify_domain = b\n"))
        self.assertEqual((e.line, e.message), (2, '"qualify_domain" option set for the second time'))
        e = self.assertRaises(ConfigError, load, write_config(self, "foo = 1\n"))
        self.assertEqual(e.message, 'main option "foo" unknown')

    def test_synonym_sets_the_real_option(self):
        """An old option name Exim still accepts sets the current option."""
        config = load(write_config(self, "daemon_smtp_port = 2525\n"))
        self.assertEqual(config.main.daemon_smtp_ports, "2525")

    def test_dns_nameservers_extension(self):
        """dns_nameservers (exim_py extension) is a list kept as written."""
        config = load(write_config(self, "dns_nameservers = 127.0.0.1.5353 : 10.0.0.1\n"))
        self.assertEqual(config.main.dns_nameservers, "127.0.0.1.5353 : 10.0.0.1")


class DriverTableTests(TestCase):
    """Every registered driver's OPTIONS table fits the contract the loader relies on."""

    def test_every_driver_option_is_well_formed(self):
        """Known types, no generic option declared again, defaults -bP can print."""
        known = {BOOL, INT, OCTINT, FIXED, TIME, SIZE, KSIZE, STRING, UID, GID, UIDLIST,
                 options.GIDLIST, options.LIST, options.HOSTLIST, options.DOMAINLIST,
                 options.ADDRESSLIST, options.LOCALPARTLIST, TIMELIST}
        for kind, generic in GENERIC.items():
            for driver in registry.available(kind):
                table = getattr(registry.load(kind, driver), "OPTIONS", None)
                self.assertIsInstance(table, OptionTable, "%s %s" % (kind, driver))
                for opt in table:
                    where = "%s %s: %s" % (kind, driver, opt.name)
                    self.assertIn(opt.type, known, where)
                    self.assertNotIn(opt.name, generic, where)
                    line = format_value(opt, opt.default)
                    self.assertTrue(line.startswith((opt.name, "no_" + opt.name)), where)
