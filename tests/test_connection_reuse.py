"""SMTP connection reuse across messages, serialize_hosts and -qq grouping.

The receiving side is the scripted server of tests/support (it counts the
connections and records every command) or real Exim 4.96; messages go
through the real delivery engine and smtp transport.
"""

import os
import re

from twisted.internet import defer
from twisted.trial import unittest

from exim_py.delivery.queuerun import QueueRunner, Selection
from exim_py.transports import smtp_pool
from tests.support.exim_peer import EximPeer
from tests.support.peers import require_command
from tests.support.scripted_smtp import DROP, STALL, ScriptedSMTPServer
from tests.test_delivery_engine import MailEnv

CONFIG = """\
primary_hostname = myhost.test
qualify_domain = localdomain
spool_directory = VAR/spool
log_file_path = VAR/log/%slog
begin routers
to_a:
  driver = manualroute
  domains = a.example
  route_list = * 127.0.0.1::PORT_A
  self = send
  transport = smtp
to_b:
  driver = manualroute
  domains = b.example
  route_list = * 127.0.0.1::PORT_B
  self = send
  transport = smtp
begin transports
smtp:
  driver = smtp
  hosts_try_fastopen = :
  EXTRA
begin retry
* * F,1h,10m
"""


def _verbs(server):
    return [c.split(b" ", 1)[0].split(b":", 1)[0].upper() for c in server.commands]


class ConnectionReuseTests(unittest.TestCase):
    """Messages for one host follow each other down one connection."""

    def setUp(self):
        self.servers = {}
        self.addCleanup(smtp_pool.close_idle)

    def env(self, extra="", replies=None, **overrides):
        a = ScriptedSMTPServer(replies=replies, overrides=overrides)
        b = ScriptedSMTPServer()
        for server in (a, b):
            self.addCleanup(server.stop)
        self.servers = {"a": a, "b": b}
        text = (CONFIG.replace("PORT_A", str(a.port_number))
                .replace("PORT_B", str(b.port_number)).replace("EXTRA", extra))
        return MailEnv(self, config_text=text)

    @defer.inlineCallbacks
    def test_two_messages_one_connection(self):
        """Two messages for one host: one connection carrying two MAIL
        transactions, no second EHLO, no RSET after a good delivery, and the
        second message's => line marks the reused connection with "*"."""
        env = self.env()
        first = env.submit(["u1@a.example"])
        second = env.submit(["u2@a.example"])
        one = yield env.deliver(first)
        two = yield env.deliver(second)
        self.assertTrue(one.completed and two.completed)
        server = self.servers["a"]
        self.assertEqual(len(server.connections), 1)
        self.assertEqual(_verbs(server), [b"EHLO", b"MAIL", b"RCPT", b"DATA", b".",
                                          b"MAIL", b"RCPT", b"DATA", b"."])
        yield smtp_pool.close_idle()
        self.assertEqual(_verbs(server)[-1], b"QUIT")
        log = env.mainlog()
        self.assertRegex(log, r"%s => u1@a.example R=to_a T=smtp H=127.0.0.1 \[127.0.0.1\] C="
                         % (first,))
        self.assertRegex(log, r"%s => u2@a.example R=to_a T=smtp H=127.0.0.1 \[127.0.0.1\]\* C="
                         % (second,))

    @defer.inlineCallbacks
    def test_connection_max_messages_one_disables_reuse(self):
        """connection_max_messages = 1: every message has its own connection,
        QUIT after each, and no "*" in the log."""
        env = self.env("connection_max_messages = 1")
        for rcpt in ("u1@a.example", "u2@a.example"):
            outcome = yield env.deliver(env.submit([rcpt]))
            self.assertTrue(outcome.completed)
        server = self.servers["a"]
        self.assertEqual(len(server.connections), 2)
        self.assertEqual(_verbs(server).count(b"QUIT"), 2)
        self.assertEqual(smtp_pool.POOL.idle_count(), 0)
        self.assertNotIn("]*", env.mainlog())

    @defer.inlineCallbacks
    def test_rset_before_reuse_after_refused_transaction(self):
        """A message whose every recipient was refused leaves the server
        mid-transaction: the next message on that connection starts with RSET."""
        env = self.env(**{"RCPT TO:<bad@a.example>": "550 no such user"})
        failed = yield env.deliver(env.submit(["bad@a.example"], sender=""))
        self.assertEqual(len(failed.failed), 1)
        outcome = yield env.deliver(env.submit(["good@a.example"]))
        self.assertTrue(outcome.completed)
        server = self.servers["a"]
        self.assertEqual(len(server.connections), 1)
        # The server wanted the (pipelined) DATA: an empty one ends it.
        self.assertEqual(_verbs(server), [b"EHLO", b"MAIL", b"RCPT", b"DATA", b".",
                                          b"RSET", b"MAIL", b"RCPT", b"DATA", b"."])

    @defer.inlineCallbacks
    def test_stale_connection_replaced(self):
        """The server drops a kept connection when the next MAIL comes: the
        message goes down a fresh connection, delivered, with no error line."""
        mails = []

        def replies(line):
            verb = line.split(b" ", 1)[0].upper()
            if verb == b"MAIL":
                mails.append(line)
                if len(mails) == 2:
                    return DROP
            return {b"EHLO": "250-test.example\r\n250 PIPELINING", b"MAIL": "250 OK",
                    b"RCPT": "250 Accepted", b"DATA": "354 go", b".": "250 OK",
                    b"RSET": "250 OK", b"QUIT": "221 bye"}.get(verb, "500 what")
        env = self.env(replies=replies)
        yield env.deliver(env.submit(["u1@a.example"]))
        outcome = yield env.deliver(env.submit(["u2@a.example"]))
        self.assertTrue(outcome.completed)
        self.assertEqual(len(self.servers["a"].connections), 2)
        self.assertEqual(len(self.servers["a"].messages), 2)
        log = env.mainlog()
        self.assertNotIn("==", log)
        self.assertNotIn("closed connection", log)

    @defer.inlineCallbacks
    def test_refused_reuse_replaced(self):
        """A kept connection whose first reply on reuse is a refusal (421 to
        MAIL; a failed RSET) is dropped and the message goes down a fresh
        connection, delivered, with nothing deferred."""
        for verb, refused, nth in ((b"MAIL", "421 closing, idle too long", 2),
                                   (b"RSET", "421 closing", 1)):
            seen = []

            def replies(line, verb=verb, refused=refused, nth=nth, seen=seen):
                word = line.split(b" ", 1)[0].split(b":", 1)[0].upper()
                if word == verb:
                    seen.append(line)
                    if len(seen) == nth:
                        return refused
                if line == b"RCPT TO:<bad@a.example>":
                    return "550 no such user"
                return {b"EHLO": "250-test.example\r\n250 PIPELINING", b"MAIL": "250 OK",
                        b"RCPT": "250 Accepted", b"DATA": "354 go", b".": "250 OK",
                        b"RSET": "250 OK", b"QUIT": "221 bye"}.get(word, "500 what")
            env = self.env(replies=replies)
            first = ["good@a.example"] if verb == b"MAIL" else ["bad@a.example"]
            yield env.deliver(env.submit(first))
            outcome = yield env.deliver(env.submit(["u2@a.example"]))
            self.assertTrue(outcome.completed, verb)
            self.assertEqual(len(self.servers["a"].connections), 2, verb)
            self.assertNotIn(" == ", env.mainlog())
            yield smtp_pool.close_idle()

    @defer.inlineCallbacks
    def test_closed_while_parked(self):
        """A kept connection that the server closes while it waits leaves the
        pool; the next message connects afresh."""
        env = self.env()
        yield env.deliver(env.submit(["u1@a.example"]))
        self.assertEqual(smtp_pool.POOL.idle_count(), 1)
        conn = self.servers["a"].connections[0]
        conn.transport.loseConnection()
        while smtp_pool.POOL.idle_count():
            yield _tick()
        outcome = yield env.deliver(env.submit(["u2@a.example"]))
        self.assertTrue(outcome.completed)
        self.assertEqual(len(self.servers["a"].connections), 2)
        self.assertNotIn("]*", env.mainlog())

    @defer.inlineCallbacks
    def test_other_host_not_reused(self):
        """A kept connection serves only its own host."""
        env = self.env()
        yield env.deliver(env.submit(["u1@a.example"]))
        yield env.deliver(env.submit(["u1@b.example"]))
        self.assertEqual(len(self.servers["a"].connections), 1)
        self.assertEqual(len(self.servers["b"].connections), 1)
        self.assertEqual(smtp_pool.POOL.idle_count(), 2)


    @defer.inlineCallbacks
    def test_waiting_message_follows_on_kept_connection(self):
        """A message the host could not take (connection refused) waits for
        it; the next successful delivery to that host carries it down the same
        connection, logged with "*" (Exim's continued delivery)."""
        from twisted.internet import reactor
        from exim_py.delivery import hints
        env = self.env()
        server = self.servers["a"]
        yield server.port.stopListening()
        waiting = env.submit(["u1@a.example"])
        outcome = yield env.deliver(waiting)
        self.assertEqual(len(outcome.deferred), 1)
        db = hints.for_spool(env.spool.directory)
        for record in db.retry_records():
            db.delete_retry(record.key)
        server.port = reactor.listenTCP(server.port_number, server, interface="127.0.0.1")
        trigger = env.submit(["u2@a.example"])
        outcome = yield env.deliver(trigger)
        self.assertTrue(outcome.completed)
        yield smtp_pool.close_idle()
        self.assertEqual(len(server.connections), 1)
        self.assertEqual(len(server.messages), 2)
        self.assertEqual(env.queued(), [])
        self.assertRegex(env.mainlog(), r"%s => u1@a.example R=to_a T=smtp "
                         r"H=127.0.0.1 \[127.0.0.1\]\* C=" % (waiting,))


    @defer.inlineCallbacks
    def test_excess_recipients_go_in_next_transaction(self):
        """RCPT refused with 452 (too many recipients) while another was
        accepted: that recipient goes again in a new transaction on the same
        connection; refused there too with nothing accepted, it is deferred."""
        env = self.env(**{"RCPT TO:<u2@a.example>": "452 too many recipients"})
        outcome = yield env.deliver(env.submit(["u1@a.example", "u2@a.example"]))
        self.assertEqual([a.address for a in outcome.delivered], ["u1@a.example"])
        self.assertEqual([a.address for a in outcome.deferred], ["u2@a.example"])
        server = self.servers["a"]
        self.assertEqual(len(server.connections), 1)
        envelope = [c.split(b" SIZE=")[0] for c in server.commands
                    if c.startswith((b"MAIL", b"RCPT"))]
        self.assertEqual(envelope, [b"MAIL FROM:<sender@x.example>", b"RCPT TO:<u1@a.example>",
                                    b"RCPT TO:<u2@a.example>", b"MAIL FROM:<sender@x.example>",
                                    b"RCPT TO:<u2@a.example>"])
        self.assertIn("== u2@a.example R=to_a T=smtp defer (-44) H=127.0.0.1 [127.0.0.1]: "
                      "SMTP error from remote mail server after RCPT TO:<u2@a.example>: "
                      "452 too many recipients", env.mainlog())


class CommandLineReuseTests(unittest.TestCase):
    """A command-line delivery (-odi, -M, -q) keeps a connection only for
    the next copy of the message or a message already waiting, as Exim."""

    def setUp(self):
        self.addCleanup(smtp_pool.close_idle)
        speculative = smtp_pool.POOL.speculative
        self.addCleanup(setattr, smtp_pool.POOL, "speculative", speculative)
        smtp_pool.POOL.speculative = False
        self.server = ScriptedSMTPServer()
        self.addCleanup(self.server.stop)

    def env(self, extra="", main=""):
        # c.example goes to the same host with a header of its own, so its
        # addresses make an address group apart from a.example's.
        to_c = ("to_c:\n  driver = manualroute\n  domains = c.example\n"
                "  route_list = * 127.0.0.1::PORT_A\n  self = send\n"
                "  headers_add = X-Via: c\n  transport = smtp\nto_a:\n")
        text = main + (CONFIG.replace("to_a:\n", to_c)
                .replace("PORT_A", str(self.server.port_number))
                .replace("PORT_B", str(self.server.port_number)).replace("EXTRA", extra))
        return MailEnv(self, config_text=text)

    @defer.inlineCallbacks
    def test_quit_pipelined_with_data(self):
        """Nothing waits for the host: QUIT goes with the end of the data
        (Exim's pipelined QUIT) and no connection is kept."""
        env = self.env()
        outcome = yield env.deliver(env.submit(["u1@a.example"]))
        self.assertTrue(outcome.completed)
        self.assertEqual(smtp_pool.POOL.idle_count(), 0)
        self.assertEqual(_verbs(self.server), [b"EHLO", b"MAIL", b"RCPT", b"DATA", b".",
                                               b"QUIT"])

    @defer.inlineCallbacks
    def test_next_message_opens_new_connection(self):
        """Two messages delivered one after the other, neither waiting for
        the host: two connections, each ended with QUIT, no "*" logged."""
        env = self.env()
        for rcpt in ("u1@a.example", "u2@a.example"):
            outcome = yield env.deliver(env.submit([rcpt]))
            self.assertTrue(outcome.completed)
        self.assertEqual(len(self.server.connections), 2)
        self.assertEqual(_verbs(self.server).count(b"QUIT"), 2)
        self.assertNotIn("]*", env.mainlog())

    @defer.inlineCallbacks
    def test_parallel_shares_and_max_rcpt_copies(self):
        """Six addresses, max_rcpt = 2, remote_max_parallel = 2: as exim4,
        two connections get three addresses each, sent as a copy of two
        recipients and a copy of one down the same connection, then QUIT."""
        env = self.env("max_rcpt = 2", main="remote_max_parallel = 2\n")
        outcome = yield env.deliver(env.submit(["%s@a.example" % c for c in "abcdef"]))
        self.assertTrue(outcome.completed)
        self.assertEqual(len(self.server.connections), 2)
        self.assertEqual(_verbs(self.server).count(b"QUIT"), 2)
        rcpts = [c for c in self.server.commands if c.startswith(b"RCPT")]
        self.assertEqual(len(rcpts), 6)
        mails = _verbs(self.server).count(b"MAIL")
        self.assertEqual(mails, 4)

    @defer.inlineCallbacks
    def test_pieces_share_connection_without_parallelism(self):
        """remote_max_parallel = 1, max_rcpt = 2, three addresses: as exim4,
        one connection carries both pieces (2 and 1 recipients), then QUIT."""
        env = self.env("max_rcpt = 2", main="remote_max_parallel = 1\n")
        outcome = yield env.deliver(env.submit(["%s@a.example" % c for c in "abc"]))
        self.assertTrue(outcome.completed)
        self.assertEqual(len(self.server.connections), 1)
        self.assertEqual(_verbs(self.server), [b"EHLO", b"MAIL", b"RCPT", b"RCPT", b"DATA",
                                               b".", b"MAIL", b"RCPT", b"DATA", b".", b"QUIT"])

    @defer.inlineCallbacks
    def test_max_rcpt_one_connects_for_each(self):
        """max_rcpt = 1 with no parallelism: each address has a connection
        of its own, as exim4 delivers them."""
        env = self.env("max_rcpt = 1", main="remote_max_parallel = 1\n")
        outcome = yield env.deliver(env.submit(["a@a.example", "b@a.example"]))
        self.assertTrue(outcome.completed)
        self.assertEqual(len(self.server.connections), 2)

    @defer.inlineCallbacks
    def test_no_quit_pipelined_before_452_follow_up(self):
        """A recipient refused with 452 while another was accepted goes
        again after the data: QUIT is not sent with the data, but after
        the follow-up transaction (Exim 0217)."""
        self.server = ScriptedSMTPServer(overrides={"RCPT TO:<u2@a.example>": "452 excess"})
        self.addCleanup(self.server.stop)
        env = self.env()
        yield env.deliver(env.submit(["u1@a.example", "u2@a.example"]))
        self.assertEqual(len(self.server.connections), 1)
        self.assertEqual(_verbs(self.server), [b"EHLO", b"MAIL", b"RCPT", b"RCPT", b"DATA",
                                               b".", b"MAIL", b"RCPT", b"DATA", b".",
                                               b"QUIT"])

    @defer.inlineCallbacks
    def test_address_groups_have_own_connections(self):
        """Two address groups of one message (different headers_add) for
        one host: each has its own connection, even where connections are
        kept for later messages (a daemon), as Exim delivers each group apart."""
        smtp_pool.POOL.speculative = True
        env = self.env(main="remote_max_parallel = 1\n")
        outcome = yield env.deliver(env.submit(["u1@a.example", "u2@c.example"]))
        self.assertTrue(outcome.completed)
        self.assertEqual(len(self.server.connections), 2)
        self.assertNotIn("]*", env.mainlog())


class QueueSmtpTests(unittest.TestCase):
    """-odqs (queue_smtp): SMTP deliveries are queued, the message waits for
    its host, and the first delivery there carries it (Exim 0333, 0209)."""

    def setUp(self):
        self.addCleanup(smtp_pool.close_idle)
        speculative = smtp_pool.POOL.speculative
        self.addCleanup(setattr, smtp_pool.POOL, "speculative", speculative)
        smtp_pool.POOL.speculative = False
        self.server = ScriptedSMTPServer(overrides={"RCPT TO:<x@a.example>": "450 not now"})
        self.addCleanup(self.server.stop)
        text = (CONFIG.replace("PORT_A", str(self.server.port_number))
                .replace("PORT_B", str(self.server.port_number)).replace("EXTRA", ""))
        self.env = MailEnv(self, config_text=text)

    @defer.inlineCallbacks
    def test_queued_message_follows_first_delivery(self):
        """Two messages queued with -odqs make no connection and log Exim's
        deferral; delivering the first carries the second down the same
        connection (logged with "*"), then QUIT."""
        env = self.env
        first, second = env.submit(["u1@a.example"]), env.submit(["u2@a.example"])
        for message_id in (first, second):
            outcome = yield env.deliver(message_id, queue_smtp=True)
            self.assertEqual(len(outcome.deferred), 1)
        self.assertEqual(self.server.connections, [])
        self.assertIn("%s == u1@a.example R=to_a T=smtp defer (0): SMTP delivery explicitly "
                      "queued" % (first,), env.mainlog())
        outcome = yield env.deliver(first, force=True)
        self.assertTrue(outcome.completed)
        yield smtp_pool.close_idle()
        self.assertEqual(len(self.server.connections), 1)
        self.assertEqual(_verbs(self.server), [b"EHLO", b"MAIL", b"RCPT", b"DATA", b".",
                                               b"MAIL", b"RCPT", b"DATA", b".", b"QUIT"])
        self.assertEqual(env.queued(), [])
        self.assertRegex(env.mainlog(), r"%s => u2@a.example R=to_a T=smtp "
                         r"H=127.0.0.1 \[127.0.0.1\]\* C=" % (second,))

    @defer.inlineCallbacks
    def test_chain_of_three_on_one_connection(self):
        """Three queued messages: the first delivery carries the second,
        which keeps the connection for the third (Exim's chain of continued
        deliveries, 0440); QUIT only after the last."""
        env = self.env
        ids = [env.submit(["u%d@a.example" % n]) for n in range(3)]
        for message_id in ids:
            yield env.deliver(message_id, queue_smtp=True)
        yield env.deliver(ids[0], queue_run=True)
        yield smtp_pool.close_idle()
        self.assertEqual(len(self.server.connections), 1)
        self.assertEqual(_verbs(self.server).count(b"MAIL"), 3)
        self.assertEqual(_verbs(self.server)[-1], b"QUIT")
        self.assertEqual(env.queued(), [])

    @defer.inlineCallbacks
    def test_continued_message_skips_delayed_recipient(self):
        """A recipient refused with 4xx in the first message is not offered
        again in the waiting message that follows in the same queue run: its
        address retry time (recipient and sender) has not come."""
        env = self.env
        ids = [env.submit(["x@a.example", "y@a.example"]) for _ in range(2)]
        for message_id in ids:
            yield env.deliver(message_id, queue_smtp=True)
        outcome = yield env.deliver(ids[0], queue_run=True)
        self.assertEqual([a.address for a in outcome.delivered], ["y@a.example"])
        yield smtp_pool.close_idle()
        self.assertEqual(len(self.server.connections), 1)
        rcpts = [c for c in self.server.commands if c.startswith(b"RCPT")]
        self.assertEqual(rcpts, [b"RCPT TO:<x@a.example>", b"RCPT TO:<y@a.example>",
                                 b"RCPT TO:<y@a.example>"])


def _tick():
    from twisted.internet import reactor
    d = defer.Deferred()
    reactor.callLater(0.01, d.callback, None)
    return d


class SerializeHostsTests(unittest.TestCase):
    """serialize_hosts: one connection at a time to a matching host."""

    def setUp(self):
        self.addCleanup(smtp_pool.close_idle)

    def env(self, extra, **overrides):
        self.server = ScriptedSMTPServer(overrides=overrides)
        self.addCleanup(self.server.stop)
        other = ScriptedSMTPServer()
        self.addCleanup(other.stop)
        text = (CONFIG.replace("PORT_A", str(self.server.port_number))
                .replace("PORT_B", str(other.port_number)).replace("EXTRA", extra))
        return MailEnv(self, config_text=text)

    @defer.inlineCallbacks
    def test_second_connection_deferred(self):
        """While one delivery holds a connection to a serialized host, a
        second message for it is deferred with Exim's text (and no retry
        record), and goes at the next attempt."""
        env = self.env("serialize_hosts = 127.0.0.1\n  connection_max_messages = 1",
                       **{"RCPT TO:<slow@a.example>": STALL})
        slow = env.deliver(env.submit(["slow@a.example"]))
        while not any(c.startswith(b"RCPT") for c in self.server.commands):
            yield _tick()
        blocked = env.submit(["next@a.example"])
        outcome = yield env.deliver(blocked)
        self.assertEqual(len(outcome.deferred), 1)
        self.assertIn("%s == next@a.example R=to_a T=smtp defer (-54): connection limit "
                      "reached for all hosts for 'a.example'" % (blocked,), env.mainlog())
        self.assertEqual(len(self.server.connections), 1)
        for conn in self.server.connections:
            conn.transport.abortConnection()
        yield slow
        # (The dropped connection left a retry record for the host.)
        again = yield env.deliver(blocked, force=True)
        self.assertTrue(again.completed)

    @defer.inlineCallbacks
    def test_kept_connection_serves_serialized_host(self):
        """A connection kept open for a serialized host is used by the next
        message, rather than counted as the one connection that blocks it."""
        env = self.env("serialize_hosts = 127.0.0.1")
        yield env.deliver(env.submit(["u1@a.example"]))
        outcome = yield env.deliver(env.submit(["u2@a.example"]))
        self.assertTrue(outcome.completed)
        self.assertEqual(len(self.server.connections), 1)

    def test_lock_excludes_other_process(self):
        """The serialization lock is a file lock in the spool's db directory:
        a lock held by another process refuses this one."""
        import subprocess
        import sys
        import tempfile
        db = tempfile.mkdtemp(prefix="exim_py-serialize-")
        lock = smtp_pool.SerializeLock(db, "h:127.0.0.1")
        script = ("import fcntl, os, sys, time\n"
                  "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
                  "fcntl.lockf(fd, fcntl.LOCK_EX)\n"
                  "print('locked', flush=True)\n"
                  "sys.stdin.read()\n")
        child = subprocess.Popen([sys.executable, "-c", script, lock.path],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            self.assertEqual(child.stdout.readline().strip(), b"locked")
            self.assertFalse(lock.acquire())
        finally:
            child.stdin.close()
            child.wait()
        self.assertTrue(lock.acquire())
        lock.release()


class QueueRunGroupingTests(unittest.TestCase):
    """-qq and queue_run_in_order decide the order of a queue run."""

    def setUp(self):
        self.addCleanup(smtp_pool.close_idle)
        self.a = ScriptedSMTPServer()
        self.b = ScriptedSMTPServer()
        self.addCleanup(self.a.stop)
        self.addCleanup(self.b.stop)
        text = (CONFIG.replace("PORT_A", str(self.a.port_number))
                .replace("PORT_B", str(self.b.port_number)).replace("EXTRA", "")
                .replace("log_file_path", "queue_run_in_order\nlog_file_path"))
        self.env = MailEnv(self, config_text=text)
        self.ids = [self.env.submit([rcpt]) for rcpt in
                    ("u1@a.example", "u2@b.example", "u3@a.example")]

    def delivery_order(self):
        return re.findall(r"(\S+) => ", self.env.mainlog())

    @defer.inlineCallbacks
    def test_in_order(self):
        """queue_run_in_order: a queue run takes messages in arrival order."""
        runner = QueueRunner(self.env.config, self.env.spool, logger=self.env.logger,
                             max_active=1)
        yield runner.scan()
        self.assertEqual(self.delivery_order(), self.ids)

    @defer.inlineCallbacks
    def test_two_pass_groups_by_host(self):
        """-qq: the first pass routes everything, the second delivers the
        messages for one host one after the other, down one connection,
        in a command-line run too (where connections are otherwise kept
        only for messages already waiting)."""
        speculative = smtp_pool.POOL.speculative
        self.addCleanup(setattr, smtp_pool.POOL, "speculative", speculative)
        smtp_pool.POOL.speculative = False
        runner = QueueRunner(self.env.config, self.env.spool, logger=self.env.logger,
                             selection=Selection("q"), max_active=1)
        yield runner.scan()
        self.assertEqual(self.delivery_order(), [self.ids[0], self.ids[2], self.ids[1]])
        self.assertEqual(len(self.a.connections), 1)
        self.assertEqual(_verbs(self.a).count(b"MAIL"), 2)
        self.assertIn("Start queue run: pid=%d -qq" % (os.getpid(),), self.env.mainlog())
        # The run ends with the kept connections closed.
        self.assertEqual(smtp_pool.POOL.idle_count(), 0)
        self.assertEqual(_verbs(self.a)[-1], b"QUIT")
        self.assertFalse(smtp_pool.POOL.speculative)


class RealEximReuseTests(unittest.TestCase):
    """Real Exim 4.96 as the next hop sees one connection for two messages."""

    def setUp(self):
        require_command("exim4")
        self.addCleanup(smtp_pool.close_idle)

    @defer.inlineCallbacks
    def test_exim_receives_two_messages_on_one_connection(self):
        """Exim's +smtp_connection log shows one connection closed by QUIT
        (the fixture's readiness probe just disconnects) for two messages,
        both received."""
        peer = EximPeer(extra="log_selector = +smtp_connection").start()
        self.addCleanup(peer.stop)
        text = (CONFIG.replace("PORT_A", str(peer.port)).replace("PORT_B", str(peer.port))
                .replace("EXTRA", ""))
        env = MailEnv(self, config_text=text)
        yield env.deliver(env.submit(["x@a.example"]))
        yield env.deliver(env.submit(["y@a.example"]))
        yield smtp_pool.close_idle()
        log = peer.mainlog()
        self.assertEqual(log.count("closed by QUIT"), 1)
        self.assertEqual(log.count(" <= "), 2)
