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


def envelope(n):
    session = Session()
    session.sender_host_address = "192.0.2.7"
    session.received_protocol = "esmtp"
    env = Envelope(session)
    env.sender = "s%d@example.org" % n
    env.recipients = [Recipient("r%d@example.net" % n)]
    return env


class SpoolWriterTests(TestCase):
    """SpoolWriter.store and its threads."""

    def setUp(self):
        self.directory = tempfile.mkdtemp(prefix="exim_py-writer-")
        self.addCleanup(shutil.rmtree, self.directory, True)
        self.spool = Spool(self.directory)

    @defer.inlineCallbacks
    def test_many_messages_all_stored_before_answered(self):
        """More messages than writers at once: every one is answered with its
        id, and by then its -H and -D files are on the spool with its sender."""
        writer = SpoolWriter(self.spool, max_parallel=4, max_batch=8)
        envs = [envelope(n) for n in range(40)]
        for env in envs:
            env.message_id = writer.new_message_id()
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
        self.assertEqual(writer._in_flight, 0)

    @defer.inlineCallbacks
    def test_idle_threads_leave_and_come_back(self):
        """Writer threads leave after IDLE_SECONDS without work, and the next
        message starts a new one."""
        self.patch(spoolwriter, "IDLE_SECONDS", 0.05)
        writer = SpoolWriter(self.spool)
        yield writer.store(envelope(1), b"one\n")
        self.assertEqual(writer._threads, 1)
        for _ in range(200):
            if writer._threads == 0:
                break
            yield task.deferLater(reactor, 0.01, lambda: None)
        self.assertEqual(writer._threads, 0)
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
