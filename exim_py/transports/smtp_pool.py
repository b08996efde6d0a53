"""Idle SMTP connections kept for the next message to the same host.

Exim, after delivering a message over SMTP, looks for other messages waiting
for the same host and sends them down the same connection (spec chapter "The
smtp transport", connection_max_messages, and "Multiple messages on a single
connection" in the "SMTP processing" chapter).  exim_py delivers in one
process, so the same effect comes from a pool: when the smtp transport has
finished with a connection it parks it here, idle, keyed by everything that
decided how it was set up (transport, host, IP, port, interface, EHLO name,
TLS and AUTH settings); the next delivery to that key takes it instead of
connecting, greeting, starting TLS and authenticating again.

Parking a connection on the chance that another message comes
(``ConnectionPool.speculative``) is for the daemon, which lives on; a
command-line delivery (-odi, -M, -q) keeps a connection, as Exim does, only
for the next copy of the same message (max_rcpt) or for a message already
waiting for the host, and otherwise sends QUIT with the end of the data.
A parked connection is never taken by another address group of the
message that used it last: Exim delivers each group on its own connection.

A parked connection is QUIT when it has been idle for ``IDLE_TIMEOUT``
seconds, when a delivery run ends (``close_idle``: -q, -M, -odi) and when
the reactor shuts down.  One the server closes while it is parked simply
leaves the pool.

Messages that could not reach a host are remembered as waiting for it
(``WaitList``, Exim's wait-<transport> hints database): when a later
delivery to that host succeeds, they are delivered next, down the same
connection (``continue_waiting``).

``serialize_hosts`` is kept here too, since it is about connections: at most
one connection at a time to such a host, in this process (a set of busy
keys) and across processes (an fcntl lock on a file in the spool's db
directory, as Exim's "misc" hints database serializes).
"""

import fcntl
import os

from twisted.internet import defer

# How long a connection may wait, idle, for another message.
IDLE_TIMEOUT = 2.0
# At most this many idle connections are kept for one key.
MAX_IDLE_PER_KEY = 50


class ConnectionPool:
    """Parked ESMTPClient protocols by key; see the module docstring."""

    def __init__(self, clock=None, idle_timeout=IDLE_TIMEOUT):
        if clock is None:
            from twisted.internet import reactor as clock
        self.clock = clock
        self.idle_timeout = idle_timeout
        self._idle = {}             # key -> [protocol, ...], most recently parked last
        self._timers = {}           # protocol -> IDelayedCall
        self._closing = []          # Deferreds of connections being QUIT
        self._continuing = set()    # Deferreds of deliveries of waiting messages
        self._trigger = None
        # Park connections for messages that may arrive later (a daemon);
        # engine.run_blocking turns it off for command-line deliveries.
        self.speculative = True

    def take(self, key, message_id=None, group=None):
        """An idle connection for ``key`` (which is no longer idle), or None.
        One that last carried another address group of ``message_id`` is
        left parked."""
        conns = self._idle.get(key)
        for proto in reversed(list(conns or ())):
            last = getattr(proto, "pool_last", (None, None))
            if message_id is not None and last[0] == message_id and last[1] != group:
                continue
            conns.remove(proto)
            self._cancel_timer(proto)
            proto.idle_lost = None
            if proto._connected:
                if not conns:
                    del self._idle[key]
                return proto
        if not conns:
            self._idle.pop(key, None)
        return None

    def offer(self, key, proto):
        """Park ``proto`` under ``key``; False (the caller QUITs) when full."""
        conns = self._idle.setdefault(key, [])
        if len(conns) >= MAX_IDLE_PER_KEY:
            return False
        conns.append(proto)
        proto.idle_lost = lambda p: self._forget(key, p)
        self._timers[proto] = self.clock.callLater(self.idle_timeout, self._expire, key, proto)
        if self._trigger is None and hasattr(self.clock, "addSystemEventTrigger"):
            # On daemon shutdown the parked connections are QUIT first.
            self._trigger = self.clock.addSystemEventTrigger("before", "shutdown",
                                                             self.close_idle)
        return True

    def has_idle(self, prefix):
        """Whether a connection whose key starts with ``prefix`` is parked."""
        return any(conns and key[:len(prefix)] == prefix for key, conns in self._idle.items())

    def idle_count(self, key=None):
        """How many connections are parked (for ``key``, or in all)."""
        if key is not None:
            return len(self._idle.get(key, ()))
        return sum(len(c) for c in self._idle.values())

    def continuing(self, d):
        """``d`` delivers messages that waited for a host: ``close_idle``
        lets it finish (it uses the parked connection) before QUITting."""
        self._continuing.add(d)
        d.addBoth(lambda result: (self._continuing.discard(d), result)[1])

    def close_idle(self):
        """QUIT every parked connection; a Deferred fires once they are closed."""
        if self._continuing:
            d = defer.DeferredList(list(self._continuing), consumeErrors=True)
            return d.addBoth(lambda _: self.close_idle())
        waits = [d for d in self._closing if not d.called]
        for key in list(self._idle):
            for proto in self._idle.pop(key):
                self._cancel_timer(proto)
                waits.append(self._quit(proto))
        return defer.DeferredList(waits) if waits else defer.succeed(None)

    # -- internals -------------------------------------------------------------

    def _quit(self, proto):
        proto.idle_lost = None
        proto.quit_idle()
        done = proto.when_closed()
        self._closing.append(done)
        done.addBoth(lambda _: self._closing.remove(done))
        return done

    def _expire(self, key, proto):
        self._timers.pop(proto, None)
        conns = self._idle.get(key)
        if conns and proto in conns:
            conns.remove(proto)
            if not conns:
                del self._idle[key]
            self._quit(proto)

    def _forget(self, key, proto):
        self._cancel_timer(proto)
        conns = self._idle.get(key)
        if conns and proto in conns:
            conns.remove(proto)
            if not conns:
                del self._idle[key]

    def _cancel_timer(self, proto):
        timer = self._timers.pop(proto, None)
        if timer is not None and timer.active():
            timer.cancel()


POOL = ConnectionPool()


def close_idle():
    """QUIT the process's parked connections (the end of a delivery run)."""
    return POOL.close_idle()


class SerializeLock:
    """One connection at a time to a host (the smtp transport's serialize_hosts).

    ``acquire()`` is False when another connection, here or in another
    process using the same spool, holds the host.  The lock lasts as long as
    the connection: ``release()`` when it has closed.
    """

    _busy = set()                   # keys held in this process

    def __init__(self, db_directory, key):
        self.key = key
        self.path = os.path.join(db_directory, "serialize-" + key.replace("/", "_"))
        self.kept = False           # a parked connection holds it until it closes
        self._fd = None

    def acquire(self):
        if self.key in SerializeLock._busy:
            return False
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o640)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        SerializeLock._busy.add(self.key)
        return True

    def release(self):
        if self._fd is None:
            return
        SerializeLock._busy.discard(self.key)
        os.close(self._fd)
        self._fd = None


class WaitList:
    """Message ids waiting for one host of one transport, in a file in the
    spool's db directory (``wait-<transport>-<address>:<port>``, plain files
    beside Exim's, so that clearing db/* clears them too), locked while it is
    read or changed, so that other processes may share it."""

    def __init__(self, db_directory, transport, address, port):
        self.path = os.path.join(db_directory, "wait-%s-%s:%d" % (
            transport.replace("/", "_"), address, port))

    def _locked(self, change):
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o640)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX)
            with os.fdopen(os.dup(fd), "r+") as f:
                ids = [line.strip() for line in f if line.strip()]
                new, result = change(ids)
                if new != ids:
                    f.seek(0)
                    f.truncate()
                    f.write("".join(i + "\n" for i in new))
            return result
        finally:
            os.close(fd)

    def _empty(self):
        """The usual case, seen with one stat and no lock."""
        try:
            return os.stat(self.path).st_size == 0
        except FileNotFoundError:
            return True

    def add(self, message_id):
        self._locked(lambda ids: (ids if message_id in ids else ids + [message_id], None))

    def waiting(self, exclude=None):
        """Whether a message other than ``exclude`` waits (a peek: nothing
        changes, and an empty list costs one stat)."""
        if self._empty():
            return False
        return self._locked(lambda ids: (ids, any(i != exclude for i in ids)))

    def take_one(self, usable):
        """The first waiting id for which ``usable(id)`` holds, taken off
        the list with those before it that are not; [] when there is none."""
        if self._empty():
            return []

        def change(ids):
            for n, i in enumerate(ids):
                if usable(i):
                    return ids[n + 1:], [i]
            return [], []
        return self._locked(change)


# Messages whose continued deliveries are under way in this process.
_CHAINED = set()


def continue_waiting(ctx, transport, host, port, message_id):
    """After a delivery to ``host`` succeeded, deliver the next message that
    waited for it down the parked connection; the others stay listed, so
    that that delivery keeps the connection for the next, as Exim's chain
    of continued deliveries does."""
    spool = getattr(ctx, "spool", None)
    if spool is None or getattr(ctx, "mode", "deliver") != "deliver":
        return
    # A message earlier in this chain (still being delivered, its lock
    # held) is not taken again, though it may wait for the host too.
    waiting = WaitList(os.path.join(spool.directory, "db"), transport.name, host.address,
                       port).take_one(lambda i: i != message_id and i not in _CHAINED
                                      and os.path.exists(spool.header_path(i)))
    if not waiting:
        return
    from exim_py.delivery.engine import deliver_message

    @defer.inlineCallbacks
    def run():
        _CHAINED.add(message_id)
        try:
            yield deliver_all()
        finally:
            _CHAINED.discard(message_id)

    @defer.inlineCallbacks
    def deliver_all():
        for other in waiting:
            try:
                # A continued delivery is still part of the queue run that
                # started it: address retry times are respected (Exim 0209).
                yield deliver_message(transport.config, spool, other, ctx.logger, ctx.hints,
                                      clock=ctx.clock,
                                      queue_run=getattr(ctx, "queue_running", False))
            except Exception as e:   # one message's trouble must not stop the others
                if ctx.logger is not None:
                    ctx.logger.panic("delivery of waiting message failed: %s" % (e,), other)
    def start():
        d = run()
        POOL.continuing(d)
        return d
    # The engine starts them once this message is finished with (its retry
    # data written) and waits for them; a bare transport call starts them
    # at once.
    later = getattr(ctx, "continuations", None)
    if later is None:
        start()
    else:
        later.append(start)

