"""The queue runner (a scheduler with a bounded active set) and the
command-line modes that act on the queue: -q, -M, -Mc, -Mf, -Mt, -Mrm,
-Mg, -Mar, -Mmd, -Mvh, -Mvb, -Mvl."""

import mailbox
import os

from twisted.internet import defer, task
from twisted.trial import unittest

from exim_py.delivery.queuerun import QueueRunner, Selection
from tests.support.peers import run_exim_py
from tests.test_delivery_engine import MailEnv


class _Spool:
    """A spool wrapper that counts how far the directory scan has gone."""

    def __init__(self, spool):
        self.inner = spool
        self.read_ids = 0
        self.directory = spool.directory

    def message_ids(self):
        for message_id in self.inner.message_ids():
            self.read_ids += 1
            yield message_id

    def read(self, message_id):
        return self.inner.read(message_id)


class SchedulerTests(unittest.TestCase):
    """QueueRunner's scheduling, with deliveries the test completes by hand."""

    def setUp(self):
        self.env = MailEnv(self)
        self.ids = [self.env.submit(["mb1"]) for _ in range(7)]
        self.spool = _Spool(self.env.spool)
        self.pending = {}
        self.started = []
        self.clock = task.Clock()

    def fake_deliver(self, config, spool, message_id, logger, hints, **kw):
        self.assertNotIn(message_id, self.pending, "two deliveries of one message")
        d = defer.Deferred()
        self.pending[message_id] = d
        self.started.append(message_id)
        return d

    def finish(self, message_id):
        self.pending.pop(message_id).callback(None)

    def runner(self, **kw):
        r = QueueRunner(self.env.config, self.spool, clock=self.clock,
                        logger=self.env.logger, deliver=self.fake_deliver,
                        reader=lambda mid: defer.succeed(self.spool.read(mid)), **kw)
        r.max_active = 3
        return r

    def test_bounded_active_set(self):
        """No more than queue_run_max deliveries are in progress at once, and
        finishing one starts the next until the queue is done."""
        r = self.runner()
        done = r.scan()
        self.assertEqual(len(self.pending), 3)
        while self.pending:
            self.assertLessEqual(len(self.pending), 3)
            self.finish(next(iter(self.pending)))
        self.assertEqual(sorted(self.started), sorted(self.ids))
        self.assertTrue(done.called)
        log = self.env.mainlog()
        self.assertIn("Start queue run: pid=%d" % os.getpid(), log)
        self.assertIn("End queue run: pid=%d" % os.getpid(), log)

    def test_starts_without_full_scan(self):
        """Delivery starts while the spool directory has been read only as far
        as the active set needs."""
        r = self.runner()
        r.scan()
        self.assertEqual(len(self.started), 3)
        self.assertLessEqual(self.spool.read_ids, 3)

    def test_arrival_is_delivered_when_a_slot_frees(self):
        """notify() puts a new message ahead of the rest of the scan."""
        r = self.runner()
        r.scan()
        new = self.env.submit(["mb1"])
        r.notify(new)
        self.assertNotIn(new, self.started)
        self.finish(self.started[0])
        self.assertEqual(self.started[3], new)

    def test_no_second_delivery_of_active_message(self):
        """A notification for a message already in progress starts nothing."""
        r = self.runner()
        r.scan()
        before = list(self.started)
        r.notify(before[0])
        self.assertEqual(self.started, before)

    def test_timer_rescans(self):
        """With an interval the runner scans again when the clock says so."""
        r = self.runner(interval=600)
        r.startService()
        while self.pending:
            self.finish(next(iter(self.pending)))
        first = len(self.started)
        self.clock.advance(599)
        self.assertEqual(len(self.started), first)
        self.clock.advance(1)
        self.assertEqual(len(self.started), first + 3)
        r.stopService()

    def test_selection(self):
        """-R, -S and -qi select messages as Exim does."""
        env = self.env.spool.read(self.ids[0])
        self.assertTrue(Selection("", recipient="MB1@").wants(env))
        self.assertFalse(Selection("", recipient="nobody").wants(env))
        self.assertTrue(Selection("", sender="x.example").wants(env))
        self.assertTrue(Selection("i").wants(env))
        env.deliver_firsttime = False
        self.assertFalse(Selection("i").wants(env))


class QueueRunTests(unittest.TestCase):
    """Queue runs with the real engine."""

    def setUp(self):
        self.env = MailEnv(self)

    @defer.inlineCallbacks
    def test_queue_run_delivers_and_skips_frozen(self):
        """A queue run delivers what it can and leaves frozen messages alone."""
        ids = [self.env.submit(["mb1"]) for _ in range(3)]
        frozen = self.env.submit(["mb2"])
        env = self.env.spool.read(frozen)
        env.frozen = True
        self.env.spool.write_header(env)
        runner = QueueRunner(self.env.config, self.env.spool, logger=self.env.logger)
        yield runner.scan()
        self.assertEqual(len(mailbox.mbox(self.env.path("mail", "mb1"))), 3)
        self.assertEqual(self.env.queued(), [frozen])
        self.assertIn("%s Message is frozen" % frozen, self.env.mainlog())
        for i in ids:
            self.assertIn("%s Completed" % i, self.env.mainlog())

    @defer.inlineCallbacks
    def test_force_thaw(self):
        """-qff thaws and delivers a frozen message."""
        frozen = self.env.submit(["mb2"])
        env = self.env.spool.read(frozen)
        env.frozen = True
        self.env.spool.write_header(env)
        runner = QueueRunner(self.env.config, self.env.spool, logger=self.env.logger,
                             selection=Selection("ff"))
        yield runner.scan()
        self.assertEqual(self.env.queued(), [])
        self.assertIn("Unfrozen by forced delivery", self.env.mainlog())


class CommandLineTests(unittest.TestCase):
    """exim_py -M..., -q and -bp on a real spool, as separate processes."""

    def setUp(self):
        self.env = MailEnv(self)
        self.conf = self.env.path("exim.conf")

    def run_cli(self, *args, input=None):
        return run_exim_py(["-C", self.conf] + list(args), input=input)

    def test_submit_deliver_defer_list_retry(self):
        """The acceptance path: a message submitted on the command line is
        delivered at once; a deferred one is listed by -bp and -M retries it."""
        r = self.run_cli("-odi", "-f", "sender@x.example", "md1@localdomain",
                         input="Subject: hi\n\ntest\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(mailbox.Maildir(self.env.path("maildir", "md1"), create=False)), 1)
        r = self.run_cli("-odi", "-f", "sender@x.example", "later@localdomain",
                         input="Subject: hi\n\ntest\n")
        mid = self.env.queued()[0]
        listing = self.run_cli("-bp").stdout
        self.assertIn(mid, listing)
        self.assertIn("later@localdomain", listing)
        with open(self.env.path("aliases"), "a") as f:
            f.write("later2: mb2\n")
        with open(self.env.path("aliases")) as f:
            text = f.read().replace("later: :defer: not now", "later: mb2")
        with open(self.env.path("aliases"), "w") as f:
            f.write(text)
        r = self.run_cli("-M", mid)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.env.queued(), [])
        self.assertEqual(len(mailbox.mbox(self.env.path("mail", "mb2"))), 1)

    def test_freeze_thaw_messages(self):
        """-Mf / -Mt print Exim's messages and exit 1 when nothing changes."""
        mid = self.env.submit(["mb1"])
        r = self.run_cli("-Mf", mid)
        self.assertEqual((r.stdout, r.returncode), ("Message %s is now frozen\n" % mid, 0))
        r = self.run_cli("-Mf", mid)
        self.assertEqual((r.stdout, r.returncode), ("Message %s is already frozen\n" % mid, 1))
        self.assertIn("*** frozen ***", self.run_cli("-bp").stdout)
        r = self.run_cli("-Mt", mid)
        self.assertEqual((r.stdout, r.returncode), ("Message %s is no longer frozen\n" % mid, 0))
        r = self.run_cli("-Mt", mid)
        self.assertEqual((r.stdout, r.returncode), ("Message %s is not frozen\n" % mid, 1))
        self.assertIn("frozen by", self.env.mainlog())

    def test_remove(self):
        """-Mrm removes the message and logs "removed by"."""
        mid = self.env.submit(["mb1"])
        r = self.run_cli("-Mrm", mid)
        self.assertEqual((r.stdout, r.returncode), ("Message %s has been removed\n" % mid, 0))
        self.assertEqual(self.env.queued(), [])
        self.assertIn("%s removed by" % mid, self.env.mainlog())

    def test_view_header_body_log(self):
        """-Mvh, -Mvb and -Mvl show the spool files and the message log."""
        mid = self.env.submit(["later"], body="the body text\n")
        self.assertTrue(self.run_cli("-Mvh", mid).stdout.startswith("%s-H\n" % mid))
        self.assertEqual(self.run_cli("-Mvb", mid).stdout, "%s-D\nthe body text\n" % mid)
        self.run_cli("-M", mid)
        self.assertIn("later@localdomain R=alias defer (-1): not now",
                      self.run_cli("-Mvl", mid).stdout)

    def test_add_and_mark_recipients(self):
        """-Mar adds a recipient, -Mmd marks one delivered; -M then delivers the rest."""
        mid = self.env.submit(["mb1"])
        r = self.run_cli("-Mar", mid, "mb2@localdomain")
        self.assertEqual(r.stdout, "Message %s has been modified\n" % mid)
        r = self.run_cli("-Mmd", mid, "mb1@localdomain")
        self.assertEqual(r.stdout, "Message %s has been modified\n" % mid)
        self.run_cli("-M", mid)
        self.assertFalse(os.path.exists(self.env.path("mail", "mb1")))
        self.assertEqual(len(mailbox.mbox(self.env.path("mail", "mb2"))), 1)

    def test_edit_sender_and_mark_all(self):
        """-Mes changes the sender, -Mmad marks every recipient delivered."""
        mid = self.env.submit(["mb1", "mb2"])
        r = self.run_cli("-Mes", mid, "new@sender.example")
        self.assertEqual(r.stdout, "Message %s has been modified\n" % mid)
        self.assertEqual(self.env.spool.read(mid).sender, "new@sender.example")
        r = self.run_cli("-Mmad", mid)
        self.assertEqual(r.stdout, "Message %s has been modified\n\n" % mid)
        env = self.env.spool.read(mid)
        self.assertEqual(env.non_recipients, {"mb1@localdomain", "mb2@localdomain"})
        log = self.env.mainlog()
        self.assertIn("sender address changed to <new@sender.example> by", log)
        self.assertIn("address <mb2@localdomain> marked delivered by", log)

    def test_give_up_bounces(self):
        """-Mg cancels the message and bounces its undelivered recipients."""
        mid = self.env.submit(["mb1"])
        self.run_cli("-Mg", mid)
        log = self.env.mainlog()
        self.assertIn("%s cancelled by" % mid, log)
        self.assertIn("<= <> R=%s" % mid, log)
        self.assertNotIn(mid, self.env.queued())
        bounce_id = self.env.queued()[0]
        _, report = self.env.read_queued(bounce_id)
        self.assertTrue(report.get_payload()[0].get_payload().endswith(
            "failed:\n\n  mb1@localdomain\n"))

    def test_malformed_id(self):
        """A malformed id is refused as Exim refuses it."""
        r = self.run_cli("-Mf", "bogus")
        self.assertEqual(r.returncode, 1)
        self.assertIn("malformed message id bogus after -Mf option", r.stderr)

    def test_queue_run(self):
        """-q delivers the queue and logs the start and end of the run."""
        for _ in range(3):
            self.env.submit(["mb1"])
        r = self.run_cli("-q")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.env.queued(), [])
        self.assertEqual(len(mailbox.mbox(self.env.path("mail", "mb1"))), 3)
        self.assertIn("Start queue run: pid=", self.env.mainlog())


class EmptyQueueTests(unittest.TestCase):
    """A queue run over an empty queue."""

    def test_empty_queue_run_finishes(self):
        """scan() of an empty spool returns a Deferred that has already fired,
        and the run is logged as started and ended."""
        env = MailEnv(self)
        runner = QueueRunner(env.config, env.spool, logger=env.logger)
        d = runner.scan()
        self.assertTrue(d.called)
        self.assertIn("End queue run: pid=", env.mainlog())
