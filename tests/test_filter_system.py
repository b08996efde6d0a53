"""The system filter (system_filter): run once per delivery attempt before
routing; its deliveries, header changes and fail/defer/freeze verdicts,
checked in the mailboxes, the spool and the log lines Exim writes."""

import mailbox

from twisted.internet import defer
from twisted.trial import unittest

from tests.test_router_redirect_filter import FILTER_CONFIG, FilterMail

# The users' filter configuration, with a system filter.
SYSTEM_CONFIG = FILTER_CONFIG.replace("never_users =\n", """never_users =
system_filter = VAR/system.filter
system_filter_file_transport = file
system_filter_pipe_transport = pipe
""")


class SystemFilterTests(FilterMail, unittest.TestCase):
    """Deliveries through a system filter."""

    CONFIG = SYSTEM_CONFIG

    def system_filter(self, text):
        with open(self.env.path("system.filter"), "w") as f:
            f.write(text.replace("VAR", self.env.dir))

    @defer.inlineCallbacks
    def test_no_action_delivers_normally_with_added_header(self):
        """headers add/remove change the message for every recipient."""
        self.system_filter('# Exim filter\nheaders add "X-Scanned: yes"\n'
                           'headers remove "Subject"\n')
        yield self.deliver(["jim", "ann"])
        for user in ("jim", "ann"):
            (message,) = self.messages(user)
            self.assertEqual(message["X-Scanned"], "yes")
            self.assertIsNone(message["Subject"])

    @defer.inlineCallbacks
    def test_significant_delivery_replaces_recipients(self):
        """A seen deliver/save replaces the original recipients, as the log says."""
        self.system_filter('if $h_subject: contains "spam" then\n'
                           '  deliver quarantine@localdomain\n  save VAR/spam.mbox\nendif\n')
        message_id, outcome = yield self.deliver(["jim"], subject="spam offer")
        self.assertEqual(self.mbox("jim"), [])
        self.assertEqual(self.mbox("quarantine"), ["spam offer"])
        self.assertEqual(len(mailbox.mbox(self.env.path("spam.mbox"))), 1)
        log = self.env.mainlog()
        self.assertIn("original recipients ignored (system filter)", log)
        self.assertIn("=> %s <system-filter> T=file" % self.env.path("spam.mbox"), log)
        self.assertTrue(outcome.completed)

    @defer.inlineCallbacks
    def test_unseen_delivery_adds_a_copy(self):
        """An unseen deliver sends a copy and normal delivery goes on."""
        self.system_filter("unseen deliver archive@localdomain\n")
        yield self.deliver(["jim"])
        self.assertEqual(self.mbox("jim"), ["test"])
        self.assertEqual(self.mbox("archive"), ["test"])

    @defer.inlineCallbacks
    def test_fail_bounces_every_recipient(self):
        """fail cancels delivery; the <<log>> part goes to the log only."""
        self.system_filter('if not error_message then\n'
                           '  fail "<<policy 7>>We do not accept this."\nendif\n')
        message_id, outcome = yield self.deliver(["jim", "ann"])
        self.assertEqual(sorted(a.address for a in outcome.failed),
                         ["ann@localdomain", "jim@localdomain"])
        self.assertIn("cancelled by system filter: policy 7", self.env.mainlog())
        self.assertEqual(self.mbox("jim"), [])

    @defer.inlineCallbacks
    def test_freeze_keeps_message_frozen(self):
        """freeze leaves the message on the queue, frozen, with Exim's log line."""
        self.system_filter('freeze text "looks odd"\n')
        message_id, outcome = yield self.deliver(["jim"])
        self.assertIn("Frozen by the system filter: looks odd", self.env.mainlog())
        self.assertTrue(self.env.spool.read(message_id).frozen)
        self.assertEqual(self.mbox("jim"), [])

    @defer.inlineCallbacks
    def test_freeze_ignored_after_manual_thaw(self):
        """A message an administrator thawed is not frozen again by the
        filter; manually_thawed is true for it."""
        self.system_filter('if manually_thawed then headers add "X-Thawed: yes" endif\n'
                           'freeze text "looks odd"\n')
        message_id, _ = yield self.deliver(["jim"])
        outcome = yield self.env.deliver(message_id, thaw=True, force=True)
        self.assertTrue(outcome.completed)
        (message,) = self.messages("jim")
        self.assertEqual(message["X-Thawed"], "yes")

    @defer.inlineCallbacks
    def test_defer_keeps_message_queued(self):
        """defer leaves the message queued for a later attempt."""
        self.system_filter("defer\n")
        message_id, outcome = yield self.deliver(["jim"])
        self.assertIn("Delivery deferred by system filter", self.env.mainlog())
        self.assertIn(message_id, self.env.queued())
        self.assertFalse(self.env.spool.read(message_id).frozen)

    @defer.inlineCallbacks
    def test_sn_variables_reach_user_filters(self):
        """$n values the system filter sets are $sn values in users' filters."""
        self.system_filter("add 7 to n3\n")
        self.filter("jim", "# Exim filter\nif $sn3 is 7 then save VAR/seven.mbox endif\n")
        yield self.deliver(["jim"])
        self.assertEqual(len(mailbox.mbox(self.env.path("seven.mbox"))), 1)
        self.assertEqual(self.mbox("jim"), [])

    @defer.inlineCallbacks
    def test_filter_error_is_logged_to_panic_log(self):
        """A broken system filter defers delivery and reports to the panic log."""
        self.system_filter("if 1 is 1 then save /x\n")
        message_id, outcome = yield self.deliver(["jim"])
        with open(self.env.path("log", "paniclog")) as f:
            self.assertIn('Error in system filter: "endif" missing at end of filter file',
                          f.read())
        self.assertIn(message_id, self.env.queued())
