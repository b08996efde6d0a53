"""The address given to ``-bh``, as Debian's exim4 takes it.

Exim reads an optional port off the argument (``ip.port`` or
``[ip]:port``), refuses one that is no IP address ("exim abandoned"), and
rewrites the address in its canonical form before the session starts: an
IPv6 address written out in full (``2001:0db8:0000:...``).  That form is
then what ``$sender_host_address``, ``H=`` and the HELO greeting show.
Addresses of real connections (a daemon on ::1) and of ``-oMa`` keep their
usual short form.
"""

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from twisted.trial import unittest

from tests.support.bh import host_checks, oracle
from tests.support.peers import QUIET_MAIN, exim_py_command, require_command, run_both

ACLS = """\
acl_smtp_connect = c_acl
acl_smtp_mail = m_acl
begin acl
c_acl:
  warn logwrite = C port=$sender_host_port addr=$sender_host_address fh=$sender_fullhost
  accept
m_acl:
  warn logwrite = M fh=$sender_fullhost rh=$sender_rcvhost
  accept hosts = <; 2001:db8::5 ; ::1
  deny message = not from here
"""

DIALOGUE = "EHLO client.example\r\nMAIL FROM:<a@b.example>\r\nQUIT\r\n"


def comparable(stdout, stderr):
    """The lines of a -bh run that must be the same in both: replies (the
    banner's date left out) and LOG lines, each stream in its own order."""
    replies = [line for line in stdout.splitlines()
               if line and not line.startswith(("220 ", ">>>"))]
    return replies, [line for line in stderr.splitlines() if line.startswith(("LOG: ", "exim "))]


class HostCheckAddressTests(unittest.TestCase):
    """``exim_py -bh ARG`` treats ARG as ``exim4 -bh ARG`` does."""

    def setUp(self):
        self.exim = oracle(self)
        self.conf = self.exim.write_config(QUIET_MAIN + ACLS)

    def compare(self, argument):
        theirs, ours = host_checks(self.exim, self.conf, DIALOGUE, argument)
        self.assertEqual(comparable(ours.stdout, ours.stderr),
                         comparable(theirs.stdout, theirs.stderr))
        self.assertEqual(ours.returncode, theirs.returncode)
        return comparable(theirs.stdout, theirs.stderr)

    def test_ipv6_written_in_full(self):
        """An IPv6 address is shown in full in the intro, the greeting, H= and
        the host variables; a host list in the short form still matches it."""
        replies, logs = self.compare("2001:db8::5")
        full = "2001:0db8:0000:0000:0000:0000:0000:0005"
        self.assertIn("**** SMTP testing session as if from host %s" % full, replies)
        self.assertIn("250-mx.test.example Hello client.example [%s]" % full, replies)
        self.assertEqual(logs[0], "LOG: C port=0 addr=%s fh=[%s]" % (full, full))
        self.assertEqual(replies[-2], "250 OK")

    def test_mapped_and_loopback(self):
        """::1 and an IPv4-mapped address come out in full too; the dots of
        the mapped address are not taken for a port."""
        self.compare("::1")
        _, logs = self.compare("::ffff:10.1.2.3")
        self.assertIn("addr=0000:0000:0000:0000:0000:ffff:0a01:0203 ", logs[0])

    def test_ports(self):
        """A port after the address (``.port``, ``[ip]:port``) sets
        $sender_host_port and leaves the address."""
        _, logs = self.compare("2001:db8::5.1234")
        self.assertTrue(logs[0].startswith("LOG: C port=1234 addr=2001:0db8:"), logs[0])
        _, logs = self.compare("[2001:db8::5]:25")
        self.assertTrue(logs[0].startswith("LOG: C port=25 "), logs[0])
        _, logs = self.compare("10.1.2.3.99")
        self.assertEqual(logs[0], "LOG: C port=99 addr=10.1.2.3 fh=[10.1.2.3]")
        self.compare("[10.1.2.3]")

    def test_not_an_address(self):
        """Anything that is no IP address (after a port is taken off) is
        refused with exit status 1 and Exim's message, before any session."""
        for argument in ("1.2.3", "10.1.2.3.abc", "::ffff:10.1.2.3.25", "010.1.2.3",
                         "1.2.3.4/24", "[10.1.2.3", ""):
            replies, logs = self.compare(argument)
            self.assertEqual(replies, [])
            self.assertTrue(logs[0].startswith("exim abandoned: "), logs)

    def test_oMa_keeps_short_form(self):
        """-bs with -oMa: the address is used as it is given, as exim4 does."""
        args = ["-bs", "-oMa", "2001:db8::5.25"]
        theirs, ours = run_both(self.exim, self.conf, args, DIALOGUE)
        greeting = [line for line in theirs.stdout.splitlines() if "Hello" in line]
        self.assertEqual(greeting, ["250-mx.test.example Hello root at client.example "
                                    "[2001:db8::5]"])
        self.assertEqual([line for line in ours.stdout.splitlines() if "Hello" in line],
                         greeting)


def ipv6_loopback_port():
    """A free port on ::1, or skip when this machine has no IPv6 loopback."""
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
            return s.getsockname()[1]
    except OSError as e:
        raise unittest.SkipTest("no IPv6 loopback here: %s" % e)


class RealIPv6ConnectionTests(unittest.TestCase):
    """A daemon on [::1]: the client's address keeps its short form."""

    def greeting(self, argv_for, owner=None):
        """Start a daemon (``argv_for(conf, port)``) with its own directories,
        say EHLO over ::1, and return the greeting line and the main log."""
        base = tempfile.mkdtemp(prefix="exim_py-ipv6-")
        self.addCleanup(shutil.rmtree, base, True)
        os.chmod(base, 0o755)
        for sub in ("log", "spool"):
            os.mkdir(os.path.join(base, sub))
            if owner:
                os.chown(os.path.join(base, sub), owner.pw_uid, owner.pw_gid)
        conf = os.path.join(base, "exim.conf")
        with open(conf, "w") as f:
            f.write(QUIET_MAIN + "log_file_path = %s/log/%%slog\nspool_directory = %s/spool\n"
                    "pid_file_path = %s/exim.pid\n" % (base, base, base) + ACLS)
        os.chmod(conf, 0o644)
        port = ipv6_loopback_port()
        process = subprocess.Popen(argv_for(conf, port), stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   start_new_session=True)
        self.addCleanup(self.stop, process)
        deadline = time.monotonic() + 30
        while True:
            try:
                s = socket.create_connection(("::1", port), timeout=10)
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    self.fail("the daemon did not listen on [::1]:%d" % port)
                time.sleep(0.05)
        with s:
            f = s.makefile("rb")
            f.readline()
            s.sendall(DIALOGUE.encode("ascii"))
            lines = f.read().decode("ascii").splitlines()
        hello = [line for line in lines if "Hello" in line]
        with open(os.path.join(base, "log", "mainlog")) as f:
            logs = [line[20:].rstrip("\n") for line in f if " C port=" in line]
        return hello, logs

    @staticmethod
    def stop(process):
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=20)

    def test_daemon_on_ipv6_loopback(self):
        """exim4 and exim_py both show [::1] (not the full form) to a client
        connecting over IPv6, in the greeting and in $sender_host_address."""
        binary = require_command("exim4")
        listen = "<; [::1]:%d"
        theirs = self.greeting(lambda conf, port: [binary, "-C", conf, "-bdf", "-oX", listen % port],
                               owner=pwd.getpwnam("Debian-exim"))
        ours = self.greeting(lambda conf, port: exim_py_command() + ["-C", conf, "-bdf", "-oX",
                                                                     listen % port])
        self.assertEqual(theirs[0], ["250-mx.test.example Hello client.example [::1]"])
        self.assertEqual(ours[0], theirs[0])

        def without_port(lines):        # the client's port is whatever it got
            return [line.split(" port=")[1].split(" ", 1)[1] for line in lines]
        self.assertEqual(without_port(theirs[1]), ["addr=::1 fh=[::1]"])
        self.assertEqual(without_port(ours[1]), without_port(theirs[1]))
