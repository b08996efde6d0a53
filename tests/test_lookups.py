"""Single-key lookups on real files: lsearch family, iplsearch, dsearch, lmdb.

The expected values follow Exim 4.96 (checked with ``exim4 -be``; the
comparisons that run here against the real binary are in
tests/test_match_exim4.py).
"""

import os
import subprocess

import lmdb
from twisted.trial import unittest

from exim_py import lookups
from exim_py.errors import ExpansionError, LookupDefer
from exim_py.expand.context import ExpandContext
from tests.support.peers import require_command

LSEARCH = """\
# a comment
foo: bar
Mixed:  Case Data
spaced   data without colon
colon:   :fail: no way
"quoted key": quoted data
"with\\"escape\\x41": escaped
cont: first
  second
\tthird
endsatblank: one

  notjoined
endsatcomment: one
# comment
  notjoined
empty:
*.wild.example: partial data
*.example: parent data
*: star data
*@dom.example: at default
"""


class LookupFiles:
    """Writes fixture files into the test's temporary directory."""

    def write(self, name, text):
        directory = self.mktemp()
        os.makedirs(directory)
        path = os.path.join(directory, name)
        with open(path, "w") as f:
            f.write(text)
        return path


class LsearchTests(LookupFiles, unittest.TestCase):
    def setUp(self):
        self.path = self.write("ls", LSEARCH)
        self.ctx = ExpandContext()

    def find(self, key, ltype="lsearch"):
        return lookups.search(ltype, self.path, key, self.ctx)

    def test_file_format(self):
        """Keys end at a colon or white space, quoted keys take escapes,
        data continues on indented lines and stops at a blank or comment line."""
        table = [
            ("foo", "bar"),
            ("spaced", "data without colon"),
            ("colon", ":fail: no way"),
            ("quoted key", "quoted data"),
            ('with"escapeA', "escaped"),
            ("cont", "first second third"),
            ("endsatblank", "one"),
            ("endsatcomment", "one"),
            ("empty", ""),
            ("missing", None),
            ("#", None),
        ]
        for key, expected in table:
            self.assertEqual(self.find(key), expected, key)

    def test_caseless_keys(self):
        """lsearch keys are compared without regard to case; data keeps its case."""
        self.assertEqual(self.find("MIXED"), "Case Data")
        self.assertEqual(self.find("FOO"), "bar")

    def test_empty_key_never_matches(self):
        """A single-key lookup with an empty key fails, whatever the file holds."""
        self.assertIsNone(self.find(""))

    def test_partial_matching(self):
        """partial- tries the key, then *.key, then *.parent while two components remain."""
        self.assertEqual(self.find("a.wild.example", "partial-lsearch"), "partial data")
        self.assertEqual(self.find("wild.example", "partial-lsearch"), "partial data")
        self.assertIsNone(self.find("x.y.example", "partial-lsearch"))
        self.assertEqual(self.find("x.y.example", "partial1-lsearch"), "parent data")
        self.assertIsNone(self.find("x.wild.example", "partial4-lsearch"))
        self.assertIsNone(self.find("a.wild.example", "lsearch"))

    def test_partial_wild_and_fixed_parts(self):
        """After a partial match, $1 is the wild part and $2 the fixed part."""
        value, parts = lookups.search_wild("partial-lsearch", self.path, "a.b.wild.example")
        self.assertEqual((value, parts), ("partial data", ("a.b", "wild.example")))
        value, parts = lookups.search_wild("partial-lsearch", self.path, "foo")
        self.assertEqual(parts, ("", "foo"))

    def test_partial0_ends_with_star(self):
        """partial0 with the default affix finally looks up "*" alone."""
        self.assertEqual(self.find("a.b.c", "partial0-lsearch"), "star data")

    def test_partial_custom_affix(self):
        """partial(.) uses "." as the affix instead of "*."."""
        path = self.write("dot", ".b.c: dotted\n")
        self.assertEqual(lookups.search("partial(.)lsearch", path, "a.b.c"), "dotted")
        self.assertIsNone(lookups.search("partial-lsearch", path, "a.b.c"))

    def test_defaults(self):
        """lsearch* falls back to "*"; lsearch*@ tries *@domain first."""
        self.assertEqual(self.find("nothing", "lsearch*"), "star data")
        self.assertEqual(self.find("user@dom.example", "lsearch*@"), "at default")
        self.assertEqual(self.find("user@other.example", "lsearch*@"), "star data")
        self.assertIsNone(self.find("nothing"))

    def test_ret_key(self):
        """ret=key returns the key instead of the data."""
        self.assertEqual(self.find("FOO", "lsearch,ret=key"), "FOO")
        self.assertIsNone(self.find("nope", "lsearch,ret=key"))

    def test_file_changes_are_seen(self):
        """An edited file is read again on the next lookup."""
        self.assertEqual(self.find("foo"), "bar")
        with open(self.path, "w") as f:
            f.write("foo: changed and longer\n")
        self.assertEqual(lookups.search("lsearch", self.path, "foo"), "changed and longer")

    def test_result_cache_in_context(self):
        """Results are cached per context; cache=no_rd bypasses the cache."""
        self.assertEqual(self.find("foo"), "bar")
        with open(self.path, "w") as f:
            f.write("foo: new data in the file\n")
        self.assertEqual(self.find("foo"), "bar")
        self.assertEqual(self.find("foo", "lsearch,cache=no_rd"), "new data in the file")


class LookupErrorTests(LookupFiles, unittest.TestCase):
    def test_missing_file(self):
        """A missing file gives Exim's message, not a traceback."""
        e = self.assertRaises(ExpansionError, lookups.search, "lsearch", "/nonexistent/f", "k")
        self.assertEqual(str(e), "failed to open /nonexistent/f for linear search: "
                                 "No such file or directory")

    def test_not_a_regular_file(self):
        """A directory given as an lsearch file is refused as Exim words it."""
        directory = self.mktemp()
        os.makedirs(directory)
        e = self.assertRaises(ExpansionError, lookups.search, "lsearch", directory, "k")
        self.assertEqual(str(e), "%s is not a regular file (lsearch lookup)" % directory)

    def test_bad_types(self):
        """Unknown types and misplaced partial/defaults are errors with Exim's text."""
        table = [
            ("lsearchx", 'unknown lookup type "lsearchx"'),
            ("partialx-lsearch", 'format error in lookup type "partialx-lsearch"'),
            ("partial-dnsdb", '"partial" is not permitted for lookup type "dnsdb"'),
            ("dnsdb*", 'defaults using "*" or "*@" are not permitted for lookup type "dnsdb*"'),
        ]
        for ltype, message in table:
            e = self.assertRaises(ExpansionError, lookups.parse_type, ltype)
            self.assertEqual(str(e), message)

    def test_query_style(self):
        """is_query_style tells query-style types from single-key ones."""
        self.assertTrue(lookups.is_query_style("dnsdb"))
        self.assertFalse(lookups.is_query_style("lsearch"))
        self.assertEqual(lookups.quote("lsearch", "a:b"), "a:b")


class WildlsearchTests(LookupFiles, unittest.TestCase):
    def test_patterns(self):
        """nwildlsearch keys may be *suffix, ^regex or literal, tried in file order."""
        path = self.write("wild", "*.a.b   star\n"
                                  "^\\d+\\.c$  regex\n"
                                  '"^x y"  quoted regex\n'
                                  "Literal.Example  literal\n"
                                  "*fish   fish\n")
        table = [("x.a.b", "star"), ("123.c", "regex"), ("X Yz", "quoted regex"),
                 ("literal.example", "literal"), ("catfish", "fish"), ("nothing", None)]
        for key, expected in table:
            self.assertEqual(lookups.search("nwildlsearch", path, key), expected, key)

    def test_wildlsearch_plain_keys(self):
        """wildlsearch expands keys; keys without $ or backslash match as written."""
        path = self.write("wild", "*.a.b   star\nplain  literal\n")
        ctx = ExpandContext()
        self.assertEqual(lookups.search("wildlsearch", path, "q.A.B", ctx), "star")
        self.assertEqual(lookups.search("wildlsearch", path, "PLAIN", ctx), "literal")


class IplsearchTests(LookupFiles, unittest.TestCase):
    def setUp(self):
        self.path = self.write("ips", '192.0.2.0/24: net\n'
                                      '10.1.2.3 single\n'
                                      '"2001:db8::/32": six\n'
                                      '*: default\n')

    def test_networks(self):
        """The first network containing the address wins; IPv4-mapped IPv6 is IPv4."""
        table = [("192.0.2.77", "net"), ("10.1.2.3", "single"), ("10.1.2.4", None),
                 ("2001:db8::1", "six"), ("::ffff:192.0.2.1", "net"), ("*", "default")]
        for key, expected in table:
            self.assertEqual(lookups.search("iplsearch", self.path, key), expected, key)

    def test_ret_full(self):
        """ret=full returns the whole line, key included."""
        self.assertEqual(lookups.search("iplsearch,ret=full", self.path, "192.0.2.9"),
                         "192.0.2.0/24: net")

    def test_bad_key(self):
        """A key that is not an IP address defers with Exim's explanation."""
        e = self.assertRaises(LookupDefer, lookups.search, "iplsearch", self.path, "abc")
        self.assertIn('"abc" is not a valid iplsearch key', str(e))


class DsearchTests(unittest.TestCase):
    def setUp(self):
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(self.dir, "subdir"))
        open(os.path.join(self.dir, "file"), "w").close()

    def test_entries_and_options(self):
        """dsearch finds directory entries; ret=full and filter= change the answer."""
        table = [
            ("dsearch", "file", "file"),
            ("dsearch", "nothing", None),
            ("dsearch,ret=full", "file", os.path.join(self.dir, "file")),
            ("dsearch,filter=file", "subdir", None),
            ("dsearch,filter=dir", "subdir", "subdir"),
            ("dsearch,filter=dir", "..", ".."),
            ("dsearch,filter=subdir", "..", None),
        ]
        for ltype, key, expected in table:
            self.assertEqual(lookups.search(ltype, self.dir, key), expected, (ltype, key))

    def test_slash_in_key(self):
        """A key with a slash defers, as Exim's dsearch does."""
        e = self.assertRaises(LookupDefer, lookups.search, "dsearch", self.dir, "a/b")
        self.assertEqual(str(e), "key for dsearch lookup contains a slash: a/b")

    def test_missing_directory(self):
        """A missing directory is reported as Exim reports it."""
        e = self.assertRaises(ExpansionError, lookups.search, "dsearch", self.dir + "/no", "x")
        self.assertEqual(str(e), "failed to open %s/no for directory search: "
                                 "No such file or directory" % self.dir)


class LmdbTests(unittest.TestCase):
    def setUp(self):
        self.path = os.path.abspath(self.mktemp())
        env = lmdb.open(self.path, subdir=False)
        with env.begin(write=True) as txn:
            txn.put(b"key", b"value")
            txn.put(b"*.example.com", b"wild")
        env.close()

    def test_lookup(self):
        """lmdb finds a key in a database file built with the lmdb package."""
        self.assertEqual(lookups.search("lmdb", self.path, "key"), "value")
        self.assertIsNone(lookups.search("lmdb", self.path, "KEY"))
        self.assertEqual(lookups.search("partial-lmdb", self.path, "a.example.com"), "wild")

    def test_missing_file(self):
        """A missing database is an error with LMDB's reason."""
        e = self.assertRaises(ExpansionError, lookups.search, "lmdb", self.path + "x", "key")
        self.assertEqual(str(e), "LMDB: Unable to open environment with %sx: "
                                 "No such file or directory" % self.path)


class PasswdTests(unittest.TestCase):
    def test_user(self):
        """passwd gives *:uid:gid:gecos:home:shell for a user, None for no user."""
        self.assertTrue(lookups.search("passwd", None, "root").startswith("*:0:0:"))
        self.assertIsNone(lookups.search("passwd", None, "no-such-user-exim-py"))
        self.assertTrue(lookups.is_query_style("passwd"))


class CdbTests(unittest.TestCase):
    def setUp(self):
        cdb = require_command("cdb", "Debian package tinycdb")
        self.path = os.path.abspath(self.mktemp())
        entries = "key1 value one\nKey2 v2\n*.example.com wild\n"
        entries += "".join("filler%d data%d\n" % (i, i) for i in range(500))
        subprocess.run([cdb, "-c", "-m", self.path], input=entries, text=True, check=True)

    def test_lookup(self):
        """cdb files made by tinycdb are read; keys are compared exactly."""
        table = [("cdb", "key1", "value one"), ("cdb", "Key2", "v2"), ("cdb", "key2", None),
                 ("cdb", "filler321", "data321"), ("cdb", "filler500", None),
                 ("partial-cdb", "a.example.com", "wild")]
        for ltype, key, expected in table:
            self.assertEqual(lookups.search(ltype, self.path, key), expected, key)

    def test_bad_files(self):
        """Missing and too-short files are refused with Exim's words."""
        e = self.assertRaises(ExpansionError, lookups.search, "cdb", self.path + "x", "k")
        self.assertEqual(str(e), "failed to open %sx for cdb lookup: No such file or directory"
                         % self.path)
        short = os.path.abspath(self.mktemp())
        with open(short, "w") as f:
            f.write("tiny")
        e = self.assertRaises(ExpansionError, lookups.search, "cdb", short, "k")
        self.assertEqual(str(e), "failed to open %s too short for cdb lookup" % short)


class SqliteTests(unittest.TestCase):
    def setUp(self):
        import sqlite3
        self.path = os.path.abspath(self.mktemp())
        conn = sqlite3.connect(self.path)
        conn.execute("create table users (name text, home text)")
        conn.execute("insert into users values ('fred', '/home/fred')")
        conn.commit()
        conn.close()

    def test_file_from_query_or_option(self):
        """The database is the query's first word, the file= option, or sqlite_dbfile."""
        query = "select home from users where name='%s'" % lookups.quote("sqlite", "fred")
        self.assertEqual(lookups.search("sqlite", None, self.path + " " + query), "/home/fred")
        self.assertEqual(lookups.search("sqlite,file=" + self.path, None, query), "/home/fred")
        conf = os.path.abspath(self.mktemp())
        with open(conf, "w") as f:
            f.write("sqlite_dbfile = %s\n" % self.path)
        from exim_py import config as configmod
        ctx = ExpandContext(config=configmod.load(conf))
        self.assertEqual(lookups.search("sqlite", None, query, ctx), "/home/fred")

    def test_errors(self):
        """No absolute file is an error; a failing statement is "not found"."""
        e = self.assertRaises(ExpansionError, lookups.search, "sqlite", None, "select 1")
        self.assertEqual(str(e), 'absolute file name expected for "sqlite" lookup')
        self.assertIsNone(lookups.search("sqlite", None, self.path + " select nosuch from users"))
        self.assertEqual(lookups.quote("sqlite", "it's"), "it''s")
