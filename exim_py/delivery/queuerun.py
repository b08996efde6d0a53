"""Queue runs: -q and its variants, and the daemon's periodic queue runner.

``QueueRunner`` is a scheduler, not a loop: it keeps a bounded set of
deliveries in progress (queue_run_max), takes message ids from the spool
lazily (delivery starts with the first id read, without a full scan first),
is woken by new arrivals (``notify``) and by its timer (-q<time>), and
never starts a second delivery of a message already in progress here (the
spool lock prevents it across processes too).  Time comes from an injected
clock (the reactor, or task.Clock in tests).

Queue-run flags, as Exim's: ``f`` ignores retry times, ``ff`` also thaws
frozen messages, ``i`` only tries messages never tried before; -R / -S
select messages whose recipients / sender contain a string.

``queue_run_in_order`` takes messages in arrival order (the queue listing's
order: second, fraction, then the pid field),
which needs the whole directory listed first.  -qq is Exim's two-stage queue
run (spec, option -qq): a first pass routes every message and notes the
remote host each one needs, the second delivers them with the messages for
one host next to each other, so that they follow each other down one SMTP
connection (transports/smtp_pool.py).  A queue run from the command line
delivers one message at a time, as an Exim queue-runner process does, and
QUITs the connections kept open when it ends.
"""

import os
import sys

from twisted.application import service
from twisted.internet import defer, threads

from exim_py.delivery.engine import deliver_message, load_too_high, run_blocking
from exim_py.delivery import hints as hintsdb
from exim_py.spool.ids import sort_key
from exim_py.transports import smtp_pool


class Selection:
    """Which messages a queue run takes, and how it delivers them."""

    def __init__(self, flags="", recipient=None, sender=None):
        self.force = "f" in flags
        self.thaw = "ff" in flags
        self.first_only = "i" in flags
        self.recipient = recipient.lower() if recipient else None
        self.sender = sender.lower() if sender else None
        self.flags = flags
        self.two_pass = flags.startswith("q")

    def describe(self, selector_flag=""):
        """The text Exim appends to "Start queue run: pid=N"."""
        parts = []
        if self.flags:
            parts.append("-q" + self.flags)
        if self.recipient:
            parts.append("-R %s" % self.recipient)
        if self.sender:
            parts.append("-S %s" % self.sender)
        return (" " + " ".join(parts)) if parts else ""

    def wants(self, envelope):
        if self.first_only and not envelope.deliver_firsttime:
            return False
        if self.recipient and not any(self.recipient in r.address.lower()
                                      for r in envelope.recipients
                                      if r.address not in envelope.non_recipients):
            return False
        if self.sender and self.sender not in (envelope.sender or "").lower():
            return False
        return True


class QueueRunner(service.Service):
    """The daemon's queue runner: periodic scans plus immediate work on arrivals."""

    def __init__(self, config, spool, interval=None, clock=None, logger=None,
                 selection=None, deliver=deliver_message, reader=None, max_active=None,
                 router=None):
        self.config = config
        self.spool = spool
        self.interval = interval
        if clock is None:
            from twisted.internet import reactor as clock
        self.clock = clock
        if logger is None:
            from exim_py.log import Logger
            logger = Logger(config)
        self.logger = logger
        self.selection = selection or Selection()
        self.deliver = deliver
        # Reading a -H file blocks, so by default it happens in a thread.
        self.reader = reader or (lambda message_id: threads.deferToThread(spool.read, message_id))
        self.max_active = max_active or max(int(config.main.get("queue_run_max") or 5), 1)
        # The -qq first pass: message id -> the host it needs (blocking).
        self.router = router or (lambda message_id: first_remote_host(config, spool, message_id))
        self.hints = hintsdb.for_spool(spool.directory)
        self.active = set()           # message ids being delivered now
        self.arrivals = []            # ids notified, waiting for a slot
        self._scan = None             # iterator over the spool during a scan
        self._scan_done = None        # Deferred fired when a scan finishes
        self._speculative = None      # the pool's setting to restore after a -qq run
        self._timer = None
        self._in_flight = {}          # message id -> Deferred of its delivery
        self._source_of = {}          # message id -> "scan" or "arrival"
        self._source = None
        self._listing = False         # the ids of a scan are being listed

    # -- service -------------------------------------------------------------

    def startService(self):
        super().startService()
        self.scan()

    def stopService(self):
        super().stopService()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self._scan = None
        return defer.DeferredList(list(self._in_flight.values()))

    # -- scheduling --------------------------------------------------------------

    def notify(self, message_id):
        """A new message arrived: deliver it as soon as there is a free slot."""
        if message_id not in self.active and message_id not in self.arrivals:
            self.arrivals.append(message_id)
        self._fill()

    def scan(self):
        """Start a pass over the queue (if none is in progress); returns a Deferred
        that fires when every message of the pass has been tried."""
        if self._scan_done is not None:
            return self._scan_done
        self.logger.main("Start queue run: pid=%d%s" % (os.getpid(), self.selection.describe()))
        done = self._scan_done = defer.Deferred()
        self._listing = True
        if self.selection.two_pass:
            # The second pass takes the messages for one host one after the
            # other, each one waiting for the host as Exim's first pass
            # records it: every connection is kept for the next message.
            self._speculative = smtp_pool.POOL.speculative
            smtp_pool.POOL.speculative = True
            d = self._first_pass()
        elif self.config.main.get("queue_run_in_order"):
            d = threads.deferToThread(lambda: sorted(self.spool.message_ids(), key=sort_key))
        else:
            d = defer.succeed(self.spool.message_ids())

        def start(ids):
            self._listing = False
            self._scan = iter(ids)
            self._fill()
        d.addCallback(start)
        d.addErrback(self._scan_failed)
        return done

    def _scan_failed(self, failure):
        self.logger.panic("queue run: %s" % (failure.getErrorMessage(),))
        self._listing = False
        self._scan = iter(())
        self._fill()

    @defer.inlineCallbacks
    def _first_pass(self):
        """-qq: route every message (nothing is delivered) and return the ids
        with those that need the same host next to each other, in the order
        each host was first needed; messages with no remote host come first."""
        ids = yield threads.deferToThread(
            lambda: sorted(self.spool.message_ids(), key=sort_key)
            if self.config.main.get("queue_run_in_order") else list(self.spool.message_ids()))
        groups = {}
        for message_id in ids:
            try:
                host = yield threads.deferToThread(self.router, message_id)
            except Exception:       # unreadable or unroutable now: the delivery says why
                host = None
            groups.setdefault(host, []).append(message_id)
        ordered = groups.pop(None, [])
        for members in groups.values():
            ordered.extend(members)
        return ordered

    def _schedule_next(self):
        if self.interval and self.running:
            self._timer = self.clock.callLater(self.interval, self.scan)

    def _load_too_high(self):
        return load_too_high(self.config, "deliver_queue_load_max")

    def _fill(self):
        """Start deliveries until the active set is full or there is no work."""
        while len(self.active) < self.max_active:
            message_id = self._next_id()
            if message_id is None:
                break
            self._start(message_id)
        if self._scan is None and self._scan_done is not None and not self._listing \
                and not self._scan_active():
            done, self._scan_done = self._scan_done, None
            # Connections kept for further messages are QUIT as the run ends.
            smtp_pool.close_idle().addBoth(lambda _: self._end_run(done))

    def _end_run(self, done):
        if self._speculative is not None:
            smtp_pool.POOL.speculative, self._speculative = self._speculative, None
        self.logger.main("End queue run: pid=%d%s" % (os.getpid(), self.selection.describe()))
        self._schedule_next()
        done.callback(None)

    def _scan_active(self):
        return "scan" in self._source_of.values()

    def _next_id(self):
        while self.arrivals:
            message_id = self.arrivals.pop(0)
            if message_id not in self.active:
                self._source = "arrival"
                return message_id
        if self._scan is None:
            return None
        if self._load_too_high():
            self._scan = None
            return None
        for message_id in self._scan:
            if message_id not in self.active:
                self._source = "scan"
                return message_id
        self._scan = None
        return None

    def _start(self, message_id):
        self.active.add(message_id)
        self._source_of[message_id] = self._source
        d = self._deliver_one(message_id, self._source == "scan")
        self._in_flight[message_id] = d

        def finished(result):
            self.active.discard(message_id)
            self._in_flight.pop(message_id, None)
            self._source_of.pop(message_id, None)
            self._fill()
            return result
        d.addBoth(finished)

    @defer.inlineCallbacks
    def _deliver_one(self, message_id, from_scan):
        sel = self.selection
        try:
            if from_scan:
                envelope = yield self.reader(message_id)
                if not sel.wants(envelope):
                    return None
                if envelope.frozen and not sel.thaw:
                    timeouts = self.config.main.get("timeout_frozen_after") or \
                        (envelope.sender == "" and
                         self.config.main.get("ignore_bounce_errors_after") is not None)
                    if not timeouts:
                        self.logger.main("Message is frozen", message_id)
                        return None
            outcome = yield self.deliver(self.config, self.spool, message_id, self.logger,
                                         self.hints, force=sel.force, thaw=sel.thaw,
                                         queue_run=from_scan, clock=self.clock)
            return outcome
        except Exception as e:
            self.logger.panic("queue run: delivery of %s failed: %s" % (message_id, e),
                              message_id)
            return None


def first_remote_host(config, spool, message_id):
    """The first remote host (transport, host names) one of the message's
    undelivered recipients is routed to, or None (blocking: -qq's first pass)."""
    from exim_py.delivery.address import Address, OK, REROUTED
    from exim_py.delivery.context import DeliveryContext, Message
    from exim_py.delivery import drivers
    from exim_py.delivery.route import route_address
    envelope = spool.read(message_id)
    message = Message(message_id, envelope, spool.body_path(message_id))
    ctx = DeliveryContext(config, spool=spool, message=message)
    ctx.queue_running = True
    routers = drivers.routers(config)
    todo = [Address(r.address) for r in envelope.recipients
            if r.address not in envelope.non_recipients]
    for _ in range(100):            # bounded: redirection loops end somewhere
        if not todo:
            break
        addr = todo.pop(0)
        result = route_address(addr, ctx, routers)
        if result.code is REROUTED:
            todo.extend(result.new)
        elif result.code is OK and addr.transport is not None and addr.transport.remote:
            hosts = tuple((h.address or h.name, h.port) for h in addr.host_list)
            return (addr.transport.name, hosts or (addr.transport.options["hosts"],))
    return None


def run_queue(config, inv, spool=None, logger=None, max_active=None):
    """One queue run as -q and friends ask, on the running reactor; returns a Deferred.

    The daemon's -q<time> timer calls this too.  ``max_active`` 1 delivers
    one message at a time (a command-line queue run, as Exim's).
    """
    from exim_py.log import Logger
    from exim_py.spool import Spool
    spool = spool or Spool.from_config(config)
    selection = Selection(inv.queue_flags or "", inv.queue_select_recipient,
                          inv.queue_select_sender)
    own_logger = logger is None
    runner = QueueRunner(config, spool, logger=logger or Logger(config), selection=selection,
                         max_active=max_active)
    d = runner.scan()
    if own_logger:
        def close(result):
            runner.logger.close()
            return result
        d.addBoth(close)
    return d


def queue_run_mode(inv):
    """exim_py -q[q][i][f[f]] / -R / -S: one queue run, then exit."""
    from exim_py import cli, config as configmod
    config = configmod.load(cli.config_path(inv), inv.macros or None)
    try:
        run_blocking(lambda: run_queue(config, inv, max_active=1))
    except Exception as e:   # a bug: say so briefly instead of a traceback
        sys.stderr.write("exim_py: queue run failed unexpectedly: %s\n" % (e,))
        return 1
    return 0
