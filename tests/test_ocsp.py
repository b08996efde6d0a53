"""Checking stapled OCSP responses (hosts_require_ocsp), without a network.

Responses are made with ``cryptography`` by the test PKI; each test changes
one property and expects exactly that to make the check fail.
"""

import datetime
import shutil

from twisted.trial import unittest

from exim_py.smtp.ocsp_verify import OCSP_VERIFIED, OCSPCheckFailed, check_staple
from tests.support.pki_client import TestPKI

HOUR = datetime.timedelta(hours=1)
DAY = datetime.timedelta(days=1)


def now():
    return datetime.datetime.now(datetime.timezone.utc)


class StapleCheckTests(unittest.TestCase):
    """check_staple accepts exactly a good, current, correctly signed response."""

    def setUp(self):
        self.pki = TestPKI()
        self.addCleanup(shutil.rmtree, self.pki.dir, True)
        self.server = self.pki.issue("server", "mx.example.com", sans=["mx.example.com"])
        self.other = self.pki.issue("other", "other.example.com", sans=["other.example.com"])

    def check(self, path, cert=None, issuer=None):
        with open(path, "rb") as f:
            der = f.read()
        return check_staple(der, cert or self.server.cert, issuer or self.pki.ca.cert)

    def assertFailsWith(self, path, text, **kw):
        with self.assertRaises(OCSPCheckFailed) as caught:
            self.check(path, **kw)
        self.assertIn(text, str(caught.exception))

    def test_good_response(self):
        """A good response signed by the issuer verifies."""
        self.assertEqual(self.check(self.pki.ocsp_response("good", self.server)), OCSP_VERIFIED)

    def test_revoked(self):
        """A revoked status fails."""
        self.assertFailsWith(self.pki.ocsp_response("rev", self.server, status="revoked"),
                             "revoked")

    def test_unknown(self):
        """An unknown status fails."""
        self.assertFailsWith(self.pki.ocsp_response("unk", self.server, status="unknown"),
                             "unknown")

    def test_expired(self):
        """nextUpdate in the past (beyond the skew allowance) fails."""
        path = self.pki.ocsp_response("exp", self.server, this_update=now() - 48 * HOUR,
                                      next_update=now() - 24 * HOUR)
        self.assertFailsWith(path, "expired")

    def test_no_next_update_accepted_while_recent(self):
        """Without nextUpdate a response up to 15 days old is good (Debian's exim4)."""
        path = self.pki.ocsp_response("nonext", self.server, this_update=now() - 14 * DAY,
                                      next_update=None)
        self.assertEqual(self.check(path), OCSP_VERIFIED)

    def test_no_next_update_too_old(self):
        """Without nextUpdate a response more than 15 days old fails."""
        path = self.pki.ocsp_response("nonext", self.server, this_update=now() - 16 * DAY,
                                      next_update=None)
        self.assertFailsWith(path, "too old")

    def test_responder_named_by_key_hash(self):
        """The issuer may be named by key hash instead of by subject."""
        path = self.pki.ocsp_response("bykey", self.server, by_key=True)
        self.assertEqual(self.check(path), OCSP_VERIFIED)

    def test_this_update_in_future(self):
        """thisUpdate later than now plus the skew allowance fails."""
        path = self.pki.ocsp_response("future", self.server, this_update=now() + 2 * HOUR,
                                      next_update=now() + 24 * HOUR)
        self.assertFailsWith(path, "not yet valid")

    def test_response_for_another_certificate(self):
        """A response about a different certificate does not cover the server's."""
        self.assertFailsWith(self.pki.ocsp_response("oth", self.other), "does not cover")

    def test_delegated_responder(self):
        """A responder certificate issued by the CA, carried in the response, with
        the OCSP-signing usage, may sign."""
        responder = self.pki.issue("resp", "OCSP responder", ocsp_signing=True)
        path = self.pki.ocsp_response("deleg", self.server, responder=responder)
        self.assertEqual(self.check(path), OCSP_VERIFIED)

    def test_delegated_responder_without_ocsp_signing_usage(self):
        """A delegated responder without the OCSP-signing usage is refused."""
        responder = self.pki.issue("resp2", "not a responder")
        path = self.pki.ocsp_response("deleg2", self.server, responder=responder)
        self.assertFailsWith(path, "OCSP signing")

    def test_delegated_responder_not_carried(self):
        """A response signed by a key whose certificate is not in it is refused."""
        responder = self.pki.issue("resp3", "OCSP responder", ocsp_signing=True)
        path = self.pki.ocsp_response("deleg3", self.server, responder=responder,
                                      include_responder_cert=False)
        self.assertFailsWith(path, "signer not found")

    def test_signed_by_another_ca(self):
        """A response from a different CA's key does not verify."""
        stranger = TestPKI(name="another CA")
        self.addCleanup(shutil.rmtree, stranger.dir, True)
        path = stranger.ocsp_response("strange", stranger.issue("s", "mx.example.com"))
        self.assertFailsWith(path, "signer not found")

    def test_impostor_with_the_issuers_name(self):
        """A CA with the issuer's name but another key: the signature does not verify."""
        impostor = TestPKI()
        self.addCleanup(shutil.rmtree, impostor.dir, True)
        path = impostor.ocsp_response("impostor", impostor.issue("s", "mx.example.com"))
        self.assertFailsWith(path, "does not verify")

    def test_malformed(self):
        """Garbage instead of a DER response fails cleanly."""
        with self.assertRaises(OCSPCheckFailed):
            check_staple(b"not an OCSP response", self.server.cert, self.pki.ca.cert)
