"""STARTTLS from the ESMTP client to a real Exim 4.96 (GnuTLS) server.

Covers certificate verification against the test CA (tls_verify_hosts /
tls_try_verify_hosts), certificate name checks (tls_verify_cert_hostnames),
and OCSP stapling (hosts_request_ocsp / hosts_require_ocsp) with Exim's
tls_ocsp_file serving good, revoked, expired and nextUpdate-less responses.
"""

import datetime
import shutil

from twisted.internet import defer, protocol, reactor
from twisted.internet.interfaces import IHandshakeListener
from twisted.trial import unittest
from zope.interface import implementer

from exim_py.smtp import client, ocsp_verify, tls_client
from exim_py.smtp.outbound import DEFER, OK, ClientSettings, Transaction
from exim_py.smtp.tls_client import ClientTLS, TLSClientSettings, TLSFailure
from tests.support.exim_peer import EximPeer
from tests.support.ocsp import StaplingServer
from tests.support.pki_client import TestPKI

BODY = b"Subject: tls\n\nbody\n"
HOST = "mx.test.example"
DAY = datetime.timedelta(days=1)


class TLSTestCase(unittest.TestCase):

    def setUp(self):
        self.pki = TestPKI()
        self.addCleanup(shutil.rmtree, self.pki.dir, True)
        self.server = self.pki.issue("server", HOST, sans=[HOST])

    def start(self, cert=None, **kw):
        cert = cert or self.server
        peer = EximPeer(tls_certificate=cert.cert_path, tls_privatekey=cert.key_path, **kw)
        peer.start()
        self.addCleanup(peer.stop)
        return peer

    def send(self, peer, tls="try", **tls_kw):
        tls_kw.setdefault("verify_certificates", self.pki.ca.cert_path)
        settings = ClientSettings(helo_data="client.example", command_timeout=10, tls=tls,
                                  tls_settings=TLSClientSettings(**tls_kw))
        self.txn = Transaction("s@client.example", ["a@test.example"], data=BODY)
        return client.deliver(reactor, "127.0.0.1", peer.port, settings, [self.txn])

    def outcome(self, result):
        return dict(result.outcomes())["a@test.example"]


class VerificationTests(TLSTestCase):
    """Server certificate verification and name checks."""

    @defer.inlineCallbacks
    def test_verified_session(self):
        """A certificate from the trusted CA with the right name: verified, and the
        $tls_out_* values are set."""
        peer = self.start()
        result = yield self.send(peer, verify="require", verify_names=[HOST])
        self.assertEqual(self.outcome(result).status, OK)
        variables = result.tls.variables()
        self.assertEqual(variables["tls_out_certificate_verified"], "1")
        self.assertEqual(variables["tls_out_peerdn"], "/O=exim_py tests/CN=" + HOST)
        self.assertRegex(variables["tls_out_cipher"], r"^TLS1\.[23]:[A-Z0-9_-]+:\d+$")
        self.assertIn("P=esmtps", peer.mainlog())

    @defer.inlineCallbacks
    def test_name_mismatch_fails_when_names_checked(self):
        """A host in tls_verify_cert_hostnames with a certificate for another name
        is not used: deferred, nothing delivered."""
        peer = self.start(cert=self.pki.issue("wrong", "other.example", sans=["other.example"]))
        result = yield self.send(peer, verify="require", verify_names=[HOST])
        outcome = self.outcome(result)
        self.assertEqual(outcome.status, DEFER)
        self.assertEqual(outcome.message, "TLS session: (certificate verification failed)")
        self.assertTrue(result.retry_in_clear)
        self.assertEqual(peer.messages(), [])

    @defer.inlineCallbacks
    def test_name_mismatch_ignored_when_names_not_checked(self):
        """A host not in tls_verify_cert_hostnames: only the chain is verified."""
        peer = self.start(cert=self.pki.issue("wrong", "other.example", sans=["other.example"]))
        result = yield self.send(peer, verify="require", verify_names=None)
        self.assertEqual(self.outcome(result).status, OK)
        self.assertTrue(result.tls.certificate_verified)

    @defer.inlineCallbacks
    def test_wildcard_name_accepted(self):
        """A *.test.example certificate is good for mx.test.example."""
        peer = self.start(cert=self.pki.issue("wild", "*.test.example", sans=["*.test.example"]))
        result = yield self.send(peer, verify="require", verify_names=[HOST])
        self.assertEqual(self.outcome(result).status, OK)

    @defer.inlineCallbacks
    def test_untrusted_ca_fails_required_verification(self):
        """A certificate from an unknown CA fails a host in tls_verify_hosts."""
        stranger = TestPKI()
        self.addCleanup(shutil.rmtree, stranger.dir, True)
        peer = self.start(cert=stranger.issue("s", HOST, sans=[HOST]))
        result = yield self.send(peer, verify="require", verify_names=[HOST])
        self.assertEqual(self.outcome(result).message,
                         "TLS session: (certificate verification failed)")

    @defer.inlineCallbacks
    def test_untrusted_ca_tolerated_when_only_tried(self):
        """tls_try_verify_hosts: an unverifiable certificate still carries the
        message, with $tls_out_certificate_verified 0."""
        stranger = TestPKI()
        self.addCleanup(shutil.rmtree, stranger.dir, True)
        peer = self.start(cert=stranger.issue("s", HOST, sans=[HOST]))
        result = yield self.send(peer, verify="try", verify_names=[HOST])
        self.assertEqual(self.outcome(result).status, OK)
        self.assertEqual(result.tls.variables()["tls_out_certificate_verified"], "0")

    @defer.inlineCallbacks
    def test_expired_certificate_fails(self):
        """An expired server certificate does not verify."""
        peer = self.start(cert=self.pki.issue("old", HOST, sans=[HOST], expired=True))
        result = yield self.send(peer, verify="require", verify_names=[HOST])
        self.assertEqual(self.outcome(result).status, DEFER)
        self.assertIsNone(result.tls)


class ClientOptionTests(TLSTestCase):
    """CRL checking, SNI and a client certificate, seen from the Exim side too."""

    @defer.inlineCallbacks
    def test_crl_revokes_server_certificate(self):
        """tls_crl listing the server's certificate makes verification fail."""
        peer = self.start()
        result = yield self.send(peer, verify="require",
                                 crl=self.pki.crl("revoked", revoked=[self.server]))
        self.assertEqual(self.outcome(result).message,
                         "TLS session: (certificate verification failed)")

    @defer.inlineCallbacks
    def test_crl_without_the_certificate(self):
        """A CRL that does not list the server's certificate changes nothing."""
        peer = self.start()
        result = yield self.send(peer, verify="require", crl=self.pki.crl("empty"))
        self.assertEqual(self.outcome(result).status, OK)
        self.assertTrue(result.tls.certificate_verified)

    @defer.inlineCallbacks
    def test_sni_reaches_server(self):
        """tls_sni is sent: Exim logs it (log_selector +tls_sni) and $tls_out_sni has it."""
        peer = self.start(extra="log_selector = +tls_sni")
        result = yield self.send(peer, verify="require", sni=HOST)
        self.assertEqual(result.tls.variables()["tls_out_sni"], HOST)
        self.assertIn("SNI=" + HOST, peer.mainlog())

    @defer.inlineCallbacks
    def test_client_certificate(self):
        """tls_certificate/tls_privatekey present a certificate that Exim verifies
        (its log shows CV=yes and the certificate's DN)."""
        client_cert = self.pki.issue("client", "client.example", sans=["client.example"])
        peer = self.start(extra="tls_verify_hosts = 127.0.0.1\n"
                                "tls_verify_certificates = %s\n"
                                "log_selector = +tls_peerdn" % (self.pki.ca.cert_path,))
        result = yield self.send(peer, verify="require", certificate=client_cert.cert_path,
                                 privatekey=client_cert.key_path)
        self.assertEqual(self.outcome(result).status, OK)
        self.assertRegex(peer.mainlog(), r"<= s@client.example .*CV=yes DN=\"[^\"]*client.example")


class TLSOnConnectTests(TLSTestCase):
    """protocol = smtps: TLS from the first byte (Exim's tls_on_connect_ports)."""

    @defer.inlineCallbacks
    def test_smtps_delivery(self):
        """The greeting comes over TLS; no STARTTLS; Exim logs the TLS session."""
        peer = self.start(tls_on_connect=True)
        settings = ClientSettings(helo_data="client.example", command_timeout=10,
                                  tls="require", tls_on_connect=True,
                                  tls_settings=TLSClientSettings(
                                      verify="require",
                                      verify_certificates=self.pki.ca.cert_path))
        txn = Transaction("s@client.example", ["a@test.example"], data=BODY)
        result = yield client.deliver(reactor, "127.0.0.1", peer.port, settings, [txn])
        self.assertEqual(dict(result.outcomes())["a@test.example"].status, OK)
        self.assertTrue(result.tls.certificate_verified)
        self.assertNotIn("STARTTLS", result.extensions)
        self.assertRegex(peer.mainlog(), r"<= s@client.example .*P=esmtps X=TLS")


class ResumptionTests(TLSTestCase):
    """tls_resumption_hosts: the second connection resumes the first one's session."""

    @defer.inlineCallbacks
    def test_second_session_resumed(self):
        """Exim (tls_resumption_hosts = *) gives a ticket; the next connection offers it,
        the session is resumed, and both sides say so."""
        peer = self.start(extra="tls_resumption_hosts = *\nlog_selector = +tls_resumption")
        first = yield self.send(peer, verify="require", resume_key=("mx", peer.port))
        self.assertFalse(first.tls.resumption & tls_client.RESUME_USED)
        second = yield self.send(peer, verify="require", resume_key=("mx", peer.port))
        self.assertEqual(self.outcome(second).status, OK)
        self.assertEqual(second.tls.resumption,
                         tls_client.RESUME_SUPPORTED | tls_client.RESUME_REQUESTED
                         | tls_client.RESUME_OFFERED | tls_client.RESUME_USED)
        self.assertTrue(second.tls.certificate_verified)
        self.assertRegex(peer.mainlog(), r"<= s@client.example .*X=\S+:\d+\* ")

    @defer.inlineCallbacks
    def test_resumed_session_keeps_failed_verdict(self):
        """A session whose certificate did not verify (a "try" host) is not taken as
        verified when it is resumed."""
        stranger = TestPKI()
        self.addCleanup(shutil.rmtree, stranger.dir, True)
        peer = self.start(cert=stranger.issue("s", HOST, sans=[HOST]),
                          extra="tls_resumption_hosts = *")
        yield self.send(peer, verify="try", resume_key=("try", peer.port))
        second = yield self.send(peer, verify="try", resume_key=("try", peer.port))
        self.assertTrue(second.tls.resumption & tls_client.RESUME_USED)
        self.assertFalse(second.tls.certificate_verified)

    @defer.inlineCallbacks
    def test_no_resumption_without_key(self):
        """Hosts outside tls_resumption_hosts never offer a session."""
        peer = self.start(extra="tls_resumption_hosts = *")
        yield self.send(peer, verify="require")
        second = yield self.send(peer, verify="require")
        self.assertEqual(second.tls.resumption, 0)


class OCSPStaplingTests(TLSTestCase):
    """hosts_require_ocsp against Exim's tls_ocsp_file staples."""

    def now(self):
        return datetime.datetime.now(datetime.timezone.utc)

    @defer.inlineCallbacks
    def test_good_staple(self):
        """A good, current, CA-signed staple: $tls_out_ocsp 4 and delivery."""
        peer = self.start(tls_ocsp_file=self.pki.ocsp_response("good", self.server))
        result = yield self.send(peer, verify="require", require_ocsp=True)
        self.assertEqual(self.outcome(result).status, OK)
        self.assertEqual(result.tls.variables()["tls_out_ocsp"], str(ocsp_verify.OCSP_VERIFIED))

    @defer.inlineCallbacks
    def test_exim_refuses_to_staple_a_revoked_response(self):
        """Exim (GnuTLS) will not serve a revoked response and then offers no TLS:
        a host in hosts_require_tls and hosts_require_ocsp is deferred."""
        peer = self.start(tls_ocsp_file=self.pki.ocsp_response("rev", self.server,
                                                               status="revoked"))
        result = yield self.send(peer, tls="require", verify="require", require_ocsp=True)
        self.assertEqual(self.outcome(result).status, DEFER)
        self.assertIn("after STARTTLS: 454 TLS currently unavailable",
                      self.outcome(result).message)
        self.assertEqual(peer.messages(), [])

    @defer.inlineCallbacks
    def test_staple_without_next_update(self):
        """A staple without nextUpdate, which Exim does serve, is accepted."""
        path = self.pki.ocsp_response("nonext", self.server, next_update=None)
        peer = self.start(tls_ocsp_file=path)
        result = yield self.send(peer, verify="require", require_ocsp=True)
        self.assertEqual(self.outcome(result).status, OK)
        self.assertEqual(result.tls.ocsp, ocsp_verify.OCSP_VERIFIED)

    @defer.inlineCallbacks
    def test_old_staple_without_next_update(self):
        """A staple without nextUpdate more than 15 days old fails a host in
        hosts_require_ocsp (what Debian's exim4 does as a client)."""
        path = self.pki.ocsp_response("old", self.server, next_update=None,
                                      this_update=self.now() - 16 * DAY)
        peer = self.start(tls_ocsp_file=path)
        result = yield self.send(peer, verify="require", require_ocsp=True)
        self.assertEqual(self.outcome(result).message,
                         "TLS session: (certificate status check failed)")

    @defer.inlineCallbacks
    def test_no_staple(self):
        """No tls_ocsp_file on the server: $tls_out_ocsp 1, and a required host fails."""
        peer = self.start()
        result = yield self.send(peer, verify="require", require_ocsp=True)
        self.assertEqual(self.outcome(result).message,
                         "TLS session: (certificate status check failed)")
        peer2 = self.start()
        result = yield self.send(peer2, verify="require", request_ocsp=True)
        self.assertEqual(self.outcome(result).status, OK)
        self.assertEqual(result.tls.ocsp, ocsp_verify.OCSP_NOT_RESPONDED)

    @defer.inlineCallbacks
    def test_not_requested(self):
        """Outside hosts_request_ocsp nothing is asked: $tls_out_ocsp 0."""
        peer = self.start(tls_ocsp_file=self.pki.ocsp_response("good", self.server))
        result = yield self.send(peer, verify="require")
        self.assertEqual(result.tls.ocsp, ocsp_verify.OCSP_NOT_REQUESTED)


@implementer(IHandshakeListener)
class _HandshakeOnly(protocol.Protocol):
    """Starts TLS at once (no SMTP) and judges the session with ClientTLS.check."""

    def __init__(self, tls):
        self.tls = tls
        self.done = defer.Deferred()

    def connectionMade(self):
        self.transport.startTLS(self.tls)

    def handshakeCompleted(self):
        try:
            self.done.callback(self.tls.check(self.tls.connection))
        except TLSFailure as exc:
            self.done.callback(exc)
        self.transport.loseConnection()

    def connectionLost(self, reason):
        if not self.done.called:
            self.done.errback(reason)


class OpenSSLStaplerTests(TLSTestCase):
    """Bad staples served by openssl s_server, which staples anything it is given."""

    @defer.inlineCallbacks
    def handshake(self, staple, **tls_kw):
        server = StaplingServer(self.server.cert_path, self.server.key_path, staple)
        self.addCleanup(server.stop)
        tls_kw.setdefault("verify", "require")
        tls_kw.setdefault("verify_certificates", self.pki.ca.cert_path)
        proto = _HandshakeOnly(ClientTLS(TLSClientSettings(**tls_kw)))
        yield protocol.ClientCreator(reactor, lambda: proto).connectTCP("127.0.0.1", server.port)
        outcome = yield proto.done
        defer.returnValue(outcome)

    @defer.inlineCallbacks
    def test_good(self):
        """A good staple from OpenSSL verifies too."""
        state = yield self.handshake(self.pki.ocsp_response("good", self.server),
                                     require_ocsp=True)
        self.assertEqual(state.ocsp, ocsp_verify.OCSP_VERIFIED)

    @defer.inlineCallbacks
    def test_revoked_required(self):
        """A revoked staple fails a host in hosts_require_ocsp."""
        outcome = yield self.handshake(self.pki.ocsp_response("rev", self.server,
                                                              status="revoked"),
                                       require_ocsp=True)
        self.assertIsInstance(outcome, TLSFailure)
        self.assertEqual(str(outcome), "(certificate status check failed)")

    @defer.inlineCallbacks
    def test_revoked_requested_only(self):
        """A revoked staple for a host only in hosts_request_ocsp: $tls_out_ocsp 3."""
        state = yield self.handshake(self.pki.ocsp_response("rev", self.server,
                                                            status="revoked"),
                                     request_ocsp=True)
        self.assertEqual(state.ocsp, ocsp_verify.OCSP_FAILED)

    @defer.inlineCallbacks
    def test_expired_required(self):
        """A staple past its nextUpdate fails a host in hosts_require_ocsp."""
        now = datetime.datetime.now(datetime.timezone.utc)
        outcome = yield self.handshake(
            self.pki.ocsp_response("exp", self.server, this_update=now - 3 * DAY,
                                   next_update=now - 2 * DAY),
            require_ocsp=True)
        self.assertIsInstance(outcome, TLSFailure)

    @defer.inlineCallbacks
    def test_other_certificate_required(self):
        """A staple about another certificate fails a host in hosts_require_ocsp."""
        other = self.pki.issue("other", "other.example", sans=["other.example"])
        outcome = yield self.handshake(self.pki.ocsp_response("oth", other),
                                       require_ocsp=True)
        self.assertIsInstance(outcome, TLSFailure)
