"""List matching and lookups compared with the real Exim 4.96 (``exim4 -be``).

Each table row is run through exim_py and through Exim's own
``${if match_domain{..}{..}}`` (and friends) or ``${lookup}``, in one
``exim4`` run per table; the answers must agree.
"""

import os
import sqlite3
import subprocess

from twisted.trial import unittest

from exim_py import config as configmod
from exim_py import lookups, match
from exim_py.expand.context import ExpandContext
from tests.support.peers import RealExim, require_command

CONFIG = """\
keep_environment =
primary_hostname = me.example
domainlist local = a.example : b.example
domainlist refs = +local : c.example
domainlist neg = !a.example
addresslist bad = *@bad.example : spammer@x.example
localpartlist admins = postmaster : abuse
"""

LSEARCH = """\
foo: bar
Mixed:  Case Data
"quoted key": quoted data
cont: first
  second
endsatblank: one

  notjoined
*.wild.example: partial data
*.example: parent data
*: star data
*@dom.example: at default
"""


def shown(value, newline="\n"):
    """A lookup result as the -be strings of these tests print it."""
    return "NOTFOUND" if value is None else "<%s>" % value.replace("\n", newline)


class Host:
    def __init__(self, address, name=None):
        self.address = address
        self.name = name


class CompareWithExim(unittest.TestCase):
    def setUp(self):
        self.exim = RealExim()
        self.addCleanup(self.exim.cleanup)
        self.conf = self.exim.write_config(CONFIG)
        self.ls = os.path.join(self.exim.dir, "file.ls")
        with open(self.ls, "w") as f:
            f.write(LSEARCH)
        self.list_file = os.path.join(self.exim.dir, "domains")
        with open(self.list_file, "w") as f:
            f.write("listed.example # comment\n!not.wild.example\n*.wild.example\n")
        os.chmod(self.exim.dir, 0o755)
        for path in (self.ls, self.list_file):
            os.chmod(path, 0o644)
        self.ctx = ExpandContext(config=configmod.load(self.conf))

    def exim_answers(self, expressions):
        result = self.exim.run(self.conf, ["-be"] + expressions)
        self.assertEqual(result.returncode, 0, result.stderr)
        answers = result.stdout.split("\n")
        return answers[:len(expressions)]

    def compare(self, rows, exim_expr, ours):
        """Each row through ``exim_expr`` (a -be string) and ``ours`` must agree."""
        answers = self.exim_answers([exim_expr(*row) for row in rows])
        for row, answer in zip(rows, answers):
            self.assertEqual(ours(*row), answer, row)

    def compare_condition(self, condition, rows, matches):
        """(subject, list) rows: ``${if CONDITION{subject}{list}}`` against ``matches``."""
        self.compare(rows, lambda s, lst: "${if %s{%s}{%s}{yes}{no}}" % (condition, s, lst),
                     lambda s, lst: "yes" if matches(s, lst) else "no")

    def test_domain_lists(self):
        """match_domain agrees with Exim on literal, *, regex, @, named, negated,
        file and lookup items."""
        rows = [
            ("a.b.c", "a.b.c"), ("A.B.C", "a.b.c"), ("x.y", "a.b.c"),
            ("donkey.ex", "*key.ex"), ("a.b.c", "!a.b.c : *.b.c"), ("x.b.c", "!a.b.c : *.b.c"),
            ("x.y", "!a.b.c : *.b.c"), ("x.y", "!a.b.c"), ("me.example", "@"),
            ("abc.example", "\\N^a.c\\N"), ("ABC.example", "\\N^a.c$\\N"),
            ("ABC.example", "\\N^(?-i)a.c\\N"),
            ("c.example", "+refs"), ("a.example", "! +local"), ("q.example", "! +local"),
            ("x.y", "+neg : *.b"), ("a.example", "+neg : *.b"),
            ("listed.example", self.list_file), ("a.wild.example", self.list_file),
            ("not.wild.example", self.list_file), ("not.wild.example", "!" + self.list_file),
            ("foo", "lsearch;" + self.ls), ("x.wild.example", "lsearch;" + self.ls),
            ("x.wild.example", "partial-lsearch;" + self.ls),
            ("x.y.example", "partial1-lsearch;" + self.ls),
        ]
        self.compare_condition("match_domain", rows,
                               lambda s, lst: match.match_domain(s, lst, self.ctx))

    def test_local_part_lists(self):
        """match_local_part (caseless in ${if}) agrees with Exim, +caseful included."""
        rows = [
            ("Joe", "joe"), ("joe", "Joe"), ("Joe", "+caseful : joe"), ("Joe", "+caseful:Joe"),
            ("x-admin", "*-admin"), ("abuse", "+admins"), ("root", "+admins"),
            ("me.example", "@"), ("abc", "!abc"), ("abd", "!abc"),
            ("ABC", "\\N^(?-i)abc\\N"), ("ABC", "\\N^(?-i)ABC\\N"),
        ]
        self.compare_condition("match_local_part", rows,
                               lambda s, lst: match.match_localpart(s, lst, self.ctx,
                                                                    caseless=True))

    def test_address_lists(self):
        """match_address agrees with Exim on address items."""
        rows = [
            ("jbc@askone.example", "jbc@askone.example"),
            ("JBC@AskOne.Example", "jbc@askone.example"),
            ("x@a.spamming.site", "*@*.spamming.site"), ("x@spamming.site", "*@*.spamming.site"),
            ("list-admin@x.example", "*-admin@x.example"), ("user@enemy.domain", "enemy.domain"),
            ("user@sub.enemy.domain", "*.enemy.domain"), ("a@b.example", ":"),
            ("any@bad.example", "+bad"), ("SPAMMER@X.example", "+bad"),
            ("u@a.example", "*@+local"), ("u@z.example", "*@+local"),
            ("Joe@x.example", "+caseful : joe@x.example"),
            ("Joe@X.example", "+caseful : Joe@x.example"),
            ("12345678x@spam.example", "\\N^\\d{8}\\w@\\N"),
            ("X@Y", "\\N^(?-i)X@\\N"), ("X@Y", "\\N^(?-i)x@\\N"),
            ("foo@x", "lsearch;" + self.ls), ("u@dom.example", "lsearch*@;" + self.ls),
            ("postmaster@me.example", "postmaster@@"), ("postmaster@other", "postmaster@@"),
            ("x@[127.0.0.1]", "*@@[]"), ("x@[192.0.2.254]", "*@@[]"),
        ]
        split = self.fixture("split", "bad.example:  !postmaster : *\n"
                                      "chain.example: one : >next\nnext: two : ^t.*e$\n")
        rows += [(a, "@@lsearch;" + split) for a in
                 ("anyone@bad.example", "postmaster@bad.example", "one@chain.example",
                  "two@chain.example", "three@chain.example", "four@chain.example",
                  "x@nowhere.example")]
        self.compare_condition("match_address", rows,
                               lambda s, lst: match.match_address(s, lst, self.ctx))

    def test_ip_lists(self):
        """match_ip (host lists by address only) agrees with Exim."""
        rows = [
            ("192.0.2.1", "192.0.2.1"), ("192.0.2.1", "192.0.2.0/24"),
            ("192.0.3.1", "192.0.2.0/24"),
            ("::ffff:192.0.2.1", "192.0.2.0/24"), ("2001:db8::1", "<; 2001:db8::/32"),
            ("2001:db8::1", "2001::db8::::/32"), ("", ":"), ("", "*"), ("192.0.2.1", ":"),
            ("192.0.2.1", ": 192.0.2.1"), ("192.0.2.1", "1.2.3 : 192.0.2.1"),
            ("192.0.2.1", "+ignore_unknown : 1.2.3 : 192.0.2.1"),
            ("192.0.2.1", "foo.example : 192.0.2.1"), ("192.0.2.2", "!192.0.2.1 : 192.0.2.0/24"),
            ("127.0.0.1", "@[]"),
        ]
        self.compare_condition("match_ip", rows,
                               lambda s, lst: match.match_host(Host(s, ""), lst, self.ctx))

    def test_lsearch_lookups(self):
        """lsearch results, partial matching and defaults agree with Exim."""
        rows = [
            ("foo", "lsearch"), ("FOO", "lsearch"), ("mixed", "lsearch"),
            ("quoted key", "lsearch"), ("cont", "lsearch"), ("endsatblank", "lsearch"),
            ("missing", "lsearch"), ("a.wild.example", "partial-lsearch"),
            ("wild.example", "partial-lsearch"), ("x.y.example", "partial-lsearch"),
            ("x.y.example", "partial1-lsearch"), ("a.b.c", "partial0-lsearch"),
            ("nothing", "lsearch*"), ("user@dom.example", "lsearch*@"),
            ("user@other.example", "lsearch*@"), ("FOO", "lsearch,ret=key"),
        ]
        self.lookup_rows([row + (self.ls,) for row in rows])

    def test_passwd_lookup(self):
        """The passwd lookup formats a user as Exim does."""
        rows = [("root",), ("nosuchuser-exim-py",)]
        self.compare(rows, lambda u: "${lookup passwd{%s}{<$value>}{NOTFOUND}}" % u,
                     lambda u: shown(lookups.search("passwd", None, u, ExpandContext())))

    def test_cdb_lookup(self):
        """cdb lookups, in ${lookup} and as domain list items, agree with Exim."""
        cdb = require_command("cdb", "Debian package tinycdb")
        path = os.path.join(self.exim.dir, "t.cdb")
        subprocess.run([cdb, "-c", "-m", path], check=True, text=True,
                       input="key1 value one\nKey2 v2\n*.example.com wild\n")
        os.chmod(path, 0o644)
        rows = [("key1", "cdb"), ("key2", "cdb"), ("Key2", "cdb"),
                ("a.example.com", "partial-cdb"), ("example.com", "partial-cdb")]
        self.lookup_rows([row + (path,) for row in rows])
        rows = [("KEY1", "cdb;" + path), ("x.example.com", "partial-cdb;" + path)]
        self.compare_condition("match_domain", rows,
                               lambda s, lst: match.match_domain(s, lst, self.ctx))

    def lookup_rows(self, rows):
        """Compare ``${lookup{key}type{file}}`` for (key, type, file) rows."""
        self.compare(rows,
                     lambda k, t, f: "${lookup{%s}%s{%s}{<$value>}{NOTFOUND}}" % (k, t, f),
                     lambda k, t, f: shown(lookups.search(t, f, k, ExpandContext())))

    def fixture(self, name, text):
        path = os.path.join(self.exim.dir, name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o644)
        return path

    def test_wild_and_ip_lookups(self):
        """nwildlsearch patterns (negation included) and iplsearch agree with Exim."""
        wild = self.fixture("wild", "*.a.b   star\n^\\d+\\.c$  regex\n\"^x y\"  quoted regex\n"
                                    "Literal.Example  literal\n*fish   fish\n"
                                    "!neg.example negated\n")
        ips = self.fixture("ips", '192.0.2.0/24: net\n10.1.2.3 single\n"2001:db8::/32": six\n'
                                  '*: default\n')
        rows = [(k, "nwildlsearch", wild) for k in
                ("x.a.b", "123.c", "X Yz", "literal.EXAMPLE", "catfish", "other", "neg.example")]
        rows += [(k, t, ips) for k, t in
                 (("192.0.2.77", "iplsearch"), ("10.1.2.3", "iplsearch"), ("10.1.2.4", "iplsearch"),
                  ("2001:db8::1", "iplsearch"), ("*", "iplsearch"),
                  ("192.0.2.1", "iplsearch,ret=full"))]
        self.lookup_rows(rows)

    def test_dsearch(self):
        """dsearch and its ret/filter options agree with Exim."""
        os.mkdir(os.path.join(self.exim.dir, "subdir"))
        self.fixture("afile", "")
        d = self.exim.dir
        rows = [("afile", "dsearch", d), ("nothing", "dsearch", d),
                ("afile", "dsearch,ret=full", d),
                ("subdir", "dsearch,filter=file", d), ("subdir", "dsearch,filter=dir", d),
                ("..", "dsearch,filter=dir", d), ("..", "dsearch,filter=subdir", d),
                ("AFILE", "dsearch", d)]
        self.lookup_rows(rows)

    def test_sqlite_lookup(self):
        """sqlite results (one column, several columns, NULL, quoting) agree with Exim."""
        path = os.path.join(self.exim.dir, "t.db")
        conn = sqlite3.connect(path)
        conn.execute("create table t (k text, v text, n int)")
        conn.executemany("insert into t values (?, ?, ?)",
                         [("a", "one", 1), ("b", "two words", 2), ("c", None, 3), ("d", "", 4),
                          ("e", 'q"uote', 5), ("f", '"lead', 6)])
        conn.commit()
        conn.close()
        os.chmod(path, 0o644)
        rows = [("%s %s" % (path, query),) for query in (
            "select v from t where k='a'", "select k,v,n from t", "select v from t where k='c'",
            "select v from t where k='z'", "select nosuch from t", "select v from t where k='d'",
            "select n, v from t where k='f'")]
        # Rows are joined with "|" so that each answer is one line of -be output.
        self.compare(rows, lambda q: "${lookup sqlite{%s}{<${sg{$value}{\\n}{|}}>}{NOTFOUND}}" % q,
                     lambda q: shown(lookups.search("sqlite", None, q, ExpandContext()), "|"))

    def test_match_values(self):
        """The value a match leaves ($value after ${if match_*}) agrees with Exim."""
        domains = self.fixture("doms", "x.c.d: domdata\n")
        split = self.fixture("lps", "x.c.d: b : a : c\n")
        rows = [
            ("address", "a@x.c.d", "a@*.c.d"), ("address", "xa@x.c.d", "*a@x.c.d"),
            ("address", "a@x.c.d", "*.c.d"), ("address", "a@x.c.d", "x.c.d"),
            ("address", "A@X.c.d", "a@lsearch;" + domains), ("address", "a@b", "\\N^a@(b)\\N"),
            ("address", "a@b", "a@b"), ("address", "a@x.c.d", "@@lsearch;" + split),
            ("address", "u@b.example", "*@+local"),
            ("domain", "x.c.d", "lsearch;" + domains), ("domain", "x.c.d", "*.c.d"),
            ("domain", "b.example", "+refs"), ("domain", "me.example", "@"),
            ("localpart", "abc", "\\N^a(b)c\\N"), ("localpart", "abc", "*bc"),
            ("ip", "192.0.2.4", "192.0.2.0/24"), ("ip", "192.0.2.4", "*"), ("ip", "", ":"),
            ("ip", "192.0.2.4", "iplsearch;" + self.fixture("ipl", "192.0.2.0/24: net\n")),
            ("ip", "192.0.2.4", "net24-lsearch;" + self.fixture("n24", "192.0.2.0/24 v4\n")),
        ]
        conditions = {"address": "match_address", "domain": "match_domain",
                      "localpart": "match_local_part", "ip": "match_ip"}

        def ours(kind, subject, liststring):
            if kind == "ip":
                kind, subject = "host", Host(subject, "")
            result = match.match_list(kind, subject, liststring, self.ctx)
            return "y<%s>" % (result.value or "") if result else "n"

        self.compare(rows,
                     lambda k, s, lst: "${if %s{%s}{%s}{y<$value>}{n}}" % (conditions[k], s, lst),
                     ours)

    def test_lookup_wild_parts(self):
        """$1 and $2 after partial and default matches agree with Exim."""
        path = self.fixture("d", "*@dom.example: at\n*: star\n*.b.c: wild\n")
        rows = [("user@dom.example", "lsearch*@"), ("user@x.example", "lsearch*@"),
                ("nothing", "lsearch*"), ("a.b.c", "partial0-lsearch"),
                ("x.y.z", "partial0-lsearch"), ("b.c", "partial-lsearch")]

        def ours(key, ltype):
            value, parts = lookups.search_wild(ltype, path, key, ExpandContext())
            return "<%s><%s><%s>" % ((value,) + (parts or ("", "")))

        self.compare(rows, lambda k, t: "${lookup{%s}%s{%s}{<$value><$1><$2>}}" % (k, t, path),
                     ours)
