"""The delivery engine's worker threads.

Deliveries do their blocking work (spool files, routing lookups, local
transports) in a thread pool of their own rather than the reactor's, which
the SMTP server's spool writes and ACLs use: a delivery that waits for a
flush then never holds up an acknowledgement, and the number of threads
that compete for the interpreter lock stays bounded.
"""

from twisted.internet import threads

from exim_py.workers import Pool

# Enough threads that concurrent deliveries share their flushes
# (delivery/durable.py), few enough not to fight the reactor for the GIL.
DELIVERY_THREADS = 8
# Each delivery hops to a thread twice or more: exim_py.workers' pool
# costs a fraction of Twisted's ThreadPool per hop.  It stops at reactor
# shutdown and starts again if the reactor runs again (trial, once per test).
_POOL = Pool(DELIVERY_THREADS, "delivery")


def in_thread(f, *args):
    """Run ``f`` in a delivery thread; a Deferred firing with its result."""
    return _POOL.run(f, *args)


def deliver_blocking(transport, message, batch, ctx):
    """Run a local transport from a worker thread: its blocking form
    (``deliver_blocking``, HACKING.rst), else its ``deliver`` on the reactor."""
    blocking = getattr(transport, "deliver_blocking", None)
    if blocking is not None:
        return blocking(message, batch, ctx)
    from twisted.internet import reactor
    return threads.blockingCallFromThread(reactor, transport.deliver, message, batch, ctx)
