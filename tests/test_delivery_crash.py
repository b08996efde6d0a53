"""Crash safety: a queue run or a daemon killed with SIGKILL in the middle
of delivering loses nothing.

Twenty messages with three recipients each are queued for a pipe that
writes each delivery to its own file (named by message id, local part and
process id) and then sleeps, so that the kill lands while deliveries are
in flight, some messages half delivered.  After the kill a second queue
run must deliver everything that is left; every recipient of every
message must have had its delivery, and one may have had two only if its
delivery was in flight when the process died (at most queue_run_max).

The daemon case: clients keep sending over SMTP while the daemon delivers
each message at once to a maildir (deliveries made durable together, by
group commit); a SIGKILL in full flow, then a queue run, must leave every
acknowledged message in the maildir.
"""

import collections
import os
import signal
import smtplib
import subprocess
import sys
import threading
import time

from twisted.trial import unittest

from tests.support.end_to_end import Daemon, free_port
from tests.support.peers import run_exim_py
from tests.test_delivery_engine import MailEnv

CONFIG = """\
primary_hostname = myhost.test
qualify_domain = localdomain
spool_directory = VAR/spool
log_file_path = VAR/log/%slog
queue_run_max = 4
begin routers
all:
  driver = accept
  transport = slow
begin transports
slow:
  driver = pipe
  command = VAR/slow.sh $message_id $local_part
begin retry
* * F,1h,10m
"""

SCRIPT = """#!/bin/sh
cat > "VAR/out/$1.$2.$$"
sleep 0.15
"""


class CrashTests(unittest.TestCase):
    """SIGKILL during a queue run, then a restart."""

    def test_sigkill_then_restart_delivers_everything(self):
        """Every recipient is delivered after a kill and a restart; duplicates
        are limited to the deliveries in flight at the kill."""
        env = MailEnv(self, config_text=CONFIG, aliases="")
        os.makedirs(env.path("out"))
        with open(env.path("slow.sh"), "w") as f:
            f.write(SCRIPT.replace("VAR", env.dir))
        os.chmod(env.path("slow.sh"), 0o755)
        ids = [env.submit(["a%d" % i, "b%d" % i, "c%d" % i]) for i in range(20)]
        expected = {(mid, "%s%d" % (p, i)) for i, mid in enumerate(ids) for p in "abc"}

        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        proc = subprocess.Popen([sys.executable, "-m", "exim_py", "-C", env.path("exim.conf"),
                                 "-q"], cwd=root, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env=dict(os.environ, PYTHONPATH=root))
        deadline = time.time() + 30
        while len(os.listdir(env.path("out"))) < 8 and time.time() < deadline:
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        delivered_before = len(os.listdir(env.path("out")))
        self.assertLess(delivered_before, 60, "the kill came too late to test anything")

        r = run_exim_py(["-C", env.path("exim.conf"), "-q"], timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(env.queued(), [])
        counts = collections.Counter(tuple(name.split(".")[:2])
                                     for name in os.listdir(env.path("out")))
        self.assertEqual(set(counts), expected)
        duplicates = sum(n - 1 for n in counts.values())
        self.assertLessEqual(duplicates, 4)


DAEMON_CONFIG = """\
primary_hostname = myhost.test
qualify_domain = localdomain
spool_directory = VAR/spool
log_file_path = VAR/log/%slog
local_interfaces = 127.0.0.1
daemon_smtp_ports = PORT
smtp_accept_queue_per_connection = 0
host_lookup =
rfc1413_hosts =
acl_smtp_rcpt = accept
begin routers
all:
  driver = accept
  transport = maildir
begin transports
maildir:
  driver = appendfile
  directory = VAR/maildir/box
  maildir_format
begin retry
* * F,1h,10m
"""


class DaemonCrashTests(unittest.TestCase):
    """SIGKILL of a daemon delivering as messages arrive, then a queue run."""

    def test_sigkill_in_full_flow_loses_no_acknowledged_message(self):
        """Every message that got its 250 is in the maildir after the kill
        and a queue run, and the queue is empty; duplicates are bounded by
        the deliveries in flight (eight delivery threads)."""
        port = free_port()
        env = MailEnv(self, config_text=DAEMON_CONFIG.replace("PORT", str(port)), aliases="")
        new = env.path("maildir", "box", "new")
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        daemon = Daemon([sys.executable, "-m", "exim_py", "-C", env.path("exim.conf"), "-bdf"],
                        port, env=dict(os.environ, PYTHONPATH=root,
                                       EXIM_PY_DAEMON_PROCESSES="1"))
        daemon.start()
        self.addCleanup(daemon.kill)
        acknowledged = []
        stop = threading.Event()

        def client(n):
            try:
                with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
                    for i in range(10000):
                        if stop.is_set():
                            return
                        token = "token-%d-%d" % (n, i)
                        smtp.sendmail("a@x.example", ["b@localdomain"],
                                      "Subject: %s\n\n%s\n" % (token, token))
                        acknowledged.append(token)
            except (OSError, smtplib.SMTPException):
                return          # the daemon died under us
        clients = [threading.Thread(target=client, args=(n,)) for n in range(6)]
        for t in clients:
            t.start()
        deadline = time.time() + 30
        while (not os.path.isdir(new) or len(os.listdir(new)) < 60) and time.time() < deadline:
            time.sleep(0.01)
        daemon.kill()
        stop.set()
        for t in clients:
            t.join(15)
        self.assertGreaterEqual(len(acknowledged), 60, "the daemon did not deliver enough to test")

        r = run_exim_py(["-C", env.path("exim.conf"), "-q"], timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(env.queued(), [])
        counts = collections.Counter()
        for name in os.listdir(new):
            with open(os.path.join(new, name)) as f:
                counts.update(line.strip() for line in f if line.startswith("token-"))
        self.assertEqual(set(acknowledged) - set(counts), set())
        duplicates = sum(n - 1 for n in counts.values())
        # at most one per delivery thread: those between the maildir and the -J
        self.assertLessEqual(duplicates, 8)
