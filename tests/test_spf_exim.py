"""SPF results, texts and replies compared with Debian's exim4 (libspf2 1.2.10).

exim4 has no dns_nameservers option: it asks the resolver in
/etc/resolv.conf, on port 53.  So exim4 runs in a private network and mount
namespace (``unshare -n -m``, as root) where the loopback interface is up,
/etc/resolv.conf names 127.0.0.1, and the test DNS server serves the stock
zones (tests/support/zones, spf.example among them) on 127.0.0.1:53.  exim_py
runs outside with dns_nameservers pointing at the shared test server, which
serves the same zones.  Both take the same ``-bh`` dialogue: one HELO and a
MAIL/RCPT/RSET transaction per sender.

One known difference is left out: a SERVFAIL for the sender's own domain
(exim_py says temperror, as Exim's test suite expects; Debian's libspf2
says "(invalid)").
"""

import json
import os
import subprocess
import sys

from twisted.trial import unittest
from twisted.trial.unittest import SkipTest

from tests.support.dnsserver import ZONE_DIR, shared_server
from tests.support.peers import RealExim, require_command, run_exim_py

V6 = "2001:db8::5"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SENDERS = ("pass", "fail", "softfail", "neutral", "nodefault", "syntax", "badcidr", "double",
           "loop", "noinclude", "nospf", "spf2", "guess", "far", "nxdomain", "mx", "include",
           "redirect", "temp", "exists", "anet", "six", "upper", "split", "exp", "void11")

CONF = """\
keep_environment =
host_lookup =
smtp_accept_max_nonmail_hosts =
spf_smtp_comment_template = Why?s=%{{S}}&l=%{{l}}&o=%{{o}}&d=%{{d}}&i=%{{I}}&c=%{{c}}&h=%{{h}}&r=%{{r}}&v=%{{v}}&x=%{{d2r}}%_%%
primary_hostname = myhost.test.ex
spool_directory = {spool}
log_file_path = {spool}/%slog
{extra}
acl_smtp_rcpt = check_rcpt
begin acl
check_rcpt:
  warn  logwrite = sender <$sender_address>
  deny  {condition} = fail : permerror
        message = SPF says $spf_result: $spf_smtp_comment
  warn  logwrite = result <$spf_result> guessed <$spf_result_guessed>
        logwrite = header_comment <$spf_header_comment>
        logwrite = smtp_comment <$spf_smtp_comment>
        logwrite = received <$spf_received>
        logwrite = ar <${{authresults{{myhost.test.ex}}}}>
  accept
"""

# Runs inside ``unshare -n -m``: loopback up, resolv.conf pointing at
# 127.0.0.1, the test DNS server on port 53, then each exim4 job.
NAMESPACE_RUNNER = r"""
import json, os, subprocess, sys, tempfile
jobs = json.load(sys.stdin)
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
resolv = tempfile.NamedTemporaryFile("w", suffix=".resolv", delete=False)
resolv.write("nameserver 127.0.0.1\n")
resolv.close()
subprocess.run(["mount", "--bind", resolv.name, "/etc/resolv.conf"], check=True)
os.unlink(resolv.name)      # the mount keeps the file while it lasts
dns = subprocess.Popen([sys.executable, "-m", "tests.support.dnsserver", "--port", "53"]
                       + sys.argv[1:],
                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
assert dns.stdout.readline().startswith("port 53"), "DNS server did not start"
out = []
for job in jobs:
    r = subprocess.run(job["argv"], input=job["input"], capture_output=True, text=True,
                       timeout=60)
    out.append({"stdout": r.stdout, "stderr": r.stderr})
dns.stdin.close()
dns.wait()
json.dump(out, sys.stdout)
"""


def dialogue(senders):
    lines = ["HELO helo.spf.example"]
    for sender in senders:
        lines += ["MAIL FROM:<%s>" % sender, "RCPT TO:<x@y.example>", "RSET"]
    return "\r\n".join(lines + ["QUIT", ""])


def transcript(result):
    """Replies and LOG: lines, in order of the senders (exim4 writes its
    LOG: lines to stderr and replies to stdout, so they are kept apart)."""
    replies = [line for line in result["stdout"].splitlines() if line[:3].isdigit()
               and not line.startswith("220 ")]
    logs = [line for line in result["stderr"].splitlines() if line.startswith("LOG: ")]
    return replies, logs


class SpfAgainstEximTests(unittest.TestCase):
    """The same zone, the same dialogue: exim_py's replies and $spf_* texts
    are exim4's."""

    maxDiff = None

    def setUp(self):
        self.exim = RealExim()
        self.addCleanup(self.exim.cleanup)
        for tool in ("unshare", "ip", "mount"):
            require_command(tool, "util-linux / iproute2")
        if os.geteuid() != 0:
            raise SkipTest("exim4 with a test DNS needs root (a private network namespace)")
        self.spool = os.path.join(self.exim.dir, "spool")
        os.mkdir(self.spool)
        subprocess.run(["chown", "Debian-exim", self.spool], check=False)

    def run_exim4(self, jobs):
        zones = [os.path.join(ZONE_DIR, name) for name in sorted(os.listdir(ZONE_DIR))]
        env = dict(os.environ, PYTHONPATH=ROOT)
        result = subprocess.run(["unshare", "-n", "-m", sys.executable, "-c", NAMESPACE_RUNNER]
                                + zones, input=json.dumps(jobs), capture_output=True,
                                text=True, env=env, cwd=ROOT, timeout=300)
        if result.returncode != 0:
            if "unshare failed" in result.stderr or "Operation not permitted" in result.stderr:
                raise SkipTest("no private network namespace here: " + result.stderr.strip())
            self.fail("namespace runner failed: " + result.stderr)
        return json.loads(result.stdout)

    def compare(self, condition):
        senders = ["a@%s.spf.example" % name for name in SENDERS] + [""]
        text = dialogue(senders)
        theirs_conf = self.exim.write_config(
            CONF.format(spool=self.spool, extra="", condition=condition), "exim4.conf")
        ours_conf = self.exim.write_config(
            CONF.format(spool=self.spool, condition=condition,
                        extra="dns_nameservers = " + shared_server().nameservers), "ours.conf")
        ips = ("192.0.2.2", V6, "127.0.0.1")
        jobs = [{"argv": [self.exim.binary, "-C", theirs_conf, "-bh", ip], "input": text}
                for ip in ips]
        theirs = self.run_exim4(jobs)
        for ip, result in zip(ips, theirs):
            ours = run_exim_py(["-C", ours_conf, "-bh", ip], input=text)
            mine = transcript({"stdout": ours.stdout, "stderr": ours.stderr})
            self.assertEqual(mine, transcript(result), ip)
            self.assertGreater(len(mine[1]), len(senders), "no LOG: lines for %s" % ip)

    def test_spf_condition(self):
        """spf = fail : permerror, then the variables, for every record in
        the zone and the null sender, from IPv4, IPv6 and loopback clients."""
        self.compare("spf")

    def test_spf_guess_condition(self):
        """The same with spf_guess: domains without a record get the
        spf_guess record's result, marked as a guess."""
        self.compare("spf_guess")

    def test_lookup(self):
        """${lookup {sender} spf {ip}} gives exim4's word for every record."""
        items = ["${lookup {a@%s.spf.example} spf {%s}}" % (name, ip)
                 for name in SENDERS for ip in ("192.0.2.2", V6)]
        ours_conf = self.exim.write_config(
            CONF.format(spool=self.spool, condition="spf",
                        extra="dns_nameservers = " + shared_server().nameservers), "ours.conf")
        theirs_conf = self.exim.write_config(
            CONF.format(spool=self.spool, extra="", condition="spf"), "exim4.conf")
        theirs = self.run_exim4([{"argv": [self.exim.binary, "-C", theirs_conf, "-be"] + items,
                                  "input": ""}])[0]
        ours = run_exim_py(["-C", ours_conf, "-be"] + items)
        self.assertEqual(ours.stdout.splitlines(), theirs["stdout"].splitlines())
        self.assertIn("softfail", ours.stdout.splitlines())

