"""-bh and -bs: the same dialogue through ``exim4 -bh`` and ``exim_py -bh``
gives the same reply lines (dates and message ids normalised), and -bs
accepts a message from standard input.
"""

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time

from twisted.trial import unittest

from tests.support.bh import host_checks, log_lines, oracle, script
from tests.support.peers import exim_py_command, run_exim_py

CONF = """\
primary_hostname = mx.test.example
keep_environment =
host_lookup =
spool_directory = {spool}
log_file_path = {spool}/%slog
pipelining_connect_advertise_hosts = :
smtputf8_advertise_hosts =
tls_advertise_hosts =
{extra}
begin acl
accept_all:
  accept
deny_all:
  deny    message = no such user here
rcpt_logged:
  deny    local_parts = bad
          message = no bad
  warn    logwrite = note for $local_part
  accept
rcpt_callout:
  require verify = recipient/callout=5s
  accept
data_logged:
  deny    condition = ${{if match{{$message_body}}{{REJECT}}}}
          message = rejected body $message_body_end
  accept
"""

DIALOGUES = {
    "basic": ["EHLO client.example", "MAIL FROM:<a@b.example> SIZE=100 BODY=8BITMIME",
              "RCPT TO:<c@d.example>", "DATA", "Subject: hi", "", "body", "..dot", ".",
              "FOO", "VRFY x", "VRFY x@y.example", "EXPN x", "HELP", "ETRN x", "NOOP extra",
              "MAIL FROM:<>", "RSET", "RCPT TO:<a@b>", "DATA", "BDAT 10", "NOOP"],
    "helo": ["HELO", "EHLO", "HELO a_b", "HELO [192.0.2.1]", "MAIL FROM:<a@b> SIZE=10",
             "MAIL FROM:<x@y.example>", "MAIL FROM:<x@y.example>", "QUIT"],
    "addresses": ["EHLO client.example", "MAIL FROM:<x>", "MAIL FROM: <x@y.example>",
                  "RCPT TO:<x>", "RCPT TO:<>", "RCPT TO:<@r1,@r2:u@v.example>", "RCPT TO:",
                  "RSET", "MAIL FROM:<a@b> FOO=bar", "QUIT"],
    "rcpt_denied": ["EHLO client.example", "MAIL FROM:<a@b.example>", "RCPT TO:<c@d.example>",
                    "DATA", "QUIT"],
    "bdat": ["HELO client.example", "MAIL FROM:<a@b.example>", "RCPT TO:<c@d.example>",
             "BDAT 0 LAST", "EHLO client.example", "MAIL FROM:<a@b.example>", "BDAT x", "QUIT"],
    "unknown": ["HELO c", "A", "B", "C", "D", "E"],
    "extensions": ["EHLO client.example", "HELP", "MAIL FROM:<a@b.example> RET=HDRS ENVID=x+2By",
                   "RCPT TO:<c@d.example> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;c@d.example",
                   "RCPT TO:<e@d.example> NOTIFY=NEVER,DELAY", "VRFY c@d.example", "ETRN #queue", "QUIT"],
    "expn": ["EHLO client.example", "EXPN postmaster", "EXPN rhubarb", "EXPN a", "VRFY a@mx.test.example",
             "VRFY rhubarb@mx.test.example", "QUIT"],
    "headers": ["EHLO client.example", "MAIL FROM:<a@b.example>", "RCPT TO:<c@d.example>", "DATA",
                "Subject: " + "a" * 60, "", "body", ".", "MAIL FROM:<a@b.example>", "RCPT TO:<c@d.example>",
                "DATA"] + ["X-%d: abc" % i for i in range(20)] + ["", "body", ".", "QUIT"],
    "active": ["HELO client.example", "QUIT"],
    "nohelo": ["MAIL FROM:<a@b.example>", "RCPT TO:<c@d.example>", "HELO client.example",
               "MAIL FROM:<a@b.example>", "QUIT"],
    "logged": ["EHLO client.example", "MAIL FROM:<a@b.example>", "RCPT TO:<bad@d.example>",
               "RCPT TO:<good@d.example>", "DATA", "Subject: one", "", "REJECT", ".",
               "MAIL FROM:<a@b.example>", "RCPT TO:<good@d.example>", "DATA", "Subject: two", "", "fine", ".",
               "QUIT"],
    "callout": ["EHLO client.example", "MAIL FROM:<a@b.example>", "RCPT TO:<u@remote.example>", "QUIT"],
    "auth": ["EHLO client.example", "AUTH LOGIN", "AUTH PLAIN AGZyZWQAd3Jvbmc=", "AUTH PLAIN",
             "AGZyZWQAc2VjcmV0", "AUTH PLAIN", "MAIL FROM:<a@b.example> AUTH=<>", "QUIT"],
}
# server side of AUTH PLAIN for user fred, password secret (also used by test_smtp_server_peer)
AUTHENTICATORS = """
begin authenticators
plain:
  driver = plaintext
  public_name = PLAIN
  server_prompts = :
  server_condition = ${if and {{eq{$auth2}{fred}}{eq{$auth3}{secret}}}}
  server_set_id = $auth2
"""
ROUTERS = """
begin routers
alias:
  driver = redirect
  data = a, b, c
  local_parts = postmaster
abc:
  driver = accept
  local_parts = a:b:c
  transport = local_delivery
begin transports
local_delivery:
  driver = appendfile
  file = /dev/null
"""
# every address goes to a port on 127.0.0.1 where nothing listens
CALLOUT_ROUTE = """
begin routers
r:
  driver = manualroute
  route_list = * 127.0.0.1 byname
  self = send
  transport = t
begin transports
t:
  driver = smtp
  port = {port}
"""


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


EXTRA = {
    "active": "acl_smtp_rcpt = accept_all\nsmtp_active_hostname = ${if eq{$received_port}{-1}{bh.example}{x}}\n"
              "smtp_banner = $smtp_active_hostname [$received_port][$interface_port][$sender_host_port]",
    "headers": "acl_smtp_rcpt = accept_all\nheader_maxsize = 100\nheader_line_maxsize = 50",
    "expn": "acl_smtp_expn = accept_all\nacl_smtp_vrfy = accept_all",
    "extensions": "acl_smtp_rcpt = accept_all\ndsn_advertise_hosts = *\nprdr_enable\n"
                  "acl_smtp_etrn = accept_all\nacl_smtp_vrfy = accept_all",
    "rcpt_denied": "acl_smtp_rcpt = deny_all",
    "callout": "acl_smtp_rcpt = rcpt_callout",
    "logged": "acl_smtp_rcpt = rcpt_logged\nacl_smtp_data = data_logged\nlog_selector = +received_recipients",
    "unknown": "smtp_max_synprot_errors = 10",
}


def normalise(text):
    text = re.sub(r"\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}", "DATE", text)
    text = re.sub(r"id=\w{6}-\w{6}-\w{2}", "id=ID", text)
    return text


class HostCheckDifferentialTests(unittest.TestCase):
    """exim_py -bh answers every line exactly as exim4 -bh does."""

    def setUp(self):
        self.exim = oracle(self)
        self.spool = tempfile.mkdtemp(prefix="exim_py-bh-")
        os.chmod(self.spool, 0o777)
        self.addCleanup(shutil.rmtree, self.spool, True)

    def compare(self, name, logs=False, flag="-bh"):
        extra = EXTRA.get(name, "acl_smtp_rcpt = accept_all")
        text = CONF.format(spool=self.spool, extra=extra)
        if name == "callout":
            text += CALLOUT_ROUTE.format(port=closed_port())
        if name == "auth":
            text += AUTHENTICATORS
        if name == "expn":
            text += ROUTERS
        path = self.exim.write_config(text, name + ".conf")
        theirs, ours = host_checks(self.exim, path, script(DIALOGUES[name]), "192.0.2.9", flag)
        self.assertEqual(normalise(ours.stdout), normalise(theirs.stdout),
                         "dialogue %s; exim_py stderr: %s" % (name, ours.stderr))
        if logs:
            self.assertEqual(log_lines(ours.stderr), log_lines(theirs.stderr), ours.stderr)
            return log_lines(ours.stderr)

    def test_basic(self):
        """EHLO keywords, a message, the commands without ACLs, sequence errors, the drop."""
        self.compare("basic")

    def test_log_lines_on_stderr(self):
        """What -bh would log is shown on stderr as ``LOG: text``: RCPT and DATA
        rejections, logwrite, and the <= line of an accepted message; the DATA
        ACL sees $message_body."""
        lines = self.compare("logged", logs=True)
        self.assertIn("LOG: ID H=(client.example) [192.0.2.9] F=<a@b.example> rejected after DATA: "
                      "rejected body REJECT ", lines)
        self.assertIn("LOG: ID <= a@b.example H=(client.example) [192.0.2.9] P=esmtp S=217 "
                      "for good@d.example", lines)

    def test_callout_omitted(self):
        """-bh omits callouts (verify = recipient/callout passes without one); -bhc makes them."""
        self.compare("callout", logs=True)
        lines = self.compare("callout", logs=True, flag="-bhc")
        self.assertEqual(len(lines), 1)
        self.assertIn("Could not complete recipient verify callout", lines[0])

    def test_helo(self):
        """HELO/EHLO syntax errors and the parameters a HELO session may not use."""
        self.compare("helo")

    def test_addresses(self):
        """Unqualified, empty, source-routed and malformed addresses."""
        self.compare("addresses")

    def test_rcpt_denied(self):
        """An ACL denial's message, and DATA's summary of it."""
        self.compare("rcpt_denied")

    def test_bdat(self):
        """BDAT syntax, chunk replies and the only-BDAT rule."""
        self.compare("bdat")

    def test_extensions(self):
        """DSN, PRDR, ETRN, VRFY advertised in Exim's order; DSN parameters accepted."""
        self.compare("extensions")

    def test_expn_and_vrfy(self):
        """EXPN lists what a redirection generates; VRFY routes the address."""
        self.compare("expn")

    def test_auth(self):
        """AUTH: unsupported mechanism, failure, success over a 334 exchange, already authenticated."""
        self.compare("auth")

    def test_header_limits(self):
        """header_line_maxsize and header_maxsize refuse the message with Exim's 552s."""
        self.compare("headers")

    def test_helo_required(self):
        """hosts_require_helo (default *): MAIL before HELO is refused."""
        self.compare("nohelo")

    def test_active_hostname(self):
        """smtp_active_hostname replaces the host name in the banner, HELO and QUIT replies."""
        self.compare("active")

    def test_unknown_commands(self):
        """The unknown-command limit (smtp_max_unknown_commands)."""
        self.compare("unknown")


class StdioSessionTests(unittest.TestCase):
    """exim_py -bs: an SMTP session from a local program."""

    def test_bs_accepts_a_message(self):
        """A message given over -bs is stored, with protocol local-smtp."""
        spool = tempfile.mkdtemp(prefix="exim_py-bs-")
        self.addCleanup(shutil.rmtree, spool, True)
        conf = os.path.join(spool, "exim.conf")
        with open(conf, "w") as f:
            f.write(CONF.format(spool=spool, extra="acl_smtp_rcpt = accept_all\nqueue_only"))
        dialogue = "HELO me\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n" \
                   "Subject: bs\r\n\r\nhello\r\n.\r\nQUIT\r\n"
        out = run_exim_py(["-C", conf, "-bs"], input=dialogue)
        lines = normalise(out.stdout).splitlines()
        self.assertTrue(lines[1].startswith("250 mx.test.example Hello ") and lines[1].endswith(" at me"), lines)
        self.assertEqual(lines[5:], ["250 OK id=ID", "221 mx.test.example closing connection"])
        headers = [n for n in os.listdir(os.path.join(spool, "input")) if n.endswith("-H")]
        self.assertEqual(len(headers), 1)
        with open(os.path.join(spool, "input", headers[0])) as f:
            self.assertIn("-received_protocol local-smtp", f.read())


class StdioLineEndTests(unittest.TestCase):
    """-bs from a program writing Unix line ends: LF.LF ends DATA, as exim4 -bs."""

    def test_lf_only_session(self):
        """Two messages in one LF-only -bs session are both stored, and exim4
        gives the same replies for the same input."""
        spool = tempfile.mkdtemp(prefix="exim_py-bs-lf-")
        self.addCleanup(shutil.rmtree, spool, True)
        conf = os.path.join(spool, "exim.conf")
        with open(conf, "w") as f:
            f.write(CONF.format(spool=spool, extra="acl_smtp_rcpt = accept_all\nqueue_only"))
        os.chmod(conf, 0o644)
        dialogue = ("HELO me\nMAIL FROM:<a@b.example>\nRCPT TO:<c@d.example>\nDATA\n"
                    "Subject: one\n\nhello\n..dot\n.\n"
                    "MAIL FROM:<a@b.example>\nRCPT TO:<c@d.example>\nDATA\n"
                    "Subject: two\n\nbye\n.\nQUIT\n")
        ours = normalise(run_exim_py(["-C", conf, "-bs"], input=dialogue).stdout).splitlines()
        self.assertEqual(ours[-2:], ["250 OK id=ID", "221 mx.test.example closing connection"])
        self.assertEqual(ours.count("250 OK id=ID"), 2)
        bodies = sorted(n for n in os.listdir(os.path.join(spool, "input")) if n.endswith("-D"))
        self.assertEqual(len(bodies), 2)
        contents = []
        for name in bodies:
            with open(os.path.join(spool, "input", name), "rb") as f:
                contents.append(f.read().split(b"\n", 1)[1])
        self.assertIn(b"hello\n.dot\n", contents)
        exim = oracle(self)
        # Debian's exim4 drops to Debian-exim, which must own its spool and logs.
        exim_spool = os.path.join(exim.dir, "spool")
        os.mkdir(exim_spool)
        shutil.chown(exim_spool, "Debian-exim", "Debian-exim")
        exim_conf = exim.write_config(CONF.format(spool=exim_spool,
                                                  extra="acl_smtp_rcpt = accept_all\nqueue_only"))
        theirs = exim.run(exim_conf, ["-bs", "-odq"], input=dialogue)
        self.assertEqual(ours[2:], normalise(theirs.stdout).splitlines()[2:])


class StdioDeliveryModeTests(unittest.TestCase):
    """-bs -odi: each message is delivered before its 250 is sent; -bs -odb
    (the default): deliveries go on in the background after the session."""

    def slow_delivery(self, seconds):
        """A configuration whose one transport takes ``seconds`` to write its
        file: (configuration path, that file)."""
        spool = tempfile.mkdtemp(prefix="exim_py-bs-od-")
        self.addCleanup(shutil.rmtree, spool, True)
        os.chmod(spool, 0o755)
        mail = os.path.join(spool, "mail")
        os.mkdir(mail)
        os.chmod(mail, 0o1777)          # deliveries run as nobody, never as root
        out = os.path.join(mail, "out")
        conf = os.path.join(spool, "exim.conf")
        with open(conf, "w") as f:
            f.write(CONF.format(spool=spool, extra="acl_smtp_rcpt = accept_all") +
                    "begin routers\nr:\n  driver = accept\n  transport = slow\n"
                    "begin transports\nslow:\n  driver = pipe\n  user = nobody\n"
                    "  command = /bin/sh -c 'sleep %d; cat > %s.tmp; mv %s.tmp %s'\n"
                    % (seconds, out, out, out))
        return conf, out

    def session(self, conf, *flags):
        proc = subprocess.Popen(exim_py_command() + ["-C", conf, "-bs"] + list(flags),
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.addCleanup(proc.kill)
        proc.stdin.write(b"HELO me\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n"
                         b"Subject: od\r\n\r\nhello\r\n.\r\n")
        proc.stdin.flush()
        while True:
            line = proc.stdout.readline()
            if not line:
                self.fail("no 250: %s" % proc.stderr.read())
            if line.startswith(b"250 OK id="):
                return proc

    def finish(self, proc):
        """QUIT; the 221 and the exit status."""
        proc.stdin.write(b"QUIT\r\n")
        proc.stdin.close()
        last = proc.stdout.read().splitlines()[-1]
        status = proc.wait(timeout=60)
        proc.stdout.close()
        proc.stderr.close()
        return last, status

    def test_odi_replies_after_delivery(self):
        """The reply to the final dot comes only once the (slow) delivery has finished."""
        conf, out = self.slow_delivery(1)
        proc = self.session(conf, "-odi")
        self.assertTrue(os.path.exists(out), "250 sent before the delivery finished")
        self.assertEqual(self.finish(proc)[1], 0)
        with open(out) as f:
            self.assertIn("Subject: od\n", f.read())

    def test_odb_exits_before_delivery(self):
        """Without -odi the session ends at QUIT while the delivery is still
        running in its own process, which then delivers the message."""
        conf, out = self.slow_delivery(3)
        proc = self.session(conf)
        last, status = self.finish(proc)
        self.assertTrue(last.startswith(b"221 "), last)
        self.assertEqual(status, 0)
        self.assertFalse(os.path.exists(out), "the session waited for the delivery")
        deadline = time.monotonic() + 60
        while not os.path.exists(out) and time.monotonic() < deadline:
            time.sleep(0.1)
        with open(out) as f:
            self.assertIn("Subject: od\n", f.read())


class DsnStorageTests(unittest.TestCase):
    """DSN parameters reach the -H file exactly as exim4 stores them (xtext kept)."""

    def test_dsn_lines_match_exim(self):
        """RET, ENVID, NOTIFY and ORCPT: the same -H lines from exim4 -bs and exim_py -bs."""
        exim = oracle(self)
        dialogue = ("EHLO me\r\nMAIL FROM:<a@b.example> RET=HDRS ENVID=abc+2Bd\r\n"
                    "RCPT TO:<c@d.example> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;c+2Bx@d.example\r\n"
                    "DATA\r\nSubject: dsn\r\n\r\nbody\r\n.\r\nQUIT\r\n")
        found = []
        for who in ("exim4", "exim_py"):
            spool = tempfile.mkdtemp(prefix="dsn-%s-" % who)
            self.addCleanup(shutil.rmtree, spool, True)
            shutil.chown(spool, "Debian-exim")
            conf = exim.write_config("keep_environment =\nhost_lookup =\nspool_directory = %s\n"
                                     "dsn_advertise_hosts = *\nqueue_only\nacl_smtp_rcpt = accept\n"
                                     % spool, who + ".conf")
            run = exim.run(conf, ["-bs"], input=dialogue) if who == "exim4" else \
                run_exim_py(["-C", conf, "-bs"], input=dialogue)
            self.assertIn("250 OK id=", run.stdout)
            (header,) = [n for n in os.listdir(os.path.join(spool, "input")) if n.endswith("-H")]
            with open(os.path.join(spool, "input", header)) as f:
                found.append([line for line in f.read().splitlines()
                              if line.startswith("-dsn") or line.startswith("c@d.example")])
        self.assertEqual(found[1], found[0])
        self.assertIn("-dsn_envid abc+2Bd", found[0])
