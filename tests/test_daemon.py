"""The daemon: listening addresses, -bdf with a pid file, signals, connection
limits, the twistd plugin, and crash safety (SIGKILL never loses a message
that was acknowledged).
"""

import os
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time

from twisted.application import service
from twisted.internet import defer, reactor, threads
from twisted.trial import unittest

from exim_py.cli import parse_args
from exim_py.daemon import listen_addresses, split_list, started_line
from exim_py.smtp.server import SMTPServerFactory
from exim_py.spool import Spool
from tests.test_smtp_server import make_config, make_policy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ListenAddressTests(unittest.TestCase):
    """daemon_smtp_ports, local_interfaces, tls_on_connect_ports and -oX (spec "Starting the daemon")."""

    def addresses(self, extra, override=None):
        config, _ = make_config(self, extra)
        return listen_addresses(config, override)

    def test_ports_times_interfaces(self):
        """Each interface without its own port listens on every daemon_smtp_ports port."""
        got = self.addresses("daemon_smtp_ports = 2525 : 2526\nlocal_interfaces = 127.0.0.1 : 127.0.0.2")
        self.assertEqual(got, [("127.0.0.1", 2525, False), ("127.0.0.1", 2526, False),
                               ("127.0.0.2", 2525, False), ("127.0.0.2", 2526, False)])

    def test_interface_port_syntaxes(self):
        """'address.port' and '[address]:port' both give an interface its own port."""
        got = self.addresses("local_interfaces = <; 127.0.0.1.2600 ; [127.0.0.2]:2601 ; ::1.2602")
        self.assertEqual(got, [("127.0.0.1", 2600, False), ("127.0.0.2", 2601, False), ("::1", 2602, False)])

    def test_ox_port_only_overrides_ports(self):
        """-oX 1225 replaces daemon_smtp_ports and keeps local_interfaces."""
        got = self.addresses("local_interfaces = 127.0.0.1", "1225")
        self.assertEqual(got, [("127.0.0.1", 1225, False)])

    def test_ox_address_overrides_interfaces(self):
        """-oX with an address replaces local_interfaces."""
        got = self.addresses("daemon_smtp_ports = 25", "<; 127.0.0.3.1125 ; 127.0.0.4")
        self.assertEqual(got, [("127.0.0.3", 1125, False), ("127.0.0.4", 25, False)])

    def test_tls_on_connect_ports_are_marked(self):
        """A port in tls_on_connect_ports gets TLS before the banner."""
        got = self.addresses("daemon_smtp_ports = 25 : 465\ntls_on_connect_ports = 465\n"
                             "local_interfaces = 127.0.0.1")
        self.assertEqual(got, [("127.0.0.1", 25, False), ("127.0.0.1", 465, True)])

    def test_list_separators(self):
        """Exim lists: ':' with '::' as a literal colon, or '<X' to choose the separator."""
        self.assertEqual(split_list("a : b::c : d"), ["a", "b:c", "d"])
        self.assertEqual(split_list("<; ::1 ; 127.0.0.1"), ["::1", "127.0.0.1"])


class StartedLineTests(unittest.TestCase):
    """The mainlog line a daemon writes as it starts (Exim's daemon.c); the
    expected texts are what Debian's exim4 4.96 -bdf wrote for the same options."""

    def line(self, extra, argv):
        config, _ = make_config(self, extra)
        return started_line(config, parse_args(["-bdf"] + argv), 123)

    def test_ports_of_one_address_are_braced(self):
        """Several ports on one address read ``[A]:{P1,P2}``; SMTPS ports get their own part."""
        got = self.line("daemon_smtp_ports = 25991 : 25992\nlocal_interfaces = 127.0.0.1 : 127.0.0.1.25993\n"
                        "tls_on_connect_ports = 25992", [])
        self.assertEqual(got, "exim 4.96 daemon started: pid=123, no queue runs, listening for SMTP on "
                              "[127.0.0.1]:{25991,25993} and for SMTPS on [127.0.0.1]:25992")

    def test_queue_interval_and_wildcards(self):
        """-q<time> is printed in Exim's time format; :: with 0.0.0.0 is ``(IPv6 and IPv4)``."""
        got = self.line("", ["-q90s", "-oX", "<; 25995 ; ::0 ; 0.0.0.0"])
        self.assertEqual(got, "exim 4.96 daemon started: pid=123, -q1m30s, listening for SMTP on "
                              "port 25995 (IPv6 and IPv4)")
        self.assertTrue(self.line("", ["-oX", "0.0.0.0.26002"]).endswith("SMTP on port 26002 (IPv4)"))
        self.assertTrue(self.line("", ["-oX", "<; ::0.26003"]).endswith("SMTP on port 26003 (IPv6)"))

    def test_several_addresses(self):
        """Different addresses are separated by spaces, each run of one address braced."""
        got = self.line("", ["-oX", "<; 127.0.0.1.26004; 127.0.0.1.26005; 127.0.0.2.26004"])
        self.assertTrue(got.endswith("listening for SMTP on [127.0.0.1]:{26004,26005} [127.0.0.2]:26004"), got)


class DeliveryModeTests(unittest.TestCase):
    """-odq on the daemon's command line: accepted messages are only queued."""

    def test_odq_queues_only(self):
        """With -odq the policy hands nothing to the delivery engine; without it, it does."""
        from exim_py.daemon import build_policy
        config, _ = make_config(self)
        self.assertIsNotNone(build_policy(config, parse_args(["-bdf"])).deliver)
        self.assertIsNone(build_policy(config, parse_args(["-bdf", "-odq"])).deliver)


class ConnectionLimitTests(unittest.TestCase):
    """smtp_accept_max and smtp_accept_max_per_host refuse extra connections with 421."""

    @defer.inlineCallbacks
    def test_accept_max(self):
        """With smtp_accept_max = 2 the third simultaneous connection is refused."""
        policy, _ = make_policy(self, "smtp_accept_max = 2")
        port = reactor.listenTCP(0, SMTPServerFactory(policy), interface="127.0.0.1")
        self.addCleanup(port.stopListening)

        def run():
            socks = [socket.create_connection(("127.0.0.1", port.getHost().port), timeout=10) for _ in range(3)]
            lines = [s.makefile("rb").readline().decode() for s in socks]
            for s in socks:
                s.close()
            return lines
        lines = yield threads.deferToThread(run)
        self.assertTrue(lines[0].startswith("220 ") and lines[1].startswith("220 "), lines)
        self.assertEqual(lines[2], "421 Too many concurrent SMTP connections; please try again later.\r\n")

    @defer.inlineCallbacks
    def test_accept_reserve(self):
        """The last smtp_accept_reserve slots are kept for smtp_reserve_hosts."""
        for reserved, expected in (("10.0.0.0/8", "421 "), ("127.0.0.1", "220 ")):
            policy, _ = make_policy(self, "smtp_accept_max = 2\nsmtp_accept_reserve = 1\n"
                                          "smtp_reserve_hosts = %s" % reserved)
            port = reactor.listenTCP(0, SMTPServerFactory(policy), interface="127.0.0.1")
            self.addCleanup(port.stopListening)

            def run():
                socks = [socket.create_connection(("127.0.0.1", port.getHost().port), timeout=10)
                         for _ in range(2)]
                lines = [s.makefile("rb").readline().decode() for s in socks]
                for s in socks:
                    s.close()
                return lines
            lines = yield threads.deferToThread(run)
            self.assertTrue(lines[0].startswith("220 "), lines)
            self.assertTrue(lines[1].startswith(expected), (reserved, lines))

    @defer.inlineCallbacks
    def test_accept_max_per_host(self):
        """smtp_accept_max_per_host = 1: a second connection from the same address is refused."""
        policy, _ = make_policy(self, "smtp_accept_max_per_host = 1")
        port = reactor.listenTCP(0, SMTPServerFactory(policy), interface="127.0.0.1")
        self.addCleanup(port.stopListening)

        def run():
            socks = [socket.create_connection(("127.0.0.1", port.getHost().port), timeout=10) for _ in range(2)]
            lines = [s.makefile("rb").readline().decode() for s in socks]
            for s in socks:
                s.close()
            return lines
        lines = yield threads.deferToThread(run)
        self.assertEqual(lines[1], "421 Too many concurrent SMTP connections from this IP address; "
                                   "please try again later.\r\n")


class DaemonProcess:
    """``python -m exim_py -bdf -oX PORT -oP PIDFILE -C conf`` as the conformance harness starts it."""

    def __init__(self, testcase, extra=""):
        self.config, self.spool_dir = make_config(testcase, extra)
        self.conf_path = self.config.filename
        self.port = free_port()
        self.pid_file = os.path.join(self.spool_dir, "exim.pid")
        self.process = None

    def start(self, timeout=20, processes=1):
        env = dict(os.environ, PYTHONPATH=ROOT, EXIM_PY_DAEMON_PROCESSES=str(processes))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "exim_py", "-C", self.conf_path, "-bdf", "-oX", str(self.port),
             "-oP", self.pid_file], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if os.path.exists(self.pid_file):
                return self
            if self.process.poll() is not None:
                raise AssertionError("daemon exited: %s" % self.process.stderr.read().decode())
            time.sleep(0.02)
        raise AssertionError("no pid file after %ss" % timeout)

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if self.process is not None:
            self.process.stdout.close()
            self.process.stderr.close()


class DaemonProcessTests(unittest.TestCase):
    """The real command line: pid file, SIGTERM, SIGHUP."""

    def daemon(self, extra="queue_only"):
        d = DaemonProcess(self, extra).start()
        self.addCleanup(d.stop)
        return d

    def test_pid_file_and_sigterm(self):
        """The pid file names the daemon; SIGTERM ends it cleanly and removes the file."""
        d = self.daemon()
        with open(d.pid_file) as f:
            self.assertEqual(int(f.read()), d.process.pid)
        with smtplib.SMTP("127.0.0.1", d.port, timeout=10) as s:
            s.sendmail("a@b.example", ["c@d.example"], "Subject: x\r\n\r\nhi\r\n")
        d.process.send_signal(signal.SIGTERM)
        self.assertEqual(d.process.wait(timeout=20), 0)
        self.assertFalse(os.path.exists(d.pid_file))
        self.assertEqual(len(list(Spool(d.spool_dir).message_ids())), 1)

    def test_start_is_logged(self):
        """The daemon writes Exim's ``daemon started`` line, with its own pid, to the main log."""
        d = self.daemon()
        with open(os.path.join(d.spool_dir, "mainlog")) as f:
            text = f.read()
        self.assertIn(" exim 4.96 daemon started: pid=%d, no queue runs, listening for SMTP on "
                      "port %d (IPv6 and IPv4)\n" % (d.process.pid, d.port), text)

    def test_background_daemon(self):
        """-bd returns at once; the daemon it left behind answers and writes the pid file."""
        d = DaemonProcess(self, "queue_only")
        env = dict(os.environ, PYTHONPATH=ROOT)
        result = subprocess.run([sys.executable, "-m", "exim_py", "-C", d.conf_path, "-bd", "-oX", str(d.port),
                                 "-oP", d.pid_file], env=env, capture_output=True, timeout=60)
        self.assertEqual(result.returncode, 0, result.stderr)
        deadline = time.monotonic() + 20
        while not os.path.exists(d.pid_file) and time.monotonic() < deadline:
            time.sleep(0.05)
        with open(d.pid_file) as f:
            pid = int(f.read())
        self.addCleanup(lambda: os.kill(pid, signal.SIGKILL) if os.path.exists("/proc/%d" % pid) else None)
        with socket.create_connection(("127.0.0.1", d.port), timeout=10) as s:
            self.assertTrue(s.makefile("rb").readline().startswith(b"220 "))
        os.kill(pid, signal.SIGTERM)
        while os.path.exists("/proc/%d" % pid) and time.monotonic() < deadline + 20:
            time.sleep(0.05)
        self.assertFalse(os.path.exists(d.pid_file))

    def test_sighup_applies_only_a_clean_configuration(self):
        """SIGHUP: a broken file is ignored; a good one changes what new sessions see."""
        d = self.daemon()

        def banner():
            with socket.create_connection(("127.0.0.1", d.port), timeout=10) as s:
                return s.makefile("rb").readline().decode().strip()

        def wait_for(predicate):
            for _ in range(200):
                value = banner()
                if predicate(value):
                    return value
                time.sleep(0.05)
            return value

        self.assertEqual(banner(), "220 mx.test.example ESMTP Exim 4.96")
        with open(d.conf_path) as f:
            original = f.read()
        with open(d.conf_path, "w") as f:
            f.write(original + "\nno_such_option = 1\n")
        d.process.send_signal(signal.SIGHUP)
        time.sleep(1)
        self.assertEqual(banner(), "220 mx.test.example ESMTP Exim 4.96")
        self.assertIsNone(d.process.poll())
        with open(d.conf_path, "w") as f:
            f.write(original.replace("ESMTP Exim 4.96", "reloaded banner"))
        d.process.send_signal(signal.SIGHUP)
        self.assertEqual(wait_for(lambda b: "reloaded" in b), "220 mx.test.example reloaded banner")


class WorkerProcessTests(unittest.TestCase):
    """EXIM_PY_DAEMON_PROCESSES: more processes on the same listening socket."""

    def test_two_processes_share_the_port(self):
        """Connections are served by both processes; SIGTERM to the first stops both."""
        d = DaemonProcess(self, "queue_only").start(processes=2)
        self.addCleanup(d.stop)
        pids = set()
        deadline = time.monotonic() + 30
        while len(pids) < 2 and time.monotonic() < deadline:
            with smtplib.SMTP("127.0.0.1", d.port, timeout=10) as s:
                s.ehlo("c.example")
                s.mail("a@b.example")
                s.rcpt("c@d.example")
                code, text = s.data("Subject: w\r\n\r\nhi\r\n")
                self.assertEqual(code, 250)
                # the id's middle part is the receiving process's id
                pids.add(text.decode().split("id=")[1].split("-")[1])
        self.assertEqual(len(pids), 2)
        d.process.send_signal(signal.SIGTERM)
        self.assertEqual(d.process.wait(timeout=30), 0)
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", d.port), timeout=2).close()


    def daemon(self, extra):
        """Two processes whose banner is their process id."""
        d = DaemonProcess(self, extra)
        with open(d.conf_path) as f:
            text = f.read()
        with open(d.conf_path, "w") as f:
            f.write(text.replace("smtp_banner = mx.test.example ESMTP Exim 4.96", "smtp_banner = $pid"))
        d.start(processes=2)
        self.addCleanup(d.stop)
        return d

    def banners(self, d, count):
        """Open ``count`` sessions at once; returns (their banners, the sockets)."""
        socks = [socket.create_connection(("127.0.0.1", d.port), timeout=10) for _ in range(count)]
        for s in socks:
            self.addCleanup(s.close)
        return [s.makefile("rb").readline().decode() for s in socks], socks

    def worker_ready(self, d):
        """Open sessions until one is served by the worker; returns its banner, the
        session left open.  Sessions the first process served are ended by the
        server (QUIT), so that process has forgotten them when this returns."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            lines, socks = self.banners(d, 1)
            if lines[0].split()[1] != str(d.process.pid):
                return lines[0]
            socks[0].sendall(b"QUIT\r\n")
            while socks[0].recv(1024):
                pass
            socks[0].close()
        self.fail("no worker process served a session")

    def test_sessions_are_spread_evenly(self):
        """Concurrent sessions go to the process with the fewest open ones."""
        d = self.daemon("queue_only")
        first = self.worker_ready(d)
        lines, _ = self.banners(d, 5)
        pids = sorted(line.split()[1] for line in [first] + lines)
        self.assertEqual(len(set(pids)), 2, lines)
        self.assertEqual(pids.count(pids[0]), 3, lines)

    def test_limits_count_every_process(self):
        """smtp_accept_max_per_host counts the sessions of all the processes, as
        Exim's daemon counts its children."""
        d = self.daemon("queue_only\nsmtp_accept_max_per_host = 2")
        self.worker_ready(d)
        lines, _ = self.banners(d, 2)
        self.assertEqual(lines[0].split()[1], str(d.process.pid), lines)
        self.assertEqual(lines[1], "421 Too many concurrent SMTP connections from this IP address; "
                                   "please try again later.\r\n")

    def test_sighup_reaches_every_process(self):
        """After SIGHUP to the first process, the workers use the new configuration too."""
        d = self.daemon("queue_only")
        self.worker_ready(d)
        with open(d.conf_path) as f:
            original = f.read()
        with open(d.conf_path, "w") as f:
            f.write(original.replace("smtp_banner = $pid", "smtp_banner = $pid reloaded"))
        d.process.send_signal(signal.SIGHUP)
        reloaded = set()
        deadline = time.monotonic() + 30
        while len(reloaded) < 2 and time.monotonic() < deadline:
            lines, socks = self.banners(d, 2)
            reloaded.update(line.split()[1] for line in lines if line.split()[2:] == ["reloaded"])
            for s in socks:
                s.close()
        self.assertEqual(len(reloaded), 2, reloaded)

    def test_dead_worker_is_left_out(self):
        """A worker killed outright: the first process serves every later session and
        no longer counts the dead worker's sessions against the limits."""
        d = self.daemon("queue_only\nsmtp_accept_max = 3")
        worker = int(self.worker_ready(d).split()[1])
        os.kill(worker, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with open("/proc/%d/stat" % worker) as f:
                    if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                        break
            except (FileNotFoundError, ProcessLookupError):
                break               # already reaped by the first process
        lines, _ = self.banners(d, 3)
        self.assertEqual([line.split()[1] for line in lines], [str(d.process.pid)] * 3, lines)

    def test_workers_share_the_first_process_pages(self):
        """Workers are forked from the first process after it has loaded its
        code and configuration, so most of their memory is shared with it."""
        d = self.daemon("queue_only")
        worker = int(self.worker_ready(d).split()[1])
        with open("/proc/%d/stat" % worker) as f:
            self.assertEqual(int(f.read().rsplit(")", 1)[1].split()[1]), d.process.pid)
        with open("/proc/%d/smaps_rollup" % worker) as f:
            fields = dict(line.split(":", 1) for line in f.read().splitlines()[1:])
        shared = int(fields["Shared_Dirty"].split()[0])
        private = int(fields["Private_Dirty"].split()[0])
        self.assertGreater(shared, 2 * private, fields)

    def test_preload_leaves_the_reactor_uninstalled(self):
        """What the first process imports before forking does not install the
        reactor (whose epoll set the workers would otherwise share)."""
        code = ("import sys\n"
                "from exim_py.daemon import load_config\n"
                "from exim_py.cli import parse_args\n"
                "from exim_py import daemon_imports\n"
                "inv = parse_args(['-C', sys.argv[1], '-bdf'])\n"
                "daemon_imports.preload(load_config(inv))\n"
                "print('twisted.internet.reactor' in sys.modules)\n")
        config, _ = make_config(self, "queue_only")
        out = subprocess.run([sys.executable, "-c", code, config.filename], cwd=ROOT,
                             env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True, text=True)
        self.assertEqual(out.stdout.strip(), "False", out.stderr)

    def test_port_in_use(self):
        """A port that cannot be bound ends the daemon with Exim's panic line."""
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            d = DaemonProcess(self, "queue_only")
            d.port = taken.getsockname()[1]
            d.process = subprocess.Popen(
                [sys.executable, "-m", "exim_py", "-C", d.conf_path, "-bdf", "-oX", "127.0.0.1.%d" % d.port],
                env=dict(os.environ, PYTHONPATH=ROOT), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            self.addCleanup(d.stop)
            self.assertEqual(d.process.wait(timeout=30), 1)
        text = "socket bind() to port %d for address 127.0.0.1 failed: Address already in use: " \
               "daemon abandoned" % d.port
        self.assertTrue(d.process.stderr.read().decode().rstrip().endswith(" " + text))
        with open(os.path.join(d.spool_dir, "paniclog")) as f:
            self.assertTrue(f.read().rstrip().endswith(" " + text))


class CrashSafetyTests(unittest.TestCase):
    """SIGKILL mid-stream: every message that got its 250 is on the spool, intact."""

    def test_sigkill_loses_no_acknowledged_message(self):
        """200 messages over 20 connections, the daemon killed part way, then restarted."""
        self.crash(processes=1)

    def test_sigkill_of_every_process(self):
        """The same with two daemon processes, both killed at once."""
        self.crash(processes=2)

    def crash(self, processes):
        d = DaemonProcess(self, "queue_only").start(processes=processes)
        self.addCleanup(d.stop)
        acked = {}
        lock = threading.Lock()
        enough = threading.Event()

        def client(n):
            try:
                s = smtplib.SMTP("127.0.0.1", d.port, timeout=10)
                s.ehlo("c%d.example" % n)
                for i in range(10):
                    body = "Subject: m %d/%d\r\n\r\n%s\r\n" % (n, i, ("line %d %d\r\n" % (n, i)) * 20)
                    s.mail("a@b.example")
                    s.rcpt("c@d.example")
                    code, text = s.data(body)
                    if code == 250:
                        with lock:
                            acked[text.decode().split("id=")[1]] = body
                            if len(acked) >= 80:
                                enough.set()
            except (smtplib.SMTPException, OSError):
                pass

        workers = [threading.Thread(target=client, args=(n,)) for n in range(20)]
        for w in workers:
            w.start()
        enough.wait(60)
        with open("/proc/%d/task/%d/children" % (d.process.pid, d.process.pid)) as f:
            children = [int(pid) for pid in f.read().split()]
        self.assertEqual(len(children), processes - 1)
        for pid in children:
            os.kill(pid, signal.SIGKILL)
        d.process.send_signal(signal.SIGKILL)
        d.process.wait()
        for w in workers:
            w.join(30)
        with lock:
            snapshot = dict(acked)
        self.assertGreaterEqual(len(snapshot), 80)
        os.unlink(d.pid_file)
        restarted = DaemonProcess.__new__(DaemonProcess)
        restarted.__dict__.update(d.__dict__)
        restarted.start()
        self.addCleanup(restarted.stop)
        spool = Spool(d.spool_dir)
        on_disk = set(spool.message_ids())
        for message_id, body in snapshot.items():
            self.assertIn(message_id, on_disk)
            stored = spool.read_body(message_id)
            expected = body.split("\r\n\r\n", 1)[1].replace("\r\n", "\n").encode()
            self.assertEqual(stored, expected, message_id)
            self.assertEqual([r.address for r in spool.read(message_id).recipients], ["c@d.example"])


class TwistdPluginTests(unittest.TestCase):
    """``twistd exim_py`` builds the same tree as ``exim_py -bd``."""

    def test_make_service(self):
        """makeService gives a MultiService with the SMTP listeners on the -oX port."""
        from exim_py import tap
        config, _ = make_config(self, "local_interfaces = 127.0.0.1")
        options = tap.Options()
        options.parseOptions(["-C", config.filename, "--listen", "2625", "-D", "X=1"])
        inv = tap.invocation(options)
        self.assertEqual((inv.listen, inv.macros), ("2625", {"X": "1"}))
        top = tap.makeService(options)
        self.assertIsInstance(top, service.MultiService)
        listeners = top.getServiceNamed("smtp")
        self.assertEqual([(s.args[0], s.kwargs["interface"]) for s in listeners], [(2625, "127.0.0.1")])

    def test_dropin_is_found(self):
        """The dropin in twisted/plugins is found when the checkout is on the path."""
        env = dict(os.environ, PYTHONPATH=ROOT)
        out = subprocess.run([sys.executable, "-m", "twisted", "--help"], capture_output=True, text=True,
                             env=env, cwd=tempfile.gettempdir(), timeout=60).stdout
        self.assertIn("exim_py", out)

    def test_cli_daemon_flags(self):
        """-bdf -oX -oP -q30m are what daemon_mode reads."""
        inv = parse_args(["-bdf", "-oX", "2525", "-oP", "/tmp/p", "-q30m"])
        self.assertEqual((inv.mode, inv.listen, inv.pid_file, inv.queue_interval), ("daemon", "2525", "/tmp/p", 1800))
