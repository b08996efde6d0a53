"""Putting accepted messages on the spool without blocking the reactor.

Every message must be durable before its 250 is sent.  Writing runs in the
writer's own thread, and messages that arrive while it is busy go together
in its next ``Spool.store_batch``, which makes them all durable with one
flush (DESIGN: "Disk writes that must be durable ... may be batched").
One thread is the default because it measured best at 1, 10 and 50
connections: batches grow by themselves under load, while a second
writer thread only adds contention for the GIL and a flush of its own
(``max_parallel`` allows more, for a spool on a device that gains from
parallel flushes).

The threads are plain ones fed by a queue, each reporting a finished batch
with one ``callFromThread``: a message costs the reactor a queue put and one
wake-up, not the Deferred, context and coordinator hops of Twisted's thread
pool.  They are started when first needed, in the process that writes (a
daemon worker forked after the writer was made starts its own), and leave
after a few idle seconds.  When root writes a spool that belongs to the
Exim user, each thread takes that user's file-system identity
(spool/owner.py), so the files it creates need no chown.
"""

import os
import queue
import threading

from twisted.internet import defer
from twisted.python import failure

from exim_py.spool.owner import create_as

# seconds a writer thread waits for work before it leaves
IDLE_SECONDS = 5.0


class SpoolWriter:
    """Stores (envelope, body) pairs through a Spool, in batches."""

    def __init__(self, spool, reactor=None, max_batch=64, max_parallel=1):
        if reactor is None:
            from twisted.internet import reactor
        self.spool = spool
        self.reactor = reactor
        self.max_batch = max_batch
        self.max_parallel = max_parallel
        self._waiting = []          # (envelope, body, Deferred)
        self._in_flight = 0         # batches handed to the threads, not yet reported
        self._lock = threading.Lock()
        self._jobs = None           # the queue the threads take batches from
        self._threads = 0
        self._pid = None

    def new_message_id(self):
        return self.spool.new_message_id()

    def store(self, envelope, body):
        """A Deferred firing with the message id once -H and -D are durable."""
        d = defer.Deferred()
        self._waiting.append((envelope, body, d))
        if self._in_flight < self.max_parallel:
            self._write_next()
        return d

    def _write_next(self):
        batch, self._waiting = self._waiting[:self.max_batch], self._waiting[self.max_batch:]
        if not batch:
            return
        self._in_flight += 1
        with self._lock:
            if self._pid != os.getpid():
                # threads do not survive fork(): this process starts afresh
                self._pid, self._jobs, self._threads = os.getpid(), queue.SimpleQueue(), 0
            start = self._threads < self._in_flight
            if start:
                self._threads += 1
            # under the lock: a thread about to leave sees this batch and stays
            self._jobs.put(batch)
        if start:
            threading.Thread(target=self._writer, args=(self._jobs,),
                             name="exim_py spool writer", daemon=True).start()

    def _writer(self, jobs):
        """One writer thread: store batches until none comes for IDLE_SECONDS."""
        create_as(self.spool.owner, self.spool.directory)
        while True:
            try:
                batch = jobs.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                with self._lock:
                    if jobs.empty():
                        if jobs is self._jobs:
                            self._threads -= 1
                        return
                continue
            try:
                result = self.spool.store_batch([(env, body) for env, body, _ in batch])
            except Exception:
                result = failure.Failure()
            self.reactor.callFromThread(self._written, batch, result)

    def _written(self, batch, result):
        """In the reactor: answer a stored batch's messages, then send the next batch."""
        self._in_flight -= 1
        if isinstance(result, failure.Failure):
            for _, _, d in batch:
                d.errback(result)
        else:
            for (_, _, d), message_id in zip(batch, result):
                d.callback(message_id)
        if self._waiting and self._in_flight < self.max_parallel:
            self._write_next()

    def flush(self):
        """A Deferred that fires once nothing is queued or being written (for shutdown)."""
        idle = defer.Deferred()

        def check():
            if self._in_flight or self._waiting:
                self.reactor.callLater(0.01, check)
            else:
                idle.callback(None)

        check()
        return idle
