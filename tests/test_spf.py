"""SPF: the check, the spf and spf_guess ACL conditions, the $spf_* variables,
${authresults}, the spf lookup and the <= line's SPF items (spec section
"SPF (Sender Policy Framework)").

Records come from the test DNS server's stock zone tests/support/zones/spf.example;
the clients are 192.0.2.2 (inside pass.spf.example's 192.0.2.0/24),
2001:db8::5 and 127.0.0.1, which libspf2, and so Exim, always lets pass.
The texts are those Debian's exim4 shows (test_spf_exim.py compares them
with it directly).
"""

import os
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import time

from twisted.trial import unittest

from exim_py import dns as edns
from exim_py.mailauth import spf
from tests.support.dnsserver import shared_server
from tests.support.peers import run_exim_py

RECEIVER = "myhost.test.ex"

SHOW = """\
  warn  logwrite = result <$spf_result> guessed <$spf_result_guessed>
        logwrite = header_comment <$spf_header_comment>
        logwrite = smtp_comment <$spf_smtp_comment>
        logwrite = received <$spf_received>
        logwrite = ar <${{authresults{{myhost.test.ex}}}}>
"""

CONF = """\
keep_environment =
host_lookup =
primary_hostname = myhost.test.ex
spool_directory = {spool}
log_file_path = {spool}/%slog
dns_nameservers = {dns}
{extra}
acl_smtp_rcpt = check_rcpt
begin acl
check_rcpt:
{acl}
"""


def check(sender, ip="192.0.2.2", helo="helo.spf.example", record=None, timeout=None):
    """The Response of mailauth.spf.check against the test DNS server."""
    server = shared_server()
    resolver = edns.Resolver(nameservers=edns.parse_nameservers(server.nameservers),
                             timeout=timeout, retries=1 if timeout else None)
    request = spf.Request(ip, sender, helo, RECEIVER)
    return spf.check(request, spf.resolver_query(resolver, {}), record=record)


class SpfCheckTests(unittest.TestCase):
    """mailauth.spf.check: libspf2's result for each kind of record."""

    def assertResult(self, sender, result, ip="192.0.2.2"):
        response = check(sender, ip)
        self.assertEqual(response.result_text, result, sender)
        return response

    def test_results_of_qualifiers(self):
        """The matching term's qualifier decides: +, -, ~ and ? give pass,
        fail, softfail and neutral."""
        self.assertResult("a@pass.spf.example", "pass")
        self.assertResult("a@fail.spf.example", "fail")
        self.assertResult("a@softfail.spf.example", "softfail")
        self.assertResult("a@neutral.spf.example", "neutral")

    def test_no_record_is_none(self):
        """No such domain, no TXT record, only TXT records that are not
        v=spf1 (spf2.0/pra too): none."""
        for sender in ("a@nxdomain.spf.example", "a@guess.spf.example", "a@nospf.spf.example",
                       "a@spf2.spf.example"):
            self.assertResult(sender, "none")

    def test_mechanisms(self):
        """mx, include:, redirect=, exists: with a macro, a/24, ip6, a
        version tag in mixed case and a record split into strings."""
        self.assertResult("a@mx.spf.example", "pass")
        self.assertResult("a@include.spf.example", "pass")
        self.assertResult("a@redirect.spf.example", "fail")
        self.assertResult("a@exists.spf.example", "pass")
        self.assertResult("a@anet.spf.example", "pass")
        self.assertResult("a@upper.spf.example", "pass")
        self.assertResult("a@split.spf.example", "pass")
        self.assertResult("a@six.spf.example", "fail")
        self.assertResult("a@six.spf.example", "pass", ip="2001:db8::5")
        self.assertResult("a@pass.spf.example", "fail", ip="2001:db8::5")

    def test_no_match_is_neutral_by_default(self):
        """A record whose terms all miss gives neutral, reason "default"."""
        response = self.assertResult("a@nodefault.spf.example", "neutral")
        self.assertEqual(response.smtp_comment("Why"), "Why : Reason: default")

    def test_permerror(self):
        """Two v=spf1 records, an include: loop, an include: of a domain
        without a record and too many empty lookups are permerror."""
        texts = {
            "double": "Multiple SPF or TXT records for domain.",
            # libspf2's buffer cuts this one short
            "loop": "include: or redirect= caused unlimited recursio",
            "noinclude": "Could not find a valid SPF record",
            "void11": "Mechanisms used too many DNS lookups",
        }
        for name, text in texts.items():
            response = self.assertResult("a@%s.spf.example" % name, "permerror")
            self.assertTrue(response.header_comment().endswith(": " + text),
                            response.header_comment())

    def test_syntax_error_is_invalid(self):
        """A record libspf2 cannot compile (unknown mechanism, prefix
        length 33) gives "(invalid)" and no texts, as Exim shows it."""
        for sender in ("a@syntax.spf.example", "a@badcidr.spf.example"):
            response = self.assertResult(sender, "(invalid)")
            self.assertEqual((response.header_comment(), response.received(),
                              response.smtp_comment("Why")), ("", "", ""))

    def test_dns_failure_is_temperror(self):
        """SERVFAIL for the sender's domain, or for a domain it includes,
        is temperror."""
        self.assertResult("a@x.servfail.test", "temperror")
        response = self.assertResult("a@temp.spf.example", "temperror")
        self.assertEqual(response.header_comment(),
                         "myhost.test.ex: encountered temporary error during SPF "
                         "processing of domain of temp.spf.example")

    def test_dns_timeout_is_temperror(self):
        """No answer at all for the sender's domain is temperror too."""
        self.assertEqual(check("a@x.timeout.test", timeout=0.3).result, "temperror")

    def test_loopback_always_passes(self):
        """127.0.0.1 and ::1 pass whatever the record says."""
        for ip in ("127.0.0.1", "::1"):
            response = self.assertResult("a@fail.spf.example", "pass", ip=ip)
            self.assertEqual(response.header_comment(),
                             "myhost.test.ex: localhost is always allowed.")

    def test_texts(self):
        """Header comment, Received-SPF: and SMTP comment as libspf2 words them."""
        response = check("a@fail.spf.example")
        self.assertEqual(response.header_comment(),
                         "myhost.test.ex: domain of fail.spf.example does not designate "
                         "192.0.2.2 as permitted sender")
        self.assertEqual(response.received(),
                         "Received-SPF: fail (myhost.test.ex: domain of fail.spf.example does "
                         "not designate 192.0.2.2 as permitted sender) client-ip=192.0.2.2; "
                         "envelope-from=a@fail.spf.example; helo=helo.spf.example;")
        self.assertEqual(response.smtp_comment("Please%_see%_http://x.example/Why?s=%{S}"),
                         "Please see http://x.example/Why?s=a%40fail.spf.example : "
                         "Reason: mechanism")
        self.assertEqual(check("a@softfail.spf.example").header_comment(),
                         "myhost.test.ex: transitioning domain of softfail.spf.example does "
                         "not designate 192.0.2.2 as permitted sender")
        self.assertEqual(check("a@neutral.spf.example").header_comment(),
                         "myhost.test.ex: 192.0.2.2 is neither permitted nor denied by "
                         "domain of neutral.spf.example")
        self.assertEqual(check("a@nospf.spf.example").header_comment(),
                         "myhost.test.ex: domain of nospf.spf.example does not provide an "
                         "SPF record")
        self.assertEqual(check("a@pass.spf.example").smtp_comment("Why"), "")

    def test_null_sender_checks_the_helo_name(self):
        """MAIL FROM:<> checks postmaster@<HELO name>."""
        response = check("", helo="helo.spf.example")
        self.assertEqual(response.result, "pass")
        self.assertIn("envelope-from=postmaster@helo.spf.example;", response.received())

    def test_guess_record(self):
        """The spf_guess record evaluated for a domain without a record:
        its a/24 takes in the client, or nothing does and ?all answers."""
        guess = "v=spf1 a/24 mx/24 ptr ?all"
        self.assertEqual(check("a@guess.spf.example", record=guess).result, "pass")
        self.assertEqual(check("a@far.spf.example", record=guess).result, "neutral")


class _Checking:
    """-bh runs of exim_py on an ACL (client 192.0.2.2 unless told)."""

    def setUp(self):
        self.spool = tempfile.mkdtemp(prefix="exim_py-spf-")
        os.chmod(self.spool, 0o777)
        self.addCleanup(shutil.rmtree, self.spool, True)

    def write(self, acl, extra=""):
        path = os.path.join(self.spool, "exim.conf")
        with open(path, "w") as f:
            f.write(CONF.format(spool=self.spool, dns=shared_server().nameservers,
                                extra=extra, acl=acl))
        return path

    def bh(self, acl, sender, extra="", ip="192.0.2.2", helo="HELO helo.spf.example\r\n"):
        dialogue = "%sMAIL FROM:<%s>\r\nRCPT TO:<x@y.example>\r\nQUIT\r\n" % (helo, sender)
        result = run_exim_py(["-C", self.write(acl, extra), "-bh", ip], input=dialogue)
        replies = [line for line in result.stdout.splitlines() if line[:3].isdigit()]
        logs = [line[5:] for line in result.stderr.splitlines() if line.startswith("LOG: ")]
        return replies, logs


class SpfAclTests(_Checking, unittest.TestCase):
    """The spf and spf_guess conditions and the variables they set."""

    def test_condition_lists(self):
        """A list of results matches any of them; !name matches every
        other result; the first item that decides wins."""
        acl = ("  accept spf = pass : softfail : neutral : none\n"
               "  deny   spf = !fail\n"
               "         message = not fail\n"
               "  deny   message = fail\n")
        self.assertEqual(self.bh(acl, "a@softfail.spf.example")[0][-2], "250 Accepted")
        self.assertEqual(self.bh(acl, "a@double.spf.example")[0][-2], "550 not fail")
        self.assertEqual(self.bh(acl, "a@fail.spf.example")[0][-2], "550 fail")
        star = "  deny spf = *\n         message = any result\n"
        self.assertEqual(self.bh(star, "a@syntax.spf.example")[0][-2], "550 any result")

    def test_runs_off_the_reactor(self):
        """An ACL with spf or spf_guess asks the DNS, so the server runs it
        in its thread pool (acl.blocking.acl_may_block)."""
        from exim_py.acl.blocking import acl_may_block
        from exim_py.config import load
        for condition in ("spf", "spf_guess"):
            config = load(self.write("  accept %s = pass\n" % condition))
            self.assertTrue(acl_may_block(config, "check_rcpt"))
        self.assertFalse(acl_may_block(load(self.write("  accept hosts = *\n")), "check_rcpt"))

    def test_variables_and_authresults(self):
        """$spf_result, $spf_header_comment, $spf_smtp_comment,
        $spf_received and ${authresults} after a fail."""
        _, logs = self.bh("  warn spf = pass\n" + SHOW.format() + "  accept\n",
                          "a@fail.spf.example")
        self.assertEqual(logs, [
            "result <fail> guessed <no>",
            "header_comment <myhost.test.ex: domain of fail.spf.example does not designate "
            "192.0.2.2 as permitted sender>",
            "smtp_comment <Please see http://www.open-spf.org/Why : Reason: mechanism>",
            "received <Received-SPF: fail (myhost.test.ex: domain of fail.spf.example does not "
            "designate 192.0.2.2 as permitted sender) client-ip=192.0.2.2; "
            "envelope-from=a@fail.spf.example; helo=helo.spf.example;>",
            "ar <Authentication-Results: myhost.test.ex;\\n\tspf=fail "
            "smtp.mailfrom=fail.spf.example>"])

    def test_guess(self):
        """spf_guess on a domain without a record uses the spf_guess
        option's record and says so in $spf_result_guessed and
        ${authresults}; the option can be changed."""
        acl = "  warn spf_guess = pass\n" + SHOW.format() + "  accept\n"
        _, logs = self.bh(acl, "a@guess.spf.example")
        self.assertEqual(logs[0], "result <pass> guessed <yes>")
        self.assertIn("spf=pass (best guess record for domain) smtp.mailfrom=guess.spf.example",
                      logs[4])
        _, logs = self.bh(acl, "a@guess.spf.example", extra="spf_guess = v=spf1 -all")
        self.assertEqual(logs[0], "result <fail> guessed <yes>")
        _, logs = self.bh(acl, "a@pass.spf.example")
        self.assertEqual(logs[0], "result <pass> guessed <no>")

    def test_temperror_defers(self):
        """Exim's pattern for DNS trouble: defer when spf_guess says temperror."""
        acl = ("  accept spf = pass : softfail : neutral : none\n"
               "  defer  spf_guess = temperror\n"
               "  deny\n")
        replies, _ = self.bh(acl, "a@x.servfail.test")
        self.assertEqual(replies[-2], "451 Temporary local problem - please try later")

    def test_variables_last_the_transaction(self):
        """The results are there in a later ACL of the same transaction."""
        acl = ("  warn spf = pass\n  accept\n"
               "check_data:\n"
               "  accept logwrite = data sees $spf_result\n")
        path = self.write(acl, extra="acl_smtp_data = check_data")
        dialogue = ("HELO helo.spf.example\r\nMAIL FROM:<a@pass.spf.example>\r\n"
                    "RCPT TO:<x@y.example>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n")
        result = run_exim_py(["-C", path, "-bh", "192.0.2.2"], input=dialogue)
        self.assertRegex(result.stderr, r"LOG: \S+ data sees pass\n")

    def test_mail_acl(self):
        """spf in the MAIL ACL; the RCPT ACL of the same transaction sees
        its results, and after RSET they are gone (Exim's spf_smtp_reset)."""
        path = self.write("  accept logwrite = rcpt sees <$spf_result>\n"
                          "check_mail:\n  accept senders = a@pass.spf.example\n"
                          "  accept spf = fail\n",
                          extra="acl_smtp_mail = check_mail")
        dialogue = ("HELO helo.spf.example\r\nMAIL FROM:<a@fail.spf.example>\r\n"
                    "RCPT TO:<x@y.example>\r\nRSET\r\nMAIL FROM:<a@pass.spf.example>\r\n"
                    "RCPT TO:<x@y.example>\r\nQUIT\r\n")
        result = run_exim_py(["-C", path, "-bh", "192.0.2.2"], input=dialogue)
        self.assertEqual([line for line in result.stderr.splitlines() if "sees" in line],
                         ["LOG: rcpt sees <fail>", "LOG: rcpt sees <>"])

    def test_not_allowed_at_connect(self):
        """spf in the connect ACL is Exim's "cannot test" error."""
        path = self.write("  accept\nconnect:\n  accept spf = pass\n",
                          extra="acl_smtp_connect = connect")
        result = run_exim_py(["-C", path, "-bh", "192.0.2.2"], input="QUIT\r\n")
        self.assertIn('cannot test spf condition in connection ACL', result.stderr)

    def test_lookup(self):
        """${lookup {sender} spf {ip}}: the result word for that client."""
        path = self.write("  accept\n")
        result = run_exim_py(["-C", path, "-be",
                              "${lookup {a@fail.spf.example} spf {192.0.2.2}}",
                              "${lookup {a@six.spf.example} spf {2001:db8::5}}",
                              "${lookup {a@fail.spf.example} spf {127.0.0.1}}",
                              "${lookup {a@fail.spf.example} spf {not-an-ip}{$value}{failed}}"])
        self.assertEqual(result.stdout.splitlines(), ["fail", "pass", "pass", "failed"])


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SpfLogSelectorTests(unittest.TestCase):
    """The <= line's SPF items, over a real connection to the daemon (from
    127.0.0.1, which always passes)."""

    def received_line(self, selector, sender="a@fail.spf.example"):
        spool = tempfile.mkdtemp(prefix="exim_py-spflog-")
        self.addCleanup(shutil.rmtree, spool, True)
        path = os.path.join(spool, "exim.conf")
        with open(path, "w") as f:
            f.write(CONF.format(spool=spool, dns=shared_server().nameservers,
                                extra="queue_only\nlog_selector = %s" % selector,
                                acl="  accept spf = pass : fail\n"))
        port, pid_file = _free_port(), os.path.join(spool, "pid")
        env = dict(os.environ, EXIM_PY_DAEMON_PROCESSES="1",
                   PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        proc = subprocess.Popen([sys.executable, "-m", "exim_py", "-C", path, "-bdf",
                                 "-oX", str(port), "-oP", pid_file], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(proc.wait)
        self.addCleanup(proc.kill)
        deadline = time.monotonic() + 20
        while not os.path.exists(pid_file) and time.monotonic() < deadline:
            time.sleep(0.05)
        with smtplib.SMTP("127.0.0.1", port, local_hostname="helo.spf.example", timeout=20) as s:
            s.sendmail(sender, ["x@y.example"], "Subject: x\r\n\r\nhi\r\n")
        with open(os.path.join(spool, "mainlog")) as f:
            return [line for line in f if " <= " in line][0]

    def test_spf_verbose(self):
        """+spf_verbose: SPF=<result> on the <= line."""
        self.assertRegex(self.received_line("+spf_verbose"), r" S=\d+ SPF=pass\n$")

    def test_spf_pass_marker(self):
        """+spf: a bare SPF item for a pass; nothing by default."""
        self.assertRegex(self.received_line("+spf"), r" S=\d+ SPF\n$")
        self.assertNotIn(" SPF", self.received_line(""))

    def test_verbose_shows_any_result(self):
        """+spf_verbose shows a fail too, and +spf alone does not (-bh)."""
        spool = tempfile.mkdtemp(prefix="exim_py-spflog-")
        self.addCleanup(shutil.rmtree, spool, True)
        path = os.path.join(spool, "exim.conf")
        lines = []
        for selector in ("+spf_verbose", "+spf"):
            with open(path, "w") as f:
                f.write(CONF.format(spool=spool, dns=shared_server().nameservers,
                                    extra="log_selector = " + selector,
                                    acl="  accept spf = pass : fail\n"))
            dialogue = ("HELO helo.spf.example\r\nMAIL FROM:<a@fail.spf.example>\r\n"
                        "RCPT TO:<x@y.example>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\n"
                        "QUIT\r\n")
            result = run_exim_py(["-C", path, "-bh", "192.0.2.2"], input=dialogue)
            lines += [line for line in result.stderr.splitlines() if " <= " in line]
        self.assertRegex(lines[0], r" S=\d+ SPF=fail$")
        self.assertRegex(lines[1], r" S=\d+$")
