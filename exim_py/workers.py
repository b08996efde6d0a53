"""A small pool of worker threads for short blocking steps (spool files,
log lines, routing lookups), lighter than Twisted's ThreadPool.

``Pool(size, name).run(f, *args)`` returns a Deferred that fires, on the
reactor thread, with ``f(*args)`` run in one of the pool's threads (or
fails with what it raised).  It is what Twisted's ``deferToThreadPool``
does, with less work per call: a C queue hands the call to a thread, and
results come back in batches, one ``callFromThread`` (one wake-up of the
reactor) for all the results that finish while the reactor is busy.
Under load, as when every delivery of a relay hops to a thread twice,
that is a small fraction of the CPU Twisted's pool spends per call (see
bench/relay_bench.py); results are delivered in the order they finish.

A pool starts its threads on first use and stops them when the reactor
shuts down (``stop``); a forked child starts threads of its own.
"""

import collections
import os
import queue
import threading
import weakref

from twisted.internet import defer
from twisted.python import failure

_STOP = object()
_POOLS = weakref.WeakSet()


class Pool:
    """Up to ``size`` threads named ``name``-N that run calls for the reactor."""

    def __init__(self, size, name):
        self.size = size
        self.name = name
        self._calls = queue.SimpleQueue()
        self._results = collections.deque()
        self._lock = threading.Lock()
        self._drain_pending = False
        self._threads = []
        self._reactor = None          # set, with a shutdown trigger, on first use
        _POOLS.add(self)

    def run(self, f, *args):
        """Call ``f(*args)`` in a worker thread; a Deferred firing with its result.

        Call this on the reactor thread."""
        if not self._threads:
            self._start()
        d = defer.Deferred()
        self._calls.put((d, f, args))
        return d

    def _start(self):
        if self._reactor is None:
            from twisted.internet import reactor
            self._reactor = reactor
            reactor.addSystemEventTrigger("during", "shutdown", self.stop)
        for n in range(self.size):
            thread = threading.Thread(target=self._work, name="%s-%d" % (self.name, n),
                                      daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self):
        """Let the threads finish the calls already queued, then end them
        (at reactor shutdown; the next ``run`` starts new ones)."""
        threads, self._threads = self._threads, []
        for _ in threads:
            self._calls.put(_STOP)
        for thread in threads:
            thread.join()

    def _work(self):
        calls, results = self._calls, self._results
        while True:
            call = calls.get()
            if call is _STOP:
                return
            d, f, args = call
            try:
                outcome = (True, f(*args))
            except BaseException:
                outcome = (False, failure.Failure())
            results.append((d, outcome))
            # One wake-up of the reactor serves every result that arrives
            # before it gets round to draining them.
            with self._lock:
                if self._drain_pending:
                    continue
                self._drain_pending = True
            self._reactor.callFromThread(self._drain)

    def _drain(self):
        """On the reactor: fire the Deferreds of the finished calls."""
        with self._lock:
            self._drain_pending = False
        results = self._results
        while results:
            d, (ok, value) = results.popleft()
            if ok:
                d.callback(value)
            else:
                d.errback(value)


def _forget_threads():
    """In a forked child only the forking thread exists: the pools there
    start threads of their own when next used."""
    for pool in list(_POOLS):
        pool._threads = []
        pool._calls = queue.SimpleQueue()
        pool._results = collections.deque()
        pool._lock = threading.Lock()
        pool._drain_pending = False


os.register_at_fork(after_in_child=_forget_threads)
