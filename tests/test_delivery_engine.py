"""The delivery engine end to end: spool → routers → transports → mailboxes,
logs, retry hints and bounces.

Mailboxes are read back with Python's mailbox module; bounces are parsed
with the email package (and flufl.bounce when installed).
"""

import email
import mailbox
import os
import shutil
import tempfile
import threading
import time

from twisted.internet import defer
from twisted.trial import unittest

from exim_py import config as configmod
from exim_py import receive
from exim_py.delivery import durable
from exim_py.delivery.engine import deliver_message
from exim_py.delivery.received import ReceivedCopy
from exim_py.envelope import Envelope, Recipient
from exim_py.log import Logger
from exim_py.spool import Spool

BASE_CONFIG = """\
primary_hostname = myhost.test
qualify_domain = localdomain
spool_directory = VAR/spool
log_file_path = VAR/log/%slog
never_users =
begin routers
alias:
  driver = redirect
  domains = localdomain
  local_parts = lsearch;VAR/aliases
  data = ${lookup{$local_part}lsearch{VAR/aliases}}
  allow_fail
  allow_defer
  pipe_transport = pipe
  file_transport = file
maildir_users:
  driver = accept
  domains = localdomain
  local_parts = md1 : md2
  transport = maildir
mbox_users:
  driver = accept
  domains = localdomain
  local_parts = mb1 : mb2 : quota
  transport = mbox
begin transports
mbox:
  driver = appendfile
  file = VAR/mail/${local_part}
  envelope_to_add
  return_path_add
  delivery_date_add
  quota = ${if eq{$local_part}{quota}{10}{}}
maildir:
  driver = appendfile
  directory = VAR/maildir/${local_part}
  maildir_format
  envelope_to_add
  return_path_add
  delivery_date_add
pipe:
  driver = pipe
  return_fail_output
file:
  driver = appendfile
begin retry
* * F,1h,10m
"""

ALIASES = """\
fails: :fail: no such person
later: :defer: not now
both: md1, mb1
piped: |/bin/sh -c "cat > VAR/piped.out"
badpipe: |/bin/false
tempfail: |/bin/sh -c "exit 75"
saved: VAR/saved.mbox
list: md1, md2, fails
hole: :blackhole:
"""


class MailEnv:
    """A private configuration, spool and mail directory for one test."""

    def __init__(self, testcase, config_text=BASE_CONFIG, aliases=ALIASES):
        self.dir = tempfile.mkdtemp(prefix="exim_py-delivery-")
        testcase.addCleanup(shutil.rmtree, self.dir, True)
        for sub in ("mail", "maildir", "log"):
            os.makedirs(os.path.join(self.dir, sub))
        with open(self.path("aliases"), "w") as f:
            f.write(aliases.replace("VAR", self.dir))
        with open(self.path("exim.conf"), "w") as f:
            f.write(config_text.replace("VAR", self.dir))
        self.config = configmod.load(self.path("exim.conf"))
        self.spool = Spool.from_config(self.config)
        self.spool.make_directories()
        self.logger = Logger(self.config)
        testcase.addCleanup(self.logger.close)

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    def submit(self, recipients, sender="sender@x.example", body="Hello.\nFrom the body\n",
               subject="test"):
        """Queue a message as local submission would; returns its id."""
        return self.submit_envelope(recipients, sender, body, subject).message_id

    def submit_envelope(self, recipients, sender="sender@x.example", body="Hello.\nFrom the body\n",
                        subject="test"):
        """Queue a message as local submission would; returns the Envelope stored."""
        env = Envelope()
        env.sender = sender
        env.recipients = [Recipient(r if "@" in r else r + "@localdomain") for r in recipients]
        env.message_id = self.spool.new_message_id()
        data = ("Subject: %s\nTo: %s\n\n%s" % (subject, ", ".join(recipients), body)).encode()
        stored = receive.receive(env, data, self.config, local=True)
        self.spool.store(env, stored)
        return env

    def deliver(self, message_id, **options):
        return deliver_message(self.config, self.spool, message_id, self.logger, **options)

    def mainlog(self):
        try:
            with open(self.path("log", "mainlog")) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def queued(self):
        return sorted(self.spool.message_ids())

    def read_queued(self, message_id):
        """A queued message as an email.message.Message."""
        env = self.spool.read(message_id)
        raw = "".join(h.text for h in env.headers if h.flag != "*") + "\n" + \
            self.spool.read_body(message_id).decode()
        return env, email.message_from_string(raw)


class LocalDeliveryTests(unittest.TestCase):
    """Deliveries to mbox files, maildirs, pipes and files."""

    def setUp(self):
        self.env = MailEnv(self)

    @defer.inlineCallbacks
    def test_mbox_delivery(self):
        """An mbox gets a From line, Return-path, Envelope-to, Delivery-date and the
        body with "From " escaped; the message then leaves the queue."""
        mid = self.env.submit(["mb1"])
        outcome = yield self.env.deliver(mid)
        self.assertTrue(outcome.completed)
        box = mailbox.mbox(self.env.path("mail", "mb1"))
        messages = list(box)
        self.assertEqual(len(messages), 1)
        msg = messages[0]
        self.assertEqual(msg["Return-path"], "<sender@x.example>")
        self.assertEqual(msg["Envelope-to"], "mb1@localdomain")
        self.assertIsNotNone(msg["Delivery-date"])
        self.assertEqual(msg["Subject"], "test")
        self.assertIn(">From the body", msg.get_payload())
        self.assertEqual(msg.get_from().split()[0], "sender@x.example")
        self.assertEqual(self.env.queued(), [])
        log = self.env.mainlog()
        self.assertIn("%s => mb1 <mb1@localdomain> R=mbox_users T=mbox" % mid, log)
        self.assertIn("%s Completed" % mid, log)

    @defer.inlineCallbacks
    def test_two_messages_append_to_one_mbox(self):
        """A second delivery appends: the mbox holds both messages, in order."""
        first = self.env.submit(["mb1"], subject="one")
        second = self.env.submit(["mb1"], subject="two")
        yield self.env.deliver(first)
        yield self.env.deliver(second)
        subjects = [m["Subject"] for m in mailbox.mbox(self.env.path("mail", "mb1"))]
        self.assertEqual(subjects, ["one", "two"])

    @defer.inlineCallbacks
    def test_maildir_delivery(self):
        """A maildir delivery lands in new/ as one complete file, tmp/ left empty."""
        mid = self.env.submit(["md1"])
        yield self.env.deliver(mid)
        box = mailbox.Maildir(self.env.path("maildir", "md1"), create=False)
        messages = list(box)
        self.assertEqual(len(messages), 1)
        self.assertEqual(messages[0]["Return-path"], "<sender@x.example>")
        self.assertEqual(messages[0]["Envelope-to"], "md1@localdomain")
        self.assertEqual(os.listdir(self.env.path("maildir", "md1", "tmp")), [])
        self.assertEqual(len(os.listdir(self.env.path("maildir", "md1", "new"))), 1)

    @defer.inlineCallbacks
    def test_redirect_to_two_mailboxes(self):
        """An alias to two local users delivers to both and logs the alias in <>."""
        mid = self.env.submit(["both"])
        outcome = yield self.env.deliver(mid)
        self.assertTrue(outcome.completed)
        self.assertEqual(len(mailbox.mbox(self.env.path("mail", "mb1"))), 1)
        self.assertEqual(len(mailbox.Maildir(self.env.path("maildir", "md1"), create=False)), 1)
        self.assertEqual(mailbox.mbox(self.env.path("mail", "mb1"))[0]["Envelope-to"],
                         "both@localdomain")
        self.assertIn("=> mb1 <both@localdomain> R=mbox_users T=mbox", self.env.mainlog())

    @defer.inlineCallbacks
    def test_pipe_delivery(self):
        """A pipe from an alias runs the command with the message on its input."""
        mid = self.env.submit(["piped"])
        outcome = yield self.env.deliver(mid)
        self.assertTrue(outcome.completed)
        with open(self.env.path("piped.out")) as f:
            text = f.read()
        self.assertTrue(text.startswith("From sender@x.example "))
        self.assertIn("Subject: test", text)
        self.assertIn("R=alias T=pipe", self.env.mainlog())

    @defer.inlineCallbacks
    def test_file_delivery_from_alias(self):
        """A /path item in an alias appends to that file through file_transport."""
        mid = self.env.submit(["saved"])
        yield self.env.deliver(mid)
        self.assertEqual(len(mailbox.mbox(self.env.path("saved.mbox"))), 1)
        self.assertIn("=> %s <saved@localdomain> R=alias T=file" % self.env.path("saved.mbox"),
                      self.env.mainlog())

    @defer.inlineCallbacks
    def test_blackhole(self):
        """:blackhole: discards the address, logged as a delivery to :blackhole:."""
        mid = self.env.submit(["hole"])
        outcome = yield self.env.deliver(mid)
        self.assertTrue(outcome.completed)
        self.assertIn("=> :blackhole: <hole@localdomain> R=alias", self.env.mainlog())

    @defer.inlineCallbacks
    def test_dont_deliver(self):
        """-N logs *> and delivers nothing."""
        mid = self.env.submit(["mb1"])
        outcome = yield self.env.deliver(mid, dont_deliver=True)
        self.assertTrue(outcome.completed)
        self.assertFalse(os.path.exists(self.env.path("mail", "mb1")))
        self.assertIn("*> mb1 <mb1@localdomain> R=mbox_users T=mbox", self.env.mainlog())

    @defer.inlineCallbacks
    def test_locked_message_is_skipped(self):
        """A message another delivery holds is left alone (never two at once)."""
        mid = self.env.submit(["mb1"])
        lock = self.env.spool.lock(mid)
        try:
            outcome = yield self.env.deliver(mid)
        finally:
            lock.release()
        self.assertTrue(outcome.locked)
        self.assertFalse(os.path.exists(self.env.path("mail", "mb1")))
        self.assertEqual(self.env.queued(), [mid])


class FailureTests(unittest.TestCase):
    """Failures bounce, deferrals stay queued with retry hints."""

    def setUp(self):
        self.env = MailEnv(self)

    @defer.inlineCallbacks
    def test_failure_produces_rfc3464_bounce(self):
        """A :fail: address is logged with ** and bounced to the sender as a
        valid multipart/report with a delivery-status part and the message."""
        mid = self.env.submit(["fails", "mb1"])
        outcome = yield self.env.deliver(mid, deliver_bounces=False)
        self.assertTrue(outcome.completed)
        self.assertIn("** fails@localdomain R=alias: no such person", self.env.mainlog())
        self.assertEqual(len(outcome.bounces), 1)
        env, report = self.env.read_queued(outcome.bounces[0])
        self.assertEqual(env.sender, "")
        self.assertEqual([r.address for r in env.recipients], ["sender@x.example"])
        self.assertEqual(report.get_content_type(), "multipart/report")
        self.assertEqual(report.get_param("report-type"), "delivery-status")
        parts = report.get_payload()
        self.assertEqual([p.get_content_type() for p in parts],
                         ["text/plain", "message/delivery-status", "message/rfc822"])
        self.assertIn("fails@localdomain\n    no such person", parts[0].get_payload())
        blocks = parts[1].get_payload()
        self.assertEqual(blocks[0]["Reporting-MTA"], "dns; myhost.test")
        self.assertEqual(blocks[1]["Action"], "failed")
        self.assertEqual(blocks[1]["Final-Recipient"], "rfc822;fails@localdomain")
        self.assertEqual(blocks[1]["Status"], "5.0.0")
        returned = parts[2].get_payload()[0]
        self.assertEqual(returned["Subject"], "test")
        self.assertEqual(report["X-Failed-Recipients"], "fails@localdomain")
        self.assertIn("<= <> R=%s" % mid, self.env.mainlog())

    @defer.inlineCallbacks
    def test_bounce_understood_by_flufl_bounce(self):
        """flufl.bounce (a bounce processor used by mailing lists) finds the
        failed recipient in our report."""
        try:
            from flufl.bounce import all_failures
        except ImportError:
            raise unittest.SkipTest("flufl.bounce is not installed")
        mid = self.env.submit(["fails"])
        outcome = yield self.env.deliver(mid, deliver_bounces=False)
        _, report = self.env.read_queued(outcome.bounces[0])
        temporary, permanent = all_failures(report)
        self.assertEqual(set(permanent), {b"fails@localdomain"})

    @defer.inlineCallbacks
    def test_generated_failure_names_its_parent(self):
        """A failing address generated by an alias is reported with "generated from"."""
        mid = self.env.submit(["list"])
        outcome = yield self.env.deliver(mid, deliver_bounces=False)
        _, report = self.env.read_queued(outcome.bounces[0])
        text = report.get_payload()[0].get_payload()
        self.assertIn("  fails@localdomain\n    (generated from list@localdomain)\n", text)
        self.assertIn("** fails@localdomain <list@localdomain> R=alias: no such person",
                      self.env.mainlog())
        self.assertEqual(len(mailbox.Maildir(self.env.path("maildir", "md2"), create=False)), 1)

    @defer.inlineCallbacks
    def test_pipe_failure_bounces(self):
        """A pipe exiting 1 fails with Exim's "Child process ... returned 1" text."""
        mid = self.env.submit(["badpipe"])
        outcome = yield self.env.deliver(mid, deliver_bounces=False)
        self.assertEqual(len(outcome.failed), 1)
        self.assertIn("** |/bin/false <badpipe@localdomain> R=alias T=pipe: Child process of "
                      "pipe transport returned 1 from command: /bin/false", self.env.mainlog())
        _, report = self.env.read_queued(outcome.bounces[0])
        self.assertIn("pipe to |/bin/false\n    generated by badpipe@localdomain",
                      report.get_payload()[0].get_payload())

    @defer.inlineCallbacks
    def test_defer_keeps_message_queued(self):
        """A :defer: address is logged with == and the message stays on the queue;
        what was delivered is recorded and not delivered again."""
        mid = self.env.submit(["later", "mb1"])
        outcome = yield self.env.deliver(mid)
        self.assertFalse(outcome.completed)
        self.assertIn("== later@localdomain R=alias defer (-1): not now", self.env.mainlog())
        self.assertEqual(self.env.queued(), [mid])
        env = self.env.spool.read(mid)
        self.assertIn("mb1@localdomain", env.non_recipients)
        self.assertFalse(env.deliver_firsttime)
        yield self.env.deliver(mid, force=True)
        self.assertEqual(len(mailbox.mbox(self.env.path("mail", "mb1"))), 1)

    @defer.inlineCallbacks
    def test_pipe_temporary_failure_records_retry(self):
        """Exit status 75 (EX_TEMPFAIL) defers and writes a T: retry record;
        the next attempt without -M waits for the retry time."""
        mid = self.env.submit(["tempfail"])
        outcome = yield self.env.deliver(mid)
        self.assertEqual(len(outcome.deferred), 1)
        self.assertIn("defer (0): Child process of pipe transport returned 75 (could mean "
                      "temporary error)", self.env.mainlog())
        from exim_py.delivery.hints import HintsDB
        keys = [r.key for r in HintsDB(self.env.spool.directory).retry_records()]
        self.assertIn("T:|/bin/sh -c \"exit 75\"@localdomain", keys)
        outcome = yield self.env.deliver(mid)
        self.assertTrue(outcome.deferred[0].retry_skipped)
        self.assertIn("R=alias T=pipe defer (-53): Retry time not yet reached",
                      self.env.mainlog())

    @defer.inlineCallbacks
    def test_quota_defers(self):
        """A delivery that would exceed the quota defers with "mailbox is full"."""
        mid = self.env.submit(["quota"])
        outcome = yield self.env.deliver(mid)
        self.assertEqual(len(outcome.deferred), 1)
        self.assertIn("mailbox is full", self.env.mainlog())

    @defer.inlineCallbacks
    def test_bounce_of_bounce_is_frozen(self):
        """A bounce (null sender) that fails is frozen, not bounced again."""
        mid = self.env.submit(["fails"], sender="")
        outcome = yield self.env.deliver(mid)
        self.assertTrue(outcome.frozen)
        self.assertEqual(outcome.bounces, [])
        self.assertTrue(self.env.spool.read(mid).frozen)
        self.assertIn("%s Frozen (delivery error message)" % mid, self.env.mainlog())
        outcome = yield self.env.deliver(mid)
        self.assertTrue(outcome.frozen)
        self.assertEqual(outcome.failed, [])


ONE_TIME_CONFIG = BASE_CONFIG.replace("""maildir_users:""", """onetime:
  driver = redirect
  local_parts = club
  data = mb1@localdomain, later@localdomain
  one_time
maildir_users:""")


class OneTimeTests(unittest.TestCase):
    """redirect's one_time."""

    @defer.inlineCallbacks
    def test_pending_children_become_recipients(self):
        """After the first attempt the deferred child is a recipient of its own
        (logged with the original address in <> while it is that address),
        and the alias is not expanded again (mb1 is not delivered twice)."""
        env = MailEnv(self, config_text=ONE_TIME_CONFIG)
        mid = env.submit(["club"])
        outcome = yield env.deliver(mid)
        self.assertFalse(outcome.completed)
        spool_env = env.spool.read(mid)
        self.assertIn("club@localdomain", spool_env.non_recipients)
        self.assertEqual([r.address for r in spool_env.recipients],
                         ["club@localdomain", "later@localdomain"])
        self.assertEqual(spool_env.recipients[1].pno, 0)
        with open(env.path("aliases")) as f:
            text = f.read().replace("later: :defer: not now", "later: mb2")
        with open(env.path("aliases"), "w") as f:
            f.write(text)
        outcome = yield env.deliver(mid, force=True)
        self.assertTrue(outcome.completed)
        self.assertEqual(len(mailbox.mbox(env.path("mail", "mb1"))), 1)
        self.assertEqual(len(mailbox.mbox(env.path("mail", "mb2"))), 1)
        self.assertIn("== later@localdomain <club@localdomain> R=alias", env.mainlog())
        self.assertIn("=> mb2 <later@localdomain> R=mbox_users T=mbox", env.mainlog())


class DamagedSpoolTests(unittest.TestCase):
    """A -H file that cannot be read."""

    @defer.inlineCallbacks
    def test_damaged_header_file_is_left_alone(self):
        """Delivery logs the read error and leaves the files for the administrator."""
        env = MailEnv(self)
        mid = env.submit(["mb1"])
        with open(env.spool.header_path(mid), "w") as f:
            f.write("%s-H\ngarbage\n" % mid)
        outcome = yield env.deliver(mid)
        self.assertIsNotNone(outcome.error)
        self.assertFalse(outcome.completed)
        self.assertIn("Spool read error for %s-H" % mid, env.mainlog())
        self.assertTrue(os.path.exists(env.spool.body_path(mid)))


class ReceivedCopyTests(unittest.TestCase):
    """The daemon's immediate delivery takes the envelope it has just stored
    instead of reading -H back, unless another delivery changed the spool."""

    def setUp(self):
        self.env = MailEnv(self)

    @defer.inlineCallbacks
    def test_stored_envelope_is_used_without_reading_the_spool(self):
        """With the -H file as it was stored, the delivery never reads it and
        logs the same lines as a delivery that does."""
        stored = self.env.submit_envelope(["mb1"])
        received = ReceivedCopy(self.env.spool, stored)

        def read(message_id):
            raise AssertionError("-H read back for %s" % message_id)
        self.patch(self.env.spool, "read", read)
        outcome = yield self.env.deliver(stored.message_id, received=received)
        self.assertTrue(outcome.completed)
        self.assertEqual(len(mailbox.mbox(self.env.path("mail", "mb1"))), 1)
        self.assertIn("%s => mb1 <mb1@localdomain> R=mbox_users T=mbox" % stored.message_id,
                      self.env.mainlog())

    @defer.inlineCallbacks
    def test_rewritten_header_is_read_again(self):
        """When another delivery rewrote -H after the copy was taken (one
        recipient done), the spool's record wins: that recipient is not
        delivered twice."""
        stored = self.env.submit_envelope(["mb1", "mb2"])
        received = ReceivedCopy(self.env.spool, stored)
        other = self.env.spool.read(stored.message_id)
        other.non_recipients.add("mb1@localdomain")
        other.deliver_firsttime = False
        self.env.spool.write_header(other)
        outcome = yield self.env.deliver(stored.message_id, received=received)
        self.assertTrue(outcome.completed)
        self.assertFalse(os.path.exists(self.env.path("mail", "mb1")))
        self.assertEqual(len(mailbox.mbox(self.env.path("mail", "mb2"))), 1)

    @defer.inlineCallbacks
    def test_journal_makes_the_copy_stale(self):
        """A -J journal begun by another delivery is read with the -H file."""
        stored = self.env.submit_envelope(["mb1", "mb2"])
        received = ReceivedCopy(self.env.spool, stored)
        self.env.spool.mark_delivered(stored.message_id, "mb2@localdomain")
        journal = os.path.join(self.env.spool.input_dir(stored.message_id),
                               stored.message_id + "-J")
        self.assertTrue(os.path.exists(journal))
        outcome = yield self.env.deliver(stored.message_id, received=received)
        self.assertTrue(outcome.completed)
        self.assertEqual(len(mailbox.mbox(self.env.path("mail", "mb1"))), 1)
        self.assertFalse(os.path.exists(self.env.path("mail", "mb2")))
        # The completed message takes its journal with it.
        self.assertFalse(os.path.exists(journal))

    def test_later_session_changes_do_not_reach_the_copy(self):
        """The copy is taken when the message is stored: a later HELO or
        recipient on the same SMTP session does not change it."""
        stored = self.env.submit_envelope(["mb1"])
        stored.session.helo_name = "first.example"
        received = ReceivedCopy(self.env.spool, stored)
        stored.session.helo_name = "second.example"
        stored.recipients.append(Recipient("mb2@localdomain"))
        copy = received.current()
        self.assertEqual(copy.session.helo_name, "first.example")
        self.assertEqual([r.address for r in copy.recipients], ["mb1@localdomain"])


class GroupSyncTests(unittest.TestCase):
    """delivery/durable.py: concurrent deliveries share one flush."""

    def setUp(self):
        if durable._spool._syncfs is None:
            raise unittest.SkipTest("no syncfs(2) here: each caller fsyncs its own files")
        self.dir = tempfile.mkdtemp(prefix="exim_py-groupsync-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.path = os.path.join(self.dir, "new-file")
        self.flushes = []
        self.flushing = threading.Event()
        self.release = threading.Event()

        def flusher(kind):
            def flush(target):
                self.flushes.append(kind)
                self.flushing.set()
                self.release.wait(10)
                return True
            return flush
        self.patch(durable, "_fsync_all", flusher("fsync"))
        self.patch(durable._spool, "_sync_file_system", flusher("syncfs"))

    def start(self, group):
        thread = threading.Thread(target=group.sync, args=(self.dir, [self.path]))
        thread.start()
        self.addCleanup(thread.join, 10)
        return thread

    def test_waiters_during_a_flush_share_the_next_one(self):
        """A caller alone fsyncs its own files; twenty that ask while that
        runs are all served by one syncfs (not twenty flushes), and none
        returns before it."""
        group = durable.GroupSync()
        first = self.start(group)
        self.assertTrue(self.flushing.wait(10))
        waiters = [self.start(group) for _ in range(20)]
        tickets = group._system(self.dir)
        deadline = time.monotonic() + 10
        while tickets.asked < 21 and time.monotonic() < deadline:
            time.sleep(0.001)      # until every waiter has asked
        self.assertEqual(self.flushes, ["fsync"])
        self.assertTrue(all(t.is_alive() for t in waiters))
        self.release.set()
        for t in [first] + waiters:
            t.join(10)
        self.assertEqual(self.flushes, ["fsync", "syncfs"])

    def test_failed_flush_raises(self):
        """A flush that fails raises in the thread that asked for it, and a
        later caller flushes again instead of trusting it."""
        def broken(paths):
            self.flushes.append(paths)
            raise OSError(5, "Input/output error")
        self.patch(durable, "_fsync_all", broken)
        group = durable.GroupSync()
        self.assertRaises(OSError, group.sync, self.dir, [self.path])
        self.assertRaises(OSError, group.sync, self.dir, [self.path])
        self.assertEqual(self.flushes, [[self.path], [self.path]])
