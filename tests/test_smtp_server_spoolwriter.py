"""The server's spool writer: messages stored durably off the reactor, in
batches, each answered only once it is on the spool."""

import os
import pwd
import shutil
import tempfile

from twisted.internet import defer, reactor, task
from twisted.trial.unittest import SkipTest, TestCase

from exim_py.envelope import Envelope, Recipient, Session
from exim_py.smtp import spoolwriter
from exim_py.smtp.spoolwriter import SpoolWriter
from exim_py.spool import Spool
from exim_py.spool.spool import SpoolBatch


def envelope(n):
    session = Session()
    session.sender_host_address = "192.0.2.7"
    session.received_protocol = "esmtp"
    env = Envelope(session)
    env.sender = "s%d@example.org" % n
    env.recipients = [Recipient("r%d@example.net" % n)]
    return env


def envelopes(writer, count):
    """``count`` envelopes, each with a message id from ``writer``."""
    envs = [envelope(n) for n in range(count)]
    for env in envs:
        env.message_id = writer.new_message_id()
    return envs


class SpoolWriterTests(TestCase):
    """SpoolWriter.store and its threads."""

    def setUp(self):
        self.directory = tempfile.mkdtemp(prefix="exim_py-writer-")
        self.addCleanup(shutil.rmtree, self.directory, True)
        self.spool = Spool(self.directory)

    @defer.inlineCallbacks
    def test_many_messages_all_stored_before_answered(self):
        """More messages than one batch holds: every one is answered with its
        id, and by then its -H and -D files are on the spool with its sender."""
        writer = SpoolWriter(self.spool, max_batch=8)
        envs = envelopes(writer, 40)
        checked = []

        def check(message_id, env):
            self.assertEqual(message_id, env.message_id)
            self.assertEqual(self.spool.read(message_id).sender, env.sender)
            self.assertTrue(os.path.exists(self.spool.body_path(message_id)))
            checked.append(message_id)

        yield defer.gatherResults([writer.store(env, b"body %d\n" % n).addCallback(check, env)
                                   for n, env in enumerate(envs)])
        self.assertEqual(len(set(checked)), 40)
        self.assertEqual(sorted(self.spool.message_ids()), sorted(checked))

    @defer.inlineCallbacks
    def test_failure_reaches_each_message(self):
        """When the spool cannot be written every waiting message gets the
        error (the server answers 451), and nothing is left in flight."""
        blocker = os.path.join(self.directory, "file")
        open(blocker, "w").close()
        writer = SpoolWriter(Spool(blocker))
        results = yield defer.DeferredList([writer.store(envelope(n), b"x\n") for n in range(3)],
                                           consumeErrors=True)
        self.assertEqual([ok for ok, _ in results], [False, False, False])
        self.assertTrue(all(isinstance(f.value, OSError) for _, f in results))
        yield writer.flush()
        self.assertEqual(writer._unanswered, 0)

    @defer.inlineCallbacks
    def test_idle_threads_leave_and_come_back(self):
        """The writer thread leaves after IDLE_SECONDS without work, and the
        next message starts a new one."""
        self.patch(spoolwriter, "IDLE_SECONDS", 0.05)
        writer = SpoolWriter(self.spool)
        yield writer.store(envelope(1), b"one\n")
        self.assertTrue(writer._running)
        for _ in range(200):
            if not writer._running:
                break
            yield task.deferLater(reactor, 0.01, lambda: None)
        self.assertFalse(writer._running)
        message_id = yield writer.store(envelope(2), b"two\n")
        self.assertEqual(self.spool.read(message_id).sender, "s2@example.org")

    @defer.inlineCallbacks
    def test_files_belong_to_spool_owner_without_chown(self):
        """Root writing a spool that belongs to another user: the writer's
        thread creates the directories, -D, -H and msglog as that user
        (its own file-system identity), so no chown is made."""
        if os.geteuid() != 0:
            raise SkipTest("needs root: it hands files to another user")
        nobody = pwd.getpwnam("nobody")
        owner = (nobody.pw_uid, nobody.pw_gid)
        os.chmod(self.directory, 0o755)
        directory = os.path.join(self.directory, "spool")
        os.mkdir(directory, 0o750)
        os.chown(directory, *owner)
        chowns = []
        for name in ("chown", "fchown"):
            self.patch(os, name, lambda *a, real=getattr(os, name): (chowns.append(a), real(*a)))
        spool = Spool(directory)
        self.patch(spool, "_received_line", lambda env: "received")   # a msglog, as message_logs does
        writer = SpoolWriter(spool)
        message_id = yield writer.store(envelope(1), b"one\n")
        paths = [spool.input_dir(message_id), spool.body_path(message_id),
                 spool.header_path(message_id), spool.msglog_path(message_id)]
        self.assertEqual([(os.stat(p).st_uid, os.stat(p).st_gid) for p in paths], [owner] * 4)
        self.assertEqual(chowns, [])

    @defer.inlineCallbacks
    def test_overlapped_batches_keep_the_durability_order(self):
        """Under load one flush covers a batch's files and the renames of
        the batch before it, so there are fewer flushes than two per batch;
        still each batch's files are durable before its renames, and its
        renames are durable before any of its messages is answered."""
        events = []   # ("flushed", written, renamed) after a flush returns; ("rename", batch) before
        real_flush, real_rename = self.spool.make_durable, SpoolBatch.rename

        def make_durable(written=None, renamed=None):
            real_flush(written=written, renamed=renamed)
            events.append(("flushed", written, renamed))

        def rename(batch):
            events.append(("rename", batch))
            real_rename(batch)

        self.patch(self.spool, "make_durable", make_durable)
        self.patch(SpoolBatch, "rename", rename)
        writer = SpoolWriter(self.spool, max_batch=4)

        def check(message_id):
            seen = list(events)
            [(at, batch)] = [(i, e[1]) for i, e in enumerate(seen) if e[0] == "rename"
                             and message_id in [env.message_id for env in e[1].envelopes]]
            self.assertTrue(any(e[0] == "flushed" and e[1] is batch for e in seen[:at]))
            self.assertTrue(any(e[0] == "flushed" for e in seen[at + 1:]))

        envs = envelopes(writer, 40)
        yield defer.gatherResults([writer.store(env, b"body\n").addCallback(check) for env in envs])
        batches = sum(1 for e in events if e[0] == "rename")
        flushes = [e for e in events if e[0] == "flushed"]
        self.assertGreater(batches, 1)
        self.assertLess(len(flushes), 2 * batches)
        self.assertTrue(any(written is not None and renamed is not None for _, written, renamed in flushes))
        self.assertEqual(sorted(self.spool.message_ids()), sorted(env.message_id for env in envs))

    @defer.inlineCallbacks
    def test_failed_shared_flush_answers_each_batch_rightly(self):
        """When the flush shared by a new batch's files and the previous
        batch's renames fails, the new batch's messages get the error (451)
        and the previous batch still gets a flush of its own and is
        answered with its ids."""
        real_flush = self.spool.make_durable
        failed = []

        def make_durable(written=None, renamed=None):
            if written is not None and renamed is not None and not failed:
                failed.append(written)
                raise OSError(5, "Input/output error")
            real_flush(written=written, renamed=renamed)

        self.patch(self.spool, "make_durable", make_durable)
        writer = SpoolWriter(self.spool, max_batch=2)
        envs = envelopes(writer, 12)
        results = yield defer.DeferredList([writer.store(env, b"body\n") for env in envs], consumeErrors=True)
        [lost] = failed
        lost_ids = {env.message_id for env in lost.envelopes}
        for env, (ok, value) in zip(envs, results):
            if env.message_id in lost_ids:
                self.assertFalse(ok)
                self.assertIsInstance(value.value, OSError)
            else:
                self.assertTrue(ok)
                self.assertEqual(value, env.message_id)
        self.assertEqual(set(self.spool.message_ids()), {env.message_id for env in envs} - lost_ids)
        yield writer.flush()
        self.assertEqual(writer._unanswered, 0)


class ArrivalLogTests(TestCase):
    """The <= lines the writer thread logs for a stored batch."""

    setUp = SpoolWriterTests.setUp

    @defer.inlineCallbacks
    def test_logged_before_answered(self):
        """Each message's <= line is in the main log when its store is answered,
        with its id, and the batch's lines are all there."""
        from exim_py.log import Logger
        logger = Logger(log_file_path=os.path.join(self.directory, "%slog"), log_selector="")
        writer = SpoolWriter(self.spool, max_batch=4)
        envs = envelopes(writer, 10)
        seen = []

        def check(message_id, env):
            with open(os.path.join(self.directory, "mainlog")) as f:
                text = f.read()
            self.assertIn("%s <= %s arrival" % (message_id, env.sender), text)
            seen.append(message_id)

        yield defer.gatherResults([
            writer.store(env, b"body\n", arrival=(logger, "<= %s arrival" % env.sender))
            .addCallback(check, env) for env in envs])
        self.assertEqual(len(seen), 10)

    @defer.inlineCallbacks
    def test_log_failure_keeps_the_message(self):
        """A main log that cannot be written does not fail the stored messages."""
        class Broken:
            def main_many(self, entries):
                raise OSError(28, "No space left on device")

        writer = SpoolWriter(self.spool)
        env = envelope(1)
        env.message_id = writer.new_message_id()
        message_id = yield writer.store(env, b"body\n", arrival=(Broken(), "<= x"))
        self.assertEqual(message_id, env.message_id)
        self.assertTrue(os.path.exists(self.spool.header_path(message_id)))
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
