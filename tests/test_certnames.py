"""Certificate name checking for tls_verify_cert_hostnames (smtp transport).

Exim's rules: SAN DNS names when there are any, else the subject CN; case
ignored; a wildcard only as the whole first label of a name of three or more
labels.
"""

import shutil

from twisted.trial import unittest

from exim_py.smtp.certnames import certificate_matches_name
from tests.support.pki_client import TestPKI


class CertificateNameTests(unittest.TestCase):
    """certificate_matches_name against certificates made by the test CA."""

    def setUp(self):
        self.pki = TestPKI()
        self.addCleanup(shutil.rmtree, self.pki.dir, True)

    def cert(self, cn="unrelated.example", sans=(), ips=()):
        return self.pki.issue("c", cn, sans=sans, ips=ips).cert

    def test_exact_san_match_ignores_case(self):
        """A SAN DNS name matches the host name whatever the case."""
        cert = self.cert(sans=["MX1.Example.COM"])
        self.assertTrue(certificate_matches_name(cert, "mx1.example.com"))
        self.assertFalse(certificate_matches_name(cert, "mx2.example.com"))

    def test_any_of_several_sans(self):
        """Any one of the SAN names is enough."""
        cert = self.cert(sans=["a.example.com", "b.example.com"])
        self.assertTrue(certificate_matches_name(cert, "b.example.com"))

    def test_cn_ignored_when_sans_present(self):
        """With SAN DNS names present the subject CN is not consulted."""
        cert = self.cert(cn="mx.example.com", sans=["other.example.com"])
        self.assertFalse(certificate_matches_name(cert, "mx.example.com"))

    def test_cn_used_without_sans(self):
        """Without any SAN the subject CN is the name checked."""
        cert = self.cert(cn="mx.example.com")
        self.assertTrue(certificate_matches_name(cert, "mx.example.com"))
        self.assertFalse(certificate_matches_name(cert, "mx2.example.com"))

    def test_wildcard_first_label(self):
        """*.example.com matches exactly one label in front of example.com."""
        cert = self.cert(sans=["*.example.com"])
        self.assertTrue(certificate_matches_name(cert, "mx.example.com"))
        self.assertFalse(certificate_matches_name(cert, "example.com"))
        self.assertFalse(certificate_matches_name(cert, "a.mx.example.com"))
        self.assertFalse(certificate_matches_name(cert, "mx.example.org"))

    def test_wildcard_needs_three_labels(self):
        """*.com (a wildcard over a two-label name) matches nothing."""
        cert = self.cert(sans=["*.com"])
        self.assertFalse(certificate_matches_name(cert, "example.com"))

    def test_partial_label_wildcard_matches_nothing(self):
        """A wildcard must be the whole label: f*.example.com does not match foo."""
        cert = self.cert(sans=["f*.example.com"])
        self.assertFalse(certificate_matches_name(cert, "foo.example.com"))

    def test_wildcard_not_in_first_label_matches_nothing(self):
        """mx.*.example.com and *.*.example.com are not valid patterns."""
        cert = self.cert(sans=["mx.*.example.com", "*.*.example.com"])
        self.assertFalse(certificate_matches_name(cert, "mx.a.example.com"))
        self.assertFalse(certificate_matches_name(cert, "b.a.example.com"))

    def test_wildcard_in_cn_follows_same_rules(self):
        """Without SANs a wildcard CN obeys the same rules."""
        cert = self.cert(cn="*.example.net")
        self.assertTrue(certificate_matches_name(cert, "mail.example.net"))
        self.assertFalse(certificate_matches_name(cert, "example.net"))

    def test_bad_pattern_does_not_hide_good_one(self):
        """An invalid SAN pattern is skipped; a valid one beside it still counts."""
        cert = self.cert(sans=["*.com", "mx.example.com"])
        self.assertTrue(certificate_matches_name(cert, "mx.example.com"))

    def test_trailing_dot_in_host_name(self):
        """A fully qualified name with its root dot matches the same SAN."""
        cert = self.cert(sans=["mx.example.com"])
        self.assertTrue(certificate_matches_name(cert, "mx.example.com."))

    def test_ip_address_host(self):
        """A host given as an IP address matches an IP SAN, not a DNS one."""
        cert = self.cert(sans=["mx.example.com"], ips=["192.0.2.7"])
        self.assertTrue(certificate_matches_name(cert, "192.0.2.7"))
        self.assertFalse(certificate_matches_name(cert, "192.0.2.8"))
