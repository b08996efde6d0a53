"""Putting accepted messages on the spool without blocking the reactor.

Every message must be durable before its 250 is sent.  Writing runs in one
thread of the writer's own: messages that arrive while it is busy go
together in its next batch, and batches overlap so that under load one
flush serves two of them (``SpoolWriter._writer``; DESIGN: "Disk writes
that must be durable ... may be batched").  One thread measured best at 1,
10 and 50 connections: batches grow by themselves under load, while more
writer threads only added contention for the GIL and flushes of their own.

The thread is a plain one fed by a queue, reporting each finished batch
with one ``callFromThread``: a message costs the reactor a queue put and
one wake-up, not the Deferred, context and coordinator hops of Twisted's
thread pool.  It is started when first needed, in the process that writes
(a daemon worker forked after the writer was made starts its own), and
leaves after a few idle seconds.  When root writes a spool that belongs to
the Exim user, the thread takes that user's file-system identity
(spool/owner.py), so the files it creates need no chown.
"""

import collections
import queue
import threading

from twisted.internet import defer
from twisted.python import failure, log

from exim_py import procid
from exim_py.spool.owner import create_as

# one message handed to the writer thread (see SpoolWriter.store)
_Job = collections.namedtuple("_Job", "envelope body deferred msglog_line arrival")

# seconds a writer thread waits for work before it leaves
IDLE_SECONDS = 5.0


class SpoolWriter:
    """Stores (envelope, body) pairs through a Spool, in batches, in a thread of its own."""

    def __init__(self, spool, reactor=None, max_batch=64):
        if reactor is None:
            from twisted.internet import reactor
        self.spool = spool
        self.reactor = reactor
        self.max_batch = max_batch
        self._unanswered = 0        # messages handed to the thread and not answered yet
        self._lock = threading.Lock()
        self._jobs = None           # (envelope, body, Deferred) for the thread
        self._running = False       # whether this process's thread is alive
        self._pid = None

    def new_message_id(self):
        return self.spool.new_message_id()

    def store(self, envelope, body, msglog_line=None, arrival=None):
        """A Deferred firing with the message id once -H and -D are durable.

        ``msglog_line``: the message log's first line when the caller has
        it (None: the spool builds its "Received from" line).  ``arrival``:
        (Logger, text) for the main log's <= line, which this thread writes
        once the message is durable and before it is answered, with the
        rest of its batch in one write."""
        d = defer.Deferred()
        self._unanswered += 1
        with self._lock:
            if self._pid != procid.current():
                # threads do not survive fork(): this process starts afresh
                self._pid, self._jobs, self._running = procid.current(), queue.SimpleQueue(), False
            # under the lock: a thread about to leave sees this message and stays
            self._jobs.put(_Job(envelope, body, d, msglog_line, arrival))
            start, self._running = not self._running, True
        if start:
            threading.Thread(target=self._writer, args=(self._jobs,),
                             name="exim_py spool writer", daemon=True).start()
        return d

    def _writer(self, jobs):
        """The writer thread: store what comes, in batches, until nothing does for IDLE_SECONDS.

        Batches overlap.  Once a batch is renamed into place, its names
        must be flushed before its messages are answered; if more messages
        are waiting, their files are written first, and the one flush that
        makes those files durable makes the renames durable too.  Under
        load a batch then costs one flush instead of two; with nothing
        waiting, the renames get their own directory fsync at once.
        """
        create_as(self.spool.owner, self.spool.directory)
        renamed = None     # (SpoolBatch, items): on the queue, its names not yet durable
        while True:
            items = self._take(jobs, wait=renamed is None)
            if items is None:
                if renamed is None:
                    return
                self._settle(*renamed)
                renamed = None
                continue
            batch = None
            try:
                batch = self.spool.write_batch([(job.envelope, job.body) for job in items],
                                               [job.msglog_line for job in items])
                self.spool.make_durable(written=batch, renamed=renamed[0] if renamed else None)
            except Exception:
                if batch is not None:
                    batch.close()
                self._answer(items, failure.Failure())
                continue   # the renamed batch, if any, gets a flush of its own next
            if renamed is not None:
                self._finish(*renamed)
            try:
                batch.rename()
            except Exception:
                batch.close()
                self._answer(items, failure.Failure())
                renamed = None
                continue
            renamed = (batch, items)

    def _take(self, jobs, wait):
        """Up to max_batch queued messages; None when there are none (with
        ``wait``, after IDLE_SECONDS, and then this thread must leave)."""
        while True:
            try:
                first = jobs.get(timeout=IDLE_SECONDS) if wait else jobs.get_nowait()
                break
            except queue.Empty:
                if not wait:
                    return None
                with self._lock:
                    if jobs.empty():
                        if jobs is self._jobs:
                            self._running = False
                        return None
        items = [first]
        while len(items) < self.max_batch:
            try:
                items.append(jobs.get_nowait())
            except queue.Empty:
                break
        return items

    def _settle(self, batch, items):
        """Flush a renamed batch's names on their own, then answer it."""
        try:
            self.spool.make_durable(renamed=batch)
        except Exception:
            batch.close()
            self._answer(items, failure.Failure())
            return
        self._finish(batch, items)

    def _finish(self, batch, items):
        """A batch whose names are durable: its message logs, then its answers."""
        batch.close()
        try:
            result = batch.finish()
        except Exception:
            result = failure.Failure()
        else:
            _log_arrivals(items, result)
        self._answer(items, result)

    def _answer(self, items, result):
        self.reactor.callFromThread(self._written, items, result)

    def _written(self, items, result):
        """In the reactor: answer a stored batch's messages."""
        self._unanswered -= len(items)
        if isinstance(result, failure.Failure):
            for job in items:
                job.deferred.errback(result)
        else:
            for job, message_id in zip(items, result):
                job.deferred.callback(message_id)

    def flush(self):
        """A Deferred that fires once nothing is queued or being written (for shutdown)."""
        idle = defer.Deferred()

        def check():
            if self._unanswered:
                self.reactor.callLater(0.01, check)
            else:
                idle.callback(None)

        check()
        return idle


def _log_arrivals(items, message_ids):
    """The <= lines of a stored batch, one write per log (Exim logs an arrival
    before its 250).  A log that cannot be written does not unmake the
    messages: the failure goes to Twisted's log."""
    by_logger = {}
    for job, message_id in zip(items, message_ids):
        if job.arrival is not None:
            logger, text = job.arrival
            by_logger.setdefault(id(logger), (logger, []))[1].append((text, message_id))
    for logger, entries in by_logger.values():
        try:
            logger.main_many(entries)
        except Exception:
            log.err(None, "exim_py: could not log arrivals")
