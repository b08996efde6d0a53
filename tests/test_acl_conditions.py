"""ACL conditions and modifiers, each with a case where it holds and one where not.

The ACLs come from real configuration files; list matching and expansion are
the project's own (exim_py.match, exim_py.expand), as in production.
"""

import os

from twisted.trial import unittest

from exim_py.acl import replies
from exim_py.envelope import Recipient

from exim_py.acl import DEFER, ERROR, FAIL, OK
from exim_py.envelope import Header
from tests.support.acl import ListLog, config_from, envelope, run, session


def outcome(config, where, acl, **kw):
    result, _ = run(config, where, acl, **kw)
    return result.rc


class ListConditionTests(unittest.TestCase):
    """hosts, domains, local_parts, senders, recipients, sender_domains."""

    def setUp(self):
        self.config = config_from(self, """
hosts_acl:
  accept hosts = 10.0.0.0/8 : 1.2.3.4
not_hosts_acl:
  accept !hosts = 1.2.3.4
domains_acl:
  accept domains = +local_domains
local_parts_acl:
  accept local_parts = postmaster : ^abuse
senders_acl:
  accept senders = *@good.example : :
recipients_acl:
  accept recipients = boss@example.com
sender_domains_acl:
  accept sender_domains = good.example
""", main="domainlist local_domains = example.com : example.net")

    def test_hosts(self):
        """hosts matches the client's IP address against a host list."""
        self.assertEqual(outcome(self.config, "connect", "hosts_acl"), OK)
        self.assertEqual(outcome(self.config, "connect", "hosts_acl",
                                 sess=session("5.6.7.8")), FAIL)

    def test_negated_hosts(self):
        """!hosts inverts the match."""
        self.assertEqual(outcome(self.config, "connect", "not_hosts_acl"), FAIL)
        self.assertEqual(outcome(self.config, "connect", "not_hosts_acl",
                                 sess=session("5.6.7.8")), OK)

    def test_domains_named_list(self):
        """domains uses $domain and named domain lists."""
        self.assertEqual(outcome(self.config, "rcpt", "domains_acl",
                                 recipient="u@EXAMPLE.net"), OK)
        self.assertEqual(outcome(self.config, "rcpt", "domains_acl",
                                 recipient="u@other.example"), FAIL)

    def test_local_parts_caseless(self):
        """local_parts matches the local part without regard to case, regexes too."""
        self.assertEqual(outcome(self.config, "rcpt", "local_parts_acl",
                                 recipient="PostMaster@x"), OK)
        self.assertEqual(outcome(self.config, "rcpt", "local_parts_acl",
                                 recipient="abuse-desk@x"), OK)
        self.assertEqual(outcome(self.config, "rcpt", "local_parts_acl",
                                 recipient="user@x"), FAIL)

    def test_senders(self):
        """senders matches the envelope sender; an empty item matches <>."""
        sess = session()
        self.assertEqual(outcome(self.config, "mail", "senders_acl", sess=sess,
                                 env=envelope(sess, "me@good.example")), OK)
        self.assertEqual(outcome(self.config, "mail", "senders_acl", sess=sess,
                                 env=envelope(sess, "")), OK)
        self.assertEqual(outcome(self.config, "mail", "senders_acl", sess=sess,
                                 env=envelope(sess, "me@bad.example")), FAIL)

    def test_recipients(self):
        """recipients matches the RCPT address."""
        self.assertEqual(outcome(self.config, "rcpt", "recipients_acl",
                                 recipient="boss@example.com"), OK)
        self.assertEqual(outcome(self.config, "rcpt", "recipients_acl",
                                 recipient="clerk@example.com"), FAIL)

    def test_sender_domains(self):
        """sender_domains matches the domain of the sender."""
        sess = session()
        self.assertEqual(outcome(self.config, "mail", "sender_domains_acl", sess=sess,
                                 env=envelope(sess, "x@good.example")), OK)
        self.assertEqual(outcome(self.config, "mail", "sender_domains_acl", sess=sess,
                                 env=envelope(sess, "x@bad.example")), FAIL)


class ListDataTests(unittest.TestCase):
    """A lookup in senders / recipients leaves its data in $sender_data / $recipient_data."""

    def setUp(self):
        self.table = self.mktemp()
        with open(self.table, "w") as f:
            f.write("me@good.example: sender-row\nboss@example.com: recipient-row\n")
        self.config = config_from(self, """
senders_data_acl:
  accept senders = lsearch;%(t)s
         set acl_m_seen = <$sender_data>
recipients_data_acl:
  accept recipients = lsearch;%(t)s
         set acl_m_seen = <$recipient_data>
""" % {"t": self.table})

    def test_sender_data(self):
        """$sender_data holds the looked-up value once senders has matched."""
        sess = session()
        env = envelope(sess, "me@good.example")
        result, _ = run(self.config, "mail", "senders_data_acl", sess=sess, env=env)
        self.assertEqual(result.rc, OK)
        self.assertEqual(env.acl_m["acl_m_seen"], "<sender-row>")

    def test_recipient_data(self):
        """$recipient_data holds the looked-up value once recipients has matched."""
        sess = session()
        env = envelope(sess, "me@good.example")
        result, _ = run(self.config, "rcpt", "recipients_data_acl", sess=sess, env=env,
                        recipient="boss@example.com")
        self.assertEqual(result.rc, OK)
        self.assertEqual(env.acl_m["acl_m_seen"], "<recipient-row>")


class RejectLogEnvelopeTests(unittest.TestCase):
    """A rejection after DATA puts the envelope before the headers on the reject log."""

    def test_envelope_lines(self):
        """Envelope-from and Envelope-to lines precede the flagged headers, as Exim writes them."""
        from exim_py.log import Logger
        config = config_from(self, """
data_acl:
  deny message = no thanks
""")
        logdir = self.mktemp()
        os.mkdir(logdir)
        log = Logger(log_file_path=os.path.join(logdir, "%slog"), log_selector="")
        sess = session()
        env = envelope(sess, "me@good.example")
        env.recipients = [Recipient("boss@example.com")]
        env.headers = [Header("Subject: hello\n")]
        result, ctx = run(config, "data", "data_acl", sess=sess, env=env, log=log)
        replies.write_logs(replies.rejection(result, ctx, None), ctx)
        with open(os.path.join(logdir, "rejectlog")) as f:
            lines = f.read().splitlines()
        self.assertEqual(lines[1:], ["Envelope-from: <me@good.example>",
                                     "Envelope-to: <boss@example.com>",
                                     "  Subject: hello"])


class StateConditionTests(unittest.TestCase):
    """authenticated, encrypted, condition, verify = certificate / helo."""

    def setUp(self):
        self.config = config_from(self, """
auth_acl:
  accept authenticated = *
auth_named:
  accept authenticated = plain_server
tls_acl:
  accept encrypted = *
cond_acl:
  accept condition = ${if eq{$sender_helo_name}{good}}
literal_cond:
  accept condition = maybe
cert_acl:
  accept verify = certificate
helo_acl:
  accept verify = helo
""")

    def test_authenticated(self):
        """authenticated matches the name of the authenticator that succeeded."""
        sess = session()
        self.assertEqual(outcome(self.config, "mail", "auth_acl", sess=sess), FAIL)
        sess.auth_mechanism = "plain_server"
        sess.authenticated_id = "user"
        self.assertEqual(outcome(self.config, "mail", "auth_acl", sess=sess), OK)
        self.assertEqual(outcome(self.config, "mail", "auth_named", sess=sess), OK)
        sess.auth_mechanism = "cram"
        self.assertEqual(outcome(self.config, "mail", "auth_named", sess=sess), FAIL)

    def test_encrypted(self):
        """encrypted is true on a TLS session."""
        sess = session()
        self.assertEqual(outcome(self.config, "mail", "tls_acl", sess=sess), FAIL)
        sess.tls_cipher = "TLS1.3:ECDHE_RSA_AES_256_GCM_SHA384:256"
        self.assertEqual(outcome(self.config, "mail", "tls_acl", sess=sess), OK)

    def test_condition_expansion(self):
        """condition expands its value and reads it as a boolean."""
        self.assertEqual(outcome(self.config, "mail", "cond_acl", sess=session(helo="good")), OK)
        self.assertEqual(outcome(self.config, "mail", "cond_acl", sess=session(helo="bad")), FAIL)

    def test_condition_not_boolean_defers(self):
        """A condition value that is not a boolean defers with Exim's log text."""
        result, _ = run(self.config, "mail", "literal_cond")
        self.assertEqual((result.rc, result.log_message),
                         (DEFER, 'invalid "condition" value "maybe"'))

    def test_verify_certificate(self):
        """verify = certificate needs a verified client certificate."""
        sess = session()
        result, _ = run(self.config, "mail", "cert_acl", sess=sess)
        self.assertEqual((result.rc, result.user_message), (FAIL, "no verified certificate"))
        sess.tls_certificate_verified = True
        self.assertEqual(outcome(self.config, "mail", "cert_acl", sess=sess), OK)

    def test_verify_helo_literal(self):
        """verify = helo: an address literal must be the client's address."""
        self.assertEqual(outcome(self.config, "mail", "helo_acl",
                                 sess=session(helo="[1.2.3.4]")), OK)
        self.assertEqual(outcome(self.config, "mail", "helo_acl",
                                 sess=session(helo="[9.9.9.9]")), FAIL)


class HeaderVerifyTests(unittest.TestCase):
    """verify = header_syntax / not_blind / header_names_ascii in the DATA ACL."""

    def setUp(self):
        self.config = config_from(self, """
syntax_acl:
  accept verify = header_syntax
blind_acl:
  accept verify = not_blind
names_acl:
  accept verify = header_names_ascii
""")

    def data_run(self, acl, headers, recipients=("to@example.com",)):
        sess = session()
        env = envelope(sess, "a@b.example", recipients)
        env.headers = [Header(h) for h in headers]
        return run(self.config, "data", acl, sess=sess, env=env)[0]

    def test_header_syntax(self):
        """A From: that is not an address fails verify = header_syntax."""
        good = self.data_run("syntax_acl", ["From: A <a@b.example>\n"])
        bad = self.data_run("syntax_acl", ["From: a@b@c@@\n"])
        self.assertEqual((good.rc, bad.rc), (OK, FAIL))

    def test_not_blind(self):
        """Every envelope recipient must appear in To: or Cc:."""
        seen = self.data_run("blind_acl", ["To: <to@example.com>\n"])
        blind = self.data_run("blind_acl", ["To: other@example.com\n"])
        self.assertEqual((seen.rc, blind.rc), (OK, FAIL))
        self.assertEqual(blind.log_message, "bcc recipient detected")

    def test_header_names_ascii(self):
        """A header name with a non-ASCII character fails."""
        good = self.data_run("names_acl", ["Subject: x\n"])
        bad = self.data_run("names_acl", ["Sübject: x\n"])
        self.assertEqual((good.rc, bad.rc), (OK, FAIL))

    def test_header_syntax_only_after_data(self):
        """verify = header_syntax at RCPT is an error with Exim's text."""
        result, _ = run(self.config, "rcpt", "syntax_acl", recipient="u@d")
        self.assertEqual((result.rc, result.log_message),
                         (ERROR, "cannot verify header_syntax in ACL for RCPT"))


class ModifierTests(unittest.TestCase):
    """set, add_header, remove_header, logwrite, log_reject_target, delay, control."""

    def setUp(self):
        self.config = config_from(self, r"""
set_acl:
  accept set acl_c0 = conn $sender_host_address
         set acl_m_x = msg
set_dkim:
  accept set dkim_verify_status = pass
use_vars:
  deny message = $acl_c0/$acl_m_x
headers_acl:
  warn add_header = X-One: 1
  warn add_header = :at_start:X-Two: 2\nno name here
  warn remove_header = X-Old : X-Older
  accept
logwrite_acl:
  accept logwrite = plain line
         logwrite = :reject: to reject
target_acl:
  deny log_reject_target =
delay_acl:
  accept delay = 2s
         delay = 1m
bad_delay:
  accept delay = soon
queue_control:
  accept control = queue/first_pass_route
controls:
  accept control = queue_only
         control = freeze/no_tell
         control = submission/sender_retain/domain=example.com
         control = no_multiline_responses
bad_control:
  accept control = bogus
bad_freeze:
  accept control = freeze/later
caseful:
  accept control = caseful_local_part
         set acl_m_lp = $local_part
         control = caselower_local_part
         set acl_m_lower = $local_part
warn_message:
  warn message = warned in a header
  accept
queue_acl:
  accept queue = slow
""")

    def test_set_connection_and_message_variables(self):
        """set acl_c* lands in the session, acl_m* in the envelope, both expandable."""
        sess = session()
        env = envelope(sess)
        run(self.config, "mail", "set_acl", sess=sess, env=env)
        self.assertEqual(sess.acl_c, {"acl_c0": "conn 1.2.3.4"})
        self.assertEqual(env.acl_m, {"acl_m_x": "msg"})
        result, _ = run(self.config, "mail", "use_vars", sess=sess, env=env)
        self.assertEqual(result.user_message, "conn 1.2.3.4/msg")

    def test_set_dkim_verify_status(self):
        """set may overwrite $dkim_verify_status, as Exim allows."""
        result, ctx = run(self.config, "mail", "set_dkim")
        self.assertEqual((result.rc, ctx.get_variable("dkim_verify_status")), (OK, "pass"))

    def test_add_and_remove_headers(self):
        """add_header queues lines (X-ACL-Warn: for nameless ones, positions kept)."""
        result, _ = run(self.config, "rcpt", "headers_acl", recipient="u@d")
        self.assertEqual(result.effects.added_headers, [
            (":at_end:", "X-One: 1\n"),
            (":at_start:", "X-Two: 2\n"),
            (":at_start:", "X-ACL-Warn: no name here\n")])
        self.assertEqual(result.effects.removed_headers, ["X-Old", "X-Older"])

    def test_logwrite(self):
        """logwrite writes to the main log, or to the logs named between colons."""
        log = ListLog()
        run(self.config, "mail", "logwrite_acl", log=log)
        self.assertEqual(log.lines, [("main", "plain line"), ("reject", "to reject")])

    def test_log_reject_target_empty(self):
        """An empty log_reject_target suppresses the rejection log line."""
        result, _ = run(self.config, "mail", "target_acl")
        self.assertEqual((result.rc, result.effects.log_reject_target), (FAIL, ()))

    def test_delay_is_reported(self):
        """delay does not sleep: the total is in the result for the server to apply."""
        result, _ = run(self.config, "mail", "delay_acl")
        self.assertEqual((result.rc, result.delay), (OK, 62))

    def test_bad_delay(self):
        """A delay that is not a time value is an error with Exim's text."""
        result, _ = run(self.config, "mail", "bad_delay")
        self.assertEqual((result.rc, result.log_message), (ERROR,
                         'syntax error in argument for "delay" modifier: "soon" is not a '
                         'time value'))

    def test_controls_recorded(self):
        """Controls and their options are collected for the server."""
        result, _ = run(self.config, "rcpt", "controls", recipient="u@d")
        self.assertEqual(result.effects.controls, [
            ("queue_only", ""), ("freeze", "/no_tell"),
            ("submission", "/sender_retain/domain=example.com"),
            ("no_multiline_responses", "")])
        self.assertEqual(result.effects.control("freeze"), "/no_tell")
        self.assertIsNone(result.effects.control("fakereject"))

    def test_control_queue(self):
        """control = queue[/first_pass_route] (Exim 4.96's name) queues like queue_only."""
        result, _ = run(self.config, "rcpt", "queue_control", recipient="u@d")
        self.assertEqual(result.rc, OK)
        self.assertEqual(result.effects.controls, [("queue_only", "/first_pass_route")])

    def test_fake_responses(self):
        """fakereject / fakedefer: the text given, or Exim's default."""
        config = config_from(self, "a:\n  accept control = fakereject\n"
                                   "b:\n  accept control = fakedefer/later, maybe\n")
        result, _ = run(config, "data", "a")
        self.assertEqual(result.effects.fake_response[0], FAIL)
        self.assertTrue(result.effects.fake_response[1].startswith(
            "Your message has been rejected but is being kept for evaluation.\n"))
        result, _ = run(config, "data", "b")
        self.assertEqual(result.effects.fake_response, (DEFER, "later, maybe"))
        result, _ = run(config, "data", "accept")
        self.assertIsNone(result.effects.fake_response)

    def test_bad_controls(self):
        """Unknown controls and bad options are errors."""
        for acl, text in (("bad_control", 'syntax error in "control=bogus"'),
                          ("bad_freeze", 'syntax error in "control=freeze/later"')):
            result, _ = run(self.config, "mail", acl)
            self.assertEqual((result.rc, result.log_message), (ERROR, text))

    def test_case_of_local_part(self):
        """caseful_local_part restores the case of $local_part, caselower lowers it."""
        sess = session()
        env = envelope(sess)
        run(self.config, "rcpt", "caseful", sess=sess, env=env, recipient="MiXed@d")
        self.assertEqual((env.acl_m["acl_m_lp"], env.acl_m["acl_m_lower"]), ("MiXed", "mixed"))

    def test_warn_message_becomes_header(self):
        """A warn message in a message ACL is added as a header line."""
        result, _ = run(self.config, "rcpt", "warn_message", recipient="u@d")
        self.assertEqual(result.effects.added_headers,
                         [(":at_end:", "X-ACL-Warn: warned in a header\n")])

    def test_warn_message_outside_message_acl(self):
        """A warn message where no headers can be added is logged and ignored."""
        log = ListLog()
        result, _ = run(self.config, "helo", "warn_message", log=log)
        self.assertEqual(result.effects.added_headers, [])
        self.assertIn(("panic", 'ACL "warn" with "message" setting found in a non-message '
                                '(EHLO or HELO) ACL: cannot specify header lines here: '
                                'message ignored'), log.lines)

    def test_queue(self):
        """queue = name chooses a named queue."""
        result, _ = run(self.config, "mail", "queue_acl")
        self.assertEqual(result.effects.queue, "slow")


class NestedArgumentTests(unittest.TestCase):
    """acl = NAME args: $acl_arg1..9 and $acl_narg, restored afterwards."""

    def setUp(self):
        self.config = config_from(self, """
check_arg:
  accept condition = ${if eq{$acl_arg1}{$acl_arg2}}
         message = $acl_narg:$acl_arg1:$acl_arg2
  deny message = $acl_narg:$acl_arg1:$acl_arg2
outer:
  deny acl = check_arg "two words" "${lc:TWO} words"
       message = matched $acl_verify_message
  deny message = after: $acl_narg
outer_diff:
  accept acl = check_arg a b
  deny message = no [$acl_narg] $acl_verify_message
""")

    def test_arguments(self):
        """Quoted arguments keep their spaces, and are expanded."""
        result, _ = run(self.config, "mail", "outer")
        self.assertEqual(result.user_message, "matched 2:two words:two words")

    def test_arguments_restored(self):
        """After the nested call the caller's $acl_narg is back (and each statement
        starts with no message, so $acl_verify_message is empty)."""
        result, _ = run(self.config, "mail", "outer_diff")
        self.assertEqual(result.user_message, "no [0] ")


class UdpsendAndContinueTests(unittest.TestCase):
    """udpsend sends one datagram; continue only expands."""

    def test_udpsend(self):
        """The payload arrives at the named host and port."""
        import socket
        receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(receiver.close)
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(10)
        port = receiver.getsockname()[1]
        config = config_from(self, "u:\n  accept udpsend = 127.0.0.1 : %d : hello $sender_host_address\n"
                             "bad:\n  accept udpsend = 127.0.0.1 : x : hi\n" % port)
        result, _ = run(config, "mail", "u")
        self.assertEqual((result.rc, receiver.recv(100)), (OK, b"hello 1.2.3.4"))
        result, _ = run(config, "mail", "bad")
        self.assertEqual((result.rc, result.log_message),
                         (ERROR, 'bad destination port in "udpsend" modifier'))

    def test_continue(self):
        """continue has no effect on the outcome; a forced failure is skipped."""
        config = config_from(self, "c:\n  accept continue = ${if eq{1}{2}{x}fail}\n"
                                   "         continue = anything\n")
        result, _ = run(config, "mail", "c")
        self.assertEqual(result.rc, OK)
