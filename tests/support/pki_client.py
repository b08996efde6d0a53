"""A throw-away PKI for the TLS client tests: a CA, server certificates, OCSP.

Everything is made with ``cryptography`` in a temporary directory (EC P-256
keys: fast to make, and both OpenSSL and GnuTLS accept them).  Files are
readable by group/others so that Debian's exim4, which drops to the
Debian-exim user, can read its certificate and key.
"""

import datetime
import ipaddress
import os
import tempfile

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ONE_DAY = datetime.timedelta(days=1)


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "exim_py tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


class Issued:
    """A certificate and its key, with the paths of their PEM files."""

    def __init__(self, cert, key, cert_path, key_path):
        self.cert = cert
        self.key = key
        self.cert_path = cert_path
        self.key_path = key_path


class TestPKI:
    """One CA and what it issues, all under ``self.dir``."""

    def __init__(self, directory=None, name="exim_py test CA"):
        self.dir = directory or tempfile.mkdtemp(prefix="exim-py-pki-")
        os.chmod(self.dir, 0o755)
        self._serial = 1000
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder()
                .subject_name(_name(name)).issuer_name(_name(name))
                .public_key(key.public_key()).serial_number(self._next_serial())
                .not_valid_before(_now() - ONE_DAY).not_valid_after(_now() + 30 * ONE_DAY)
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(True, False, False, False, False, True, True,
                                             False, False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                               critical=False)
                .sign(key, hashes.SHA256()))
        self.ca = self._save("ca", cert, key)

    def _next_serial(self):
        self._serial += 1
        return self._serial

    def _save(self, stem, cert, key):
        cert_path = os.path.join(self.dir, stem + ".crt")
        key_path = os.path.join(self.dir, stem + ".key")
        with open(cert_path, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        with open(key_path, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.TraditionalOpenSSL,
                                      serialization.NoEncryption()))
        os.chmod(cert_path, 0o644)
        os.chmod(key_path, 0o644)
        return Issued(cert, key, cert_path, key_path)

    def issue(self, stem, cn, sans=(), ips=(), ocsp_signing=False, expired=False):
        """A leaf certificate with subject CN ``cn`` and the given SAN DNS names / IPs."""
        key = ec.generate_private_key(ec.SECP256R1())
        start = _now() - (10 * ONE_DAY if expired else ONE_DAY)
        end = _now() - ONE_DAY if expired else _now() + 20 * ONE_DAY
        builder = (x509.CertificateBuilder()
                   .subject_name(_name(cn)).issuer_name(self.ca.cert.subject)
                   .public_key(key.public_key()).serial_number(self._next_serial())
                   .not_valid_before(start).not_valid_after(end)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None),
                                  critical=True))
        entries = [x509.DNSName(n) for n in sans]
        entries += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        if entries:
            builder = builder.add_extension(x509.SubjectAlternativeName(entries), critical=False)
        usages = [ExtendedKeyUsageOID.OCSP_SIGNING] if ocsp_signing else [
            ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        cert = builder.sign(self.ca.key, hashes.SHA256())
        return self._save(stem, cert, key)

    def ocsp_response(self, stem, issued, status="good", this_update=None, next_update="default",
                      responder=None, include_responder_cert=True, by_key=False):
        """Write a DER OCSP response about ``issued`` to ``<stem>.der``; returns its path.

        ``status`` is good / revoked / unknown; ``next_update`` None leaves
        the field out; ``responder`` (an ``Issued``) signs instead of the CA.
        The responder is named by its subject, as ``openssl ocsp`` does, unless
        ``by_key`` (GnuTLS, hence Debian's exim4, cannot find a signer named by
        key hash whose certificate the response does not carry).
        """
        this_update = this_update or _now() - datetime.timedelta(hours=1)
        if next_update == "default":
            next_update = _now() + ONE_DAY
        cert_status = {"good": ocsp.OCSPCertStatus.GOOD, "revoked": ocsp.OCSPCertStatus.REVOKED,
                       "unknown": ocsp.OCSPCertStatus.UNKNOWN}[status]
        builder = ocsp.OCSPResponseBuilder().add_response(
            cert=issued.cert, issuer=self.ca.cert, algorithm=hashes.SHA1(),
            cert_status=cert_status, this_update=this_update, next_update=next_update,
            revocation_time=this_update if status == "revoked" else None,
            revocation_reason=None)
        signer = responder or self.ca
        encoding = ocsp.OCSPResponderEncoding.HASH if by_key else ocsp.OCSPResponderEncoding.NAME
        builder = builder.responder_id(encoding, signer.cert)
        if responder is not None and include_responder_cert:
            builder = builder.certificates([responder.cert])
        response = builder.sign(signer.key, hashes.SHA256())
        path = os.path.join(self.dir, stem + ".der")
        with open(path, "wb") as f:
            f.write(response.public_bytes(serialization.Encoding.DER))
        os.chmod(path, 0o644)
        return path

    def crl(self, stem, revoked=()):
        """Write a PEM CRL revoking the ``Issued`` certificates in ``revoked``; returns its path."""
        builder = (x509.CertificateRevocationListBuilder()
                   .issuer_name(self.ca.cert.subject)
                   .last_update(_now() - ONE_DAY).next_update(_now() + ONE_DAY))
        for issued in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(issued.cert.serial_number)
                .revocation_date(_now() - ONE_DAY).build())
        crl = builder.sign(self.ca.key, hashes.SHA256())
        path = os.path.join(self.dir, stem + ".crl")
        with open(path, "wb") as f:
            f.write(crl.public_bytes(serialization.Encoding.PEM))
        os.chmod(path, 0o644)
        return path
