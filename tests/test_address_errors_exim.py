"""Why a MAIL or RCPT address is malformed, in Exim's words.

Exim answers a broken address with ``501 <operand>: <reason>``, the reason
coming from its RFC 2822 parser (parse_extract_address): '"@" or "."
expected after "c"', "unmatched doublequote in local part", "no local
part"...  These tests send the same broken addresses to Debian's exim4 and
to exim_py, both under ``-bh``, and compare the replies.
"""

from twisted.trial import unittest

from tests.support.bh import oracle
from tests.support.peers import QUIET_MAIN, both_outputs

CONFIG = QUIET_MAIN + """\
acl_smtp_mail = accept
acl_smtp_rcpt = accept
smtp_max_synprot_errors = 1000
smtp_accept_max_nonmail = 10000
"""

# Addresses Exim refuses for their syntax, and some it takes although they
# look odd (so that exim_py does not refuse them either).
ADDRESSES = [
    b"<c\x01@d>", b'<"abc@d>', b'<abc"@d>', b"<a@b", b"a@b>", b"<<a@b>>", b"<a@>",
    b"<a@b.>", b"<a@b..c>", b"<a..b@c>", b"<.a@b>", b"<a.@b>", b"<@>", b"<@a,@b:c@d>",
    b"<@a,@b:c>", b"<\xe9@d>", b"<a@\xe9>", b"<@d>", b"<(x)a@b>", b"<a@b(x)>", b"<a@.b>",
    b'<""@b>', b"<a@@b>", b"<a@b@c>", b"<:a@b>", b"<@a:b@c>", b"<@a,b:c@d>", b"<a\\@b@c>",
    b"<a@b\\c>", b"<a,b@c>", b"<a;b@c>", b"<a@b;c>", b"<a@-b>", b"<a:b@c>", b"<(a@b>",
    b"<a@b)>", b'<"a\x01"@b>', b"<a@b,c@d>", b"<@a:>", b"<a>", b"a",
]


def _replies(stdout):
    """The replies after the greeting and EHLO, one line each."""
    lines = [line for line in stdout.split(b"\r\n") if line[:3].isdigit()]
    return [line for line in lines if not line.startswith((b"220", b"250-", b"250 HELP"))]


def _dialogue(verb):
    commands = [b"EHLO client.example"]
    for address in ADDRESSES:
        if verb == "MAIL":
            commands += [b"MAIL FROM:" + address, b"RSET"]
        else:
            commands += [b"MAIL FROM:<>", b"RCPT TO:" + address, b"RSET"]
    return b"".join(c + b"\r\n" for c in commands + [b"QUIT"])


class AddressErrorTests(unittest.TestCase):
    """MAIL and RCPT replies to broken addresses match exim4's."""

    def setUp(self):
        self.exim = oracle(self)
        self.conf = self.exim.write_config(CONFIG)

    def run_both(self, data):
        """(exim4's replies, exim_py's replies) to the dialogue ``data``."""
        theirs, ours = both_outputs(self.exim, self.conf, ["-bh", "127.0.0.1"], data)
        return _replies(theirs), _replies(ours)

    def compare(self, verb):
        theirs, ours = self.run_both(_dialogue(verb))
        self.assertEqual(len(ours), len(theirs), (ours, theirs))
        for mine, real in zip(ours, theirs):
            self.assertEqual(mine, real)
        return theirs

    def test_mail_addresses(self):
        """MAIL FROM with each broken address gets exim4's 501 text (or its 250)."""
        theirs = self.compare("MAIL")
        self.assertIn(b'501 <c\x01@d>: "@" or "." expected after "c"', theirs)

    def test_rcpt_addresses(self):
        """RCPT TO with each broken address gets exim4's 501 text (or its 250),
        "<>" included, which a recipient may not be."""
        theirs = self.compare("RCPT")
        self.assertIn(b'501 <"abc@d>: unmatched doublequote in local part', theirs)

    def test_domain_literals(self):
        """With allow_domain_literals, a literal in <> holds only an IPv6:/IPv4:
        tag, dots, colons and hex digits, or it is a "malformed domain literal"."""
        self.conf = self.exim.write_config(CONFIG + "allow_domain_literals = true\n")
        commands = [b"EHLO client.example"]
        for address in (b"<a@[192.0.2.1]>", b"<a@[1.2.3.x]>", b"<a@[IPv6:::1]>",
                        b"<a@[ipv4:1.2.3.4]>", b"<@[1.2.3.4]:a@b>", b"<a@[1.2.3.4>",
                        b"<a@[1.2 .3.4]>", b"<a@[1.2.3.4](c)>"):
            commands += [b"MAIL FROM:" + address, b"RSET"]
        theirs, ours = self.run_both(b"".join(c + b"\r\n" for c in commands + [b"QUIT"]))
        self.assertIn(b"501 <a@[1.2.3.4>: malformed domain literal", theirs)
        self.assertEqual(ours, theirs)

    def test_rcpt_null(self):
        """RCPT TO:<> is a missing local part, as exim4 says."""
        theirs, ours = self.run_both(
            b"EHLO client.example\r\nMAIL FROM:<>\r\nRCPT TO:<>\r\nQUIT\r\n")
        self.assertIn(b"501 <>: missing or malformed local part", theirs)
        self.assertEqual(ours, theirs)


class AddressTestModeTests(unittest.TestCase):
    """-bt and redirection data parse addresses as MAIL and RCPT do."""

    def setUp(self):
        self.exim = oracle(self)

    def run_both(self, config, args):
        """(exim4's standard output, exim_py's) for ``-bt`` with ``args``."""
        return both_outputs(self.exim, self.exim.write_config(config), ["-bt"] + list(args))

    def test_bt_syntax_errors(self):
        """-bt prints exim4's "syntax error:" reason for each broken argument
        (a phrase word's error gets '(expected word or "<")' added)."""
        theirs, ours = self.run_both(CONFIG, [
            "<c@d", 'c"@d', '"abc@d', "<@a,@b:c>", "a@b..c", "@d", "<>", "a b \"c@d",
            "Name <a@b.example>", "a(c)@b.example"])
        self.assertIn(b'syntax error: unmatched doublequote in local part (expected word or "<")',
                      theirs)
        self.assertEqual(ours, theirs)

    def test_redirect_null_address(self):
        """A "<>" item in redirection data is Exim's missing local part error."""
        theirs, ours = self.run_both(
            CONFIG + "begin routers\nr:\n  driver = redirect\n  data = <>, a@b.example\n",
            ["x@y.example"])
        self.assertIn(b'missing or malformed local part in "<>"', theirs)
        self.assertEqual(ours, theirs)
