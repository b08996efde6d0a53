"""Bounce and warning policy (spec chapter "Customizing bounce and warning
messages" and the main options it names): errors_to, bounce_return_*,
delay_warning, timeout_frozen_after, ignore_bounce_errors_after, and the
header changes routers and transports make."""

import mailbox

from twisted.internet import defer, task
from twisted.trial import unittest

from tests.test_delivery_engine import MailEnv

CONFIG = """\
primary_hostname = myhost.test
qualify_domain = localdomain
spool_directory = VAR/spool
log_file_path = VAR/log/%slog
bounce_return_size_limit = 200
delay_warning = 4h : 8h
timeout_frozen_after = 3d
ignore_bounce_errors_after = 1d
begin routers
owned:
  driver = redirect
  local_parts = list
  data = fails@localdomain
  errors_to = owner@localdomain
fails:
  driver = redirect
  local_parts = fails
  allow_fail
  data = :fail: gone
later:
  driver = redirect
  local_parts = later
  allow_defer
  data = :defer: try later
headers:
  driver = accept
  local_parts = hdr
  headers_add = X-Router: added
  headers_remove = X-Secret
  transport = mbox
mbox:
  driver = accept
  transport = mbox
begin transports
mbox:
  driver = appendfile
  file = VAR/mail/$local_part
  headers_add = X-Transport: $local_part
  headers_remove = X-Other
begin retry
* * F,5d,1h
"""


class BouncePolicyTests(unittest.TestCase):
    """Where failure reports go and what they contain."""

    def setUp(self):
        self.env = MailEnv(self, config_text=CONFIG, aliases="")

    @defer.inlineCallbacks
    def test_errors_to_receives_the_bounce(self):
        """A failure under a router with errors_to is reported to that address."""
        mid = self.env.submit(["list"])
        outcome = yield self.env.deliver(mid, deliver_bounces=False)
        env, report = self.env.read_queued(outcome.bounces[0])
        self.assertEqual([r.address for r in env.recipients], ["owner@localdomain"])
        self.assertEqual(report["To"], "owner@localdomain")

    @defer.inlineCallbacks
    def test_report_to_other_than_sender(self):
        """A report to an errors_to address names the sender instead of "you"."""
        mid = self.env.submit(["list"])
        outcome = yield self.env.deliver(mid, deliver_bounces=False)
        _, report = self.env.read_queued(outcome.bounces[0])
        self.assertEqual(report["Subject"], "Mail delivery failed")
        self.assertIn("A message sent by\n\n  <sender@x.example>\n\ncould not be delivered",
                      report.get_payload()[0].get_payload())

    @defer.inlineCallbacks
    def test_return_size_limit(self):
        """Only about bounce_return_size_limit bytes of the body are returned,
        with Exim's note saying so."""
        body = "".join("line %03d of a long body\n" % i for i in range(100))
        mid = self.env.submit(["fails"], body=body)
        outcome = yield self.env.deliver(mid, deliver_bounces=False)
        _, report = self.env.read_queued(outcome.bounces[0])
        returned = report.get_payload()[2].get_payload()[0].get_payload()
        self.assertIn("------ The body of the message is %d characters long; only the first\n"
                      % len(body), returned)
        self.assertLess(len(returned), 600)

    @defer.inlineCallbacks
    def test_headers_added_and_removed(self):
        """Router and transport headers_add go at the end of the header;
        headers_remove drops the named headers."""
        env_id = self.env.submit(["hdr"], body="x\n")
        spool_env = self.env.spool.read(env_id)
        from exim_py.envelope import Header
        spool_env.headers.append(Header("X-Secret: s\n"))
        spool_env.headers.append(Header("X-Other: o\n"))
        self.env.spool.write_header(spool_env)
        yield self.env.deliver(env_id)
        msg = mailbox.mbox(self.env.path("mail", "hdr"))[0]
        self.assertEqual(msg["X-Router"], "added")
        self.assertEqual(msg["X-Transport"], "hdr")
        self.assertIsNone(msg["X-Secret"])
        self.assertIsNone(msg["X-Other"])
        self.assertEqual(msg.keys()[-2:], ["X-Router", "X-Transport"])


class TimerPolicyTests(unittest.TestCase):
    """Policies that depend on the message's age, with an injected clock."""

    def setUp(self):
        self.env = MailEnv(self, config_text=CONFIG, aliases="")

    def clock_at(self, message_id, hours):
        clock = task.Clock()
        clock.advance(self.env.spool.read(message_id).received_time + hours * 3600)
        return clock

    @defer.inlineCallbacks
    def test_delay_warning(self):
        """After the first delay_warning time a warning goes to the sender,
        once; after the next time, another."""
        mid = self.env.submit(["later"])
        outcome = yield self.env.deliver(mid, deliver_bounces=False,
                                         clock=self.clock_at(mid, 1))
        self.assertEqual(outcome.bounces, [])
        outcome = yield self.env.deliver(mid, deliver_bounces=False, force=True,
                                         clock=self.clock_at(mid, 5))
        self.assertEqual(len(outcome.bounces), 1)
        env, warning = self.env.read_queued(outcome.bounces[0])
        self.assertEqual(env.sender, "")
        self.assertEqual(warning["Subject"], "Warning: message %s delayed 4 hours" % mid)
        self.assertEqual(warning.get_content_type(), "multipart/report")
        status = warning.get_payload()[1].get_payload()
        self.assertEqual(status[1]["Action"], "delayed")
        outcome = yield self.env.deliver(mid, deliver_bounces=False, force=True,
                                         clock=self.clock_at(mid, 6))
        self.assertEqual(outcome.bounces, [])
        outcome = yield self.env.deliver(mid, deliver_bounces=False, force=True,
                                         clock=self.clock_at(mid, 9))
        self.assertEqual(len(outcome.bounces), 1)

    @defer.inlineCallbacks
    def test_timeout_frozen_after(self):
        """A frozen message older than timeout_frozen_after is cancelled: its
        recipients fail and are bounced."""
        mid = self.env.submit(["later"])
        env = self.env.spool.read(mid)
        env.frozen = True
        self.env.spool.write_header(env)
        outcome = yield self.env.deliver(mid, clock=self.clock_at(mid, 2 * 24))
        self.assertTrue(outcome.frozen)
        outcome = yield self.env.deliver(mid, clock=self.clock_at(mid, 4 * 24),
                                         deliver_bounces=False)
        self.assertTrue(outcome.completed)
        self.assertEqual(self.env.queued(), outcome.bounces)
        log = self.env.mainlog()
        self.assertIn("%s cancelled by timeout_frozen_after" % mid, log)
        self.assertIn("%s ** later@localdomain: delivery cancelled; message timed out" % mid, log)

    @defer.inlineCallbacks
    def test_ignore_bounce_errors_after(self):
        """A frozen bounce older than ignore_bounce_errors_after is unfrozen, tried
        once more, and discarded when it fails again."""
        mid = self.env.submit(["fails"], sender="")
        yield self.env.deliver(mid)
        outcome = yield self.env.deliver(mid, clock=self.clock_at(mid, 30))
        self.assertTrue(outcome.completed)
        self.assertIn("Unfrozen by errmsg timer", self.env.mainlog())
        self.assertEqual(self.env.queued(), [])


TEMPLATE = """\
Subject: Undeliverable mail for $bounce_recipient
X-Template: yes
****
Sorry, your message could not be delivered.
Limit: $bounce_return_size_limit
****
"""


class TemplateTests(unittest.TestCase):
    """bounce_message_file replaces the default header and introduction."""

    def setUp(self):
        config = CONFIG.replace("delay_warning = 4h : 8h\n",
                                "delay_warning = 4h : 8h\nbounce_message_file = VAR/bounce.tmpl\n")
        self.env = MailEnv(self, config_text=config, aliases="")
        with open(self.env.path("bounce.tmpl"), "w") as f:
            f.write(TEMPLATE)

    @defer.inlineCallbacks
    def test_bounce_message_file(self):
        """The template's headers and text are expanded and used; the failed
        addresses and the DSN part follow as usual."""
        mid = self.env.submit(["fails"])
        outcome = yield self.env.deliver(mid, deliver_bounces=False)
        _, report = self.env.read_queued(outcome.bounces[0])
        self.assertEqual(report["Subject"], "Undeliverable mail for sender@x.example")
        self.assertEqual(report["X-Template"], "yes")
        text = report.get_payload()[0].get_payload()
        self.assertTrue(text.startswith("Sorry, your message could not be delivered.\n"
                                        "Limit: 200\n"), text)
        self.assertIn("  fails@localdomain\n    gone", text)
        self.assertEqual(report.get_payload()[1].get_content_type(), "message/delivery-status")


class DSNTests(unittest.TestCase):
    """RFC 3461 NOTIFY decides which reports are sent."""

    def setUp(self):
        self.env = MailEnv(self, config_text=CONFIG, aliases="")

    def submit_with_notify(self, recipient, notify):
        mid = self.env.submit([recipient])
        env = self.env.spool.read(mid)
        env.recipients[0].dsn_notify = notify
        self.env.spool.write_header(env)
        return mid

    @defer.inlineCallbacks
    def test_notify_never_suppresses_bounce(self):
        """NOTIFY=NEVER: the failure is logged but no report is sent."""
        mid = self.submit_with_notify("fails", "NEVER")
        outcome = yield self.env.deliver(mid, deliver_bounces=False)
        self.assertTrue(outcome.completed)
        self.assertEqual(outcome.bounces, [])
        self.assertIn("** fails@localdomain", self.env.mainlog())

    @defer.inlineCallbacks
    def test_notify_failure_bounces(self):
        """NOTIFY=FAILURE: the failure is reported."""
        mid = self.submit_with_notify("fails", "FAILURE")
        outcome = yield self.env.deliver(mid, deliver_bounces=False)
        self.assertEqual(len(outcome.bounces), 1)

    @defer.inlineCallbacks
    def test_notify_without_delay_suppresses_warning(self):
        """NOTIFY=FAILURE (no DELAY): no delay warning is sent."""
        mid = self.submit_with_notify("later", "FAILURE")
        clock = task.Clock()
        clock.advance(self.env.spool.read(mid).received_time + 5 * 3600)
        outcome = yield self.env.deliver(mid, deliver_bounces=False, clock=clock)
        self.assertEqual(outcome.bounces, [])

    @defer.inlineCallbacks
    def test_notify_success_reports_delivery(self):
        """NOTIFY=SUCCESS: a local delivery produces Exim's success notification,
        with the ORCPT and ENVID the client gave."""
        mid = self.submit_with_notify("user1", "SUCCESS")
        env = self.env.spool.read(mid)
        env.recipients[0].orcpt = "rfc822;orig@example.org"
        env.dsn_envid = "abc123"
        self.env.spool.write_header(env)
        outcome = yield self.env.deliver(mid, deliver_bounces=False)
        self.assertEqual(len(outcome.bounces), 1)
        _, report = self.env.read_queued(outcome.bounces[0])
        self.assertEqual(report["Subject"], "Delivery Status Notification")
        self.assertEqual(report["Auto-Submitted"], "auto-generated")
        text = report.get_payload()[0].get_payload()
        self.assertIn('<user1@localdomain> (relayed via non "Remote SMTP" router)', text)
        status = report.get_payload()[1].get_payload()
        self.assertEqual(status[0]["Original-Envelope-ID"], "abc123")
        self.assertEqual(status[1]["Original-Recipient"], "rfc822;orig@example.org")
        self.assertEqual(status[1]["Action"], "delivered")
        self.assertEqual(status[1]["Status"], "2.0.0")
