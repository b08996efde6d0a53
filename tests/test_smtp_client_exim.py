"""The ESMTP client against Debian's real Exim 4.96 as the receiving MTA.

Each test starts its own exim4 daemon (tests/support/exim_peer.py) whose
policy is driven by local parts, then checks both what exim_py recorded for
each recipient and what Exim logged and queued.
"""

import base64

from twisted.internet import defer, reactor
from twisted.trial import unittest

from exim_py.smtp import client
from exim_py.smtp.outbound import DEFER, FAIL, OK, ClientSettings, Recipient, Transaction
from tests.support.exim_peer import EximPeer

BODY = b"Subject: hello\nFrom: s@client.example\n\n.starts with a dot\n.\n..two dots\nend\n"


class PlainSASL:
    """A minimal client-side PLAIN mechanism in the shape client.py expects."""

    public_name = "PLAIN"

    def __init__(self, user, password):
        self.user = user
        self.password = password

    def client_start(self, mechanisms):
        return self

    def initial_response(self):
        return b"\0" + self.user.encode() + b"\0" + self.password.encode()

    def respond(self, challenge):
        return self.initial_response()


def start_peer(test, **kw):
    peer = EximPeer(**kw).start()
    test.addCleanup(peer.stop)
    return peer


def send(peer, txns, **kw):
    kw.setdefault("helo_data", "client.example")
    kw.setdefault("command_timeout", 10)
    return client.deliver(reactor, "127.0.0.1", peer.port, ClientSettings(**kw), txns)


def queued_recipients(header_text):
    """The recipient addresses in an Exim -H file: the count after the non-recipient
    tree (``XX`` when empty), then one line each."""
    lines = header_text.split("\n")
    start = lines.index("XX") + 1
    count = int(lines[start])
    return [line.split(" ")[0] for line in lines[start + 1:start + 1 + count]]


class RealEximDeliveryTests(unittest.TestCase):
    """Whole transactions to a real Exim, pipelined or not, DATA or BDAT."""

    @defer.inlineCallbacks
    def test_recipient_outcomes_and_transparency(self):
        """Exim's 550/451 to RCPT fail/defer those recipients only; the accepted one
        gets the message with its dot lines intact."""
        peer = start_peer(self)
        txn = Transaction("s@client.example",
                          ["ok@test.example", "reject1@test.example", "defer1@test.example"],
                          data=BODY)
        result = yield send(peer, [txn], prdr=False)
        outcomes = dict(result.outcomes())
        self.assertEqual(outcomes["ok@test.example"].status, OK)
        self.assertEqual(outcomes["reject1@test.example"].status, FAIL)
        self.assertEqual(outcomes["reject1@test.example"].reply, "550 no such user here")
        self.assertEqual(outcomes["defer1@test.example"].status, DEFER)
        self.assertEqual(outcomes["defer1@test.example"].reply, "451 try this one later")
        [(header, body)] = peer.messages()
        self.assertEqual(queued_recipients(header), ["ok@test.example"])
        self.assertEqual(body, b".starts with a dot\n.\n..two dots\nend\n")
        # Exim answers BDAT with two lines ("250- N byte chunk" first); the
        # confirmation keeps the whole reply, as Exim's C= log field does.
        self.assertRegex(txn.confirmation, r"(^|\n)250 OK id=[-0-9A-Za-z]+$")

    @defer.inlineCallbacks
    def test_chunking_used_when_offered(self):
        """With CHUNKING advertised the message goes as BDAT (Exim logs K)."""
        peer = start_peer(self)
        txn = Transaction("s@client.example", ["ok@test.example"], data=BODY)
        yield send(peer, [txn])
        self.assertTrue(txn.chunking_used)
        self.assertRegex(peer.mainlog(), r"<= s@client.example .* K S=")
        self.assertEqual(peer.messages()[0][1], b".starts with a dot\n.\n..two dots\nend\n")

    @defer.inlineCallbacks
    def test_plain_data_without_pipelining_or_chunking(self):
        """Without PIPELINING and CHUNKING: one command at a time and DATA."""
        peer = start_peer(self, pipelining=False, chunking=False)
        txn = Transaction("s@client.example", ["a@test.example", "b@test.example"], data=BODY)
        result = yield send(peer, [txn], prdr=False)
        self.assertFalse(txn.chunking_used)
        self.assertEqual({o.status for _, o in result.outcomes()}, {OK})
        self.assertEqual(queued_recipients(peer.messages()[0][0]),
                         ["a@test.example", "b@test.example"])

    @defer.inlineCallbacks
    def test_large_message_streams_intact(self):
        """A 4 MB message, sent in chunks as the socket drains, arrives byte for byte
        (with DATA and with BDAT)."""
        body = b"".join(b"%07d .line with a dot inside\n" % i for i in range(130000))
        for chunking in (False, True):
            peer = start_peer(self, chunking=chunking)
            txn = Transaction("s@client.example", ["ok@test.example"],
                              data=b"Subject: big\n\n" + body)
            result = yield send(peer, [txn])
            self.assertEqual(dict(result.outcomes())["ok@test.example"].status, OK)
            self.assertEqual(peer.messages()[0][1], body)

    @defer.inlineCallbacks
    def test_mail_rejected(self):
        """Exim's 550 to MAIL fails every recipient (a message error)."""
        peer = start_peer(self)
        txn = Transaction("bad@sender.example", ["a@test.example"], data=BODY)
        result = yield send(peer, [txn])
        outcome = dict(result.outcomes())["a@test.example"]
        self.assertEqual((outcome.status, outcome.kind), (FAIL, "message"))
        self.assertIn("550 sender not welcome here", outcome.message)

    @defer.inlineCallbacks
    def test_data_acl_rejects(self):
        """Exim's DATA ACL rejection fails the accepted recipients."""
        peer = start_peer(self)
        txn = Transaction("s@client.example", ["a@test.example"],
                          data=b"Subject: x\n\nREJECT-THIS-MESSAGE\n")
        result = yield send(peer, [txn])
        outcome = dict(result.outcomes())["a@test.example"]
        self.assertEqual(outcome.status, FAIL)
        self.assertEqual(outcome.reply, "550 content rejected")
        self.assertEqual(peer.messages(), [])

    @defer.inlineCallbacks
    def test_several_messages_one_connection(self):
        """Two messages go down one connection; Exim logs both arrivals."""
        peer = start_peer(self)
        txns = [Transaction("s@client.example", ["a@test.example"], data=BODY),
                Transaction("t@client.example", ["b@test.example"], data=BODY)]
        result = yield send(peer, txns)
        self.assertEqual({o.status for _, o in result.outcomes()}, {OK})
        self.assertEqual(len(peer.messages()), 2)
        self.assertEqual(peer.mainlog().count(" <= "), 2)
        self.assertEqual(len(result.transactions), 2)

    @defer.inlineCallbacks
    def test_dsn_forwarded(self):
        """NOTIFY/ORCPT/ENVID/RET reach Exim when it advertises DSN."""
        peer = start_peer(self)
        txn = Transaction("s@client.example",
                          [Recipient("a@test.example", "SUCCESS", "rfc822;orig@test.example")],
                          data=BODY, dsn_envid="env-1", dsn_ret="HDRS")
        yield send(peer, [txn])
        header = peer.messages()[0][0]
        self.assertTrue(txn.dsn_passed)
        self.assertIn("-dsn_envid env-1", header)
        self.assertIn("-dsn_ret 2", header)     # Exim's code for RET=HDRS
        self.assertIn("\na@test.example rfc822;orig@test.example ", header)


class RealEximPRDRTests(unittest.TestCase):
    """PRDR (hosts_try_prdr) with Exim's acl_smtp_data_prdr deciding per recipient."""

    RECIPIENTS = ["good@test.example", "prdrdefer@test.example", "prdrreject@test.example"]

    @defer.inlineCallbacks
    def check_prdr(self, chunking):
        peer = start_peer(self, chunking=chunking)
        txn = Transaction("s@client.example", self.RECIPIENTS, data=BODY)
        result = yield send(peer, [txn])
        outcomes = dict(result.outcomes())
        self.assertTrue(txn.prdr_used)
        self.assertEqual(outcomes["good@test.example"].status, OK)
        self.assertEqual(outcomes["prdrdefer@test.example"].status, DEFER)
        self.assertIn("this recipient cannot take it right now",
                      outcomes["prdrdefer@test.example"].message)
        self.assertEqual(outcomes["prdrreject@test.example"].status, FAIL)
        self.assertIn("this recipient does not want this message",
                      outcomes["prdrreject@test.example"].message)
        self.assertEqual(queued_recipients(peer.messages()[0][0]), ["good@test.example"])

    def test_prdr_with_data(self):
        """After DATA: 353, then one reply per recipient, recorded for each."""
        return self.check_prdr(chunking=False)

    def test_prdr_with_bdat(self):
        """After BDAT LAST the PRDR replies come the same way."""
        return self.check_prdr(chunking=True)

    @defer.inlineCallbacks
    def test_prdr_not_used_when_disabled(self):
        """hosts_try_prdr not matching: no PRDR, all recipients share one reply."""
        peer = start_peer(self)
        txn = Transaction("s@client.example", self.RECIPIENTS, data=BODY)
        result = yield send(peer, [txn], prdr=False)
        self.assertFalse(txn.prdr_used)
        self.assertEqual({o.status for _, o in result.outcomes()}, {OK})


class RealEximAuthTests(unittest.TestCase):
    """AUTH PLAIN against Exim's plaintext authenticator."""

    @defer.inlineCallbacks
    def test_auth_plain_accepted(self):
        """Good credentials: Exim logs A=plain:fred and the message is accepted."""
        peer = start_peer(self)
        txn = Transaction("s@client.example", ["a@test.example"], data=BODY)
        result = yield send(peer, [txn], auth="require",
                            authenticators=[PlainSASL("fred", "secret")])
        self.assertEqual(result.authenticated, "PLAIN")
        self.assertEqual(dict(result.outcomes())["a@test.example"].status, OK)
        self.assertIn("A=plain:fred", peer.mainlog())

    @defer.inlineCallbacks
    def test_auth_required_and_failing_defers(self):
        """Bad credentials with hosts_require_auth: host error, nothing sent."""
        peer = start_peer(self)
        txn = Transaction("s@client.example", ["a@test.example"], data=BODY)
        result = yield send(peer, [txn], auth="require",
                            authenticators=[PlainSASL("fred", "wrong")])
        self.assertEqual(result.host_error.message,
                         "authentication required but authentication attempt(s) failed")
        self.assertEqual(peer.messages(), [])

    @defer.inlineCallbacks
    def test_auth_tried_and_failing_goes_on(self):
        """Bad credentials with hosts_try_auth: the message goes unauthenticated."""
        peer = start_peer(self)
        txn = Transaction("s@client.example", ["a@test.example"], data=BODY)
        result = yield send(peer, [txn], auth="try", authenticators=[PlainSASL("fred", "bad")])
        self.assertIsNone(result.authenticated)
        self.assertEqual(dict(result.outcomes())["a@test.example"].status, OK)

    def test_plain_initial_response_encoding(self):
        """The PLAIN response is authzid NUL user NUL password, base64 on the wire."""
        self.assertEqual(base64.b64encode(PlainSASL("fred", "secret").initial_response()),
                         b"AGZyZWQAc2VjcmV0")
