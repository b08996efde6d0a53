"""Crash safety: a queue run killed with SIGKILL in the middle of delivering
loses nothing.

Twenty messages with three recipients each are queued for a pipe that
writes each delivery to its own file (named by message id, local part and
process id) and then sleeps, so that the kill lands while deliveries are
in flight, some messages half delivered.  After the kill a second queue
run must deliver everything that is left; every recipient of every
message must have had its delivery, and one may have had two only if its
delivery was in flight when the process died (at most queue_run_max).
"""

import collections
import os
import signal
import subprocess
import sys
import time

from twisted.trial import unittest

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
