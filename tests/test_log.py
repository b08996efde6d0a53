"""The logs: file names, line format, log_selector, the <= line, rotation, threads."""

import os
import re
import socket
import tempfile
import threading
import time

from twisted.trial.unittest import SkipTest, TestCase

from exim_py.envelope import Envelope, Header, Recipient, Session
from exim_py.errors import ConfigError
from exim_py.log import (SELECTORS, Logger, file_name, log_paths, parse_selector, printing,
                         received_line)

FIXED_TIME = 1795282727.25
STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ")


def smtp_envelope():
    s = Session()
    s.sender_host_address, s.sender_host_port = "10.1.2.3", 4567
    s.sender_host_name, s.helo_name = "host.name.example", "helo.example"
    s.received_protocol = "esmtpsa"
    s.tls_cipher = "TLS1.3:ECDHE_X25519__RSA_PSS_RSAE_SHA256__AES_256_GCM:256"
    s.tls_peerdn = 'CN=x "y"'
    s.auth_mechanism, s.authenticated_id = "plain", "joe"
    s.interface_address, s.interface_port = "10.0.0.1", 25
    s.local = False
    env = Envelope(s)
    env.sender = "s@x.y"
    env.recipients = [Recipient("a@b.c"), Recipient("d@e.f")]
    env.headers = [Header("Subject: hello \"there\"\n\tfolded\n"), Header("Message-ID: <abc@d>\n", "I")]
    env.size = 220
    return env


def keep_timezone(testcase):
    """Put TZ back as it was once ``testcase`` is over."""
    saved = os.environ.get("TZ")

    def restore():
        if saved is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = saved
        time.tzset()
    testcase.addCleanup(restore)


class SelectorTests(TestCase):
    """log_selector parsing."""

    def test_defaults(self):
        """Without log_selector, Exim's default set is on (msg_id, tls_cipher ...), others off."""
        sel = parse_selector(None)
        for name in ("msg_id", "tls_cipher", "tls_certificate_verified", "queue_run", "size_reject",
                     "retry_defer", "rejected_header"):
            self.assertIn(name, sel)
        for name in ("subject", "received_recipients", "smtp_connection", "tls_peerdn", "pid"):
            self.assertNotIn(name, sel)

    def test_plus_minus_all(self):
        """+name and -name adjust the defaults; +all and -all set or clear everything, in order."""
        self.assertEqual(parse_selector("+all"), frozenset(SELECTORS))
        self.assertEqual(parse_selector("-all +subject"), frozenset({"subject"}))
        sel = parse_selector("+smtp_connection -msg_id")
        self.assertIn("smtp_connection", sel)
        self.assertNotIn("msg_id", sel)

    def test_settings_without_spaces(self):
        """"+a+b" is two settings, as Exim reads names up to a non-word character."""
        sel = parse_selector("+incoming_interface+incoming_port -msg_id")
        self.assertIn("incoming_interface", sel)
        self.assertIn("incoming_port", sel)
        self.assertNotIn("msg_id", sel)

    def test_unknown_name(self):
        """An unknown selector is Exim's configuration error."""
        e = self.assertRaises(ConfigError, parse_selector, "+connection_id", "/etc/x.conf", 7)
        self.assertEqual(str(e), "configuration error in line 7 of /etc/x.conf:\n"
                                 "  unknown log_selector setting: +connection_id")


class PathTests(TestCase):
    """log_file_path."""

    def test_default_is_spool_log(self):
        """Unset or empty, the logs go to <spool>/log/%slog."""
        self.assertEqual(log_paths(None, "/s"), (["/s/log/%slog"], False))
        self.assertEqual(log_paths("", "/s"), (["/s/log/%slog"], False))
        self.assertEqual(log_paths(":syslog", "/s"), (["/s/log/%slog"], True))
        self.assertEqual(log_paths("syslog", "/s"), ([], True))

    def test_datestamps(self):
        """%D and %M are dates in main and reject log names and vanish from the panic log's."""
        now = 1795282727
        self.assertEqual(file_name("/var/log/exim/%slog-%D", "main", now), "/var/log/exim/mainlog-20261121")
        self.assertEqual(file_name("/var/log/exim-%s-%D.log", "reject", now), "/var/log/exim-reject-20261121.log")
        self.assertEqual(file_name("/var/log/exim/%s.%M", "main", now), "/var/log/exim/main.202611")
        # The spec's four examples for the panic log.
        self.assertEqual(file_name("/var/spool/exim/log/%slog-%D", "panic"), "/var/spool/exim/log/paniclog")
        self.assertEqual(file_name("/var/log/exim-%s-%D.log", "panic"), "/var/log/exim-panic.log")
        self.assertEqual(file_name("/var/spool/exim/log/%D-%slog", "panic"), "/var/spool/exim/log/paniclog")
        self.assertEqual(file_name("/var/log/exim/%s.%M", "panic"), "/var/log/exim/panic")


class LoggerTests(TestCase):
    """Writing the logs."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="log-test-")
        self.path = os.path.join(self.dir, "%slog")

    def read(self, which):
        with open(os.path.join(self.dir, which + "log")) as f:
            return f.read()

    def test_line_format(self):
        """Lines start with the local time stamp, then the message id when there is one."""
        logger = Logger(log_file_path=self.path, log_selector="", clock=lambda: FIXED_TIME)
        logger.main("Start queue run: pid=1")
        logger.main("<= a@b U=x P=local S=1", message_id="1xUp31-0001tl-03")
        lines = self.read("main").splitlines()
        self.assertTrue(STAMP.match(lines[0]))
        self.assertTrue(lines[0].endswith(" Start queue run: pid=1"))
        self.assertRegex(lines[1], r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d 1xUp31-0001tl-03 <= a@b U=x P=local S=1$")

    def test_timezone_option(self):
        """timezone = sets TZ for the log's time stamps (and every other one)."""
        from exim_py import config as config_module
        keep_timezone(self)
        path = os.path.join(self.dir, "exim.conf")
        with open(path, "w") as f:
            f.write("spool_directory = %s\nlog_file_path = %s\ntimezone = Asia/Kolkata\n" % (self.dir, self.path))
        logger = Logger(config_module.load(path), clock=lambda: 1795282727)
        logger.main("x")
        self.assertEqual(self.read("main"), "2026-11-21 23:08:47 x\n")   # 17:38:47 UTC + 5:30

    def test_millisec_and_pid(self):
        """+millisec adds .mmm and +pid adds [pid] after the time, as Exim."""
        logger = Logger(log_file_path=self.path, log_selector="+millisec +pid", clock=lambda: FIXED_TIME)
        logger.main("x")
        self.assertRegex(self.read("main"), r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.250 \[%d\] x\n$" % os.getpid())

    def test_time_stamps_follow_the_clock(self):
        """Each line carries its own second and milliseconds, and a change of
        TZ between lines is seen at once (the per-second stamp is reused only
        for the same second in the same zone)."""
        keep_timezone(self)
        os.environ["TZ"] = "UTC"
        time.tzset()
        now = [1795282727.25]
        logger = Logger(log_file_path=self.path, log_selector="+millisec", clock=lambda: now[0])
        for t in (1795282727.25, 1795282727.75, 1795282728.5):
            now[0] = t
            logger.main("x")
        os.environ["TZ"] = "Asia/Kolkata"
        time.tzset()
        logger.main("y")
        self.assertEqual(self.read("main"), "2026-11-21 17:38:47.250 x\n2026-11-21 17:38:47.750 x\n"
                         "2026-11-21 17:38:48.500 x\n2026-11-21 23:08:48.500 y\n")

    def test_reject_log_has_headers(self):
        """A rejection goes to mainlog and, with the envelope and flagged headers, to rejectlog."""
        logger = Logger(log_file_path=self.path, log_selector="")
        env = smtp_envelope()
        logger.reject("H=[10.1.2.3] F=<s@x.y> rejected after DATA: spam", headers=env.headers,
                      sender="s@x.y", recipients=env.recipients)
        self.assertIn("rejected after DATA: spam", self.read("main"))
        lines = self.read("reject").splitlines()
        self.assertTrue(lines[0].endswith("H=[10.1.2.3] F=<s@x.y> rejected after DATA: spam"))
        self.assertEqual(lines[1:], ["Envelope-from: <s@x.y>", "Envelope-to: <a@b.c>", "Envelope-to: <d@e.f>",
                                     '  Subject: hello "there"', "\tfolded", "I Message-ID: <abc@d>"])

    def test_main_then_reject_is_one_main_line(self):
        """main(line) then reject(line) (Exim's LOG_MAIN|LOG_REJECT in two calls) writes mainlog once."""
        logger = Logger(log_file_path=self.path, log_selector="")
        logger.main("H=[10.0.0.1] rejected RCPT <a@b>", message_id=None)
        logger.reject("H=[10.0.0.1] rejected RCPT <a@b>")
        logger.reject("H=[10.0.0.1] rejected RCPT <a@b>")
        self.assertEqual(self.read("main").count("rejected RCPT"), 2)
        self.assertEqual(self.read("reject").count("rejected RCPT"), 2)

    def test_panic_goes_to_both(self):
        """A panic is written to the panic log and the main log."""
        logger = Logger(log_file_path=self.path, log_selector="")
        logger.panic("something broke")
        self.assertIn("something broke", self.read("panic"))
        self.assertIn("something broke", self.read("main"))

    def test_reopens_after_rotation(self):
        """After the log is renamed (cycled), the next line goes to a new file of the old name."""
        logger = Logger(log_file_path=self.path, log_selector="")
        logger.main("before")
        os.rename(os.path.join(self.dir, "mainlog"), os.path.join(self.dir, "mainlog.0"))
        logger.main("after")
        self.assertIn("before", open(os.path.join(self.dir, "mainlog.0")).read())
        self.assertNotIn("after", open(os.path.join(self.dir, "mainlog.0")).read())
        self.assertIn("after", self.read("main"))

    def test_threads_never_interleave(self):
        """Lines written from many threads at once arrive whole."""
        logger = Logger(log_file_path=self.path, log_selector="")

        def work(n):
            for i in range(300):
                logger.main("thread %d line %d %s" % (n, i, "x" * 200))

        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        lines = self.read("main").splitlines()
        self.assertEqual(len(lines), 2400)
        self.assertTrue(all(re.search(r" thread \d line \d+ x{200}$", line) for line in lines))


class ReceivedLineTests(TestCase):
    """The <= line."""

    def logger(self, selector=""):
        return Logger(log_file_path=os.path.join(tempfile.mkdtemp(), "%slog"), log_selector=selector)

    def test_default_fields(self):
        """Default selectors: H= (name, helo, ip), P=, X=, CV=, A=, S=, id=, in Exim's order."""
        line = received_line(smtp_envelope(), self.logger())
        self.assertEqual(line, "<= s@x.y H=host.name.example (helo.example) [10.1.2.3] P=esmtpsa "
                               "X=TLS1.3:ECDHE_X25519__RSA_PSS_RSAE_SHA256__AES_256_GCM:256 CV=no "
                               "A=plain:joe S=220 id=abc@d")

    def test_all_fields(self):
        """+all adds I=, the port, DN=, M8S=, RT=, T= (escaped), from and for, in Exim's order."""
        env = smtp_envelope()
        env.received_time = 100.0
        env.spool_extra["received_time_complete"] = "100.25"
        line = received_line(env, self.logger("+all"))
        self.assertEqual(line, "<= s@x.y H=host.name.example (helo.example) [10.1.2.3]:4567 "
                               "I=[10.0.0.1]:25 P=esmtpsa "
                               "X=TLS1.3:ECDHE_X25519__RSA_PSS_RSAE_SHA256__AES_256_GCM:256 CV=no "
                               'DN="CN=x \\"y\\"" A=plain:joe S=220 M8S=0 RT=0.250s id=abc@d '
                               'T="hello \\"there\\"\\n\tfolded" from <s@x.y> for a@b.c d@e.f')

    def test_local_message(self):
        """A local message: the null sender as <>, U=, P=local, no H=."""
        env = Envelope()
        env.sender = ""
        env.session.sender_ident = "root"
        env.session.received_protocol = "local"
        env.size = 226
        self.assertEqual(received_line(env, self.logger()), "<= <> U=root P=local S=226")

    def test_created_message_id(self):
        """A Message-ID exim_py made is logged only with msg_id_created, as id*=."""
        env = Envelope()
        env.sender = "a@b"
        env.session.received_protocol = "local"
        env.headers = [Header("Message-Id: <E1xUp31-0001tl-03@mx>\n", "I")]
        env.flags.add("message_id_created")
        env.size = 1
        self.assertEqual(received_line(env, self.logger()), "<= a@b P=local S=1")
        self.assertEqual(received_line(env, self.logger("+msg_id_created")),
                         "<= a@b P=local S=1 id*=E1xUp31-0001tl-03@mx")

    def test_printing(self):
        """Control characters are shown as C escapes and a tab stays a tab, as
        Exim's string_printing does; bytes above 127 are octal escapes unless
        print_topbitchars is on."""
        self.assertEqual(printing("a\x01b\tc\n\x7f"), "a\\001b\tc\\n\\177")
        self.assertEqual(printing("\u00e9\udce9"), "\\303\\251\\351")
        self.assertEqual(printing("\u00e9\udce9", topbit=True), "\u00e9\udce9")


class SyslogTests(TestCase):
    """log_file_path = syslog: lines go to the system log, split as Exim splits them."""

    def setUp(self):
        if os.path.exists("/dev/log"):
            raise SkipTest("a system logger owns /dev/log; this test listens there itself")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self.sock.bind("/dev/log")
        except OSError as e:
            raise SkipTest("cannot listen on /dev/log: %s" % e)
        self.addCleanup(os.unlink, "/dev/log")
        self.addCleanup(self.sock.close)
        self.sock.settimeout(10)

    def receive(self, count):
        return [self.sock.recv(65536).decode() for _ in range(count)]

    def test_main_reject_and_split_lines(self):
        """Main lines at LOG_MAIL|LOG_INFO; reject log lines split at newlines as [n\\m]; long lines as [n/m]."""
        logger = Logger(log_file_path="syslog", log_selector="", clock=lambda: FIXED_TIME)
        logger.main("hello syslog", message_id="1xUp31-0001tl-03")
        [line] = self.receive(1)
        self.assertRegex(line, r"^<22>.*exim\[%d\]: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d "
                               r"1xUp31-0001tl-03 hello syslog$" % os.getpid())
        logger.reject("rejected", headers=[Header("Subject: s\n")], sender="a@b")
        main, first, second, third = self.receive(4)
        self.assertTrue(main.startswith("<22>") and main.endswith(" rejected"))
        self.assertTrue(first.startswith("<21>") and first.endswith(" rejected"))
        self.assertIn("[1/3] ", first)
        self.assertTrue(second.endswith("[2\\3] Envelope-from: <a@b>"))
        self.assertTrue(third.endswith("[3\\3]   Subject: s"))
        logger.main("x" * 1000)
        parts = self.receive(2)
        self.assertIn("[1/2] ", parts[0])
        self.assertIn("[2/2] ", parts[1])


class MainManyTests(TestCase):
    """Logger.main_many: several main log lines in one write, through the same
    output as main() (a subclass that redirects the lines gets them all)."""

    def test_one_write_to_the_file(self):
        """Both lines reach the main log, each with its timestamp and id."""
        directory = self.mktemp()
        os.makedirs(directory)
        logger = Logger(log_file_path=os.path.join(directory, "%slog"), log_selector="")
        logger.main_many([("<= a@x", "1xUzHW-018SZz-1v"), ("<= b@x", None)])
        with open(os.path.join(directory, "mainlog")) as f:
            lines = f.read().splitlines()
        self.assertEqual(len(lines), 2)
        self.assertRegex(lines[0], r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d 1xUzHW-018SZz-1v <= a@x$")
        self.assertRegex(lines[1], r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d <= b@x$")

    def test_host_check_logger_shows_them(self):
        """Under -bh nothing reaches a file: each line is shown as LOG:."""
        import io
        from exim_py.smtp.stdio import host_check_logger
        stream = io.StringIO()
        host_check_logger(None, stream).main_many([("a", None), ("b", "1xUzHW-018SZz-1v")])
        self.assertEqual(stream.getvalue(), "LOG: a\nLOG: 1xUzHW-018SZz-1v b\n")
