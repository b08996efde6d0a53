"""The spool against real Exim 4.96: the same -H files, queue listings, and Exim's queue tools."""

import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
import tempfile

from twisted.trial.unittest import TestCase

from exim_py.envelope import Envelope, Header, Recipient
from exim_py.spool import Spool
from exim_py.spool import format as spoolformat
from tests.support.peers import RealExim, require_command, run_exim_py

MESSAGE = b"Subject: cross check\nTo: user@localhost,\n  other@example.com\n\nbody line\n\n.\nmore\n"

CONFIG = """\
spool_directory = {spool}
log_file_path = {spool}/log/%slog
keep_environment =
host_lookup =
qualify_domain = example.org
primary_hostname = mx.example.org
dsn_advertise_hosts = *
acl_smtp_rcpt = accept_all
begin acl
accept_all:
  accept
begin routers
r1:
  driver = accept
  transport = t1
begin transports
t1:
  driver = appendfile
  file = /dev/null
"""


def normalise(data, message_id):
    """A -H file with what differs between two runs (id, times, dates) replaced by fixed text."""
    text = data.decode("utf-8", "surrogateescape").replace(message_id, "ID")
    text = re.sub(r"\w{3}, \d+ \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}", "DATE", text)
    lines = text.split("\n")
    lines[3] = re.sub(r"^\d+", "TIME", lines[3])
    out = []
    for line in lines:
        line = re.sub(r"^(-received_time_usec) .*", r"\1 X", line)
        line = re.sub(r"^(-received_time_complete) .*", r"\1 X", line)
        line = re.sub(r"^(--host_address \[[^\]]+\]):\d+", r"\1:PORT", line)
        out.append(line)
    # Header sizes change with the length of the date: drop the counts.
    return [re.sub(r"^\d{3,}(.) ", r"NNN\1 ", line) for line in out]


def normalise_ids(data):
    """``normalise`` for a file naming several message ids (all become ID)."""
    text = re.sub(rb"[0-9A-Za-z]{6}-[0-9A-Za-z]{6}-[0-9A-Za-z]{2}", b"ID", data)
    if text.startswith(b"ID-H\n"):
        return normalise(text, "ID")
    return re.sub(rb"\w{3}, \d+ \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}", b"DATE", text)


class EximSpool:
    """A spool directory and configuration for real exim4, and one for exim_py beside it."""

    def __init__(self):
        self.exim = RealExim()
        self.spool = os.path.join(self.exim.dir, "spool")
        os.mkdir(self.spool)
        exim_user = pwd.getpwnam("Debian-exim")
        os.chown(self.spool, exim_user.pw_uid, exim_user.pw_gid)
        self.config = self.exim.write_config(CONFIG.format(spool=self.spool))
        self.py_spool = tempfile.mkdtemp(prefix="exim-py-spool-")
        self.py_config = os.path.join(self.py_spool, "exim.conf")
        with open(self.py_config, "w") as f:
            f.write(CONFIG.format(spool=self.py_spool))

    def exim_ids(self):
        return sorted(n[:-2] for n in os.listdir(os.path.join(self.spool, "input")) if n.endswith("-H"))

    def read_exim(self, message_id):
        with open(os.path.join(self.spool, "input", message_id + "-H"), "rb") as f:
            return f.read()

    def cleanup(self):
        self.exim.cleanup()
        shutil.rmtree(self.py_spool, ignore_errors=True)


class CrossCheckTests(TestCase):
    """exim_py writes and reads the spool as Exim 4.96 does."""

    def setUp(self):
        self.env = EximSpool()
        self.addCleanup(self.env.cleanup)

    def exim(self, args, input=MESSAGE):
        out = subprocess.run([self.env.exim.binary, "-C", self.env.config] + args, input=input,
                             capture_output=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        return out

    def submit_both(self, args, message=MESSAGE):
        """Submit ``message`` to exim4 and to exim_py; returns both -H files normalised, and our id."""
        self.exim(args, message)
        [exim_id] = self.env.exim_ids()
        result = run_exim_py(["-C", self.env.py_config] + args, input=message.decode())
        self.assertEqual(result.returncode, 0, result.stderr)
        spool = Spool(self.env.py_spool)
        [py_id] = list(spool.message_ids())
        with open(spool.header_path(py_id), "rb") as f:
            ours = f.read()
        return normalise(ours, py_id), normalise(self.env.read_exim(exim_id), exim_id), py_id

    def test_local_submission_same_header_file(self):
        """`-odq -f sender rcpts` gives a -H file identical to Exim's once ids and times are normalised."""
        ours, theirs, py_id = self.submit_both(["-odq", "-f", "someone@x.example", "user@localhost",
                                                "other@example.com"])
        self.assertEqual(ours, theirs)
        with open(Spool(self.env.py_spool).body_path(py_id), "rb") as f:
            self.assertEqual(f.read(), py_id.encode() + b"-D\nbody line\n\n")

    def test_local_submission_untrusted_style(self):
        """Without -f: -auth_id, -auth_sender and -local as Exim writes them; -t takes the header's recipients."""
        message = MESSAGE.replace(b"\n\n", b"\nBcc: hidden@example.net\nReturn-path: <x@y>\n\n", 1)
        ours, theirs, _ = self.submit_both(["-odq", "-t", "-oi", "extra@example.net"], message)
        self.assertEqual(ours, theirs)

    def test_uucp_from_line(self):
        """A leading "From sender date" line is taken as Exim takes it."""
        message = b"From fred@x.example Fri Jan  5 12:55 GMT 1997\n" + MESSAGE
        ours, theirs, _ = self.submit_both(["-odq", "a@b.example"], message)
        self.assertEqual(ours, theirs)

    def test_error_message_same_as_exim(self):
        """The error message mailed for "no recipients" (-oem) is the one Exim queues, -H and -D."""
        for path in (self.env.config, self.env.py_config):
            with open(path) as f:
                text = f.read()
            extra = "queue_only = true\n" + ("exim_user = Debian-exim\n" if path == self.env.py_config else "")
            with open(path, "w") as f:
                f.write(text.replace("keep_environment =\n", "keep_environment =\n" + extra))
        message = b"Subject: x\nX-Other: y\n\nbody text\n"
        out = subprocess.run([self.env.exim.binary, "-C", self.env.config, "-t"], input=message,
                             capture_output=True, timeout=60)
        self.assertEqual(out.returncode, 1)
        ours = run_exim_py(["-C", self.env.py_config, "-t"], input=message.decode())
        self.assertEqual(ours.returncode, 1)
        [exim_id] = self.env.exim_ids()
        spool = Spool(self.env.py_spool)
        [py_id] = list(spool.message_ids())
        with open(spool.header_path(py_id), "rb") as f:
            self.assertEqual(normalise_ids(f.read()), normalise_ids(self.env.read_exim(exim_id)))
        with open(os.path.join(self.env.spool, "input", exim_id + "-D"), "rb") as f:
            theirs = f.read()
        with open(spool.body_path(py_id), "rb") as f:
            self.assertEqual(normalise_ids(f.read()), normalise_ids(theirs))

    def test_reads_exim_smtp_message(self):
        """read() understands an SMTP message Exim spooled (host, DSN, ACL variables) and rewrites it unchanged."""
        session = (b"EHLO helo.example\r\nMAIL FROM:<s@x.y> RET=HDRS ENVID=abc+2Bdef\r\n"
                   b"RCPT TO:<a@b.c> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;A@B.C\r\n"
                   b"RCPT TO:<n@b.c> NOTIFY=NEVER\r\nRCPT TO:<p@b.c>\r\nDATA\r\n"
                   b"From: me\r\n\r\nhello\r\n.\r\nQUIT\r\n")
        self.exim(["-odq", "-bs", "-oMa", "10.1.2.3.4567", "-oMi", "10.0.0.1.25", "-oMs", "host.example"],
                  session)
        [exim_id] = self.env.exim_ids()
        data = self.env.read_exim(exim_id)
        env = Spool(self.env.spool).read(exim_id)
        self.assertEqual(spoolformat.format_header_file(env), data)
        s = env.session
        self.assertEqual((s.sender_host_address, s.sender_host_port, s.sender_host_name, s.helo_name),
                         ("10.1.2.3", 4567, "host.example", "helo.example"))
        self.assertEqual((s.interface_address, s.interface_port), ("10.0.0.1", 25))
        self.assertEqual([(r.address, r.dsn_notify, r.orcpt) for r in env.recipients],
                         [("a@b.c", "SUCCESS,DELAY", "rfc822;A@B.C"), ("n@b.c", "NEVER", None),
                          ("p@b.c", None, None)])
        self.assertEqual((env.dsn_envid, env.dsn_ret), ("abc+2Bdef", "HDRS"))
        self.assertEqual(env.headers[0].flag, "P")

    def test_reads_exim_authenticated_message(self):
        """An SMTP AUTH message: host_auth, its public name and the tainted auth lines survive a round trip."""
        main, rest = CONFIG.split("begin acl")
        config = self.env.exim.write_config(
            main.format(spool=self.env.spool) + "auth_advertise_hosts = *\nacl_smtp_mailauth = accept_all\n"
            "begin acl" + rest.split("begin routers")[0] + "begin authenticators\nplain:\n"
            "  driver = plaintext\n  public_name = PLAIN\n  server_condition = true\n"
            "  server_set_id = $auth2\n", "auth.conf")
        session = (b"EHLO helo.example\r\nAUTH PLAIN AGpvZQBzZWNyZXQ=\r\n"
                   b"MAIL FROM:<s@x.y> AUTH=<joe@x.y>\r\nRCPT TO:<a@b.c>\r\nDATA\r\n"
                   b"From: me\r\n\r\nhello\r\n.\r\nQUIT\r\n")
        out = subprocess.run([self.env.exim.binary, "-C", config, "-odq", "-bs", "-oMa", "10.1.2.3.4567"],
                             input=session, capture_output=True, timeout=60)
        self.assertIn(b"250 OK id=", out.stdout)
        [exim_id] = self.env.exim_ids()
        data = self.env.read_exim(exim_id)
        self.assertIn(b"\n-host_auth plain\n-host_auth_pubname PLAIN\n", data)
        self.assertIn(b"\n--auth_id joe\n--auth_sender <joe@x.y>\n", data)
        env = Spool(self.env.spool).read(exim_id)
        self.assertEqual((env.session.auth_mechanism, env.session.authenticated_id), ("plain", "joe"))
        self.assertEqual(spoolformat.format_header_file(env), data)

    def test_queue_listing_matches_exim(self):
        """exim_py -bp, -bpu, -bpa, -bpc on a queue Exim made print what exim4 prints."""
        self.exim(["-odq", "-f", "", "a@b.c"])
        self.exim(["-odq", "-t", "-oi", "extra@q.example", "x@y.example"],
                  b"To: x@y.example, z@w.example\nCc: c@d.example\n\nbody\n")
        self.exim(["-odq", "-f", "big@example.org", "r1@example.org", "r2@example.org"],
                  b"Subject: big\n\n" + b"x" * 70 + b"\n" * 1 + (b"y" * 99 + b"\n") * 200)
        with open(self.env.py_config, "w") as f:
            f.write(CONFIG.format(spool=self.env.spool))
        outputs = {}
        for flag in ("-bp", "-bpu", "-bpa", "-bpc"):
            theirs = self.exim([flag], b"").stdout.decode()
            ours = run_exim_py(["-C", self.env.py_config, flag])
            self.assertEqual(ours.returncode, 0, ours.stderr)
            self.assertEqual(ours.stdout, theirs, flag)
            outputs[flag] = ours.stdout
        self.assertIn("       +D extra@q.example\n", outputs["-bpa"])
        self.assertIn("K ", outputs["-bp"])   # the big message's size is shown in K
        self.assertEqual(outputs["-bpc"], "3\n")

    def test_split_spool_directory(self):
        """With split_spool_directory, both put a message in input/<c>/ and list each other's queue alike."""
        split = CONFIG.replace("keep_environment =\n", "keep_environment =\nsplit_spool_directory = true\n")
        exim_config = self.env.exim.write_config(split.format(spool=self.env.spool), "split.conf")
        with open(self.env.py_config, "w") as f:
            f.write(split.format(spool=self.env.spool))
        out = subprocess.run([self.env.exim.binary, "-C", exim_config, "-odq", "a@b.example"], input=b"x\n",
                             capture_output=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        result = run_exim_py(["-C", self.env.py_config, "-odq", "c@d.example"], input="y\n")
        self.assertEqual(result.returncode, 0, result.stderr)
        spool = Spool(self.env.spool, split=True)
        ids = list(spool.message_ids())
        self.assertEqual(len(ids), 2)
        for message_id in ids:
            self.assertTrue(os.path.exists(os.path.join(self.env.spool, "input", message_id[5], message_id + "-H")))
        theirs = subprocess.run([self.env.exim.binary, "-C", exim_config, "-bp"], capture_output=True,
                                text=True, timeout=60).stdout
        self.assertEqual(run_exim_py(["-C", self.env.py_config, "-bp"]).stdout, theirs)
        self.assertIn("c@d.example", theirs)

    def test_exim_reads_our_journal(self):
        """A delivery exim_py records (as root, in Exim's spool) shows as delivered in exim4 -bp."""
        self.exim(["-odq", "-f", "s@x.example", "one@example.org", "two@example.org"], b"x\n")
        [message_id] = self.env.exim_ids()
        Spool(self.env.spool).mark_delivered(message_id, "two@example.org")
        journal = os.path.join(self.env.spool, "input", message_id + "-J")
        self.assertEqual(os.stat(journal).st_uid, pwd.getpwnam("Debian-exim").pw_uid)
        theirs = self.exim(["-bp"], b"").stdout.decode()
        self.assertIn("          one@example.org\n        D two@example.org\n", theirs)
        with open(self.env.py_config, "w") as f:
            f.write(CONFIG.format(spool=self.env.spool))
        self.assertEqual(run_exim_py(["-C", self.env.py_config, "-bp"]).stdout, theirs)

    def test_exim_delivers_what_we_queued(self):
        """A message exim_py queued in Exim's spool is delivered by exim4 -M, unchanged."""
        mail_dir = os.path.join(self.env.exim.dir, "mail")
        os.mkdir(mail_dir)
        shutil.chown(mail_dir, "Debian-exim", "Debian-exim")
        config = CONFIG.format(spool=self.env.spool).replace("file = /dev/null", "file = %s/mbox" % mail_dir)
        exim_config = self.env.exim.write_config(config, "deliver.conf")
        with open(self.env.py_config, "w") as f:
            f.write(config)
        result = run_exim_py(["-C", self.env.py_config, "-odq", "-f", "s@x.example", "rcpt@example.org"],
                             input=MESSAGE.decode())
        self.assertEqual(result.returncode, 0, result.stderr)
        [message_id] = self.env.exim_ids()
        out = subprocess.run([self.env.exim.binary, "-C", exim_config, "-M", message_id],
                             capture_output=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        with open(os.path.join(mail_dir, "mbox"), "rb") as f:
            delivered = f.read()
        self.assertIn(b"\tid %s\n" % message_id.encode(), delivered)
        self.assertIn(b"Subject: cross check\n", delivered)
        self.assertRegex(delivered, rb"\nDate: [^\n]+\n\nbody line\n\n")
        self.assertEqual(self.env.exim_ids(), [])
        with open(os.path.join(self.env.spool, "log", "mainlog")) as f:
            self.assertIn("%s Completed" % message_id, f.read())

    def test_queue_listing_ages(self):
        """Old messages show their age in minutes, hours or days exactly as exim4 -bp shows them."""
        import time
        for _ in range(6):
            self.exim(["-odq", "a@b.example"], b"x\n")
        now = int(time.time())
        ages = (89 * 60, 95 * 60, 150 * 60, 71 * 3600, 80 * 3600, 30 * 86400)
        for message_id, age in zip(self.env.exim_ids(), ages):
            path = os.path.join(self.env.spool, "input", message_id + "-H")
            lines = self.env.read_exim(message_id).split(b"\n")
            lines[3] = b"%d 0" % (now - age)
            with open(path, "wb") as f:
                f.write(b"\n".join(lines))
        with open(self.env.py_config, "w") as f:
            f.write(CONFIG.format(spool=self.env.spool))
        theirs = self.exim(["-bp"], b"").stdout.decode()
        self.assertEqual(run_exim_py(["-C", self.env.py_config, "-bp"]).stdout, theirs)
        ages = [line[:3] for line in theirs.splitlines() if line and not line.startswith("    ")]
        self.assertEqual(ages, ["89m", " 2h", " 3h", "71h", " 3d", "30d"])

    def test_queue_listing_of_broken_files(self):
        """A -H file that cannot be parsed is listed as Exim lists it."""
        self.exim(["-odq", "a@b.c"], b"x\n")
        [message_id] = self.env.exim_ids()
        path = os.path.join(self.env.spool, "input", message_id + "-H")
        with open(self.env.py_config, "w") as f:
            f.write(CONFIG.format(spool=self.env.spool))
        for content in (b"garbage\n", self.env.read_exim(message_id)[:60]):
            with open(path, "wb") as f:
                f.write(content)
            theirs = self.exim(["-bp"], b"").stdout.decode()
            self.assertEqual(run_exim_py(["-C", self.env.py_config, "-bp"]).stdout, theirs)
            self.assertIn("*** spool format error: size=%d ***" % len(content), theirs)


class QueueListPermissionTests(TestCase):
    """Who may list the queue."""

    def test_admin_users(self):
        """queue_list_requires_admin: root, exim_user and admin_groups may list; others are refused."""
        from exim_py import config as config_module
        from exim_py.spool.listing import is_admin
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d, True)
        path = os.path.join(d, "exim.conf")
        with open(path, "w") as f:
            f.write("spool_directory = %s\nexim_user = Debian-exim\nadmin_groups = adm\n" % d)
        config = config_module.load(path)
        exim_uid = pwd.getpwnam("Debian-exim").pw_uid
        adm = __import__("grp").getgrnam("adm").gr_gid
        self.assertTrue(is_admin(config, uid=0, groups=[0]))
        self.assertTrue(is_admin(config, uid=exim_uid, groups=[]))
        self.assertTrue(is_admin(config, uid=65534, groups=[adm]))
        self.assertFalse(is_admin(config, uid=65534, groups=[65534]))
        # A user who is not an admin gets Exim's refusal (a child process that became nobody).
        os.chmod(d, 0o755)
        os.chmod(path, 0o644)
        read, write = os.pipe()
        child = os.fork()
        if child == 0:
            from exim_py import cli
            os.dup2(write, 2)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            os._exit(cli.main(["exim_py", "-C", path, "-bp"]))
        os.close(write)
        _, status = os.waitpid(child, 0)
        self.assertEqual((os.waitstatus_to_exitcode(status), os.read(read, 1000)),
                         (1, b"exim: permission denied\n"))


class QueueToolTests(TestCase):
    """Exim's exiqgrep and exipick work on a queue exim_py wrote."""

    def setUp(self):
        require_command("exiqgrep", "Debian package exim4-base")
        require_command("exipick", "Debian package exim4-base")
        self.dir = tempfile.mkdtemp(prefix="queue-tools-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.config = os.path.join(self.dir, "exim.conf")
        with open(self.config, "w") as f:
            f.write("spool_directory = %s\nqualify_domain = example.org\n" % self.dir)
        spool = Spool(self.dir)
        self.ids = []
        for i in range(100):
            env = Envelope()
            env.session.caller_name, env.session.caller_uid, env.session.caller_gid = "root", 0, 0
            env.session.received_protocol = "local"
            env.sender = "sender%d@example.org" % (i % 10)
            env.recipients = [Recipient("rcpt%d@example.net" % i), Recipient("common@example.net")]
            env.headers = [Header("Subject: message %d\n" % i)]
            env.frozen = i % 25 == 0
            if i % 2:
                env.non_recipients = {"common@example.net"}
            self.ids.append(spool.store(env, b"body %d\n" % i))
        # exiqgrep runs "<exim> -bpu -C <config>": point it at exim_py.
        self.wrapper = os.path.join(self.dir, "exim_py")
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        with open(self.wrapper, "w") as f:
            f.write("#!/bin/sh\nPYTHONPATH=%s exec %s -m exim_py \"$@\"\n" % (root, sys.executable))
        os.chmod(self.wrapper, stat.S_IRWXU)

    def exiqgrep(self, *args):
        out = subprocess.run([shutil.which("exiqgrep") or "/usr/sbin/exiqgrep", "-E", self.wrapper,
                              "-C", self.config] + list(args), capture_output=True, text=True, timeout=120)
        self.assertEqual(out.returncode, 0, out.stderr)
        return out.stdout

    def test_exiqgrep(self):
        """exiqgrep counts, selects by sender and recipient, lists ids and frozen messages."""
        self.assertIn("100 matches out of 100 messages", self.exiqgrep("-c"))
        self.assertIn("10 matches out of 100 messages", self.exiqgrep("-c", "-f", "sender3@"))
        self.assertEqual(self.exiqgrep("-i", "-r", "rcpt42@").split(), [self.ids[42]])
        self.assertEqual(sorted(self.exiqgrep("-i", "-z").split()), sorted(self.ids[::25]))
        # -bpu hides delivered recipients: common@ only on even-numbered messages.
        self.assertIn("50 matches out of 100 messages", self.exiqgrep("-c", "-r", "common@"))

    def test_exipick(self):
        """exipick reads exim_py's -H files directly."""
        exipick = shutil.which("exipick") or "/usr/sbin/exipick"
        out = subprocess.run([exipick, "--spool", self.dir, "-i"], capture_output=True, text=True, timeout=120)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(sorted(out.stdout.split()), sorted(self.ids))
        out = subprocess.run([exipick, "--spool", self.dir, "-i", "$sender_address eq sender7@example.org"],
                             capture_output=True, text=True, timeout=120)
        self.assertEqual(sorted(out.stdout.split()), sorted(self.ids[7::10]))
        out = subprocess.run([exipick, "--spool", self.dir, "-c", "-z"], capture_output=True, text=True,
                             timeout=120)
        self.assertEqual(out.stdout.strip(), "4 matches out of 100 messages")


class DaemonSpoolTests(TestCase):
    """A message the exim4 daemon received over TLS with AUTH and a client certificate."""

    def test_reads_tls_authenticated_message(self):
        """read() takes every TLS, AUTH and connection line of Exim's -H and writes the same file back."""
        from tests.support import pki
        from tests.support.exim_peer import EximPeer
        swaks = require_command("swaks", "Debian package swaks")
        certs = pki.standard()
        shutil.chown(certs.ecdsa.key_path, group="Debian-exim")
        os.chmod(certs.ecdsa.key_path, 0o640)
        peer = EximPeer(tls_certificate=certs.ecdsa.chain_path, tls_privatekey=certs.ecdsa.key_path,
                        extra="tls_verify_certificates = %s\ntls_try_verify_hosts = *\n" % certs.ca_path)
        peer.start()
        self.addCleanup(peer.stop)
        out = subprocess.run([swaks, "-s", "127.0.0.1", "-p", str(peer.port), "-tls",
                              "--tls-cert", certs.client.cert_path, "--tls-key", certs.client.key_path,
                              "--helo", "client.example", "-f", "a@b.example", "-t", "x@y.example",
                              "-au", "fred", "-ap", "secret"],
                             capture_output=True, text=True, timeout=60)
        self.assertIn("250 OK id=", out.stdout)
        spool = Spool(os.path.join(peer.dir, "spool"))
        [message_id] = list(spool.message_ids())
        with open(spool.header_path(message_id), "rb") as f:
            data = f.read()
        env = spool.read(message_id)
        self.assertEqual(spoolformat.format_header_file(env), data)
        s = env.session
        self.assertEqual((s.sender_host_address, s.helo_name, s.interface_address),
                         ("127.0.0.1", "client.example", "127.0.0.1"))
        self.assertTrue(s.tls_cipher.startswith("TLS1.3:"))
        self.assertEqual(s.tls_version, "TLS1.3")
        self.assertTrue(s.tls_certificate_verified)
        self.assertIn("CN=client.test.example", s.tls_peerdn)
        self.assertEqual((s.auth_mechanism, s.authenticated_id), ("cram", "fred"))
        self.assertIn(b"\n-host_address [127.0.0.1]:", data)
        self.assertIn(b"\n--tls_peerdn ", data)
        self.assertIn(b"\n--tls_peercert -----BEGIN CERTIFICATE-----", data)
