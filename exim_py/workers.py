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

A pool starts its threads on first use and ends them when the reactor
shuts down; a forked child starts threads of its own.  Shutdown waits,
``shutdown_wait`` seconds at most, for the calls already queued while the
reactor still runs: a call which needs the reactor (``blockingCallFromThread``,
as a local transport without a blocking form uses) can finish instead of
deadlocking the exit, and a call that does not end cannot hold it.
"""

import collections
import os
import queue
import threading
import weakref

from twisted.internet import defer
from twisted.python import failure

_POOLS = weakref.WeakSet()
# How long reactor shutdown waits for the calls already queued.  A call
# still running then is abandoned with its thread (a daemon thread, gone
# with the process): a delivery cut short that way is one that crashed,
# and the next queue run retries its deferred addresses.
SHUTDOWN_WAIT = 5.0


class Pool:
    """Up to ``size`` threads named ``name``-N that run calls for the reactor."""

    def __init__(self, size, name, shutdown_wait=SHUTDOWN_WAIT):
        self.size = size
        self.name = name
        self.shutdown_wait = shutdown_wait
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
            reactor.addSystemEventTrigger("before", "shutdown", self._shutdown)
        for n in range(self.size):
            thread = threading.Thread(target=self._work, args=(self._calls,),
                                      name="%s-%d" % (self.name, n), daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self):
        """Let the threads finish the calls already queued, then end them
        (the next ``run`` starts new ones).  This blocks: not for use while
        the reactor runs a call that may need it."""
        threads = self._retire(None)
        for thread in threads:
            thread.join()

    def _shutdown(self):
        """The reactor's before-shutdown trigger: a Deferred that fires when
        every thread has run the calls queued before it and ended, or after
        ``shutdown_wait`` seconds.  The reactor runs on until it fires (a
        "during" trigger's Deferred would not keep it running); joining the
        threads here instead would block the reactor, and with it any call
        waiting on the reactor, for ever.  Trial fires shutdown after every
        test, and the next test's ``run`` starts new threads."""
        ended = defer.Deferred()
        left = [0]

        def one_ended():
            left[0] -= 1
            if not left[0] and not ended.called:
                ended.callback(None)
        left[0] = len(self._retire(one_ended))
        if not left[0]:
            return None
        return ended.addTimeout(self.shutdown_wait, self._reactor,
                                onTimeoutCancel=lambda result, timeout: None)

    def _retire(self, ended):
        """Hand the threads their ends, after the calls already queued for
        them, and give the threads ``run`` starts next a queue of their own
        (so that they cannot take an end meant for one of these); the
        threads retired.  Each calls ``ended`` (if given) on the reactor as
        it ends."""
        threads, calls = self._threads, self._calls
        self._threads, self._calls = [], queue.SimpleQueue()
        for _ in threads:
            calls.put((None, ended, ()))
        return threads

    def _work(self, calls):
        results = self._results
        while True:
            d, f, args = calls.get()
            if d is None:
                # The end of this thread; f, when given, tells the reactor.
                if f is not None:
                    self._reactor.callFromThread(f)
                return
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
