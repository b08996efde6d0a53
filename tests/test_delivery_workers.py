"""exim_py.workers.Pool, the thread pool deliveries hop to for their blocking steps."""

import os
import shutil
import signal
import smtplib
import subprocess
import sys
import tempfile
import threading
import time

from twisted.internet import defer
from twisted.trial import unittest

from exim_py.spool import Spool
from exim_py.workers import SHUTDOWN_WAIT, Pool
from tests.support.end_to_end import ROOT, Daemon, exim_py_script, free_port, read_text, wait_for


class PoolTests(unittest.TestCase):

    def setUp(self):
        self.pool = Pool(3, "test-pool")
        self.addCleanup(self.pool.stop)

    @defer.inlineCallbacks
    def test_result_fires_on_the_reactor_thread(self):
        """The call runs in a pool thread; its Deferred fires with the
        result in the reactor's thread."""
        seen = {}

        def work(a, b):
            seen["worker"] = threading.current_thread().name
            return a + b

        def fired(value):
            seen["callback"] = threading.current_thread()
            return value
        result = yield self.pool.run(work, 2, 3).addCallback(fired)
        self.assertEqual(result, 5)
        self.assertTrue(seen["worker"].startswith("test-pool-"))
        self.assertIs(seen["callback"], threading.main_thread())

    @defer.inlineCallbacks
    def test_exception_becomes_the_failure(self):
        """What the call raises fails its Deferred, and the pool goes on."""
        def broken():
            raise KeyError("missing")
        with self.assertRaises(KeyError):
            yield self.pool.run(broken)
        self.assertEqual((yield self.pool.run(len, "abc")), 3)

    @defer.inlineCallbacks
    def test_every_concurrent_call_gets_its_own_result(self):
        """Many calls in flight at once, their results batched back to the
        reactor, each reach their own Deferred."""
        results = yield defer.gatherResults([self.pool.run(pow, n, 2) for n in range(200)])
        self.assertEqual(results, [n * n for n in range(200)])

    @defer.inlineCallbacks
    def test_runs_again_after_stop(self):
        """A stopped pool (reactor shutdown) starts new threads when used again."""
        self.assertEqual((yield self.pool.run(abs, -1)), 1)
        self.pool.stop()
        self.assertEqual(self.pool._threads, [])
        self.assertEqual((yield self.pool.run(abs, -2)), 2)


# A process that starts a pool, gives it CALL and stops its reactor while the
# call runs; it prints what the call's Deferred fired with, then "exited".
SHUTDOWN_SCRIPT = """
import sys, threading, time
from twisted.internet import reactor, threads
from exim_py.workers import Pool

pool = Pool(2, "shutdown-test", shutdown_wait=float(sys.argv[1]))
started = threading.Event()
never = threading.Event()

def needs_the_reactor():
    started.set()
    time.sleep(0.2)
    return threads.blockingCallFromThread(reactor, lambda: "from the reactor")

def stuck():
    started.set()
    never.wait()

def go():
    call = needs_the_reactor if sys.argv[2] == "reactor" else stuck
    pool.run(call).addCallback(lambda value: print("result", value, flush=True))
    started.wait()
    reactor.stop()

reactor.callWhenRunning(go)
reactor.run()
print("exited", flush=True)
"""


class PoolShutdownTests(unittest.TestCase):
    """A process whose reactor stops while a pool call runs exits promptly."""

    def run_script(self, wait, call):
        """The script's output and exit status (it is killed after 30 s)."""
        proc = subprocess.run([sys.executable, "-c", SHUTDOWN_SCRIPT, str(wait), call],
                              capture_output=True, text=True, timeout=30,
                              env=dict(os.environ, PYTHONPATH=ROOT))
        return proc.stdout.splitlines(), proc.returncode

    def test_call_that_needs_the_reactor_finishes(self):
        """Shutdown waits for the running call while the reactor still
        runs, so a call that asks the reactor for something (as a local
        transport without a blocking form does) finishes and the process
        exits, instead of both waiting on each other for ever."""
        lines, status = self.run_script(10, "reactor")
        self.assertEqual((lines, status), (["result from the reactor", "exited"], 0))

    def test_stuck_call_is_abandoned(self):
        """A call that never returns holds shutdown for ``shutdown_wait``
        seconds only: the process exits without its result."""
        lines, status = self.run_script(0.3, "stuck")
        self.assertEqual((lines, status), (["exited"], 0))


SLOW_PIPE_CONF = """\
primary_hostname = mx.test.example
keep_environment =
host_lookup =
spool_directory = {dir}/spool
log_file_path = {dir}/%slog
acl_smtp_rcpt = accept
begin routers
r:
  driver = accept
  transport = slow
begin transports
slow:
  driver = pipe
  user = nobody
  command = /bin/sh -c 'echo \\$\\$ > {dir}/run/pid; exec sleep 60'
"""


class DaemonStopTests(unittest.TestCase):
    """SIGTERM to a daemon whose delivery thread is busy."""

    def test_sigterm_during_a_slow_local_delivery(self):
        """A pipe command that would run for a minute holds the daemon's
        exit for ``workers.SHUTDOWN_WAIT`` seconds only (it used to wait for
        the command); the message stays on the spool for a later delivery."""
        directory = tempfile.mkdtemp(prefix="exim_py-stop-")
        self.addCleanup(shutil.rmtree, directory, True)
        os.chmod(directory, 0o755)
        os.mkdir(os.path.join(directory, "run"))
        os.chmod(os.path.join(directory, "run"), 0o1777)   # the command runs as nobody
        conf = os.path.join(directory, "exim.conf")
        with open(conf, "w") as f:
            f.write(SLOW_PIPE_CONF.format(dir=directory))
        port = free_port()
        daemon = Daemon([exim_py_script(), "-C", conf, "-bdf", "-oX", str(port)], port).start()
        self.addCleanup(daemon.kill)
        with smtplib.SMTP("127.0.0.1", port, timeout=20) as client:
            client.sendmail("a@b.example", ["c@d.example"], "Subject: s\r\n\r\nbody\r\n")
        pid_file = os.path.join(directory, "run", "pid")
        wait_for(lambda: read_text(pid_file).strip(),
                 "the pipe command to start")
        self.addCleanup(_kill, int(read_text(pid_file)))
        started = time.monotonic()
        daemon.process.send_signal(signal.SIGTERM)
        daemon.process.wait(timeout=30)
        self.assertLess(time.monotonic() - started, SHUTDOWN_WAIT + 10)
        self.assertEqual(len(list(Spool(os.path.join(directory, "spool")).message_ids())), 1)


def _kill(pid):
    """End a process that may have ended already."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
