"""Checking a stapled OCSP response the way Exim's smtp transport does.

A server in ``hosts_request_ocsp`` is asked for a certificate status
(RFC 6066 section 8); what it staples is checked whenever it arrives, and a
failed check is fatal only for hosts in ``hosts_require_ocsp`` (spec, smtp
transport options; the OCSP section of the experimental spec).  A response
passes when:

- it is a successful response whose signature verifies with the issuer's key,
  or with a delegated responder's certificate that the response itself carries,
  that the issuer signed, that is within its validity period and that has the
  OCSP-signing extended key usage (RFC 6960 section 4.2.2.2);
- it has a single response for the server's own certificate (serial number and
  issuer key hash) saying "good";
- thisUpdate is not in the future and nextUpdate, when present, not in the
  past, each with Exim's five-minute allowance for clock skew.  A response
  without nextUpdate is accepted while its thisUpdate is at most 15 days
  old: that is what Debian's Exim 4.96 (built with GnuTLS, whose limit it
  is) does, checked against it; Exim's OpenSSL build sets no limit.

The result is one of Exim's ``$tls_out_ocsp`` codes.
"""

import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID

# $tls_out_ocsp values (spec, variable $tls_in_ocsp).
OCSP_NOT_REQUESTED = 0
OCSP_NOT_RESPONDED = 1
OCSP_NOT_VERIFIED = 2
OCSP_FAILED = 3
OCSP_VERIFIED = 4

SKEW = datetime.timedelta(seconds=300)
MAX_AGE_WITHOUT_NEXT_UPDATE = datetime.timedelta(days=15)


class OCSPCheckFailed(Exception):
    """The stapled response is unusable; the message says why (for the debug/log text)."""


def _verify_signature(public_key, signature, data, hash_algorithm):
    if isinstance(public_key, rsa.RSAPublicKey):
        public_key.verify(signature, data, padding.PKCS1v15(), hash_algorithm)
    elif isinstance(public_key, ec.EllipticCurvePublicKey):
        public_key.verify(signature, data, ec.ECDSA(hash_algorithm))
    else:
        # Ed25519 / Ed448 keys take no hash algorithm.
        public_key.verify(signature, data)


def _key_hash(cert, algorithm):
    """Hash of ``cert``'s public key bits, as OCSP key identifiers use (RFC 6960 4.1.1)."""
    digest = hashes.Hash(algorithm)
    digest.update(_raw_public_key(cert))
    return digest.finalize()


def _raw_public_key(cert):
    """The subjectPublicKey bits of ``cert`` (what RFC 6960 hashes for key ids)."""
    key = cert.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        return key.public_bytes(serialization.Encoding.X962,
                                serialization.PublicFormat.UncompressedPoint)
    if isinstance(key, rsa.RSAPublicKey):
        return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _is_responder(response, cert):
    if response.responder_key_hash is not None:
        return response.responder_key_hash == _key_hash(cert, hashes.SHA1())
    return response.responder_name == cert.subject


def _signed_by(cert, issuer):
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _responder_certificate(response, issuer, now):
    """The certificate whose key signed ``response``: the issuer or a delegated responder."""
    if _is_responder(response, issuer):
        return issuer
    for cert in response.certificates:
        if not _is_responder(response, cert):
            continue
        if not _signed_by(cert, issuer):
            raise OCSPCheckFailed("delegated OCSP responder not issued by the certificate's issuer")
        if not cert.not_valid_before_utc - SKEW <= now <= cert.not_valid_after_utc + SKEW:
            raise OCSPCheckFailed("delegated OCSP responder certificate is not valid now")
        try:
            eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except x509.ExtensionNotFound:
            eku = ()
        if ExtendedKeyUsageOID.OCSP_SIGNING not in eku:
            raise OCSPCheckFailed("delegated OCSP responder lacks the OCSP signing usage")
        return cert
    raise OCSPCheckFailed("OCSP response signer not found")


def _single_response_for(response, cert, issuer):
    for single in response.responses:
        if single.serial_number != cert.serial_number:
            continue
        if single.issuer_key_hash == _key_hash(issuer, single.hash_algorithm):
            return single
    raise OCSPCheckFailed("OCSP response does not cover the server certificate")


def check_staple(der, cert, issuer, now=None):
    """Check stapled response ``der`` for server certificate ``cert`` issued by ``issuer``.

    ``cert`` and ``issuer`` are ``cryptography`` certificates.  Returns
    ``OCSP_VERIFIED``, or raises ``OCSPCheckFailed`` (meaning ``OCSP_FAILED``).
    """
    if now is None:
        now = datetime.datetime.now(datetime.timezone.utc)
    try:
        response = ocsp.load_der_ocsp_response(der)
    except ValueError as exc:
        raise OCSPCheckFailed("malformed OCSP response: %s" % (exc,)) from None
    if response.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        raise OCSPCheckFailed("OCSP response status %s" % (response.response_status.name.lower(),))
    if issuer is None:
        raise OCSPCheckFailed("no issuer certificate to check the OCSP response against")
    signer = _responder_certificate(response, issuer, now)
    try:
        _verify_signature(signer.public_key(), response.signature,
                          response.tbs_response_bytes, response.signature_hash_algorithm)
    except InvalidSignature:
        raise OCSPCheckFailed("OCSP response signature does not verify") from None
    single = _single_response_for(response, cert, issuer)
    if single.certificate_status == ocsp.OCSPCertStatus.REVOKED:
        raise OCSPCheckFailed("server certificate revoked")
    if single.certificate_status != ocsp.OCSPCertStatus.GOOD:
        raise OCSPCheckFailed("server certificate status unknown")
    if single.this_update_utc > now + SKEW:
        raise OCSPCheckFailed("OCSP response not yet valid")
    if single.next_update_utc is not None and single.next_update_utc < now - SKEW:
        raise OCSPCheckFailed("OCSP response has expired")
    too_old = now - MAX_AGE_WITHOUT_NEXT_UPDATE
    if single.next_update_utc is None and single.this_update_utc < too_old:
        raise OCSPCheckFailed("OCSP response without nextUpdate is too old")
    return OCSP_VERIFIED
