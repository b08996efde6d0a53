"""exim_py.workers.Pool, the thread pool deliveries hop to for their blocking steps."""

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
