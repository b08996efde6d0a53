"""The delivery engine's worker threads.

Deliveries do their blocking work (spool files, routing lookups, local
transports) in a thread pool of their own rather than the reactor's, which
the SMTP server's spool writes and ACLs use: a delivery that waits for a
flush then never holds up an acknowledgement, and the number of threads
that compete for the interpreter lock stays bounded.
"""

import os

from twisted.internet import threads

# Enough threads that concurrent deliveries share their flushes
# (delivery/durable.py), few enough not to fight the reactor for the GIL.
DELIVERY_THREADS = 8
_POOL = None


def in_thread(f, *args):
    """Run ``f`` in a delivery thread; a Deferred firing with its result."""
    global _POOL
    from twisted.internet import reactor
    if _POOL is None:
        from twisted.python.threadpool import ThreadPool
        _POOL = ThreadPool(DELIVERY_THREADS, DELIVERY_THREADS, name="delivery")
        _POOL.start()
        reactor.addSystemEventTrigger("during", "shutdown", _stop_pool, _POOL)
    return threads.deferToThreadPool(reactor, _POOL, f, *args)


def _stop_pool(pool):
    """At reactor shutdown; as the reactor's own pool, a new one is made if
    the reactor runs again (trial runs it once per test)."""
    global _POOL
    if _POOL is pool:
        _POOL = None
    pool.stop()


def _forget_pool():
    """In a forked child (-odb): the parent's threads are not there."""
    global _POOL
    _POOL = None


os.register_at_fork(after_in_child=_forget_pool)


def deliver_blocking(transport, message, batch, ctx):
    """Run a local transport from a worker thread: its blocking form
    (``deliver_blocking``, HACKING.rst), else its ``deliver`` on the reactor."""
    blocking = getattr(transport, "deliver_blocking", None)
    if blocking is not None:
        return blocking(message, batch, ctx)
    from twisted.internet import reactor
    return threads.blockingCallFromThread(reactor, transport.deliver, message, batch, ctx)
