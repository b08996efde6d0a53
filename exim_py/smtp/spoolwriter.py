"""Putting accepted messages on the spool without blocking the reactor.

Every message must be durable before its 250 is sent.  Writing runs in the
reactor's thread pool: up to ``max_parallel`` writes are under way at once
(the disk merges concurrent fsyncs into shared journal commits, as it does
for Exim's one-process-per-connection writes), and messages that arrive
while every writer is busy go together in the next ``Spool.store_batch``,
sharing its directory fsync (DESIGN: "Disk writes that must be durable ...
may be batched").
"""

from twisted.internet import defer, threads


class SpoolWriter:
    """Stores (envelope, body) pairs through a Spool, in parallel and in batches."""

    def __init__(self, spool, reactor=None, max_batch=64, max_parallel=16):
        if reactor is None:
            from twisted.internet import reactor
        # the writers block in fsync, not on the GIL: let enough of them run
        reactor.suggestThreadPoolSize(max(10, max_parallel + 4))
        self.spool = spool
        self.reactor = reactor
        self.max_batch = max_batch
        self.max_parallel = max_parallel
        self._waiting = []          # (envelope, body, Deferred)
        self._in_flight = 0

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
        pairs = [(env, body) for env, body, _ in batch]
        work = threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(),
                                         self.spool.store_batch, pairs)

        def written(ids):
            for (_, _, d), message_id in zip(batch, ids):
                d.callback(message_id)

        def failed(f):
            for _, _, d in batch:
                d.errback(f)

        def next_batch(_):
            self._in_flight -= 1
            if self._waiting and self._in_flight < self.max_parallel:
                self._write_next()

        work.addCallbacks(written, failed)
        work.addBoth(next_batch)

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
