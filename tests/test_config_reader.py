"""Tests for exim_py.config.reader: logical lines, macros, conditionals, .include."""

import os

from twisted.trial.unittest import TestCase

from exim_py.config import features, load
from exim_py.errors import ConfigError
from tests.support.configs import register_test_router, write_config


class LogicalLineTests(TestCase):
    """Comments, white space and continuations, as Exim joins physical lines."""

    def test_comments_and_blank_lines_are_ignored(self):
        """A # line (after leading white space) and empty lines are not options."""
        path = write_config(self, "# comment\n\n   # indented comment\nqualify_domain = a.example\n")
        self.assertEqual(load(path).main.qualify_domain, "a.example")

    def test_hash_after_value_is_part_of_the_value(self):
        """# is a comment only at the start of a line: elsewhere it is data."""
        path = write_config(self, "qualify_domain = a.example # not a comment\n")
        self.assertEqual(load(path).main.qualify_domain, "a.example # not a comment")

    def test_continuation_strips_leading_white_space(self):
        """A trailing backslash joins the next line without its leading white space."""
        path = write_config(self, "primary_hostname = mail.\\\n      example.\\\n   org\n")
        self.assertEqual(load(path).main.primary_hostname, "mail.example.org")

    def test_comment_lines_inside_a_continuation_are_skipped(self):
        """A comment line in the middle of a continued line is dropped, not joined."""
        path = write_config(self, "primary_hostname = a\\\n# skipped\n  .example\n")
        self.assertEqual(load(path).main.primary_hostname, "a.example")

    def test_error_names_last_physical_line_of_continued_line(self):
        """Like Exim, an error in a continued line reports the line where it ended."""
        path = write_config(self, "keep_environment =\nfoo = \\\n  1\n")
        e = self.assertRaises(ConfigError, load, path)
        self.assertEqual((e.line, e.message), (3, 'main option "foo" unknown'))
        self.assertEqual(e.filename, path)

    def test_byte_order_mark_is_refused(self):
        """A UTF-8 BOM at the start of the file is an error, as in Exim."""
        path = write_config(self, "\ufeffqualify_domain = a\n")
        e = self.assertRaises(ConfigError, load, path)
        self.assertEqual(e.message, "found unexpected BOM (Byte Order Mark)")


class MacroTests(TestCase):
    """Macro definition and substitution (spec section "Macros in the configuration file")."""

    def test_macro_replaced_inside_words(self):
        """A macro name is replaced wherever it occurs, even inside another word."""
        path = write_config(self, "DOM = example\nqualify_domain = mail.DOM.org\n"
                                  "primary_hostname = xDOMx\n")
        main = load(path).main
        self.assertEqual((main.qualify_domain, main.primary_hostname),
                         ("mail.example.org", "xexamplex"))

    def test_command_line_definition_wins(self):
        """-D NAME=value overrides the file's definition of NAME."""
        path = write_config(self, "DOM = file.example\nqualify_domain = DOM\n")
        self.assertEqual(load(path, {"DOM": "cmd.example"}).main.qualify_domain, "cmd.example")

    def test_redefinition_with_double_equals(self):
        """NAME == value redefines; later lines see the new value."""
        path = write_config(self, "DOM = one\nqualify_domain = DOM\nDOM == two\n"
                                  "qualify_recipient = DOM\n")
        main = load(path).main
        self.assertEqual((main.qualify_domain, main.qualify_recipient), ("one", "two"))

    def test_macros_substituted_in_macro_values(self):
        """A definition's value is itself subject to earlier macros."""
        path = write_config(self, "BASE = example\nFULL = mail.BASE\nqualify_domain = FULL\n")
        self.assertEqual(load(path).main.qualify_domain, "mail.example")

    def test_longer_macro_defined_first_is_substituted_first(self):
        """Macros are tried in definition order, so ABC defined before AB wins in ABC."""
        path = write_config(self, "ABC = long\nAB = short\nqualify_domain = ABC.AB\n")
        self.assertEqual(load(path).main.qualify_domain, "long.short")

    def test_macro_errors_have_exim_texts(self):
        """Defining twice, a substring of an earlier name, or == without a definition fail."""
        cases = [
            ("X = 1\nX = 2\n", 'macro "X" is already defined (use "==" if you want to redefine it)'),
            ("XY = 1\nXYZ = 2\n",
             '"XYZ" cannot be defined as a macro because previously defined macro "XY" is a substring'),
            ("X == 2\n", "can't redefine an undefined macro \"X\""),
        ]
        for text, message in cases:
            e = self.assertRaises(ConfigError, load, write_config(self, text))
            self.assertEqual(e.message, message)

    def test_macros_listed_in_config(self):
        """Config.macros holds -D macros then file macros, with built-ins."""
        path = write_config(self, "FILEMAC = f\n")
        macros = load(path, {"CMDMAC": "c"}).macros
        user = [(k, v) for k, v in macros.items() if not k.startswith("_")]
        self.assertEqual(user, [("CMDMAC", "c"), ("FILEMAC", "f")])
        self.assertEqual(macros["_OPT_MAIN_QUALIFY_DOMAIN"], "y")


class BuiltinMacroTests(TestCase):
    """_HAVE_*, _DRIVER_* and _OPT_* say exactly what this exim_py has."""

    def check(self, name):
        text = ".ifdef %s\nqualify_domain = yes\n.else\nqualify_domain = no\n.endif\n" % name
        return load(write_config(self, text)).main.qualify_domain

    def test_option_macros(self):
        """_OPT_MAIN_<option> and _OPT_ROUTERS_<generic option> exist; others do not."""
        self.assertEqual(self.check("_OPT_MAIN_SMTP_BANNER"), "yes")
        self.assertEqual(self.check("_OPT_ROUTERS_DOMAINS"), "yes")
        self.assertEqual(self.check("_OPT_MAIN_NO_SUCH_OPTION"), "no")

    def test_driver_macros_follow_the_registry(self):
        """_DRIVER_ROUTER_<name> and _OPT_ROUTER_<name>_<option> exist once the driver is registered."""
        self.assertEqual(self.check("_DRIVER_ROUTER_TESTDRV"), "no")
        register_test_router(self)
        self.assertEqual(self.check("_DRIVER_ROUTER_TESTDRV"), "yes")
        self.assertEqual(self.check("_OPT_ROUTER_TESTDRV_TESTDRV_LIMIT"), "yes")

    def test_feature_macros_follow_features_table(self):
        """_HAVE_<name> exists exactly for the entries of features.FEATURES."""
        self.assertEqual(self.check("_HAVE_EXIMPYTEST"), "no")
        self.patch(features, "FEATURES", dict(features.FEATURES, EXIMPYTEST="test"))
        self.assertEqual(self.check("_HAVE_EXIMPYTEST"), "yes")


class ConditionalTests(TestCase):
    """.ifdef / .ifndef / .elifdef / .elifndef / .else / .endif, nested."""

    def value(self, text, macros=None):
        return load(write_config(self, text), macros).main.qualify_domain

    def test_ifdef_else(self):
        """.ifdef takes its branch when the macro exists, else the .else branch."""
        text = ".ifdef MYMAC\nqualify_domain = defined\n.else\nqualify_domain = undefined\n.endif\n"
        self.assertEqual(self.value(text), "undefined")
        self.assertEqual(self.value(text, {"MYMAC": "1"}), "defined")

    def test_elifdef_chain_takes_first_true_branch_only(self):
        """Once a branch is taken, later .elifdef/.else branches are skipped."""
        text = (".ifndef AMAC\nqualify_domain = one\n.elifdef BMAC\nqualify_domain = two\n"
                ".elifdef CMAC\nqualify_domain = three\n.else\nqualify_domain = four\n.endif\n")
        self.assertEqual(self.value(text), "one")
        self.assertEqual(self.value(text, {"AMAC": "", "BMAC": "", "CMAC": ""}), "two")
        self.assertEqual(self.value(text, {"AMAC": "", "CMAC": ""}), "three")
        self.assertEqual(self.value(text, {"AMAC": ""}), "four")

    def test_nested_conditionals(self):
        """An inner conditional inside a skipped branch is skipped entirely."""
        text = (".ifdef OUTERMAC\n.ifdef INNERMAC\nqualify_domain = both\n.else\n"
                "qualify_domain = outer\n.endif\n.else\nqualify_domain = none\n.endif\n")
        self.assertEqual(self.value(text), "none")
        self.assertEqual(self.value(text, {"OUTERMAC": ""}), "outer")
        self.assertEqual(self.value(text, {"OUTERMAC": "", "INNERMAC": ""}), "both")

    def test_ten_levels_of_nesting(self):
        """Conditionals nest ten deep; the eleventh level is an error, as in Exim."""
        deep = ".ifndef NOPE\n" * 10 + "qualify_domain = deep\n" + ".endif\n" * 10
        self.assertEqual(self.value(deep), "deep")
        e = self.assertRaises(ConfigError, load, write_config(self, ".ifndef NOPE\n" * 11))
        self.assertEqual((e.line, e.message), (11, ".ifndef nested too deeply"))

    def test_directive_word_must_be_followed_by_a_space(self):
        """A line such as ".ifdef<TAB>X" or ".ifdefX" is dropped, as readconf.c drops it."""
        self.assertEqual(self.value(".ifdefNOPE\nqualify_domain = kept\n"), "kept")
        e = self.assertRaises(ConfigError, load,
                              write_config(self, ".ifdef\tNOPE\nqualify_domain = x\n.endif\n"))
        self.assertEqual((e.line, e.message), (3, ".endif without matching .ifdef"))

    def test_unbalanced_conditionals(self):
        """A missing .endif, or .endif without .ifdef, is an error with Exim's text."""
        e = self.assertRaises(ConfigError, load, write_config(self, ".ifdef X\n"))
        self.assertEqual(e.message, "Unexpected end of configuration file: .endif missing")
        e = self.assertRaises(ConfigError, load, write_config(self, "\n.endif\n"))
        self.assertEqual((e.line, e.message), (2, ".endif without matching .ifdef"))


class IncludeTests(TestCase):
    """.include and .include_if_exists."""

    def test_nested_relative_includes_report_their_own_file_and_line(self):
        """A relative .include is found beside the including file; errors name the included file."""
        path = write_config(self, "keep_environment =\n.include sub/a.conf\nqualify_recipient = r\n",
                            files={"sub/a.conf": "qualify_domain = d\n.include b/c.conf\n",
                                   "sub/b/c.conf": "# c\nno_such_option = 1\n"})
        e = self.assertRaises(ConfigError, load, path)
        self.assertEqual(e.filename, os.path.join(os.path.dirname(path), "sub/b/c.conf"))
        self.assertEqual((e.line, e.message), (2, 'main option "no_such_option" unknown'))

    def test_lines_after_include_continue_in_the_including_file(self):
        """After an included file ends, reading resumes after the .include line."""
        path = write_config(self, '.include "inc.conf"\nqualify_recipient = r\n',
                            files={"inc.conf": "qualify_domain = d\n"})
        main = load(path).main
        self.assertEqual((main.qualify_domain, main.qualify_recipient), ("d", "r"))

    def test_include_if_exists(self):
        """A missing .include_if_exists file is ignored; it must be absolute."""
        directory = os.path.abspath(self.mktemp())
        path = write_config(self, ".include_if_exists %s/nothing\nqualify_domain = d\n" % directory)
        self.assertEqual(load(path).main.qualify_domain, "d")
        e = self.assertRaises(ConfigError, load, write_config(self, ".include_if_exists rel.conf\n"))
        self.assertEqual(e.message, '.include specifies a non-absolute path "rel.conf"')

    def test_missing_include(self):
        """A missing .include file is an error naming it."""
        e = self.assertRaises(ConfigError, load, write_config(self, ".include /nonexistent/x\n"))
        self.assertEqual(e.message, "failed to open included configuration file /nonexistent/x")


class SectionTests(TestCase):
    """begin lines."""

    def test_unknown_and_repeated_sections(self):
        """Unknown section names and a section given twice are refused."""
        e = self.assertRaises(ConfigError, load, write_config(self, "begin foo\n"))
        self.assertEqual(e.message, '"foo" is not a known configuration section name')
        e = self.assertRaises(ConfigError, load, write_config(self, "begin acl\nbegin acls\n"))
        self.assertEqual((e.line, e.message), (2, '"acls" section is repeated in the configuration file'))

    def test_singular_section_names_are_accepted(self):
        """begin router / begin transport work as their plurals, as in Exim."""
        config = load(write_config(self, "begin router\nbegin transport\nbegin retry\n"))
        self.assertEqual((config.routers, config.transports, config.retry), ([], {}, []))
