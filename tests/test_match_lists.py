"""Domain, local part, address and host lists that need no DNS.

Table-driven: each row is (subject, list, expected).  Host lists here use
only addresses; name-based host items and @mx_* are in test_match_dns.py.
"""

import os

from twisted.trial import unittest

from exim_py import config as configmod
from exim_py import match
from exim_py.errors import LookupDefer
from exim_py.expand.context import ExpandContext


class Host:
    def __init__(self, address, name=None):
        self.address = address
        self.name = name


def make_context(test, text=""):
    """An ExpandContext over a configuration file holding ``text``."""
    path = os.path.abspath(test.mktemp())
    with open(path, "w") as f:
        f.write(text)
    return ExpandContext(config=configmod.load(path))


def write_file(test, text):
    path = os.path.abspath(test.mktemp())
    with open(path, "w") as f:
        f.write(text)
    return path


class SplitListTests(unittest.TestCase):
    def test_split(self):
        """Colon separation, doubled separators, white space, separator changes."""
        table = [
            ("a : b", ["a", "b"]),
            ("a:b", ["a", "b"]),
            (":", [""]),
            ("a :", ["a"]),
            (" : : x", ["", "", "x"]),
            ("a::b", ["a:b"]),
            ("127.0.0.1 : ::::1", ["127.0.0.1", "::1"]),
            ("<; 127.0.0.1 ; ::1", ["127.0.0.1", "::1"]),
            ("<;a;;b", ["a;b"]),
            ("<\n a \n b", ["a", "b"]),
            ("<\n a \n\n b", ["a", "", "b"]),
            ("", []),
            ("   ", []),
            ("<a", ["<a"]),
        ]
        for text, items in table:
            self.assertEqual(match.split_list(text), items, repr(text))

    def test_join_round_trip(self):
        """join_list doubles separators so split_list gives the items back."""
        items = ["a:b", "c", "::1"]
        self.assertEqual(match.split_list(match.join_list(items)), items)

    def test_in_list(self):
        """${inlist}: exact item comparison, optionally caseless."""
        self.assertTrue(match.in_list("b", "a : b : c"))
        self.assertFalse(match.in_list("B", "a : b"))
        self.assertTrue(match.in_list("B", "a : b", caseless=True))


class DomainListTests(unittest.TestCase):
    def setUp(self):
        self.files = write_file(self, "# domains\nlisted.example  # trailing comment\n"
                                      "!not.wild.example\n*.wild.example\n")
        self.ls = write_file(self, "lookup.example: some data\n*.part.example: wild\n")
        self.ctx = make_context(self, "primary_hostname = me.example\n")

    def test_items(self):
        """Literal, *suffix, regex, @, files, lookups, negation and the implied tail."""
        table = [
            ("a.b.c", "a.b.c", True),
            ("A.B.C", "a.b.c", True),
            ("a.b.c", "x : a.b.c", True),
            ("x.y", "a.b.c", False),
            ("donkey.ex", "*key.ex", True),
            ("a.b.c", "!a.b.c : *.b.c", False),
            ("x.b.c", "!a.b.c : *.b.c", True),
            ("x.y", "!a.b.c : *.b.c", False),
            ("x.y", "!a.b.c", True),
            ("a.b.c", "!a.b.c", False),
            ("x.y", "! a.b.c : !x.y", False),
            ("abc.example", "^a.c", True),
            ("xabc.example", "^a.c", False),
            ("me.example", "@", True),
            ("other.example", "@", False),
            ("listed.example", self.files, True),
            ("a.wild.example", self.files, True),
            ("not.wild.example", self.files, False),
            ("not.wild.example", "!" + self.files, True),
            ("lookup.example", "lsearch;" + self.ls, True),
            ("LOOKUP.example", "lsearch;" + self.ls, True),
            ("x.part.example", "lsearch;" + self.ls, False),
            ("x.part.example", "partial-lsearch;" + self.ls, True),
            ("none.example", "lsearch;" + self.ls, False),
            ("", "", False),
            ("x", "", False),
        ]
        for domain, liststring, expected in table:
            self.assertEqual(match.match_domain(domain, liststring, self.ctx), expected,
                             (domain, liststring))

    def test_domain_data(self):
        """$domain_data is the matching item, or the data a lookup found."""
        match.match_domain("x.b.c", "a : *.b.c", self.ctx)
        self.assertEqual(self.ctx.get("domain_data"), "*.b.c")
        match.match_domain("lookup.example", "lsearch;" + self.ls, self.ctx)
        self.assertEqual(self.ctx.get("domain_data"), "some data")

    def test_numeric_variables(self):
        """*suffix sets $0 and $1 (the wild part); a regex sets its groups."""
        result = match.match_list("domain", "donkey.ex", "*key.ex", self.ctx)
        self.assertEqual((result.value, result.numeric), ("*key.ex", ["donkey.ex", "don"]))
        result = match.match_list("domain", "ab.example", "^(a)(b)", self.ctx)
        self.assertEqual(result.numeric, ["ab", "a", "b"])

    def test_expanded_list(self):
        """The list is expanded before matching; a forced failure means no match."""
        self.assertTrue(match.match_domain("x.example", "${if eq{1}{1}{x.example}}", self.ctx))
        self.assertFalse(match.match_domain("x.example", "${if eq{1}{2}{}fail}", self.ctx))
        self.assertTrue(match.match_domain("x.example", "\\N^x\\.example$\\N", self.ctx))

    def test_bad_expansion_defers(self):
        """An expansion error other than a forced failure is a DEFER."""
        self.assertRaises(LookupDefer, match.match_domain, "x", "${nosuchitem{x}}", self.ctx)

    def test_missing_list_file_defers(self):
        """A list file that cannot be read is a DEFER with the reason, not a traceback."""
        e = self.assertRaises(LookupDefer, match.match_domain, "x", "a : /no/such/file", self.ctx)
        self.assertEqual(str(e), 'failed to open /no/such/file when checking "a : /no/such/file": '
                                 'No such file or directory')

    def test_bad_lookup_type_defers(self):
        """An unknown lookup type in a list is a DEFER naming the type."""
        e = self.assertRaises(LookupDefer, match.match_domain, "x", "bogus;/x", self.ctx)
        self.assertEqual(str(e), 'unknown lookup type "bogus"')


class NamedListTests(unittest.TestCase):
    CONFIG = """\
domainlist local = a.example : b.example
domainlist refs = +local : c.example
domainlist neg = !a.example
domainlist dyn = ${if eq{$acl_m0}{on}{dyn.example}{}}
domainlist_cache dyncached = ${if eq{$acl_m0}{on}{dyn.example}{}}
domainlist usesdyn = +dyn
hostlist relay = 192.0.2.0/24 : 10.0.0.1
addresslist bad = *@bad.example : spammer@x.example
localpartlist admins = postmaster : abuse
"""

    def setUp(self):
        self.ctx = make_context(self, self.CONFIG)

    def test_references(self):
        """+name refers to the named list of the same kind; ! negates all of it."""
        table = [
            ("domain", "a.example", "+local", True),
            ("domain", "c.example", "+refs", True),
            ("domain", "b.example", "+refs", True),
            ("domain", "a.example", "! +local", False),
            ("domain", "z.example", "! +local", True),
            # The negation inside a referenced list does not propagate out.
            ("domain", "x.y", "+neg : *.b", True),
            ("domain", "a.example", "+neg : *.b", False),
            ("address", "any@bad.example", "+bad", True),
            ("address", "SPAMMER@X.example", "+bad", True),
            ("address", "other@x.example", "+bad", False),
            ("address", "u@a.example", "*@+local", True),
            ("localpart", "abuse", "+admins", True),
            ("localpart", "root", "+admins", False),
        ]
        for kind, subject, liststring, expected in table:
            self.assertEqual(bool(match.match_list(kind, subject, liststring, self.ctx)),
                             expected, (kind, subject, liststring))
        self.assertTrue(match.match_host(Host("192.0.2.9"), "+relay", self.ctx))
        self.assertFalse(match.match_host(Host("192.0.3.9"), "+relay", self.ctx))

    def test_unknown_named_list(self):
        """An unknown named list is a DEFER naming it."""
        e = self.assertRaises(LookupDefer, match.match_domain, "x", "+nolist", self.ctx)
        self.assertEqual(str(e), 'unknown named domain list "+nolist"')

    def test_cached_when_constant(self):
        """A list without $ is evaluated once per subject; its data is cached too."""
        self.assertTrue(match.match_domain("a.example", "+local", self.ctx))
        self.assertIn(("domain", "local", "a.example"), self.ctx.match_cache)
        self.ctx.match_cache[("domain", "local", "a.example")] = (False, None)
        self.assertFalse(match.match_domain("a.example", "+local", self.ctx))

    def test_not_cached_when_expanded(self):
        """A list with $ is re-evaluated each time, and so is one referring to it."""
        self.assertFalse(match.match_domain("dyn.example", "+dyn", self.ctx))
        self.assertFalse(match.match_domain("dyn.example", "+usesdyn", self.ctx))
        self.ctx.set("acl_m0", "on")
        self.assertTrue(match.match_domain("dyn.example", "+dyn", self.ctx))
        self.assertTrue(match.match_domain("dyn.example", "+usesdyn", self.ctx))

    def test_cache_variant(self):
        """domainlist_cache lists are cached even though they contain $."""
        self.assertFalse(match.match_domain("dyn.example", "+dyncached", self.ctx))
        self.ctx.set("acl_m0", "on")
        self.assertFalse(match.match_domain("dyn.example", "+dyncached", self.ctx))


class LocalPartListTests(unittest.TestCase):
    def setUp(self):
        self.ctx = ExpandContext()
        self.file = write_file(self, "joe#team  # comment\n# whole line\n")

    def test_items(self):
        """Case respected by default; caseless on request; +caseful restores it;
        # in files starts a comment only after white space; no @ specials."""
        table = [
            ("Joe", "joe", False, False),
            ("Joe", "joe", True, True),
            ("Joe", "+caseful : joe", True, False),
            ("Joe", "+caseful : Joe", True, True),
            ("joe#team", self.file, False, True),
            ("joe", self.file, False, False),
            ("x-admin", "*-admin", False, True),
            ("@", "@", False, True),
            ("abc", "^a.c", False, True),
            ("ABC", "^a.c", True, True),
            ("ABC", "^a.c", False, False),
        ]
        for lp, liststring, caseless, expected in table:
            self.assertEqual(match.match_localpart(lp, liststring, self.ctx, caseless=caseless),
                             expected, (lp, liststring, caseless))


class AddressListTests(unittest.TestCase):
    def setUp(self):
        self.ctx = ExpandContext()
        self.domains = write_file(self, "bad.example:  !postmaster : *\n"
                                        "chain.example: one : >next\n"
                                        "next: two\n")
        self.whole = write_file(self, "user@whole.example\n*@dom.example: x\n")

    def test_items(self):
        """local@domain, *@domain, bare domains, regexes, @@ and whole-address lookups."""
        table = [
            ("jbc@askone.example", "jbc@askone.example", True),
            ("JBC@AskOne.Example", "jbc@askone.example", True),
            ("x@a.spamming.site", "*@*.spamming.site", True),
            ("x@spamming.site", "*@*.spamming.site", False),
            ("list-admin@x.example", "*-admin@x.example", True),
            ("user@enemy.domain", "enemy.domain", True),
            ("user@sub.enemy.domain", "*.enemy.domain", True),
            ("user@other.domain", "enemy.domain", False),
            ("", ":", True),
            ("a@b.example", ":", False),
            ("", "*@*", False),
            ("12345678x@spam.example", "\\N^\\d{8}\\w@\\N", True),
            ("anyone@bad.example", "@@lsearch;" + self.domains, True),
            ("postmaster@bad.example", "@@lsearch;" + self.domains, False),
            ("two@chain.example", "@@lsearch;" + self.domains, True),
            ("three@chain.example", "@@lsearch;" + self.domains, False),
            ("user@whole.example", "lsearch;" + self.whole, True),
            ("other@whole.example", "lsearch;" + self.whole, False),
            ("other@dom.example", "lsearch*@;" + self.whole, True),
            ("Joe@x.example", "+caseful : joe@x.example", False),
            ("Joe@X.example", "+caseful : Joe@x.example", True),
        ]
        for address, liststring, expected in table:
            self.assertEqual(match.match_address(address, liststring, self.ctx), expected,
                             (address, liststring))

    def test_sender_data(self):
        """The caller chooses the variable that receives the matching data."""
        match.match_address("u@dom.example", "lsearch*@;" + self.whole, self.ctx,
                            data_variable="sender_data")
        self.assertEqual(self.ctx.get("sender_data"), "x")


class HostListAddressTests(unittest.TestCase):
    def setUp(self):
        self.ctx = ExpandContext()
        self.nets = write_file(self, "192.0.2.0/24 net24\n"
                                     "2001.0db8.0000.0000.0000.0000.0000.0000/64 net64\n"
                                     "10.0.0.1 plain\n"
                                     "2001.0db8.0000.0000.0000.0000.0000.0001 v6plain\n")
        self.ipls = write_file(self, '"2001:db8::/32" v6net\n198.51.100.0/24 v4net\n')

    def test_items(self):
        """IP addresses, CIDR networks, *, the empty item, masked and IP lookups."""
        table = [
            ("192.0.2.1", "192.0.2.1", True),
            ("192.0.2.1", "192.0.2.0/24", True),
            ("192.0.3.1", "192.0.2.0/24", False),
            ("::ffff:192.0.2.1", "192.0.2.0/24", True),
            ("2001:db8::1", "<; 2001:db8::/32", True),
            ("2001:db8::1", "2001::db8::::/32", True),
            ("2001:db8::1", "192.0.2.0/24", False),
            ("192.0.2.1", "*", True),
            ("", "*", True),
            ("", ":", True),
            ("", "192.0.2.1", False),
            ("192.0.2.1", ":", False),
            ("192.0.2.1", ": 192.0.2.1", True),
            ("192.0.2.1", "!192.0.2.1 : 192.0.2.0/24", False),
            ("192.0.2.2", "!192.0.2.1 : 192.0.2.0/24", True),
            ("192.0.2.7", "net24-lsearch;" + self.nets, True),
            ("10.0.0.1", "net-lsearch;" + self.nets, True),
            ("10.0.0.1", "net32-lsearch;" + self.nets, False),
            ("2001:db8::9", "<, net64-lsearch;" + self.nets, True),
            ("2001:db8::1", "<, net-lsearch;" + self.nets, True),
            ("2001:db8::5", "net-iplsearch;" + self.ipls, True),
            ("198.51.100.5", "net-iplsearch;" + self.ipls, True),
            ("203.0.113.1", "net-iplsearch;" + self.ipls, False),
            # A malformed address makes the list fail unless +ignore_unknown.
            ("192.0.2.1", "1.2.3 : 192.0.2.1", False),
            ("192.0.2.1", "+ignore_unknown : 1.2.3 : 192.0.2.1", True),
            ("192.0.2.1", "+include_unknown : 1.2.3 : 10.0.0.1", True),
        ]
        for address, liststring, expected in table:
            self.assertEqual(match.match_host(Host(address), liststring, self.ctx), expected,
                             (address, liststring))

    def test_host_data(self):
        """A masked lookup's data lands in $host_data."""
        match.match_host(Host("192.0.2.7"), "net24-lsearch;" + self.nets, self.ctx)
        self.assertEqual(self.ctx.get("host_data"), "net24")

    def test_ip_only(self):
        """With name "" (match_ip) single-key lookups use the address; names fail."""
        self.assertTrue(match.match_host(Host("198.51.100.1", ""), "iplsearch;" + self.ipls,
                                         self.ctx))
        self.assertFalse(match.match_host(Host("192.0.2.1", ""), "foo.example : 192.0.2.1",
                                          self.ctx))
        self.assertFalse(match.match_host(Host("192.0.2.1", ""), "*.example : 192.0.2.1",
                                          self.ctx))

    def test_local_interfaces(self):
        """@[] matches the addresses of this host's interfaces (loopback included)."""
        self.assertTrue(match.match_host(Host("127.0.0.1"), "@[]", self.ctx))
        self.assertFalse(match.match_host(Host("203.0.113.254"), "@[]", self.ctx))
        self.assertTrue(match.match_domain("[127.0.0.1]", "@[]", self.ctx))
        self.assertFalse(match.match_domain("[203.0.113.254]", "@[]", self.ctx))


class RepeatedCheckTests(unittest.TestCase):
    """Lists checked again and again (every RCPT) give each subject its own
    answer and data, however often they are asked."""

    def test_static_lists_answer_each_subject(self):
        """A list of literal items answers every subject on its own, with the
        matching item as $domain_data, on the first and later checks."""
        ctx = make_context(self)
        for _ in range(3):
            for subject, expected in (("y.test", True), ("Y.TEST", True), ("z.test", False),
                                      ("a.w.test", True)):
                self.assertEqual(match.match_domain(subject, "y.test : *.w.test", ctx), expected)
            found = match.match_list("domain", "a.w.test", "y.test : *.w.test", ctx)
            self.assertEqual((found.value, found.numeric), ("*.w.test", ["a.w.test", "a"]))
            for address, expected in (("127.0.0.1", True), ("127.0.0.2", False), ("10.1.2.3", True),
                                      ("", False)):
                self.assertEqual(match.match_host(Host(address), "127.0.0.1 : 10.0.0.0/8", ctx),
                                 expected)

    def test_lists_that_read_variables_are_asked_again(self):
        """A list that expands a variable follows the variable's changes."""
        ctx = make_context(self)
        ctx.set("acl_m_ok", "y.test")
        self.assertTrue(match.match_domain("y.test", "$acl_m_ok", ctx))
        ctx.set("acl_m_ok", "z.test")
        self.assertFalse(match.match_domain("y.test", "$acl_m_ok", ctx))
        self.assertTrue(match.match_domain("z.test", "$acl_m_ok", ctx))
