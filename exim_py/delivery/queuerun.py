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
"""

import os
import sys

from twisted.application import service
from twisted.internet import defer, threads

from exim_py.delivery.engine import deliver_message, load_too_high, run_blocking
from exim_py.delivery import hints as hintsdb


class Selection:
    """Which messages a queue run takes, and how it delivers them."""

    def __init__(self, flags="", recipient=None, sender=None):
        self.force = "f" in flags
        self.thaw = "ff" in flags
        self.first_only = "i" in flags
        self.recipient = recipient.lower() if recipient else None
        self.sender = sender.lower() if sender else None
        self.flags = flags

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
                 selection=None, deliver=deliver_message, reader=None):
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
        self.max_active = max(int(config.main.get("queue_run_max") or 5), 1)
        self.hints = hintsdb.for_spool(spool.directory)
        self.active = set()           # message ids being delivered now
        self.arrivals = []            # ids notified, waiting for a slot
        self._scan = None             # iterator over the spool during a scan
        self._scan_done = None        # Deferred fired when a scan finishes
        self._timer = None
        self._in_flight = {}          # message id -> Deferred of its delivery
        self._source_of = {}          # message id -> "scan" or "arrival"
        self._source = None

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
        self._scan = iter(self.spool.message_ids())
        done = self._scan_done = defer.Deferred()
        self._fill()
        return done

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
        if self._scan is None and self._scan_done is not None and not self._scan_active():
            done, self._scan_done = self._scan_done, None
            self.logger.main("End queue run: pid=%d%s" % (os.getpid(),
                                                          self.selection.describe()))
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


def run_queue(config, inv, spool=None, logger=None):
    """One queue run as -q and friends ask, on the running reactor; returns a Deferred.

    The daemon's -q<time> timer calls this too.
    """
    from exim_py.log import Logger
    from exim_py.spool import Spool
    spool = spool or Spool.from_config(config)
    selection = Selection(inv.queue_flags or "", inv.queue_select_recipient,
                          inv.queue_select_sender)
    own_logger = logger is None
    runner = QueueRunner(config, spool, logger=logger or Logger(config), selection=selection)
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
        run_blocking(lambda: run_queue(config, inv))
    except Exception as e:   # a bug: say so briefly instead of a traceback
        sys.stderr.write("exim_py: queue run failed unexpectedly: %s\n" % (e,))
        return 1
    return 0
