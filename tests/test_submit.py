"""Local submission (exim_py as sendmail): recipients, -t, -i, -f, -F, errors, acl_not_smtp."""

import contextlib
import io
import os
import shutil
import tempfile

from twisted.trial.unittest import TestCase

from exim_py import cli
from exim_py import config as config_module
from exim_py.delivery.submit import Caller, read_message, submit
from exim_py.spool import Spool
from tests.support.peers import run_exim_py

BASE_CONFIG = """\
spool_directory = {dir}/spool
log_file_path = {dir}/log/%slog
qualify_domain = example.org
primary_hostname = mx.example.org
{extra}
"""


class SubmitTests(TestCase):
    """What a local submission leaves on the queue and in the logs."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="submit-test-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def config(self, extra=""):
        path = os.path.join(self.dir, "exim.conf")
        with open(path, "w") as f:
            f.write(BASE_CONFIG.format(dir=self.dir, extra=extra))
        return path

    def submit(self, args, data, extra="", uid=None):
        """Run submit() in this process; returns (status, stderr, [envelopes])."""
        path = self.config(extra)
        inv = cli.parse_args(["-C", path, "-odq"] + args)
        config = config_module.load(path)
        caller = Caller(config, uid=uid, gid=uid) if uid is not None else None
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            status = submit(inv, config, stdin=io.BytesIO(data), caller=caller)
        spool = Spool(os.path.join(self.dir, "spool"))
        return status, err.getvalue(), [spool.read(i) for i in spool.message_ids()]

    def mainlog(self):
        with open(os.path.join(self.dir, "log", "mainlog")) as f:
            return f.read()

    def test_command_line_queues_message(self):
        """`echo test | exim_py -C conf -odq user@localhost` leaves a complete message and logs <=."""
        path = self.config()
        result = run_exim_py(["-C", path, "-odq", "user@localhost"], input="test\n")
        self.assertEqual((result.returncode, result.stderr), (0, ""))
        spool = Spool(os.path.join(self.dir, "spool"))
        [message_id] = list(spool.message_ids())
        env = spool.read(message_id)
        self.assertEqual(env.sender, "root@example.org")
        self.assertEqual([r.address for r in env.recipients], ["user@localhost"])
        self.assertEqual([h.name for h in env.headers], ["Received", "Message-Id", "From", "Date"])
        self.assertEqual(spool.read_body(message_id), b"test\n")
        self.assertRegex(self.mainlog(), r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d %s <= root@example.org U=root "
                                         r"P=local S=\d+\n$" % message_id)
        with open(os.path.join(self.dir, "spool", "msglog", message_id)) as f:
            self.assertRegex(f.read(), r" Received from root@example.org U=root P=local S=\d+\n$")
        listing = run_exim_py(["-C", path, "-bp"])
        self.assertIn("%s <root@example.org>\n          user@localhost\n" % message_id, listing.stdout)

    def test_default_configuration(self):
        """With the project's etc/exim.conf, `echo test | exim_py -odq user@localhost` queues the message."""
        conf = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "etc", "exim.conf")
        result = run_exim_py(["-C", conf, "-DEXIM_PY_VAR=%s" % self.dir, "-odq", "user@localhost"],
                             input="test\n")
        self.assertEqual((result.returncode, result.stderr), (0, ""))
        spool = Spool(os.path.join(self.dir, "spool"))
        [message_id] = list(spool.message_ids())
        env = spool.read(message_id)
        self.assertEqual([r.address for r in env.recipients], ["user@localhost"])
        self.assertEqual(spool.read_body(message_id), b"test\n")
        listing = run_exim_py(["-C", conf, "-DEXIM_PY_VAR=%s" % self.dir, "-bp"])
        self.assertIn(" %s <%s>\n          user@localhost\n" % (message_id, env.sender), listing.stdout)

    def test_dot_ends_message_unless_i(self):
        """A line holding only "." ends the message, except with -i / -oi."""
        self.assertEqual(read_message(io.BytesIO(b"a\n.\nb\n"), True), b"a\n")
        self.assertEqual(read_message(io.BytesIO(b"a\n.\nb\n"), False), b"a\n.\nb\n")
        self.assertEqual(read_message(io.BytesIO(b"a\r\nb\rc\r\n"), False), b"a\nb\nc\n")
        status, _, [env] = self.submit(["-oi", "a@b.example"], b"Subject: x\n\none\n.\ntwo\n")
        self.assertEqual(env.body_linecount, 3)

    def test_recipient_arguments(self):
        """Arguments may hold several comma-separated addresses; unqualified ones get qualify_domain."""
        status, _, [env] = self.submit(["a@b.example,c@d.example", "local"], b"x\n")
        self.assertEqual([r.address for r in env.recipients], ["a@b.example", "c@d.example", "local@example.org"])

    def test_extract_recipients(self):
        """-t takes To:/Cc:/Bcc:, keeps Bcc: only as deleted, and sends the command-line ones to the tree."""
        status, _, [env] = self.submit(["-t", "x@y.example"],
                                       b"To: x@y.example, z@w.example\nBcc: hidden@example.net\n\nb\n")
        self.assertEqual(status, 0)
        self.assertEqual([r.address for r in env.recipients], ["z@w.example", "hidden@example.net"])
        self.assertEqual(env.non_recipients, {"x@y.example"})
        self.assertEqual([h.flag for h in env.headers if h.name == "Bcc"], ["*"])

    def test_trusted_sender(self):
        """A trusted caller's -f sets the sender; no From: name is taken from the password file."""
        status, _, [env] = self.submit(["-f", "someone@x.example", "a@b.example"], b"x\n")
        self.assertEqual(env.sender, "someone@x.example")
        self.assertIn("From: someone@x.example\n", [h.text for h in env.headers])
        self.assertNotIn("local", env.flags)
        self.assertIsNone(env.session.authenticated_id)

    def test_full_name(self):
        """-F gives the From: name, quoted when it has special characters."""
        status, _, [env] = self.submit(["-F", "Joe Q. Public", "a@b.example"], b"x\n")
        self.assertIn('From: "Joe Q. Public" <root@example.org>\n', [h.text for h in env.headers])
        self.assertEqual(env.session.authenticated_id, "root")
        self.assertEqual(env.auth_sender, "root@example.org")

    def test_untrusted_sender_is_ignored(self):
        """An untrusted caller's -f is ignored, except -f <>; a From: not theirs gets a Sender:."""
        status, _, [env] = self.submit(["-f", "boss@example.org", "a@b.example"],
                                       b"From: boss@example.org\nSender: fake@x\n\nb\n", uid=65534)
        self.assertEqual(env.sender, "nobody@example.org")
        live = [(h.flag, h.text) for h in env.headers if h.flag != "*"]
        self.assertIn(("S", "Sender: nobody <nobody@example.org>\n"), live)
        self.assertIn(("*", "Sender: fake@x\n"), [(h.flag, h.text) for h in env.headers])
        shutil.rmtree(os.path.join(self.dir, "spool"))
        status, _, [env] = self.submit(["-f", "<>", "a@b.example"], b"x\n", uid=65534)
        self.assertEqual(env.sender, "")

    def test_untrusted_set_sender(self):
        """untrusted_set_sender lets an untrusted caller choose a sender; -bp then shows the login."""
        status, _, [env] = self.submit(["-f", "nobody-list@example.org", "a@b.example"],
                                       b"From: nobody@example.org\n\nb\n", uid=65534,
                                       extra="untrusted_set_sender = ^nobody-")
        self.assertEqual(env.sender, "nobody-list@example.org")
        self.assertIn("sender_set_untrusted", env.flags)
        listing = run_exim_py(["-C", os.path.join(self.dir, "exim.conf"), "-bp"])
        self.assertIn("<nobody-list@example.org> (nobody)\n", listing.stdout)

    def test_uucp_from_line(self):
        """A leading "From sender date" line from a trusted caller sets the sender and is removed."""
        status, _, [env] = self.submit(["a@b.example"],
                                       b"From fred@x.example Fri Jan  5 12:55 GMT 1997\nSubject: s\n\nb\n")
        self.assertEqual(env.sender, "fred@x.example")
        self.assertEqual(env.headers[1].text, "Subject: s\n")
        self.assertEqual(env.max_received_linelength, len("From fred@x.example Fri Jan  5 12:55 GMT 1997"))

    def test_message_id_options(self):
        """message_id_header_text and _domain shape a created Message-ID:, bad characters made hyphens."""
        status, _, [env] = self.submit(["a@b.example"], b"x\n",
                                       extra="message_id_header_text = t:1 x\n"
                                             "message_id_header_domain = ${lc:EX_AMPLE.org}\n")
        [mid] = [h.text for h in env.headers if h.flag == "I"]
        self.assertEqual(mid, "Message-Id: <E%s.t-1-x@ex-ample.org>\n" % env.message_id)

    def test_no_recipients(self):
        """No recipients: logged with the id; -oep tells stderr (status 1), -oee mails and exits 0."""
        status, err, envs = self.submit(["-t", "-oep"], b"Subject: x\n\nb\n")
        self.assertEqual((status, err, envs), (1, "exim: no recipients in message\n", []))
        self.assertRegex(self.mainlog(), r" (\S+) \1 no recipients found in headers\n$")
        status, err, envs = self.submit(["-t", "-oee"], b"Subject: x\n\nb\n", extra="queue_only = true")
        self.assertEqual((status, err, len(envs)), (0, "", 1))

    def test_error_message_to_sender(self):
        """By default (-oem) the sender is mailed Exim's error message, from <>, with a copy of the message."""
        status, err, [env] = self.submit(["-t"], b"Subject: x\n\nbody text\n", extra="queue_only = true")
        self.assertEqual((status, err), (1, ""))
        self.assertEqual((env.sender, [r.address for r in env.recipients]), ("", ["root@example.org"]))
        texts = [h.text for h in env.headers]
        self.assertEqual(texts[1:4], ["Auto-Submitted: auto-replied\n",
                                      "From: Mail Delivery System <Mailer-Daemon@example.org>\n",
                                      "To: root@example.org\n"])
        self.assertRegex(texts[4], r"^References: <E\S+@mx.example.org>\n$")
        self.assertEqual(texts[5], "Subject: Mail failure - no recipient addresses\n")
        body = Spool(os.path.join(self.dir, "spool")).read_body(env.message_id)
        self.assertTrue(body.startswith(b"A message that you sent contained no recipient addresses, and therefore "
                                        b"no\ndelivery could be attempted.\n\n------ This is a copy of your "
                                        b"message, including all the headers. ------\n\nSubject: x\n"))
        self.assertTrue(body.endswith(b"\n\nbody text\n"))

    def test_message_too_big(self):
        """Over message_size_limit: refused with Exim's log and standard error texts, nothing queued."""
        status, err, envs = self.submit(["a@b.example"], b"Subject: big\n\n" + b"x" * 2000 + b"\n",
                                        extra="message_size_limit = 1K")
        self.assertEqual((status, err, envs), (1, "exim: message rejected: message too big (max=1024)\n", []))
        self.assertRegex(self.mainlog(), r" \S{16} rejected from <root@example.org> U=root: message too big: "
                                         r"read=1025 max=1024\n$")

    def test_bad_recipient(self):
        """A malformed recipient refuses the whole message with Exim's reason."""
        status, err, envs = self.submit(["-oep", "bad address<", "good@example.org"], b"x\n")
        self.assertEqual((status, err, envs),
                         (1, 'exim: bad recipient address "bad address<": missing or malformed local part\n', []))
        status, err, [env] = self.submit(["x@"], b"Subject: s\n\nb\n", extra="queue_only = true")
        body = Spool(os.path.join(self.dir, "spool")).read_body(env.message_id)
        self.assertIn(b"constructed:\n\n  x@  domain missing or malformed\n\nThe message has not been "
                      b"delivered to any recipients.\n\n", body)
        self.assertTrue(body.endswith(b"------\n\n\nSubject: s\n\nb\n"))

    def test_acl_not_smtp_rejects(self):
        """acl_not_smtp can refuse a message: nothing is queued, the reject log has it."""
        extra = ("acl_not_smtp = check\nbegin acl\ncheck:\n  deny message = no way\n"
                 "       log_message = logged reason\n  accept\n")
        status, err, envs = self.submit(["-oep", "a@b.example"], b"Subject: x\n\nb\n", extra=extra)
        self.assertEqual((status, err, envs), (1, "exim: message rejected by non-SMTP ACL: no way\n", []))
        self.assertIn("F=<root@example.org> rejected by non-SMTP ACL: logged reason", self.mainlog())
        with open(os.path.join(self.dir, "log", "rejectlog")) as f:
            reject = f.read()
        self.assertIn("Envelope-from: <root@example.org>\nEnvelope-to: <a@b.example>\nP Received: ", reject)

    def test_acl_not_smtp_start_suppresses_fixups(self):
        """control = suppress_local_fixups in acl_not_smtp_start: no Message-Id:, From: or Date: is added."""
        extra = ("acl_not_smtp_start = start\nacl_not_smtp = ns\nbegin acl\nstart:\n"
                 "  accept control = suppress_local_fixups\n          add_header = X-Start: yes\n"
                 "ns:\n  accept add_header = X-NS: yes\n")
        status, err, [env] = self.submit(["a@b.example"], b"Subject: s\n\nb\n", extra=extra)
        # As exim4 gives it: Received:, the message's header, then the ACLs' additions in order.
        self.assertEqual([h.text for h in env.headers][1:], ["Subject: s\n", "X-Start: yes\n", "X-NS: yes\n"])

    def test_acl_not_smtp_variables(self):
        """Message variables set by acl_not_smtp are stored in the -H file."""
        extra = "acl_not_smtp = check\nbegin acl\ncheck:\n  warn set acl_m_foo = bar\n  accept\n"
        status, err, [env] = self.submit(["a@b.example"], b"x\n", extra=extra)
        self.assertEqual(env.acl_m, {"acl_m_foo": "bar"})


class DeliveryModeTests(TestCase):
    """-odi delivers before exim_py returns; -odq only queues."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="submit-odi-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.config = os.path.join(self.dir, "exim.conf")
        # Deliveries never run as root (never_users): the mailbox belongs to nobody.
        os.chmod(self.dir, 0o755)
        mail = os.path.join(self.dir, "mail")
        os.mkdir(mail)
        os.chmod(mail, 0o1777)
        with open(self.config, "w") as f:
            f.write(BASE_CONFIG.format(dir=self.dir, extra="") +
                    "begin routers\nr1:\n  driver = accept\n  transport = t1\n"
                    "begin transports\nt1:\n  driver = appendfile\n  file = %s/mbox\n"
                    "  user = nobody\n" % mail)

    def test_odi_delivers_at_once(self):
        """With -odi the message is in the mailbox and off the queue when exim_py exits."""
        result = run_exim_py(["-C", self.config, "-odi", "u@example.org"], input="Subject: now\n\nbody\n")
        self.assertEqual((result.returncode, result.stderr), (0, ""))
        with open(os.path.join(self.dir, "mail", "mbox")) as f:
            self.assertIn("Subject: now\n", f.read())
        self.assertEqual(list(Spool(os.path.join(self.dir, "spool")).message_ids()), [])
        with open(os.path.join(self.dir, "log", "mainlog")) as f:
            self.assertEqual([line.split()[3] for line in f], ["<=", "=>", "Completed"])

    def test_mua_wrapper_delivers_despite_queue_only(self):
        """mua_wrapper delivers at once, whatever queue_only and -odq say."""
        with open(self.config) as f:
            text = f.read()
        with open(self.config, "w") as f:
            f.write("mua_wrapper\nqueue_only\n" + text)
        result = run_exim_py(["-C", self.config, "-odq", "u@example.org"], input="Subject: now\n\nb\n")
        self.assertEqual(result.returncode, 0)
        with open(os.path.join(self.dir, "mail", "mbox")) as f:
            self.assertIn("Subject: now\n", f.read())

    def test_odq_only_queues(self):
        """With -odq nothing is delivered."""
        run_exim_py(["-C", self.config, "-odq", "u@example.org"], input="x\n")
        self.assertFalse(os.path.exists(os.path.join(self.dir, "mail", "mbox")))
        self.assertEqual(len(list(Spool(os.path.join(self.dir, "spool")).message_ids())), 1)


class ArgvZeroTests(TestCase):
    """The names exim_py answers to."""

    def test_newaliases(self):
        """newaliases (-bi) does nothing and succeeds when bi_command is unset, as Exim."""
        d = tempfile.mkdtemp()
        path = os.path.join(d, "exim.conf")
        with open(path, "w") as f:
            f.write("spool_directory = %s\n" % d)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            self.assertEqual(cli.main(["newaliases", "-C", path]), 0)
        self.assertEqual(out.getvalue(), "")

    def test_mailq(self):
        """mailq lists the queue (-bp)."""
        d = tempfile.mkdtemp()
        path = os.path.join(d, "exim.conf")
        with open(path, "w") as f:
            f.write("spool_directory = %s\nlog_file_path = %s/%%slog\n" % (d, d))
        run_exim_py(["-C", path, "-odq", "-f", "s@x.example", "r@y.example"], input="hello\n")
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            self.assertEqual(cli.main(["mailq", "-C", path]), 0)
        self.assertRegex(out.getvalue(), r"^ 0m +\d+ \S{16} <s@x.example>\n          r@y.example\n\n$")


class QueueSmtpSubmitTests(TestCase):
    """-odqs: route at submission, deliver locally, leave SMTP queued."""

    def test_odi_odqs_local_delivered_remote_queued(self):
        """`exim_py -odi -odqs local remote`: the local address is delivered
        in the foreground, the remote one is deferred with Exim's text
        without any connection, and the message waits for its host."""
        import socket
        listener = socket.socket()
        self.addCleanup(listener.close)
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(0)
        port = listener.getsockname()[1]
        work = tempfile.mkdtemp(prefix="submit-odqs-")
        self.addCleanup(shutil.rmtree, work, True)
        # The local delivery runs as nobody (root is a fixed never_user).
        os.chmod(work, 0o755)
        os.makedirs(os.path.join(work, "mail"))
        os.chmod(os.path.join(work, "mail"), 0o777)
        path = os.path.join(work, "exim.conf")
        with open(path, "w") as f:
            f.write(BASE_CONFIG.format(dir=work, extra="") + (
                "begin routers\nlocal:\n  driver = accept\n  domains = example.org\n"
                "  transport = file\nremote:\n  driver = manualroute\n"
                "  route_list = * 127.0.0.1::%d\n  self = send\n  transport = smtp\n"
                "begin transports\nfile:\n  driver = appendfile\n"
                "  file = %s/mail/$local_part\n  create_file = anywhere\n  user = nobody\n"
                "smtp:\n  driver = smtp\n  hosts_try_fastopen = :\n" % (port, work)))
        result = run_exim_py(["-C", path, "-odi", "-odqs", "user@example.org",
                              "far@remote.example"], input="Subject: t\n\nbody\n")
        self.assertEqual((result.returncode, result.stderr), (0, ""))
        with open(os.path.join(work, "mail", "user")) as f:
            self.assertIn("body", f.read())
        with open(os.path.join(work, "log", "mainlog")) as f:
            log = f.read()
        self.assertIn("== far@remote.example R=remote T=smtp defer (0): "
                      "SMTP delivery explicitly queued", log)
        spool = Spool(os.path.join(work, "spool"))
        [message_id] = list(spool.message_ids())
        with open(os.path.join(work, "spool", "db", "wait-smtp-127.0.0.1:%d" % port)) as f:
            self.assertEqual(f.read(), message_id + "\n")
        self.assertRaises(BlockingIOError, listener.accept)
