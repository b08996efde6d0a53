"""The ACL engine: verbs, endpass, nesting, messages, inline and file ACLs.

Each test loads a real configuration file and runs one ACL through
``exim_py.acl.run_acl``, as the SMTP server does, checking the outcome and
the messages Exim would produce.
"""

import os

from twisted.trial import unittest

from exim_py.acl import DEFER, DISCARD, ERROR, FAIL, FAIL_DROP, OK
from exim_py.acl import replies
from exim_py.smtp.acl_phase import accepted_reply
from tests.support.acl import ListLog, config_from, envelope, run, session, write_config


class VerbTests(unittest.TestCase):
    """What each verb does when its conditions hold and when they do not."""

    def setUp(self):
        self.config = config_from(self, """
yes_accept:
  accept condition = yes
no_accept:
  accept condition = no
deny_msg:
  deny message = go away
       log_message = for the log
defer_msg:
  defer message = try later
discard_it:
  discard
drop_it:
  drop message = bye
require_fail:
  require message = required
          condition = no
require_late_message:
  require condition = no
          message = never seen
  accept
require_pass:
  require condition = yes
  deny message = after require
warn_then_accept:
  warn log_message = noted
  accept
empty_acl:
""")

    def test_accept(self):
        """accept with a true condition accepts."""
        result, _ = run(self.config, "rcpt", "yes_accept", recipient="u@d")
        self.assertEqual(result.rc, OK)
        self.assertTrue(result.accepted)

    def test_falling_off_the_end_denies(self):
        """An accept whose condition is false passes on; the end of the ACL is a deny."""
        result, _ = run(self.config, "rcpt", "no_accept", recipient="u@d")
        self.assertEqual((result.rc, result.user_message, result.log_message), (FAIL, None, None))

    def test_deny_messages(self):
        """deny returns the message for the client and the log_message for the log."""
        result, _ = run(self.config, "rcpt", "deny_msg", recipient="u@d")
        self.assertEqual((result.rc, result.user_message, result.log_message),
                         (FAIL, "go away", "for the log"))

    def test_defer_allows_details(self):
        """defer is temporary, and its message may be shown (acl_temp_details)."""
        result, _ = run(self.config, "rcpt", "defer_msg", recipient="u@d")
        self.assertEqual((result.rc, result.user_message, result.temp_details),
                         (DEFER, "try later", True))

    def test_discard_in_rcpt(self):
        """discard at RCPT accepts the recipient but drops it."""
        result, _ = run(self.config, "rcpt", "discard_it", recipient="u@d")
        self.assertEqual(result.rc, DISCARD)
        self.assertTrue(result.accepted)

    def test_discard_in_connect_is_an_error(self):
        """discard outside a message ACL is an error, logged to the panic log."""
        log = ListLog()
        result, _ = run(self.config, "connect", "discard_it", log=log)
        self.assertEqual(result.rc, ERROR)
        self.assertIn(("panic", '"discard" verb not allowed in connection ACL'), log.lines)

    def test_drop(self):
        """drop is a rejection that closes the connection."""
        result, _ = run(self.config, "mail", "drop_it")
        self.assertEqual((result.rc, result.user_message), (FAIL_DROP, "bye"))

    def test_drop_in_mailauth_is_an_error(self):
        """drop is not allowed in the MAILAUTH ACL."""
        result, _ = run(self.config, "mailauth", "drop_it")
        self.assertEqual(result.rc, ERROR)

    def test_require_fails(self):
        """require with a false condition denies with its message."""
        result, _ = run(self.config, "mail", "require_fail")
        self.assertEqual((result.rc, result.user_message), (FAIL, "required"))

    def test_message_after_failing_condition_is_not_used(self):
        """Items are taken in order: a message after the failing condition is never set."""
        result, _ = run(self.config, "mail", "require_late_message")
        self.assertEqual((result.rc, result.user_message), (FAIL, None))

    def test_require_passes_on(self):
        """require with a true condition goes on to the next statement."""
        result, _ = run(self.config, "mail", "require_pass")
        self.assertEqual((result.rc, result.user_message), (FAIL, "after require"))

    def test_warn_logs_once_and_goes_on(self):
        """warn logs its log_message (once per message) and does not decide."""
        log = ListLog()
        sess = session()
        env = envelope(sess)
        from exim_py.acl import AclContext, run_acl
        ctx = AclContext(self.config, sess, env, "u@d", log=log)
        first = run_acl("rcpt", "warn_then_accept", ctx)
        run_acl("rcpt", "warn_then_accept", ctx)
        self.assertEqual(first.rc, OK)
        self.assertEqual(log.texts(), ["H=(x) [1.2.3.4] Warning: noted"])

    def test_empty_acl_denies(self):
        """A configured ACL with no statements is an implicit deny."""
        result, _ = run(self.config, "mail", "empty_acl")
        self.assertEqual(result.rc, FAIL)


class UnsetAndInlineTests(unittest.TestCase):
    """Unset options, inline ACL text and ACLs read from files."""

    def setUp(self):
        self.config = config_from(self, "named:\n  accept\n")

    def test_unset_rcpt_refuses(self):
        """With acl_smtp_rcpt unset every recipient is refused."""
        for where in ("rcpt", "vrfy", "expn", "etrn"):
            result, _ = run(self.config, where, None, recipient="u@d")
            self.assertEqual(result.rc, FAIL, where)

    def test_unset_elsewhere_accepts(self):
        """Other unset ACLs accept."""
        for where in ("connect", "helo", "mail", "predata", "data", "auth", "starttls"):
            result, _ = run(self.config, where, "")
            self.assertEqual(result.rc, OK, where)

    def test_inline_text(self):
        """An option value with spaces is ACL text."""
        result, _ = run(self.config, "mail", "deny message = inline refusal")
        self.assertEqual((result.rc, result.user_message), (FAIL, "inline refusal"))

    def test_unknown_single_word_is_parsed_as_text(self):
        """A single word that names no ACL is parsed as ACL text, as Exim does."""
        result, _ = run(self.config, "mail", "nonexist")
        self.assertEqual((result.rc, result.log_message),
                         (ERROR, 'unknown ACL verb "nonexist" in "nonexist"'))

    def test_acl_from_file(self):
        """A value starting with / names a file of ACL text."""
        path = write_config(self, "# comment\ndeny message = from \\\n   file\n", "acl.txt")
        result, _ = run(self.config, "mail", path)
        self.assertEqual((result.rc, result.user_message), (FAIL, "from file"))

    def test_missing_file(self):
        """A missing ACL file is an error with Exim's text."""
        result, _ = run(self.config, "mail", "/nonexistent/acl")
        self.assertEqual((result.rc, result.log_message),
                         (ERROR, 'failed to open ACL file "/nonexistent/acl": '
                                 'No such file or directory'))

    def test_bad_inline_condition(self):
        """An unknown condition in inline text is an error when the ACL runs."""
        result, _ = run(self.config, "mail", "accept frob = 1")
        self.assertEqual((result.rc, result.log_message),
                         (ERROR, 'unknown ACL condition/modifier in "accept frob = 1"'))


class EndpassAndNestingTests(unittest.TestCase):
    """endpass, nested ACLs, and what a nested result means to its caller."""

    def setUp(self):
        self.config = config_from(self, """
endpass_acl:
  accept local_parts = b
         message = after endpass
         endpass
         local_parts = c
  deny message = last statement
inner_deny:
  deny message = inner says no
inner_discard:
  discard
inner_drop:
  drop message = inner drop
outer_deny:
  accept acl = inner_deny
  deny message = outer
outer_nested_deny:
  deny acl = inner_deny
       message = outer message
inner_accept:
  accept message = inner accepted
outer_nested_accept:
  deny message = outer message
       acl = inner_accept
outer_discard_deny:
  deny acl = inner_discard
outer_discard_accept:
  accept acl = inner_discard
outer_drop:
  require acl = inner_drop
loop:
  accept acl = loop
quit_deny:
  deny
""")

    def test_endpass_fails_after(self):
        """After endpass a false condition denies instead of passing on."""
        result, _ = run(self.config, "rcpt", "endpass_acl", recipient="b@d")
        self.assertEqual((result.rc, result.user_message), (FAIL, "after endpass"))

    def test_endpass_before_it_passes_on(self):
        """A false condition before endpass passes on to the next statement."""
        result, _ = run(self.config, "rcpt", "endpass_acl", recipient="x@d")
        self.assertEqual(result.user_message, "last statement")

    def test_nested_deny_is_false(self):
        """A nested deny makes the acl condition false; its message survives to a deny."""
        result, _ = run(self.config, "mail", "outer_deny")
        self.assertEqual((result.rc, result.user_message), (FAIL, "outer"))

    def test_nested_deny_message_reaches_implicit_deny(self):
        """deny acl = X is false when X denies, but X's message stays for the final deny."""
        result, _ = run(self.config, "mail", "outer_nested_deny")
        self.assertEqual((result.rc, result.user_message), (FAIL, "inner says no"))

    def test_nested_accept_is_true(self):
        """deny acl = X is true when X accepts; the outer message is used."""
        result, _ = run(self.config, "mail", "outer_nested_accept")
        self.assertEqual((result.rc, result.user_message), (FAIL, "outer message"))

    def test_nested_discard_needs_accept_or_discard(self):
        """A nested discard under deny is an error with Exim's text."""
        result, _ = run(self.config, "rcpt", "outer_discard_deny", recipient="u@d")
        self.assertEqual((result.rc, result.log_message), (ERROR,
                         'nested ACL returned "discard" for "deny" command (only allowed '
                         'with "accept" or "discard")'))

    def test_nested_discard_under_accept(self):
        """accept acl = X where X discards: the whole ACL discards."""
        result, _ = run(self.config, "rcpt", "outer_discard_accept", recipient="u@d")
        self.assertEqual(result.rc, DISCARD)

    def test_nested_drop(self):
        """require acl = X where X drops: the drop comes through with its message."""
        result, _ = run(self.config, "mail", "outer_drop")
        self.assertEqual((result.rc, result.user_message), (FAIL_DROP, "inner drop"))

    def test_loop(self):
        """An ACL that calls itself stops with Exim's loop error."""
        result, _ = run(self.config, "mail", "loop")
        self.assertEqual((result.rc, result.log_message),
                         (ERROR, "ACL nested too deep: possible loop"))

    def test_quit_acl_may_not_deny(self):
        """deny in the QUIT ACL is an error, as in Exim."""
        result, _ = run(self.config, "quit", "quit_deny")
        self.assertEqual((result.rc, result.log_message), (ERROR,
                         "QUIT or not-QUIT toplevel ACL may not fail ('deny' verb used "
                         "incorrectly)"))


class PhaseTests(unittest.TestCase):
    """Conditions and modifiers used where Exim does not allow them."""

    def setUp(self):
        self.config = config_from(self, """
domains_acl:
  accept domains = example.com
header_acl:
  accept add_header = X-A: 1
caseful:
  accept control = caseful_local_part
verify_rcpt:
  accept verify = recipient
""")

    def test_condition_not_allowed(self):
        """A condition in the wrong phase errors: 451 and Exim's log text."""
        result, _ = run(self.config, "connect", "domains_acl")
        self.assertEqual((result.rc, result.log_message),
                         (ERROR, "cannot test domains condition in connection ACL"))

    def test_modifier_not_allowed(self):
        """A modifier in the wrong phase errors with 'cannot use'."""
        result, _ = run(self.config, "helo", "header_acl")
        self.assertEqual(result.log_message,
                         "cannot use add_header condition in EHLO or HELO ACL")

    def test_control_not_allowed(self):
        """A control outside its phases errors."""
        result, _ = run(self.config, "mail", "caseful")
        self.assertEqual(result.log_message,
                         'cannot use "control=caseful_local_part" in MAIL ACL')

    def test_verify_not_allowed(self):
        """verify = recipient outside RCPT errors."""
        result, _ = run(self.config, "mail", "verify_rcpt")
        self.assertEqual(result.log_message, "cannot verify recipient in ACL for MAIL")

    def test_allowed_in_rcpt(self):
        """The same domains condition is fine at RCPT."""
        result, _ = run(self.config, "rcpt", "domains_acl", recipient="u@example.com")
        self.assertEqual(result.rc, OK)

    def test_unknown_phase(self):
        """A caller naming an unknown phase is a programming error."""
        self.assertRaises(ValueError, run, self.config, "bogus", "domains_acl")


class MessageSplitTests(unittest.TestCase):
    """Long user messages are folded as Exim folds them."""

    def test_long_message_folds(self):
        """A message over 75 characters is split at a space into lines."""
        from exim_py.acl.engine import split_message
        text = "word " * 20 + "end"
        folded = split_message(text)
        self.assertTrue(all(len(line) <= 76 for line in folded.split("\n")))
        self.assertEqual(folded.replace("\n", " "), text)
        self.assertIn("\n", folded)

    def test_short_message_unchanged(self):
        """75 characters or fewer stay on one line."""
        from exim_py.acl.engine import split_message
        self.assertEqual(split_message("x" * 75), "x" * 75)


class MayBlockTests(unittest.TestCase):
    """acl_may_block tells the server which ACLs need the thread pool."""

    def setUp(self):
        self.config = config_from(self, """
simple:
  accept hosts = 127.0.0.1 : +relay : ::::1
  accept hosts = <; 2001:db8::/32 ; ::1
  deny local_parts = x
  deny domains = +local
named_names:
  accept hosts = +names
mx:
  accept domains = @mx_any
dns:
  deny dnslists = bl.example
verify:
  require verify = sender
nested:
  accept acl = dns
lookup:
  accept condition = ${lookup{$sender_address}lsearch{/etc/x}}
""", main="hostlist relay = 10.0.0.0/8 : 192.0.2.1\nhostlist names = mail.example\n"
          "domainlist local = example.com")

    def test_classification(self):
        """IP lists and local parts are inline; dnslists, verify, lookups, nesting block."""
        from exim_py.acl import acl_may_block
        self.assertFalse(acl_may_block(self.config, "simple"))
        self.assertFalse(acl_may_block(self.config, None))
        for name in ("dns", "verify", "nested", "lookup", "named_names", "mx"):
            self.assertTrue(acl_may_block(self.config, name), name)

    def test_file_acl_blocks(self):
        """An ACL in a file may need reading from disk."""
        from exim_py.acl import acl_may_block
        self.assertTrue(acl_may_block(self.config, os.path.join("/", "etc", "acl")))


class ReplyTextTests(unittest.TestCase):
    """The replies the SMTP server sends for an ACL's verdict: a rejection's
    through replies.rejection, an accepting message's through
    acl_phase.accepted_reply."""

    def setUp(self):
        self.config = config_from(self, "r:\n  deny message = 554 5.7.1 one\\ntwo\n")

    def test_rejection_text(self):
        """A multi-line message with a code: the lines keep the enhanced code."""
        result, _ = run(self.config, "rcpt", "r", recipient="u@d")
        answer = replies.rejection(result, None)
        self.assertEqual((answer.code, answer.lines, answer.close),
                         ("554", ["554-5.7.1 one", "554 5.7.1 two"], False))

    def test_accepted_without_message(self):
        """An accepting ACL without a message leaves the server's own reply."""
        result, _ = run(self.config, "mail", "accept")
        self.assertTrue(result.accepted)
        self.assertIsNone(result.user_message)

    def test_accept_with_message(self):
        """accept with a message at RCPT replaces the 250 text (code may be given)."""
        config = config_from(self, "r:\n  accept message = 251 forwarded\nm:\n  accept message = ok then\n")
        result, _ = run(config, "rcpt", "r", recipient="u@d")
        reply = accepted_reply("rcpt", result.user_message, None)
        self.assertEqual((reply.code, reply.lines), (251, ["251 forwarded"]))
        result, _ = run(config, "mail", "m")
        reply = accepted_reply("mail", result.user_message, None)
        self.assertEqual((reply.code, reply.lines), (250, ["250 ok then"]))


class DataLogTests(unittest.TestCase):
    """Log lines written during the DATA ACL carry the message id, as Exim's do."""

    def test_message_id_on_data_rejection(self):
        """The rejection and warn lines of the DATA ACL go out with the message id."""
        class IdLog(ListLog):
            def main(self, text, message_id=None):
                self.lines.append(("main", "%s %s" % (message_id, text)))

        config = config_from(self, "d:\n  warn log_message = data warn\n  deny message = no thanks\n")
        sess = session()
        env = envelope(sess, recipients=["u@c"])
        env.message_id = "1xUpCt-000363-0x"
        log = IdLog()
        result, ctx = run(config, "data", "d", sess=sess, env=env, log=log)
        replies.write_logs(replies.rejection(result, ctx), ctx)
        self.assertEqual(log.texts(), [
            "1xUpCt-000363-0x H=(x) [1.2.3.4] Warning: data warn",
            "1xUpCt-000363-0x H=(x) [1.2.3.4] F=<a@b.example> rejected after DATA: no thanks"])

    def test_auth_rejection_hides_credentials(self):
        """An AUTH ACL rejection: 503, and the log names only the mechanism (as exim4 -bh)."""
        from exim_py.acl import replies
        config = config_from(self, "a:\n  deny hosts = 1.2.3.4\n  accept\n")
        log = ListLog()
        result, ctx = run(config, "auth", "a", log=log)
        answer = replies.rejection(result, ctx, "PLAIN AHVzZXIAc2VjcmV0")
        replies.write_logs(answer, ctx)
        self.assertEqual(answer.lines, ["503 Administrative prohibition"])
        self.assertEqual(log.texts(), ["H=(x) [1.2.3.4] rejected AUTH PLAIN"])
