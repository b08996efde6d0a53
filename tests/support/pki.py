"""A test PKI for server-side TLS (and for anyone needing a chain or a client cert).

``ServerPKI(directory=None)`` makes, in a temporary directory (or the one
given):

- ``root``: a self-signed root CA (``ca.crt``/``ca.key``), from
  ``pki_client.TestPKI``;
- ``intermediate``: an intermediate CA signed by the root;
- ``server(stem, names, rsa=False)``: a leaf for the DNS ``names`` issued by
  the intermediate, whose ``chain_path`` file holds leaf + intermediate (what
  tls_certificate points at); ``rsa=True`` for an RSA key instead of ECDSA;
- ``client(stem, cn)``: a client certificate issued by the root;
- ``server_ocsp(stem, leaf, status)``: an OCSP response for a server leaf.

The fixed set most tests want comes from ``standard()``: server certificates
for ``mx.test.example`` (ECDSA and RSA), an SNI alternate
``alt.test.example``, and a client certificate ``client.test.example``.
All files are world-readable so Debian's exim4 (which runs as Debian-exim)
can read them too.
"""

import copy
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.support.pki_client import ONE_DAY, Issued, TestPKI, _name, _now


class ServerPKI(TestPKI):
    """Root CA → intermediate CA → server and client certificates."""

    def __init__(self, directory=None):
        super().__init__(directory, name="exim_py test root CA")
        self.root = self.ca
        self.intermediate = self._sign("intermediate", "exim_py test intermediate CA", self.root,
                                       ca=True)

    def _sign(self, stem, cn, issuer, ca=False, sans=(), usages=(), rsa_key=False):
        key = rsa.generate_private_key(65537, 2048) if rsa_key else ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder()
                   .subject_name(_name(cn)).issuer_name(issuer.cert.subject)
                   .public_key(key.public_key()).serial_number(self._next_serial())
                   .not_valid_before(_now() - ONE_DAY).not_valid_after(_now() + 20 * ONE_DAY)
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if sans:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(n) for n in sans]), critical=False)
        if usages:
            builder = builder.add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
        return self._save(stem, builder.sign(issuer.key, hashes.SHA256()), key)

    def server(self, stem, names, rsa=False):
        """A server leaf for ``names`` (the first is the CN), with a chain file."""
        leaf = self._sign(stem, names[0], self.intermediate, sans=names, rsa_key=rsa,
                          usages=[ExtendedKeyUsageOID.SERVER_AUTH])
        leaf.chain_path = os.path.join(self.dir, stem + "-chain.pem")
        with open(leaf.chain_path, "wb") as f:
            for cert in (leaf.cert, self.intermediate.cert):
                f.write(cert.public_bytes(serialization.Encoding.PEM))
        os.chmod(leaf.chain_path, 0o644)
        return leaf

    def server_ocsp(self, stem, leaf, status="good"):
        """A DER OCSP response about server ``leaf``, signed by its issuer (the
        intermediate), for tls_ocsp_file; returns the file's path."""
        view = copy.copy(self)
        view.ca = self.intermediate
        return TestPKI.ocsp_response(view, stem, leaf, status=status)

    def client(self, stem, cn):
        """A client certificate issued directly by the root."""
        return self._sign(stem, cn, self.root, usages=[ExtendedKeyUsageOID.CLIENT_AUTH])


class StandardPKI:
    """The usual set: attributes ``pki``, ``ecdsa``, ``rsa``, ``alt``, ``client``, ``stranger``."""

    def __init__(self, directory=None):
        self.pki = ServerPKI(directory)
        self.dir = self.pki.dir
        self.ca_path = self.pki.root.cert_path
        self.ecdsa = self.pki.server("mx", ["mx.test.example"])
        self.rsa = self.pki.server("mx-rsa", ["mx.test.example"], rsa=True)
        self.alt = self.pki.server("alt", ["alt.test.example"])
        self.client = self.pki.client("client", "client.test.example")
        # a client certificate from a CA the server does not trust
        self.stranger = TestPKI(os.path.join(self.dir, "stranger") if _mkdir(self.dir, "stranger")
                                else None, name="untrusted CA").issue("stranger", "stranger.example")


def _mkdir(base, name):
    os.makedirs(os.path.join(base, name), exist_ok=True)
    return True


def standard(directory=None):
    """A StandardPKI (see the module docstring)."""
    return StandardPKI(directory)


__all__ = ["Issued", "ServerPKI", "StandardPKI", "standard"]
