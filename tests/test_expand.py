"""The expansion API other parts call: expand(), expand_condition(), ExpandContext.

The language itself is pinned against real Exim in
test_expand_differential; these tests cover what -be cannot show: lazy
variables, context state, header variables from Header objects, error
classes, the parse cache and the ``condition =`` rule.
"""

from twisted.trial import unittest

from exim_py.envelope import Header
from exim_py.errors import ExpansionError, ForcedFail
from exim_py.expand import ExpandContext, expand, expand_condition, parsed


class ExpandApiTests(unittest.TestCase):
    """expand() and its context."""

    def test_plain_string_returned_unchanged(self):
        """A string without $ or backslash is returned as it is, not copied."""
        s = "no expansion here"
        self.assertIs(expand(s, ExpandContext()), s)

    def test_variables_from_context(self):
        """Variables come from the context's mapping."""
        ctx = ExpandContext(variables={"local_part": "fred", "domain": "example.com"})
        self.assertEqual(expand("$local_part@${domain}", ctx), "fred@example.com")

    def test_lazy_variable_computed_once(self):
        """A callable value is called on first use only, and its result kept."""
        calls = []

        def lookup():
            calls.append(1)
            return "host.example"
        ctx = ExpandContext(variables={"sender_host_name": lookup})
        self.assertEqual(expand("$sender_host_name $sender_host_name", ctx),
                         "host.example host.example")
        self.assertEqual(expand("$sender_host_name", ctx), "host.example")
        self.assertEqual(len(calls), 1)

    def test_set_and_integer_values(self):
        """ctx.set() values are used; integers print as numbers, booleans as yes/no."""
        ctx = ExpandContext()
        ctx.set("rcpt_count", 3)
        ctx.set("prdr_requested", True)
        self.assertEqual(expand("$rcpt_count/$prdr_requested", ctx), "3/yes")

    def test_unset_known_variable_is_empty(self):
        """A variable Exim knows but the context lacks expands to nothing."""
        self.assertEqual(expand("[$sender_helo_name]", ExpandContext()), "[]")

    def test_acl_variables(self):
        """$acl_c and $acl_m variables are read from the context; unset ones are empty."""
        ctx = ExpandContext(variables={"acl_m_flag": "on"})
        self.assertEqual(expand("$acl_m_flag/$acl_c0/", ctx), "on//")

    def test_unknown_variable_is_error(self):
        """An unknown name fails with Exim's message, even in a branch not taken."""
        with self.assertRaises(ExpansionError) as cm:
            expand("${if eq{a}{b}{$nosuch}}", ExpandContext())
        self.assertEqual(str(cm.exception), 'unknown variable name "nosuch"')

    def test_forced_failure_class(self):
        """A forced failure raises ForcedFail (a subclass of ExpansionError)."""
        with self.assertRaises(ForcedFail) as cm:
            expand("${if eq{a}{b}{x}fail}", ExpandContext())
        self.assertTrue(cm.exception.forced)
        self.assertEqual(str(cm.exception), '"if" failed and "fail" requested')

    def test_error_is_not_forced(self):
        """An ordinary expansion error is not a ForcedFail."""
        with self.assertRaises(ExpansionError) as cm:
            expand("${eval:1/0}", ExpandContext())
        self.assertFalse(isinstance(cm.exception, ForcedFail))

    def test_parse_cached(self):
        """The same string is parsed once: the same tree comes back."""
        s = "${lc:$domain}-cache-test"
        self.assertIs(parsed(s), parsed(s))

    def test_syntax_error_reported_each_time(self):
        """A string with a syntax error fails on every expansion, not only the first."""
        for _ in range(2):
            with self.assertRaises(ExpansionError):
                expand("${lc:x", ExpandContext())

    def test_numeric_variables_restored_after_if(self):
        """$1 set by a match inside ${if} is visible in the branch but not after it."""
        ctx = ExpandContext()
        self.assertEqual(expand("${if match{abc}{(b)}{[$1]}}<$1>", ctx), "[b]<>")

    def test_value_after_lookup_restored(self):
        """$value from ${extract} is visible in its yes string only."""
        ctx = ExpandContext()
        self.assertEqual(expand("${extract{a}{a=1}{<$value>}}[$value]", ctx), "<1>[]")

    def test_item_variable_in_map(self):
        """$item is set for each list element, and unset afterwards."""
        ctx = ExpandContext()
        self.assertEqual(expand("${map{a:b}{$item$item}}[$item]", ctx), "aa:bb[]")


class ExpandConditionTests(unittest.TestCase):
    """expand_condition(): the rule for ``condition =`` in ACLs and routers."""

    def test_false_values(self):
        """Empty, 0, no and false (any case) are false."""
        ctx = ExpandContext()
        for text in ("", "0", "no", "NO", "false", "False", "${if eq{a}{b}}"):
            self.assertFalse(expand_condition(text, ctx), text)

    def test_true_values(self):
        """Anything else is true, including 00, yes and arbitrary text."""
        ctx = ExpandContext()
        for text in ("1", "00", "yes", "anything", "${if eq{a}{a}}", " "):
            self.assertTrue(expand_condition(text, ctx), text)

    def test_errors_propagate(self):
        """An expansion failure is raised for the caller to handle (defer)."""
        with self.assertRaises(ExpansionError):
            expand_condition("${lookup{x}nosuchtype{y}}", ExpandContext())


class ExpandIntegerTests(unittest.TestCase):
    """expand_integer(): numeric options that are expanded (Exim's expand_string_integer)."""

    def test_suffixes_and_spaces(self):
        """K and M multiply by 1024 and 1024*1024; white space round the number is allowed."""
        from exim_py.expand import expand_integer
        ctx = ExpandContext(variables={"message_size": 10})
        self.assertEqual(expand_integer(" ${eval:$message_size*2}K ", ctx), 20480)
        self.assertEqual(expand_integer("1M", ctx), 1048576)

    def test_bad_integer(self):
        """A non-number fails with Exim's message; a negative one too when isplus."""
        from exim_py.expand import expand_integer
        with self.assertRaises(ExpansionError) as cm:
            expand_integer("ten", ExpandContext())
        self.assertEqual(str(cm.exception), 'integer expected but "ten" found')
        with self.assertRaises(ExpansionError) as cm:
            expand_integer("-1", ExpandContext(), isplus=True)
        self.assertEqual(str(cm.exception), 'non-negative integer expected but "-1" found')


class HeaderVariableTests(unittest.TestCase):
    """Header variables over envelope.Header objects."""

    def setUp(self):
        self.ctx = ExpandContext(headers=[
            Header("Subject: =?UTF-8?Q?caf=C3=A9?= time\n"),
            Header("To: a@example.com\n", "T"),
            Header("To: b@example.com\n", "T"),
            Header("X-Old: gone\n", "*"),
            Header("X-Tag:  one\n"),
            Header("X-Tag: two\n"),
        ])

    def test_decoded_header(self):
        """$h_ decodes RFC 2047 words to UTF-8 (expand() returns exim_py's usual
        text, so the UTF-8 bytes read as the characters they spell)."""
        self.assertEqual(expand("$h_subject:", self.ctx), "café time")

    def test_address_headers_joined_with_comma(self):
        """Several address headers are joined with a comma and newline."""
        self.assertEqual(expand("$h_to:", self.ctx), "a@example.com,\nb@example.com")

    def test_other_headers_joined_with_newline(self):
        """Other repeated headers are joined with a newline; $rh_ keeps white space."""
        self.assertEqual(expand("$h_x-tag:", self.ctx), "one\ntwo")
        self.assertEqual(expand("$rh_x-tag:", self.ctx), "  one\n two\n")

    def test_deleted_header_invisible(self):
        """A header marked deleted ('*') does not exist any more."""
        self.assertEqual(expand("${if def:h_x-old:{y}{n}}", self.ctx), "n")

    def test_list_form(self):
        """$lh_ gives a colon list of the raw values."""
        self.assertEqual(expand("$lh_to:", self.ctx), " a@example.com: b@example.com")


class BeModeTests(unittest.TestCase):
    """The -be tester as a function (its output is compared with Exim elsewhere)."""

    def test_macro_definition_line(self):
        """A line starting with an upper-case letter defines a macro used later."""
        from exim_py.expand.be import Tester
        tester = Tester(ExpandContext(), {})
        self.assertEqual(tester.line("ABC = hello"), "Defined macro 'ABC'")
        self.assertEqual(tester.line("[ABC]"), "[hello]")

    def test_failure_line(self):
        """A failing expansion prints Exim's Failed: line."""
        from exim_py.expand.be import Tester
        tester = Tester(ExpandContext(), {})
        self.assertEqual(tester.line("${lc:"), "Failed: missing } at end of string")


class RobustnessTests(unittest.TestCase):
    """Malformed strings fail with ExpansionError, never with another exception."""

    def test_mutated_strings(self):
        """Random edits of the differential table's strings raise only ExpansionError."""
        import random
        from tests import expand_cases
        seeds = [s for _, group in expand_cases.GROUPS for s in group
                 if "run" not in s and "readsocket" not in s and "FX" not in s]
        alphabet = "${}:\\abc01_-<>=!\"' ,;@.N"
        rng = random.Random(4)
        for _ in range(3000):
            s = list(rng.choice(seeds))
            for _ in range(rng.randint(1, 4)):
                pos = rng.randrange(len(s) + 1)
                if rng.random() < 0.4 and s:
                    del s[min(pos, len(s) - 1)]
                else:
                    s.insert(pos, rng.choice(alphabet))
            text = "".join(s)
            try:
                expand(text, ExpandContext())
            except ExpansionError:
                pass
            except Exception as e:      # noqa: B902 - the point of the test
                self.fail("%r raised %r" % (text, e))

    def test_deep_nesting(self):
        """Nesting deeper than Python's stack gives an expansion error."""
        text = "${lc:" * 2000 + "x" + "}" * 2000
        with self.assertRaises(ExpansionError):
            expand(text, ExpandContext())


class CertificateOperatorTests(unittest.TestCase):
    """md5, sha1, sha256 and base64 of a certificate variable."""

    def test_fingerprints_of_certificate(self):
        """With a certificate set, the operators give its fingerprints and DER in base64."""
        import base64
        import datetime
        import hashlib
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "peer.example")])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(key.public_key()).serial_number(1)
                .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
                .sign(key, hashes.SHA256()))
        der = cert.public_bytes(serialization.Encoding.DER)
        ctx = ExpandContext(variables={"tls_in_peercert": cert})
        self.assertEqual(expand("${sha256:$tls_in_peercert}", ctx),
                         hashlib.sha256(der).hexdigest().upper())
        self.assertEqual(expand("${md5:$tls_in_peercert}", ctx), hashlib.md5(der).hexdigest().upper())
        self.assertEqual(expand("${base64:$tls_in_peercert}", ctx), base64.b64encode(der).decode())

    def test_no_certificate_hashes_the_name(self):
        """Without a certificate Exim hashes the variable's name; so does exim_py."""
        import hashlib
        self.assertEqual(expand("${md5:$tls_in_peercert}", ExpandContext()),
                         hashlib.md5(b"tls_in_peercert").hexdigest())


class TaintTests(unittest.TestCase):
    """Untrusted text is never expanded a second time (Exim's taint checks)."""

    def test_tainted_variable_not_reexpanded(self):
        """${expand:} of a Tainted value (or text made from it) fails as in Exim."""
        from exim_py.expand.nodes import Tainted
        ctx = ExpandContext(variables={"local_part": Tainted("${run{/bin/true}}")})
        for text in ("${expand:$local_part}", "${expand:x${lc:$local_part}}",
                     "${expand:${sg{$local_part}{true}{false}}}"):
            with self.assertRaises(ExpansionError) as cm:
                expand(text, ctx)
            self.assertIn("attempt to expand tainted string", str(cm.exception))

    def test_digest_untaints(self):
        """A digest of tainted text may be expanded (Exim: hashing de-taints)."""
        from exim_py.expand.nodes import Tainted
        ctx = ExpandContext(variables={"local_part": Tainted("fred")})
        self.assertEqual(expand("${expand:${md5:$local_part}}", ctx),
                         "570a90bfbf8c7eab5dc5d4e26832d5b1")
