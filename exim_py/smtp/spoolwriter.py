"""Putting accepted messages on the spool without blocking the reactor.

Every message must be durable before its 250 is sent.  Writing runs in a
thread; while one batch is being written, messages from other connections
queue up and go together in the next ``Spool.store_batch``, so that many
connections share each directory fsync (DESIGN: "Disk writes that must be
durable ... may be batched").
"""

from twisted.internet import defer, threads


class SpoolWriter:
    """Stores (envelope, body) pairs through a Spool, batching across callers."""

    def __init__(self, spool, reactor=None, max_batch=64):
        if reactor is None:
            from twisted.internet import reactor
        self.spool = spool
        self.reactor = reactor
        self.max_batch = max_batch
        self._waiting = []          # (envelope, body, Deferred)
        self._writing = False

    def new_message_id(self):
        return self.spool.new_message_id()

    def store(self, envelope, body):
        """A Deferred firing with the message id once -H and -D are durable."""
        d = defer.Deferred()
        self._waiting.append((envelope, body, d))
        if not self._writing:
            self._write_next()
        return d

    def _write_next(self):
        batch, self._waiting = self._waiting[:self.max_batch], self._waiting[self.max_batch:]
        if not batch:
            self._writing = False
            return
        self._writing = True
        pairs = [(env, body) for env, body, _ in batch]
        work = threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(),
                                         self.spool.store_batch, pairs)

        def written(ids):
            for (_, _, d), message_id in zip(batch, ids):
                d.callback(message_id)

        def failed(f):
            for _, _, d in batch:
                d.errback(f)

        work.addCallbacks(written, failed)
        work.addBoth(lambda _: self._write_next())

    def flush(self):
        """A Deferred that fires once nothing is queued or being written (for shutdown)."""
        idle = defer.Deferred()

        def check():
            if self._writing or self._waiting:
                self.reactor.callLater(0.01, check)
            else:
                idle.callback(None)

        check()
        return idle
