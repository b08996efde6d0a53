"""exim_py's ACL replies and rejection log lines compared with real Exim 4.96.

Each test runs one configuration and one SMTP dialogue through ``exim4 -bh``
and through exim_py's ACL engine and reply mapping, and requires the same
reply lines for every rejection and the same log lines.
"""

import os

from twisted.trial import unittest

from tests.support.acl_exim import compare, compare_texts

# Exim's configure.default, as Debian's exim4-base installs it.
EXAMPLE_CONF = "/usr/share/doc/exim4-base/examples/example.conf"

# A router that accepts good.example, and the transport it names.
GOOD_ROUTER = """begin routers
good:
  driver = accept
  domains = good.example
  transport = t
"""
DEVNULL_TRANSPORT = """begin transports
t:
  driver = appendfile
  file = /dev/null
"""


class RcptReplyTests(unittest.TestCase):
    """RCPT rejections: default texts, messages, codes, defer, drop."""

    def test_rcpt_messages(self):
        """deny/defer with and without message and log_message, custom and bad codes."""
        acls = r"""
r1:
  deny local_parts = bad
  deny message = line1\nline2
       local_parts = bad2
  deny log_message = logonly
       local_parts = bad3
  deny message = user
       log_message = logm
       local_parts = bad4
  defer local_parts = d1
  defer message = 4.7.1 try later
        local_parts = d2
  deny message = 554 5.7.1 custom code
       local_parts = c1
  deny message = 450 wrong class
       local_parts = c2
  accept local_parts = ok
"""
        commands = ["HELO x", "MAIL FROM:<a@b>"] + [
            "RCPT TO:<%s@c>" % lp for lp in
            ("bad", "bad2", "bad3", "bad4", "d1", "d2", "c1", "c2", "ok", "other")] + ["QUIT"]
        compare(self, "acl_smtp_rcpt = r1", acls, commands)

    def test_drop_closes(self):
        """drop answers 550 and closes the connection."""
        compare(self, "acl_smtp_rcpt = r1", "r1:\n  drop message = go away\n",
                ["HELO x", "MAIL FROM:<a@b>", "RCPT TO:<u@c>", "RCPT TO:<v@c>"])

    def test_unset_rcpt_acl(self):
        """Without acl_smtp_rcpt every recipient gets 550 Administrative prohibition."""
        compare(self, "", "", ["HELO x", "MAIL FROM:<a@b>", "RCPT TO:<u@c>", "QUIT"])

    def test_long_message_is_folded(self):
        """A long message becomes a multi-line reply split where Exim splits it."""
        text = ("This is a rather long rejection message that goes on and on: "
                "it has to be folded by the server into several lines of text")
        compare(self, "acl_smtp_rcpt = r1", "r1:\n  deny message = %s\n" % text,
                ["HELO x", "MAIL FROM:<a@b>", "RCPT TO:<u@c>", "QUIT"])

    def test_no_multiline_responses(self):
        """control = no_multiline_responses keeps only the first line."""
        acls = r"""
c1:
  accept control = no_multiline_responses
r1:
  deny message = first\nsecond
"""
        compare(self, "acl_smtp_connect = c1\nacl_smtp_rcpt = r1", acls,
                ["HELO x", "MAIL FROM:<a@b>", "RCPT TO:<u@c>", "QUIT"])


class PhaseReplyTests(unittest.TestCase):
    """Rejections in the other phases and their log lines."""

    def test_helo_mail_predata_vrfy_expn(self):
        """Default codes per phase: 550, VRFY's unchecked custom code, EXPN."""
        main = """acl_smtp_helo = h
acl_smtp_mail = m
acl_smtp_rcpt = accept
acl_smtp_predata = p
acl_smtp_vrfy = v
acl_smtp_expn = e"""
        acls = """
h:
  deny hosts = 1.2.3.4
       condition = ${if eq{$sender_helo_name}{bad}}
  accept
m:
  deny senders = x@y
  deny message = 554 5.7.1 custom
       senders = x2@y
  accept
p:
  deny message = no data today
v:
  deny message = 599 vrfy no
e:
  deny
"""
        compare(self, main, acls, ["HELO bad", "HELO good", "MAIL FROM:<x@y>",
                                   "MAIL FROM:<x2@y>", "VRFY a@b", "EXPN a@b",
                                   "MAIL FROM:<ok@y>", "RCPT TO:<u@v>", "DATA", "QUIT"])

    def test_connect_rejection(self):
        """A connect ACL rejection: 'rejected connection in "connect" ACL'."""
        compare(self, "acl_smtp_connect = c", "c:\n  deny message = not you\n", [])

    def test_defer_in_mail(self):
        """defer without a message: 451 Temporary local problem."""
        compare(self, "acl_smtp_mail = m", "m:\n  defer\n",
                ["HELO x", "MAIL FROM:<a@b>", "QUIT"])


class ErrorTests(unittest.TestCase):
    """ACL errors become temporary rejections with the reason in the log."""

    def test_condition_in_wrong_phase(self):
        """domains in the connect ACL: 451 and 'cannot test domains condition'."""
        compare(self, "acl_smtp_connect = c", "c:\n  accept domains = foo\n", [])

    def test_bad_control_and_verify(self):
        """Bad control and verify arguments are errors with Exim's texts."""
        acls = """
r1:
  accept local_parts = a
         control = bogus
  accept local_parts = b
         verify = bogus
  accept local_parts = c
         condition = maybe
  accept
"""
        compare(self, "acl_smtp_rcpt = r1", acls,
                ["HELO x", "MAIL FROM:<a@b>", "RCPT TO:<a@c>", "RCPT TO:<b@c>",
                 "RCPT TO:<c@c>", "QUIT"])

    def test_quit_acl_deny(self):
        """deny in the QUIT ACL is logged as an error and QUIT still gets 221."""
        compare(self, "acl_smtp_quit = q", "q:\n  deny\n", ["HELO x", "QUIT"])


class SemanticsTests(unittest.TestCase):
    """Evaluation order, endpass, nesting and warn, as observed through replies."""

    def test_endpass_require_nesting_warn(self):
        """Message order, endpass, nested messages and warn's one log line per message."""
        acls = """
inner_deny:
  deny message = inner says no
inner_accept:
  accept message = inner accepted
r1:
  warn log_message = warned
  accept local_parts = b
         message = after endpass
         endpass
         local_parts = c
  require condition = ${if eq{$local_part}{late}{no}{yes}}
          message = never seen
  deny local_parts = nest1
       acl = inner_deny
       message = outer
  deny local_parts = nest2
       message = outer2
       acl = inner_accept
  accept local_parts = ok
  deny acl = inner_deny
"""
        compare(self, "acl_smtp_rcpt = r1", acls,
                ["HELO x", "MAIL FROM:<a@b>", "RCPT TO:<b@c>", "RCPT TO:<late@c>",
                 "RCPT TO:<nest1@c>", "RCPT TO:<nest2@c>", "RCPT TO:<ok@c>",
                 "RCPT TO:<zzz@c>", "QUIT"])

    def test_nested_arguments_and_verify_message(self):
        """$acl_arg/$acl_narg in a nested ACL and $acl_verify_message in the caller."""
        acls = """
check_arg:
  accept condition = ${if eq{$acl_arg1}{$acl_arg2}}
         message = $acl_narg:$acl_arg1:$acl_arg2
  deny message = $acl_narg:$acl_arg1:$acl_arg2
r1:
  deny local_parts = same
       acl = check_arg "two words" "${lc:TWO} words"
       message = matched ($acl_verify_message)
  accept local_parts = diff
         acl = check_arg a b
  deny local_parts = diff
       message = no [$acl_narg] $acl_verify_message
  deny message = $local_part@$domain
"""
        compare(self, "acl_smtp_rcpt = r1", acls,
                ["HELO x", "MAIL FROM:<a@b>", "RCPT TO:<same@c>", "RCPT TO:<diff@c>",
                 "RCPT TO:<Other@C.Example>", "QUIT"])


class VerifyTests(unittest.TestCase):
    """verify = recipient / sender through the routers, as Exim answers and logs."""

    def test_recipient_and_sender_verification(self):
        """Routing failures give the router's message; a failed sender is explained once."""
        acls = """
r:
  require verify = recipient
  require verify = sender
  accept
""" + GOOD_ROUTER + """failer:
  driver = redirect
  domains = fail.example
  allow_fail
  data = :fail: no such user here
""" + DEVNULL_TRANSPORT
        compare(self, "acl_smtp_rcpt = r", acls,
                ["HELO x", "MAIL FROM:<a@good.example>", "RCPT TO:<u@good.example>",
                 "RCPT TO:<u@fail.example>", "RCPT TO:<u@other.example>", "RSET",
                 "MAIL FROM:<a@other.example>", "RCPT TO:<u@good.example>",
                 "RCPT TO:<v@good.example>", "QUIT"])


class RatelimitTests(unittest.TestCase):
    """ratelimit: the same rates, limits and variables as Exim, from empty hints."""

    def test_per_rcpt_strict_and_readonly(self):
        """A burst of recipients crosses the limit at the same recipient as in Exim."""
        acls = """
r:
  deny message = rate $sender_rate/$sender_rate_period limit $sender_rate_limit
       ratelimit = 2 / 1h / per_rcpt / strict
  warn log_message = rate now $sender_rate
       ratelimit = 0 / 1h / per_rcpt / readonly / foo
  accept
"""
        compare(self, "acl_smtp_rcpt = r", acls,
                ["HELO x", "MAIL FROM:<a@b>", "RCPT TO:<a@c>", "RCPT TO:<b@c>",
                 "RCPT TO:<c@c>", "RCPT TO:<d@c>", "QUIT"], spool=True)

    def test_per_addr_and_errors(self):
        """per_addr counts each address once; bad arguments are errors with Exim's text."""
        acls = """
r:
  deny local_parts = bad1
       ratelimit = x / 1h
  deny local_parts = bad2
       ratelimit = 1 / never
  deny local_parts = bad3
       ratelimit = 1 / 1h / per_mail / per_cmd
  defer message = addr rate $sender_rate
        ratelimit = 2 / 1d / per_addr / strict
  accept
"""
        compare(self, "acl_smtp_rcpt = r", acls,
                ["HELO x", "MAIL FROM:<a@b>", "RCPT TO:<a@c>", "RCPT TO:<a@c>",
                 "RCPT TO:<A@c>", "RCPT TO:<b@c>", "RSET", "MAIL FROM:<a@b>",
                 "RCPT TO:<bad1@c>", "RCPT TO:<bad2@c>", "RCPT TO:<bad3@c>", "QUIT"],
                spool=True)


class DiscardAndLogTests(unittest.TestCase):
    """discard at MAIL and RCPT, log_reject_target and logwrite."""

    def test_discard_and_logs(self):
        """Discarded recipients get 250 and Exim's "discarded by" lines; discard at
        PREDATA is an error; an empty log_reject_target logs nothing."""
        main = "acl_smtp_rcpt = r\nacl_smtp_mail = m\nacl_smtp_predata = p"
        acls = """
m:
  discard senders = d@b
          log_message = mail discard reason
  accept
r:
  discard local_parts = d
          log_message = why
  discard local_parts = e
  deny log_reject_target =
       local_parts = quiet
  accept logwrite = :reject: wrote $local_part
p:
  discard
"""
        compare(self, main, acls,
                ["HELO x", "MAIL FROM:<a@b>", "RCPT TO:<d@c>", "RCPT TO:<e@c>",
                 "RCPT TO:<quiet@c>", "RCPT TO:<ok@c>", "RSET", "MAIL FROM:<d@b>",
                 "RCPT TO:<x@c>", "DATA", "QUIT"])


HEADER_CASES = [
    "To: undisclosed-recipients:;", "From: (just a comment)", "From: <>",
    'From: "quoted local"@example.com', "From: a@b.c (Comment)",
    "From: Joe Bloggs <joe@example.com>, Other <o@x.y>", "To: a@b.c d@e.f", "From: joe@",
    "From: @example.com", "From: Joe <>", "From: a.@b.c", "From: a@[1.2.3.4]", "From: a@b..c",
    'From: "unterminated <a@b.c>', "From: Joe <joe@example.com> junk", "From: <a@b.c",
    "To: group: a@b.c, d@e.f;", "Reply-To: a b@c.d", "Cc: a@b.c,", "Subject: not checked <",
    "Sender: x", "To: x@y, , z", "From: a@b@c@@",
]


class HeaderSyntaxTests(unittest.TestCase):
    """verify = header_syntax: what passes and the exact failure texts."""

    def test_header_syntax_cases(self):
        """Each header line is judged and described as Exim does."""
        main = "acl_smtp_rcpt = accept\nacl_smtp_data = d"
        acls = "d:\n  deny !verify = header_syntax\n  accept\n"
        commands = ["HELO x"]
        for header in HEADER_CASES:
            commands += ["MAIL FROM:<a@b>", "RCPT TO:<u@c>", "DATA", header, "", "body", "."]
        compare(self, main, acls, commands + ["QUIT"])


class HeaderSenderTests(unittest.TestCase):
    """verify = header_sender through the routers."""

    def test_header_sender(self):
        """Some header sender must route; Sender: is tried before From:; syntax errors fail."""
        main = "acl_smtp_rcpt = accept\nacl_smtp_data = d"
        acls = """
d:
  deny !verify = header_sender
       message = hs: $acl_verify_message
  accept
""" + GOOD_ROUTER + DEVNULL_TRANSPORT
        commands = ["HELO x"]
        for lines in (["From: a@good.example"], ["From: a@bad.example"], ["Subject: none"],
                      ["Sender: a@bad.example", "From: b@good.example"],
                      ["From: a@bad.example, b@good.example"], ["Reply-To: junk <"],
                      ["From: x"]):
            commands += ["MAIL FROM:<a@b>", "RCPT TO:<u@c>", "DATA"] + lines + ["", "b", "."]
        compare(self, main, acls, commands + ["QUIT"])


class HeloVerifyTests(unittest.TestCase):
    """verify = helo with address literals (no DNS needed), as Exim judges them."""

    def test_literals(self):
        """The literal must start with the client's address (Exim's prefix check)."""
        acls = "m:\n  require verify = helo\n  accept\n"
        compare(self, "acl_smtp_mail = m", acls,
                ["HELO [1.2.3.4]", "MAIL FROM:<a@b>", "RSET", "HELO [1.2.3.45]",
                 "MAIL FROM:<a@b>", "RSET", "HELO [9.9.9.9]", "MAIL FROM:<a@b>", "QUIT"])


class CalloutTests(unittest.TestCase):
    """verify = sender/callout and recipient/callout against a real exim4 next hop."""

    def setUp(self):
        from tests.support.exim_peer import EximPeer
        self.peer = EximPeer().start()
        self.addCleanup(self.peer.stop)

    def test_callouts(self):
        """Accepted, refused and deferred callouts, and answers from the callout cache:
        the replies and logs exim4 -bhc gives."""
        acls = """
m:
  require verify = sender/callout
  accept
r:
  require verify = recipient/callout=10s
  accept
begin routers
out:
  driver = manualroute
  route_list = * 127.0.0.1
  self = send
  transport = t
begin transports
t:
  driver = smtp
  port = %d
""" % self.peer.port
        compare(self, "acl_smtp_rcpt = r\nacl_smtp_mail = m", acls,
                ["HELO x", "MAIL FROM:<rejectme@x.example>", "MAIL FROM:<rejectme@x.example>",
                 "MAIL FROM:<ok@x.example>", "RCPT TO:<good@y.example>",
                 "RCPT TO:<rejectuser@y.example>", "RCPT TO:<rejectuser@y.example>",
                 "RCPT TO:<deferuser@y.example>", "RCPT TO:<deferuser@y.example>", "QUIT"],
                spool=True, mode="-bhc")

    def test_callout_defer_ok_and_no_host(self):
        """defer_ok turns a deferred callout into success; an unreachable host defers."""
        acls = """
r:
  accept local_parts = deferok
         verify = recipient/callout=5s,defer_ok
  require verify = recipient/callout=5s
  accept
begin routers
out:
  driver = manualroute
  domains = y.example
  route_list = * 127.0.0.1
  self = send
  transport = t
dead:
  driver = manualroute
  route_list = * 127.0.0.1
  self = send
  transport = nowhere
begin transports
t:
  driver = smtp
  port = %d
nowhere:
  driver = smtp
  port = 1
""" % self.peer.port
        compare(self, "acl_smtp_rcpt = r", acls,
                ["HELO x", "MAIL FROM:<a@b>", "RCPT TO:<deferok@y.example>",
                 "RCPT TO:<x@z.example>", "QUIT"], spool=True, mode="-bhc")


    def test_random_option(self):
        """callout=random: a domain that takes a made-up local part takes every address
        (and is remembered); when it refuses one, the real address is asked."""
        routing = """
r:
  require verify = recipient/callout=10s,random
  accept
begin routers
out:
  driver = manualroute
  route_list = * 127.0.0.1
  self = send
  transport = t
begin transports
t:
  driver = smtp
  port = %d
""" % self.peer.port
        commands = ["HELO x", "MAIL FROM:<ok@x.example>", "RCPT TO:<good@y.example>",
                    "RCPT TO:<rejectuser@y.example>", "RCPT TO:<rejectuser@z.example>", "QUIT"]
        compare(self, "acl_smtp_rcpt = r", routing, commands, spool=True, mode="-bhc")
        compare(self, "acl_smtp_rcpt = r\ncallout_random_local_part = reject-random",
                routing, commands, spool=True, mode="-bhc")


class DefaultConfigurationTests(unittest.TestCase):
    """Exim's own configure.default: its RCPT ACL end to end through routing."""

    def test_configure_default_rcpt_acl(self):
        """Restricted characters, relaying, unknown users, postmaster, sender verify."""
        if not os.path.exists(EXAMPLE_CONF):
            raise unittest.SkipTest("%s is not installed" % EXAMPLE_CONF)
        with open(EXAMPLE_CONF) as f:
            text = f.read().replace("# primary_hostname =",
                                    "primary_hostname = test.example\n#")
        compare_texts(self, text, text, [
            "HELO x", "MAIL FROM:<root@test.example>", "RCPT TO:<root@test.example>",
            "RCPT TO:<.dot@test.example>", "RCPT TO:<x@other.example>",
            "RCPT TO:<postmaster@test.example>", "RCPT TO:<bad|pipe@test.example>",
            "RCPT TO:<a/../b@other.example>", "QUIT"], address="10.9.9.9")
