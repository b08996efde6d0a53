"""The delivery engine's shortcuts for a message delivered in one attempt.

A message whose every recipient is done in the attempt is taken off the
queue without a -J journal (removing -H records it); an attempt that leaves
recipients deferred records the delivered ones in the -H it rewrites.  The
attempt's only remote batch is prepared (hosts, message data) in the
attempt's worker thread, and the interface list behind the routers' "self"
check is read once for many routings.  The next hop is Debian's real exim4.
"""

import mailbox
import os

from twisted.internet import defer
from twisted.trial import unittest

from exim_py.delivery import context as delivery_context
from exim_py.delivery.deliverylog import DeliveryLog
from exim_py.delivery.received import ReceivedCopy
from exim_py.routers import base as router_base
from exim_py.spool import spool as spool_module
from exim_py.transports import smtp as smtp_transport
from tests.support.exim_peer import EximPeer
from tests.test_delivery_engine import MailEnv

RELAY_CONFIG = """\
primary_hostname = myhost.test
qualify_domain = localdomain
spool_directory = VAR/spool
log_file_path = VAR/log/%slog
never_users =
begin routers
to_peer:
  driver = manualroute
  domains = remote.example
  route_list = * 127.0.0.1
  transport = to_peer_smtp
  self = send
begin transports
to_peer_smtp:
  driver = smtp
  port = PORT
  allow_localhost = true
  hosts_avoid_tls = *
begin retry
* * F,1h,10m
"""


def record_journal_writes(testcase, spool):
    """The addresses each Spool.mark_delivered call wrote to a -J journal."""
    calls = []
    original = spool.mark_delivered

    def mark_delivered(message_id, addresses, durable=None):
        calls.append(addresses)
        return original(message_id, addresses, durable)
    testcase.patch(spool, "mark_delivered", mark_delivered)
    return calls


def journal_path(env, message_id):
    return os.path.join(env.spool.input_dir(message_id), message_id + "-J")


class RelayedAttemptTests(unittest.TestCase):
    """A message for a remote host, delivered to a real exim4."""

    def setUp(self):
        self.peer = EximPeer().start()
        self.addCleanup(self.peer.stop)
        self.env = MailEnv(self, RELAY_CONFIG.replace("PORT", str(self.peer.port)), aliases="")

    @defer.inlineCallbacks
    def test_completed_message_is_removed_without_a_journal(self):
        """Every recipient accepted: the message leaves the queue, logged
        "=>" then "Completed", and no -J journal was ever written."""
        journal = record_journal_writes(self, self.env.spool)
        message_id = self.env.submit(["one@remote.example", "two@remote.example"])
        outcome = yield self.env.deliver(message_id)
        self.assertTrue(outcome.completed)
        self.assertEqual(journal, [])
        self.assertEqual(self.env.queued(), [])
        self.assertEqual(len(self.peer.messages()), 1)
        log = self.env.mainlog()
        self.assertLess(log.index("%s => one@remote.example" % message_id),
                        log.index("%s Completed" % message_id))

    @defer.inlineCallbacks
    def test_deferred_recipient_keeps_the_delivered_one_recorded(self):
        """The peer takes one recipient and defers the other (451): the
        rewritten -H records the delivered one (no journal left behind),
        and the next attempt does not send it again."""
        message_id = self.env.submit(["good@remote.example", "deferme@remote.example"])
        outcome = yield self.env.deliver(message_id)
        self.assertFalse(outcome.completed)
        self.assertEqual([a.address for a in outcome.delivered], ["good@remote.example"])
        self.assertFalse(os.path.exists(journal_path(self.env, message_id)))
        self.assertEqual(self.env.spool.read(message_id).non_recipients,
                         {"good@remote.example"})
        outcome = yield self.env.deliver(message_id, force=True)
        self.assertEqual(outcome.delivered, [])
        self.assertEqual(len(self.peer.messages()), 1)

    @defer.inlineCallbacks
    def test_completed_message_log_is_not_appended_to(self):
        """The lines of an attempt that completes the message are not
        written to its message log, which is removed with the message."""
        written = []
        real_write = DeliveryLog._write_msglog

        def write(log, line):
            written.append(line)
            return real_write(log, line)
        self.patch(DeliveryLog, "_write_msglog", write)
        message_id = self.env.submit(["one@remote.example"])
        outcome = yield self.env.deliver(message_id)
        self.assertTrue(outcome.completed)
        self.assertEqual(written, [])
        self.assertFalse(os.path.exists(self.env.spool.msglog_path(message_id)))

    @defer.inlineCallbacks
    def test_message_left_queued_has_its_message_log_lines(self):
        """An attempt that leaves a recipient deferred writes the lines it
        held back to the message log, in order: the delivery, then the
        deferral."""
        message_id = self.env.submit(["good@remote.example", "deferme@remote.example"])
        yield self.env.deliver(message_id)
        with open(self.env.spool.msglog_path(message_id)) as f:
            text = f.read()
        delivered = text.index("good@remote.example: to_peer_smtp transport succeeded")
        deferred = text.index("deferme@remote.example R=to_peer T=to_peer_smtp defer")
        self.assertLess(delivered, deferred)

    @defer.inlineCallbacks
    def test_body_is_read_through_the_lock(self):
        """The -D file the delivery holds locked is read through that
        descriptor: the body reaches the peer intact and -D is not opened
        again by name (nor looked for: no stat of it)."""
        opened = []
        real_open = open

        def tracking_open(path, *args, **kwargs):
            opened.append(path)
            return real_open(path, *args, **kwargs)
        delivery_context.open = tracking_open       # shadows the built-in there
        self.addCleanup(delattr, delivery_context, "open")
        self.patch(self.env.spool, "body_path", lambda message_id: opened.append(message_id))
        body = "".join("line %d of the body\n" % n for n in range(200))
        message_id = self.env.submit(["one@remote.example"], body=body)
        outcome = yield self.env.deliver(message_id)
        self.assertTrue(outcome.completed)
        self.assertEqual(opened, [])
        [(_, received)] = self.peer.messages()
        self.assertTrue(received.endswith(body.encode()))

    @defer.inlineCallbacks
    def test_just_received_message_is_removed_without_looking_for_a_journal(self):
        """Delivered straight after receipt (the daemon's received copy, so
        no journal existed) and completed without one: removal unlinks -H,
        -D and the message log, and tries no -J file in either layout."""
        stored = self.env.submit_envelope(["one@remote.example"])
        received = ReceivedCopy(self.env.spool, stored)
        unlinked = []
        real_unlink = os.unlink

        def unlink(path, *args, **kwargs):
            unlinked.append(os.path.basename(path))
            return real_unlink(path, *args, **kwargs)
        self.patch(spool_module.os, "unlink", unlink)
        outcome = yield self.env.deliver(stored.message_id, received=received)
        self.assertTrue(outcome.completed)
        self.assertEqual(self.env.queued(), [])
        self.assertEqual(sorted(unlinked), sorted(stored.message_id + suffix
                                                  for suffix in ("-H", "-D", "")))

    @defer.inlineCallbacks
    def test_dont_deliver_finishes_the_attempt(self):
        """-N: the address is logged "*>" as if delivered, nothing reaches
        the peer, and the attempt still ends with the message removed."""
        message_id = self.env.submit(["one@remote.example"])
        outcome = yield self.env.deliver(message_id, dont_deliver=True)
        self.assertTrue(outcome.completed)
        self.assertEqual(self.env.queued(), [])
        self.assertEqual(self.peer.messages(), [])
        self.assertIn("%s *> one@remote.example R=to_peer T=to_peer_smtp" % message_id,
                      self.env.mainlog())

    @defer.inlineCallbacks
    def test_only_remote_batch_needs_no_transport_thread(self):
        """The engine prepares the attempt's only remote batch in its own
        worker thread: the smtp transport does not go to a thread again."""
        def no_thread(*args, **kwargs):
            raise AssertionError("the smtp transport went to a thread of its own")
        self.patch(smtp_transport.threads, "deferToThread", no_thread)
        message_id = self.env.submit(["one@remote.example"])
        outcome = yield self.env.deliver(message_id)
        self.assertTrue(outcome.completed)
        self.assertIn("%s => one@remote.example R=to_peer T=to_peer_smtp" % message_id,
                      self.env.mainlog())


class LocalAttemptTests(unittest.TestCase):
    """The same rules for local deliveries (made in the attempt's thread)."""

    def setUp(self):
        self.env = MailEnv(self)

    @defer.inlineCallbacks
    def test_completed_message_is_removed_without_a_journal(self):
        """Two mailboxes delivered in one attempt: removed, no journal written."""
        journal = record_journal_writes(self, self.env.spool)
        message_id = self.env.submit(["mb1", "md1"])
        outcome = yield self.env.deliver(message_id)
        self.assertTrue(outcome.completed)
        self.assertEqual(journal, [])
        self.assertEqual(self.env.queued(), [])

    @defer.inlineCallbacks
    def test_deferred_recipient_keeps_the_delivered_one_recorded(self):
        """One mailbox delivered, one address deferred by its alias: -H
        records the delivered one and a second attempt leaves the mailbox
        with its one copy."""
        message_id = self.env.submit(["mb1", "later"])
        outcome = yield self.env.deliver(message_id)
        self.assertFalse(outcome.completed)
        self.assertFalse(os.path.exists(journal_path(self.env, message_id)))
        self.assertIn("mb1@localdomain", self.env.spool.read(message_id).non_recipients)
        yield self.env.deliver(message_id, force=True)
        self.assertEqual(len(mailbox.mbox(self.env.path("mail", "mb1"))), 1)


class LocalAddressesTests(unittest.TestCase):
    """routers/base.local_addresses: the interface list is read once for many routings."""

    def test_list_is_reused_then_read_again(self):
        """Within LOCAL_ADDRESSES_TTL the same list serves every caller; an
        older one is read again from /proc."""
        self.patch(router_base, "_local_cache", (None, frozenset()))
        first = router_base.local_addresses()
        self.assertIn("127.0.0.1", first)
        self.assertIs(router_base.local_addresses(), first)
        when, found = router_base._local_cache
        self.patch(router_base, "_local_cache",
                   (when - router_base.LOCAL_ADDRESSES_TTL - 1, frozenset({"192.0.2.1"})))
        self.assertEqual(router_base.local_addresses(), first)
