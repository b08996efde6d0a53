"""The ESMTP client against a scripted loopback server: dialogue and failure modes.

The scripted server (tests/support/scripted_smtp.py) answers what each test
chooses, so every error class of the spec's "Errors in outgoing SMTP" can be
provoked: errors and timeouts at each stage, refused connections and a
connection dropped in the middle of the data.
"""

import errno

from twisted.internet import defer, reactor
from twisted.trial import unittest

from exim_py.smtp import client
from exim_py.smtp.outbound import (DEFER, FAIL, OK, ClientSettings, Recipient, Transaction,
                                   to_wire, xtext)
from tests.support.exim_peer import free_port
from tests.support.scripted_smtp import DROP, PAUSE, STALL, ScriptedSMTPServer

MESSAGE = b"Subject: test\n\n.leading dot\nbody line\n"


def settings(**kw):
    kw.setdefault("helo_data", "client.example")
    kw.setdefault("command_timeout", 5)
    return ClientSettings(**kw)


class WireFormatTests(unittest.TestCase):
    """How message bytes and DSN values are encoded for the wire."""

    def test_dot_stuffing_and_crlf(self):
        """Lines starting with a dot get another (RFC 5321 4.5.2); LF becomes CRLF."""
        self.assertEqual(to_wire(b".a\nb\n..c\r\nd"), b"..a\r\nb\r\n...c\r\nd\r\n")

    def test_bdat_is_not_dot_stuffed(self):
        """BDAT content (RFC 3030) keeps its dots; line ends still become CRLF."""
        self.assertEqual(to_wire(b".a\n", dot_stuff=False), b".a\r\n")

    def test_xtext(self):
        """RFC 3461 xtext: '+', '=' and non-printing characters are hex-encoded."""
        self.assertEqual(xtext("a+b=c d"), "a+2Bb+3Dc+20d")

    def test_max_rcpt_splits_transactions(self):
        """More recipients than max_rcpt make several transactions of the same message."""
        txn = Transaction("s@x", ["a@x", "b@x", "c@x"], data=b"x\n")
        parts = client.split_by_max_rcpt([txn], 2)
        self.assertEqual([[r.address for r in p.recipients] for p in parts],
                         [["a@x", "b@x"], ["c@x"]])


class DialogueTests(unittest.TestCase):
    """What the client sends, and what it makes of the replies."""

    def serve(self, overrides=None, **verbs):
        server = ScriptedSMTPServer(overrides=dict(overrides or {}, **verbs))
        self.addCleanup(server.stop)
        return server

    def send(self, server, txns, **kw):
        return client.deliver(reactor, "127.0.0.1", server.port_number, settings(**kw), txns)

    @defer.inlineCallbacks
    def test_pipelined_envelope(self):
        """With PIPELINING, MAIL, every RCPT and DATA go out before any reply is read,
        and the data arrives dot-stuffed with CRLF line ends."""
        server = self.serve()
        txn = Transaction("s@x.example", ["a@y.example", "b@y.example"], data=MESSAGE)
        result = yield self.send(server, [txn])
        self.assertEqual(server.commands, [
            b"EHLO client.example", b"MAIL FROM:<s@x.example> SIZE=1062",
            b"RCPT TO:<a@y.example>", b"RCPT TO:<b@y.example>", b"DATA", b".", b"QUIT"])
        self.assertEqual(server.messages, [b"Subject: test\r\n\r\n..leading dot\r\nbody line\r\n"])
        self.assertEqual([o.status for _, o in result.outcomes()], [OK, OK])
        self.assertEqual(txn.confirmation, "250 OK id=1")

    @defer.inlineCallbacks
    def test_without_pipelining_one_command_at_a_time(self):
        """Without PIPELINING each RCPT waits for the previous reply; a 5xx to one
        RCPT fails that recipient only."""
        server = self.serve({"RCPT TO:<bad@y.example>": "550 5.1.1 no such user"},
                            EHLO="250 test.example")
        txn = Transaction("s@x.example", ["bad@y.example", "good@y.example"], data=MESSAGE)
        result = yield self.send(server, [txn])
        outcomes = dict(result.outcomes())
        self.assertEqual(outcomes["bad@y.example"].status, FAIL)
        self.assertEqual(outcomes["bad@y.example"].message,
                         "SMTP error from remote mail server after RCPT TO:<bad@y.example>: "
                         "550 5.1.1 no such user")
        self.assertEqual(outcomes["bad@y.example"].kind, "recipient")
        self.assertEqual(outcomes["good@y.example"].status, OK)
        self.assertEqual(server.commands[1], b"MAIL FROM:<s@x.example>")

    @defer.inlineCallbacks
    def test_lmtp_reply_per_recipient(self):
        """protocol = lmtp: LHLO, IGNOREQUOTA when asked and offered, and one reply
        per accepted recipient after the data (RFC 2033), each deciding its own."""
        server = self.serve({"LHLO": "250-test.example\r\n250-PIPELINING\r\n250 IGNOREQUOTA",
                             ".": "250 OK\r\n440 Temporary error\r\n550 Bad user",
                             "RCPT TO:<c@y.example> IGNOREQUOTA": "550 unknown"})
        txn = Transaction("s@x.example", ["a@y.example", "b@y.example", "c@y.example",
                                          "d@y.example"], data=MESSAGE)
        result = yield self.send(server, [txn], lmtp=True, ignore_quota=True)
        self.assertEqual(server.commands[0], b"LHLO client.example")
        self.assertEqual(server.commands[2], b"RCPT TO:<a@y.example> IGNOREQUOTA")
        outcomes = dict(result.outcomes())
        self.assertEqual([outcomes[a].status for a in ("a@y.example", "b@y.example",
                                                       "c@y.example", "d@y.example")],
                         [OK, DEFER, FAIL, FAIL])
        self.assertEqual(outcomes["b@y.example"].message,
                         "LMTP error after end of data: 440 Temporary error")
        self.assertEqual(server.commands[-1], b"QUIT")

    @defer.inlineCallbacks
    def test_mua_wrapper_all_or_nothing(self):
        """mua_wrapper: DATA is not pipelined; one refused RCPT fails every
        recipient and the client says QUIT instead of DATA."""
        server = self.serve({"RCPT TO:<b@y.example>": "550 NOTOK"})
        txn = Transaction("s@x.example", ["a@y.example", "b@y.example"], data=MESSAGE)
        result = yield self.send(server, [txn], mua_wrapper=True)
        self.assertEqual(server.commands[-3:], [b"RCPT TO:<a@y.example>",
                                                b"RCPT TO:<b@y.example>", b"QUIT"])
        self.assertEqual([o.status for _, o in result.outcomes()], [FAIL, FAIL])

    @defer.inlineCallbacks
    def test_quit_after_refused_helo(self):
        """A refused HELO ends the session with QUIT, as Exim does, not a bare close."""
        server = self.serve(EHLO="500 no", HELO="550 No")
        txn = Transaction("s@x.example", ["a@y.example"], data=MESSAGE)
        result = yield self.send(server, [txn])
        self.assertEqual(server.commands, [b"EHLO client.example", b"HELO client.example",
                                           b"QUIT"])
        self.assertEqual([o.status for _, o in result.outcomes()], [FAIL])

    @defer.inlineCallbacks
    def test_reply_code_outside_1_to_5_is_malformed(self):
        """An 850 reply is no permanent refusal but a malformed response: the
        address is deferred and the client says QUIT."""
        server = self.serve(MAIL="850 RUBBISH")
        txn = Transaction("s@x.example", ["a@y.example"], data=MESSAGE)
        result = yield self.send(server, [txn], pipelining=False)
        [(_, outcome)] = list(result.outcomes())
        self.assertEqual(outcome.status, DEFER)
        self.assertEqual(outcome.message, "SMTP error from remote mail server after "
                                          "MAIL FROM:<s@x.example> SIZE=1062: "
                                          "malformed response: 850 RUBBISH")
        self.assertEqual(server.commands[-1], b"QUIT")

    @defer.inlineCallbacks
    def test_ehlo_rejected_falls_back_to_helo(self):
        """A non-2xx reply to EHLO makes the client try HELO (and no extensions)."""
        server = self.serve(EHLO="502 EHLO not here")
        txn = Transaction("s@x.example", ["a@y.example"], data=MESSAGE)
        result = yield self.send(server, [txn])
        self.assertEqual(server.commands[:3], [b"EHLO client.example", b"HELO client.example",
                                               b"MAIL FROM:<s@x.example>"])
        self.assertEqual(dict(result.outcomes())["a@y.example"].status, OK)

    @defer.inlineCallbacks
    def test_permanent_banner_error_fails_all(self):
        """A 5xx greeting is a host error that fails every address."""
        server = self.serve({"<banner>": "554 go away"})
        txn = Transaction("s@x.example", ["a@y.example", "b@y.example"], data=MESSAGE)
        result = yield self.send(server, [txn])
        self.assertEqual([o.status for _, o in result.outcomes()], [FAIL, FAIL])
        self.assertEqual(result.host_error.message,
                         "SMTP error from remote mail server after initial connection: "
                         "554 go away")

    @defer.inlineCallbacks
    def test_temporary_helo_error_defers_all(self):
        """A 4xx to HELO (after EHLO failed) is a host error that defers every address."""
        server = self.serve(EHLO="500 no", HELO="421 busy")
        txn = Transaction("s@x.example", ["a@y.example"], data=MESSAGE)
        result = yield self.send(server, [txn])
        self.assertEqual(result.host_error.kind, "host")
        self.assertEqual(dict(result.outcomes())["a@y.example"].status, DEFER)

    @defer.inlineCallbacks
    def test_mail_rejected_is_message_error(self):
        """5xx to MAIL fails every recipient as a message error; the pipelined RCPT
        and DATA replies that follow are read and ignored."""
        server = self.serve(MAIL="550 sender refused", RCPT="503 need MAIL",
                            DATA="503 no valid recipients")
        txn = Transaction("s@x.example", ["a@y.example", "b@y.example"], data=MESSAGE)
        result = yield self.send(server, [txn])
        for _, outcome in result.outcomes():
            self.assertEqual((outcome.status, outcome.kind), (FAIL, "message"))
            self.assertIn("after pipelined MAIL FROM:<s@x.example> SIZE=1062: 550 sender refused",
                          outcome.message)
        self.assertEqual(server.messages, [])

    @defer.inlineCallbacks
    def test_data_rejected_after_dot(self):
        """A 4xx to the end of data defers the accepted recipients as a message error."""
        server = self.serve({".": "451 4.3.0 try later"})
        txn = Transaction("s@x.example", ["a@y.example"], data=MESSAGE)
        result = yield self.send(server, [txn])
        outcome = dict(result.outcomes())["a@y.example"]
        self.assertEqual((outcome.status, outcome.kind), (DEFER, "message"))
        self.assertEqual(outcome.message, "SMTP error from remote mail server after end of data: "
                         "451 4.3.0 try later")

    @defer.inlineCallbacks
    def test_any_3xx_to_data_starts_the_data(self):
        """Like Exim, any 3xx reply to DATA (not only 354) is the go-ahead for the data."""
        server = self.serve(DATA="300 go ahead")
        txn = Transaction("s@x.example", ["a@y.example"], data=MESSAGE)
        result = yield self.send(server, [txn])
        self.assertEqual(server.messages, [b"Subject: test\r\n\r\n..leading dot\r\nbody line\r\n"])
        self.assertEqual([o.status for _, o in result.outcomes()], [OK])

    @defer.inlineCallbacks
    def test_two_messages_on_one_connection(self):
        """Several transactions share the connection; RSET follows a failed one."""
        server = self.serve({"MAIL FROM:<bad@x.example> SIZE=1062": "452 not now"})
        first = Transaction("bad@x.example", ["a@y.example"], data=MESSAGE)
        second = Transaction("s@x.example", ["b@y.example"], data=MESSAGE)
        result = yield self.send(server, [first, second])
        self.assertEqual(dict(result.outcomes())["a@y.example"].status, DEFER)
        self.assertEqual(dict(result.outcomes())["b@y.example"].status, OK)
        self.assertIn(b"RSET", server.commands)
        self.assertEqual(len(server.connections), 1)
        # This server (unlike a real one) says 354 to the pipelined DATA of the
        # failed transaction; the client ends that data at once, empty.
        self.assertEqual(server.messages[0], b"\r\n")
        self.assertEqual(server.messages[1], b"Subject: test\r\n\r\n..leading dot\r\nbody line\r\n")

    @defer.inlineCallbacks
    def test_dsn_parameters_passed_when_advertised(self):
        """With DSN advertised, RET/ENVID go on MAIL and NOTIFY/ORCPT on RCPT."""
        server = self.serve(EHLO="250-test.example\r\n250 DSN")
        txn = Transaction("s@x.example", [Recipient("a@y.example", "SUCCESS,FAILURE",
                                                    "rfc822;a+1@y.example")],
                          data=MESSAGE, dsn_envid="id 1", dsn_ret="HDRS")
        yield self.send(server, [txn])
        self.assertEqual(server.commands[1], b"MAIL FROM:<s@x.example> RET=HDRS ENVID=id+201")
        self.assertEqual(server.commands[2],
                         b"RCPT TO:<a@y.example> NOTIFY=SUCCESS,FAILURE "
                         b"ORCPT=rfc822;a+2B1@y.example")
        self.assertTrue(txn.dsn_passed)

    @defer.inlineCallbacks
    def test_dsn_not_passed_when_not_advertised(self):
        """Without DSN in EHLO no DSN parameters are sent, and the transaction says
        so, so that the engine can send a success DSN itself."""
        server = self.serve()
        txn = Transaction("s@x.example", [Recipient("a@y.example", "SUCCESS")], data=MESSAGE,
                          dsn_envid="e")
        yield self.send(server, [txn])
        self.assertEqual(server.commands[2], b"RCPT TO:<a@y.example>")
        self.assertFalse(txn.dsn_passed)

    @defer.inlineCallbacks
    def test_negative_size_addition_sends_no_size(self):
        """size_addition below zero turns SIZE= off even when SIZE is advertised."""
        server = self.serve()
        yield self.send(server, [Transaction("s@x.example", ["a@y.example"], data=MESSAGE)],
                        size_addition=-1)
        self.assertEqual(server.commands[1], b"MAIL FROM:<s@x.example>")

    @defer.inlineCallbacks
    def test_8bitmime_passed_on(self):
        """A message received with BODY=8BITMIME keeps it when the server offers it."""
        server = self.serve()
        txn = Transaction("s@x.example", ["a@y.example"], data=MESSAGE, body_type="8BITMIME")
        yield self.send(server, [txn])
        self.assertEqual(server.commands[1], b"MAIL FROM:<s@x.example> SIZE=1062 BODY=8BITMIME")

    @defer.inlineCallbacks
    def test_smtputf8_required_but_not_offered(self):
        """An SMTPUTF8 message to a server without SMTPUTF8 fails, as Exim fails it
        (no downconversion), and nothing is sent for it."""
        server = self.serve()
        txn = Transaction("s@x.example", ["a@y.example"], data=MESSAGE, smtputf8=True)
        result = yield self.send(server, [txn])
        outcome = dict(result.outcomes())["a@y.example"]
        self.assertEqual(outcome.status, FAIL)
        self.assertEqual(outcome.message, "utf8 support required but not offered for forwarding")
        self.assertNotIn(b"MAIL", b" ".join(server.commands))

    @defer.inlineCallbacks
    def test_avoid_esmtp_sends_helo(self):
        """hosts_avoid_esmtp: HELO only, so no extensions are used."""
        server = self.serve()
        yield self.send(server, [Transaction("s@x.example", ["a@y.example"], data=MESSAGE)],
                        esmtp=False)
        self.assertEqual(server.commands[:2], [b"HELO client.example", b"MAIL FROM:<s@x.example>"])

    @defer.inlineCallbacks
    def test_authenticated_sender_failure_defers(self):
        """authenticated_sender that fails to expand defers the message, even on an
        unauthenticated session (spec, option authenticated_sender)."""
        from exim_py.errors import ExpansionError

        def broken(result):
            raise ExpansionError("Failed to expand authenticated_sender: unknown variable")
        server = self.serve()
        txn = Transaction("s@x.example", ["a@y.example"], data=MESSAGE,
                          auth_sender_option=broken)
        result = yield self.send(server, [txn])
        outcome = dict(result.outcomes())["a@y.example"]
        self.assertEqual(outcome.status, DEFER)
        self.assertIn("Failed to expand authenticated_sender", outcome.message)
        self.assertNotIn(b"MAIL", b" ".join(server.commands))

    @defer.inlineCallbacks
    def test_authenticated_sender_force(self):
        """authenticated_sender_force: AUTH= goes on MAIL without authenticating."""
        server = self.serve(EHLO="250-test.example\r\n250 AUTH PLAIN")
        txn = Transaction("s@x.example", ["a@y.example"], data=MESSAGE,
                          auth_sender_option=lambda result: "who@x.example",
                          auth_sender_force=True)
        yield self.send(server, [txn])
        self.assertEqual(server.commands[1], b"MAIL FROM:<s@x.example> AUTH=who@x.example")

    @defer.inlineCallbacks
    def test_ipv6_host(self):
        """An IPv6 host address works as an IPv4 one does."""
        try:
            server = ScriptedSMTPServer(interface="::1")
        except Exception as exc:
            raise unittest.SkipTest("no IPv6 loopback here: %s" % (exc,))
        self.addCleanup(server.stop)
        txn = Transaction("s@x.example", ["a@y.example"], data=MESSAGE)
        result = yield client.deliver(reactor, "::1", server.port_number, settings(), [txn])
        self.assertEqual(dict(result.outcomes())["a@y.example"].status, OK)
        self.assertEqual(len(server.messages), 1)

    @defer.inlineCallbacks
    def test_callout_stops_after_rcpt(self):
        """A transaction without data (a callout) sends MAIL and RCPT only, then QUIT."""
        server = self.serve({"RCPT TO:<no@y.example>": "550 unknown"})
        txn = Transaction("", ["no@y.example"])
        result = yield self.send(server, [txn])
        self.assertEqual(server.commands, [b"EHLO client.example", b"MAIL FROM:<>",
                                           b"RCPT TO:<no@y.example>", b"QUIT"])
        self.assertEqual(dict(result.outcomes())["no@y.example"].status, FAIL)


class FailureModeTests(unittest.TestCase):
    """Refused connections, timeouts at each stage, lost connections."""

    def serve(self, overrides=None, **verbs):
        server = ScriptedSMTPServer(overrides=dict(overrides or {}, **verbs))
        self.addCleanup(server.stop)
        return server

    def send(self, port, **kw):
        kw.setdefault("command_timeout", 1.0)
        kw.setdefault("final_timeout", 1.0)
        txn = Transaction("s@x.example", ["a@y.example", "b@y.example"], data=MESSAGE)
        return client.deliver(reactor, "127.0.0.1", port, settings(**kw), [txn])

    @defer.inlineCallbacks
    def test_connection_refused(self):
        """A refused connection defers every address with errno ECONNREFUSED."""
        result = yield self.send(free_port())
        self.assertEqual(result.host_error.message, "Connection refused")
        self.assertEqual(result.host_error.errno, errno.ECONNREFUSED)
        self.assertEqual({o.status for _, o in result.outcomes()}, {DEFER})

    @defer.inlineCallbacks
    def test_banner_timeout_is_host_error(self):
        """No greeting within command_timeout: host error, everything deferred."""
        server = self.serve({"<banner>": STALL})
        result = yield self.send(server.port_number)
        self.assertEqual(result.host_error.message, "SMTP timeout after initial connection")
        self.assertEqual(result.host_error.kind, "host")
        self.assertEqual({o.status for _, o in result.outcomes()}, {DEFER})

    @defer.inlineCallbacks
    def test_ehlo_timeout_is_host_error(self):
        """A stall after EHLO is a host error."""
        server = self.serve(EHLO=STALL)
        result = yield self.send(server.port_number)
        self.assertEqual(result.host_error.message, "SMTP timeout after EHLO client.example")
        self.assertEqual(result.host_error.kind, "host")

    @defer.inlineCallbacks
    def test_mail_timeout_is_message_error(self):
        """A stall after MAIL defers the message without host retry data."""
        server = self.serve(MAIL=STALL)
        result = yield self.send(server.port_number)
        outcome = dict(result.outcomes())["a@y.example"]
        self.assertEqual((outcome.status, outcome.kind), (DEFER, "message"))
        self.assertEqual(outcome.message,
                         "SMTP timeout after pipelined MAIL FROM:<s@x.example> SIZE=1062")
        self.assertIsNone(result.host_error.kind)

    @defer.inlineCallbacks
    def test_rcpt_timeout_is_recipient_error(self):
        """A stall after one RCPT defers that recipient as a recipient error."""
        server = self.serve({"RCPT TO:<b@y.example>": STALL}, EHLO="250 test.example")
        result = yield self.send(server.port_number)
        outcomes = dict(result.outcomes())
        self.assertEqual((outcomes["b@y.example"].status, outcomes["b@y.example"].kind),
                         (DEFER, "recipient"))
        self.assertEqual(outcomes["b@y.example"].message,
                         "SMTP timeout after RCPT TO:<b@y.example>")
        self.assertEqual(outcomes["a@y.example"].status, DEFER)

    @defer.inlineCallbacks
    def test_final_timeout_after_dot(self):
        """No reply to the end of data within final_timeout: message error, deferred."""
        server = self.serve({".": STALL})
        result = yield self.send(server.port_number)
        outcome = dict(result.outcomes())["a@y.example"]
        self.assertEqual((outcome.status, outcome.kind), (DEFER, "message"))
        self.assertEqual(outcome.message, "SMTP timeout after end of data")

    @defer.inlineCallbacks
    def test_data_timeout_when_server_stops_reading(self):
        """A server that stops reading the data: once the socket buffers are full,
        data_timeout expires and the session is abandoned (a host error)."""
        server = self.serve(DATA=PAUSE)
        big = b"Subject: big\n\n" + (b"y" * 70 + b"\n") * 500000
        txn = Transaction("s@x.example", ["a@y.example"], data=big)
        result = yield client.deliver(reactor, "127.0.0.1", server.port_number,
                                      settings(command_timeout=5, data_timeout=0.5), [txn])
        self.assertRegex(result.host_error.message,
                         r"^SMTP timeout after sending data block \(\d+ bytes written\)$")
        self.assertEqual(result.host_error.errno, errno.ETIMEDOUT)
        self.assertEqual(dict(result.outcomes())["a@y.example"].status, DEFER)

    @defer.inlineCallbacks
    def test_connection_dropped_mid_data(self):
        """The server vanishing while the data is sent is a host error: deferred."""
        server = self.serve({"<data line>": DROP})
        result = yield self.send(server.port_number)
        self.assertEqual({o.status for _, o in result.outcomes()}, {DEFER})
        self.assertTrue(result.host_error.message.startswith("Remote host closed connection"))

    @defer.inlineCallbacks
    def test_connection_dropped_after_rcpt(self):
        """The server closing after RCPT is a host error for every recipient."""
        server = self.serve(RCPT=DROP)
        result = yield self.send(server.port_number)
        self.assertEqual(result.host_error.kind, "host")
        self.assertEqual(result.host_error.errno, client.ERRNO_SMTPCLOSED)
        self.assertEqual({o.status for _, o in result.outcomes()}, {DEFER})

    @defer.inlineCallbacks
    def test_tls_required_but_not_offered(self):
        """hosts_require_tls and no STARTTLS in EHLO: deferred, Exim's wording."""
        server = self.serve()
        result = yield self.send(server.port_number, tls="require")
        self.assertEqual(result.host_error.message,
                         "a TLS session is required, but the server did not offer TLS support")
        self.assertEqual(server.messages, [])

    @defer.inlineCallbacks
    def test_starttls_response_injection_ignored(self):
        """Regression (STARTTLS response injection, CVE-2011-0411 class): lines sent
        in clear after "220" are discarded, never read as replies; the failed
        handshake then asks for a retry in clear."""
        from exim_py.smtp.tls_client import TLSClientSettings
        server = self.serve(EHLO="250-test.example\r\n250 STARTTLS",
                            STARTTLS="220 go ahead\r\n250 injected reply")
        result = yield self.send(server.port_number, tls="try",
                                 tls_settings=TLSClientSettings())
        self.assertEqual(result.host_error.message, "TLS session: (SSL_connect): timed out")
        self.assertTrue(result.retry_in_clear)
        self.assertEqual(server.messages, [])

    @defer.inlineCallbacks
    def test_starttls_454_goes_on_in_clear(self):
        """A 4xx to STARTTLS with tls_tempfail_tryclear: the same session carries
        the message in clear (TLS not required)."""
        from exim_py.smtp.tls_client import TLSClientSettings
        server = self.serve(EHLO="250-test.example\r\n250 STARTTLS",
                            STARTTLS="454 TLS not available now")
        result = yield self.send(server.port_number, tls="try", tls_settings=TLSClientSettings())
        self.assertEqual({o.status for _, o in result.outcomes()}, {OK})
        self.assertEqual(len(server.connections), 1)
        self.assertIsNone(result.tls)

    @defer.inlineCallbacks
    def test_starttls_454_without_tryclear_defers(self):
        """tls_tempfail_tryclear false: a 4xx to STARTTLS defers this host."""
        from exim_py.smtp.tls_client import TLSClientSettings
        server = self.serve(EHLO="250-test.example\r\n250 STARTTLS",
                            STARTTLS="454 TLS not available now")
        result = yield self.send(server.port_number, tls="try", tls_settings=TLSClientSettings(),
                                 tls_tempfail_tryclear=False)
        self.assertEqual(result.host_error.message, "SMTP error from remote mail server after "
                         "STARTTLS: 454 TLS not available now")
        self.assertEqual(server.messages, [])


class ReplyTimerTests(unittest.TestCase):
    """command_timeout counts from the last reply, not from the session's start."""

    def test_each_reply_restarts_the_timeout(self):
        """Replies that each come just inside command_timeout never time
        out, however long the session lasts; silence after the last
        command awaited does (one timer per session, moved at each reply)."""
        from twisted.internet import task
        from twisted.internet.testing import StringTransport
        clock = task.Clock()
        txn = Transaction("s@x.example", ["a@y.example"], data=MESSAGE)
        proto = client.ESMTPClient(settings(command_timeout=5), [txn], clock)
        transport = StringTransport()
        proto.makeConnection(transport)
        for reply in (b"220 test.example ESMTP", b"250 test.example"):
            clock.advance(4.9)
            proto.dataReceived(reply + b"\r\n")
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        self.assertEqual(dict(proto.result.outcomes())["a@y.example"], None)
        clock.advance(4.9)
        self.assertFalse(transport.disconnecting)
        clock.advance(0.2)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(dict(proto.result.outcomes())["a@y.example"].message,
                         "SMTP timeout after MAIL FROM:<s@x.example>")


class DirectWriteTests(unittest.TestCase):
    """Commands and a small message go to a plain TCP socket at once."""

    @defer.inlineCallbacks
    def test_small_session_bypasses_the_write_buffer(self):
        """Over plain TCP with nothing queued, every command, the envelope
        and a small message are handed to the kernel when written (not
        queued for the reactor's next turn), and arrive intact."""
        from twisted.internet import tcp
        server = ScriptedSMTPServer()
        self.addCleanup(server.stop)
        buffered = []
        real_write = tcp.Client.write

        def write(transport, data):
            buffered.append(data)
            return real_write(transport, data)
        self.patch(tcp.Client, "write", write)
        txn = Transaction("s@x.example", ["a@y.example", "b@y.example"], data=MESSAGE)
        result = yield client.deliver(reactor, "127.0.0.1", server.port_number, settings(),
                                      [txn])
        self.assertEqual([o.status for _, o in result.outcomes()], [OK, OK])
        self.assertEqual(server.messages, [b"Subject: test\r\n\r\n..leading dot\r\nbody line\r\n"])
        self.assertEqual(buffered, [])
