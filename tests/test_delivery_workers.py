"""exim_py.workers.Pool, the thread pool deliveries hop to for their blocking steps."""

import subprocess
import sys
import threading

from twisted.internet import defer
from twisted.trial import unittest

from exim_py.workers import Pool


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
                              capture_output=True, text=True, timeout=30)
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
