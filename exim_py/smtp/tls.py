"""Server-side TLS: pyOpenSSL contexts for STARTTLS and TLS-on-connect.

Spec chapter "Encrypted SMTP connections using TLS/SSL" and the tls_* main
options.  The certificate options are expanded per connection; when they
mention $tls_in_sni (or $tls_sni) and the client sends Server Name
Indication, they are expanded again with the name and the connection moves
to a context holding the certificate chosen for it.  Client certificates are
asked for from hosts in tls_verify_hosts (required) and
tls_try_verify_hosts (optional) and checked against tls_verify_certificates.
The OCSP staple comes from tls_ocsp_file (DER; a list matches the
certificate list in order) when the client asks for it.  tls_dhparam gives
the DHE group: a PKCS#3 file, a standard group's name (smtp/dhprimes.py) or
"none"; a group above tls_dh_max_bits is not used, as in an OpenSSL-built
Exim.
"""

import datetime
import functools
import os
import tempfile

from OpenSSL import SSL, crypto
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from zope.interface import implementer

from exim_py.errors import ConfigError
from exim_py.smtp import dhprimes

_SNI_VARIABLES = ("$tls_in_sni", "${tls_in_sni}", "$tls_sni", "${tls_sni}", "$tls_out_sni", "${tls_out_sni}")


def _split(text):
    from exim_py.daemon import split_list
    return split_list(text)


def self_signed(hostname):
    """A throw-away certificate and key (PEM paths) for when tls_certificate is unset."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=365))
            .sign(key, hashes.SHA256()))
    fd, path = tempfile.mkstemp(prefix="exim_py-selfsigned-", suffix=".pem")
    with os.fdopen(fd, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return path


# OpenSSL reasons after which Exim names the protocol version in the error
# (tls-openssl.c, tls_server_start).
_VERSION_REASONS = frozenset(("wrong version number", "unsupported protocol", "unknown protocol",
                              "version too low"))


def handshake_failure(reason, connection):
    """Exim's text for a failed SSL_accept: ``(SSL_accept): `` and the OpenSSL
    error as ERR_error_string writes it, or the peer's close."""
    error = getattr(reason, "value", None)
    if isinstance(error, SSL.Error) and error.args and error.args[0]:
        library, function, why = error.args[0][0]
        where = "SSL_accept"
        if why in _VERSION_REASONS and connection is not None:
            where += " (%s)" % connection.get_protocol_version_name()
        return "(%s): %s" % (where, openssl_error_string(library, function, why))
    return "SSL_accept: TCP connection closed by peer"


@functools.lru_cache(maxsize=64)
def openssl_error_string(library, function, why):
    """ERR_error_string's "error:0A00010B:SSL routines::wrong version number".

    pyOpenSSL keeps only the texts of an error, so the packed code (OpenSSL 3:
    library << 23 | reason) is found again by asking OpenSSL for the texts
    of the candidate codes."""
    from OpenSSL._util import ffi, lib

    def text(function_pointer):
        return ffi.string(function_pointer).decode("ascii", "replace") \
            if function_pointer != ffi.NULL else None

    for number in range(1, 128):
        if text(lib.ERR_lib_error_string(number << 23)) == library:
            for code in range(number << 23, (number << 23) + 4096):
                if text(lib.ERR_reason_error_string(code)) == why:
                    return "error:%08X:%s:%s:%s" % (code, library, function, why)
            break
    return "error:%s:%s:%s" % (library, function, why)


def peer_dn(x509name):
    """Exim's $tls_in_peerdn for an OpenSSL build: '/O=.../CN=...'."""
    return "".join("/%s=%s" % (k.decode(), v.decode("utf-8", "replace"))
                   for k, v in x509name.get_components())


def cipher_text(connection):
    """$tls_in_cipher as an OpenSSL-built Exim gives it: 'TLS1.3:TLS_AES_256_GCM_SHA384:256'."""
    version = connection.get_protocol_version_name().replace("TLSv", "TLS")
    return "%s:%s:%s" % (version, connection.get_cipher_name(), connection.get_cipher_bits())


class _Connection(SSL.Connection):
    """An OpenSSL connection that knows its SMTP session (for SNI and verification).

    (Twisted keeps the connection's app data for itself.)
    """

    session = None
    verify_failed = False


@implementer(IOpenSSLServerConnectionCreator)
class _Creator:
    """Gives Twisted a connection made from this session's context."""

    def __init__(self, server_tls, context, session):
        self.server_tls = server_tls
        self.context = context
        self.session = session

    def serverConnectionForTLS(self, tls_protocol):
        connection = _Connection(self.context, None)
        connection.session = self.session
        return connection


class ServerTLS:
    """The server's TLS settings for one configuration."""

    def __init__(self, policy, certificate, privatekey, require_ciphers=None, dhparam=None,
                 verify_certificates=None, ocsp_file=None):
        self.policy = policy
        self.certificate = certificate
        self.privatekey = privatekey
        self.require_ciphers = require_ciphers
        self.dhparam = dhparam
        self.verify_certificates = verify_certificates
        self.ocsp_file = ocsp_file
        self._contexts = {}
        self._self_signed = None

    @classmethod
    def from_config(cls, config, policy):
        main = config.main
        return cls(policy, main.tls_certificate, main.tls_privatekey,
                   getattr(main, "tls_require_ciphers", None), getattr(main, "tls_dhparam", None),
                   getattr(main, "tls_verify_certificates", None), getattr(main, "tls_ocsp_file", None))

    # -- choosing files ----------------------------------------------------

    def _expand(self, text, session):
        if text is None:
            return None
        value = self.policy._expand(text, session)
        if value is None:
            raise ConfigError("failed to expand TLS option %r" % (text,))
        return value

    def files(self, session):
        """[(certificate path, key path)] for this session (several: RSA + ECDSA)."""
        certs = _split(self._expand(self.certificate, session) or "")
        if not certs:
            if self._self_signed is None:
                self._self_signed = self_signed(self.policy.primary_hostname)
            return [(self._self_signed, self._self_signed)]
        keys = _split(self._expand(self.privatekey, session) or "") or certs
        if len(keys) != len(certs):
            raise ConfigError("tls_certificate and tls_privatekey lists differ in length")
        return list(zip(certs, keys))

    def sni_sensitive(self):
        texts = [self.certificate or "", self.privatekey or "", self.verify_certificates or ""]
        return any(v in t for t in texts for v in _SNI_VARIABLES)

    def _verify_mode(self, session):
        if self.policy.host_in("tls_verify_hosts", session):
            return "require"
        if self.policy.host_in("tls_try_verify_hosts", session):
            return "try"
        return None

    # -- contexts ----------------------------------------------------------

    def context_for(self, session):
        """What Twisted's startTLS needs for this session."""
        return _Creator(self, self._context(session), session)

    def _context(self, session):
        files = tuple(self.files(session))
        verify = self._verify_mode(session)
        cas = self._expand(self.verify_certificates, session) if verify else None
        proofs = tuple(_split(self._expand(self.ocsp_file, session) or "")) if self.ocsp_file else ()
        dhparam = (self._expand(self.dhparam, session) if self.dhparam else "").strip()
        key = (files, verify, cas, proofs, dhparam)
        ctx = self._contexts.get(key)
        if ctx is None:
            ctx = self._contexts[key] = self._build(files, verify, cas, proofs, dhparam)
        return ctx

    def _dh_parameters(self, dhparam):
        """PKCS#3 PEM data for tls_dhparam's value, or None for no DHE.

        Unset (and "default") stands for Exim's own default prime,
        exim.dev.20160529.3, as in an OpenSSL-built Exim."""
        if dhparam == "none":
            return None
        if dhparam.startswith("/"):
            try:
                with open(dhparam, "rb") as f:
                    data = f.read()
            except OSError as e:
                raise ConfigError("could not read dhparams file %s: %s" % (dhparam, e.strerror))
        else:
            name = dhprimes.canonical(dhparam or "default")
            if name not in dhprimes.NAMES:
                raise ConfigError('Unknown standard DH prime "%s"' % dhparam)
            if name in dhprimes.DEPRECATED_NAMES:
                self._warn_deprecated(name)
            data = dhprimes.pem(name)
        bits = dhprimes.prime_bits(data)
        if bits is None:
            raise ConfigError("could not read dhparams file %s" % dhparam)
        limit = self.policy._option("tls_dh_max_bits", 2236)
        if limit and bits > limit:
            return None            # Exim: "dhparams ... is > tls_dh_max_bits limit": no DHE
        return data

    def _warn_deprecated(self, name):
        logger = self.policy.logger
        if logger is None:
            return
        line = "WARNING: deprecated Diffie-Hellman parameter '%s' used" % name
        # panic() writes the main log too
        (logger.panic if name in dhprimes.FORBIDDEN_NAMES else logger.main)(line)

    def _load_dh(self, ctx, dhparam):
        data = self._dh_parameters(dhparam)
        if data is None:
            return
        # pyOpenSSL reads DH parameters only from a file
        fd, path = tempfile.mkstemp(prefix="exim_py-dh-", suffix=".pem")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            ctx.load_tmp_dh(path.encode())
        except SSL.Error as e:
            raise ConfigError("DH parameters from %s: %s" % (dhparam or "default", e))
        finally:
            os.unlink(path)

    def _build(self, files, verify, cas, proofs=(), dhparam=""):
        ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
        ctx.set_options(SSL.OP_NO_SSLv2 | SSL.OP_NO_SSLv3 | SSL.OP_NO_COMPRESSION)
        ctx.set_session_id(b"exim_py")
        for cert_path, key_path in files:
            try:
                ctx.use_certificate_chain_file(cert_path)
                ctx.use_privatekey_file(key_path)
            except (SSL.Error, OSError) as e:
                raise ConfigError("TLS error on certificate %s / key %s: %s" % (cert_path, key_path, e))
        if self.require_ciphers:
            try:
                ctx.set_cipher_list(self.require_ciphers.encode("ascii"))
            except SSL.Error as e:
                raise ConfigError("tls_require_ciphers: %s" % (e,))
        self._load_dh(ctx, dhparam)
        if verify:
            if cas == "system":
                ctx.set_default_verify_paths()
            elif cas:
                if os.path.isdir(cas):
                    ctx.load_verify_locations(None, cas)
                else:
                    ctx.load_verify_locations(cas)
                    ctx.set_client_ca_list([crypto.load_certificate(crypto.FILETYPE_PEM, pem).get_subject()
                                            for pem in _pem_blocks(cas)])
            mode = SSL.VERIFY_PEER
            if verify == "require":
                mode |= SSL.VERIFY_FAIL_IF_NO_PEER_CERT
            ctx.set_verify(mode, _try_verify if verify == "try" else _strict_verify)
        if self.sni_sensitive():
            ctx.set_tlsext_servername_callback(self._servername)
        if proofs:
            self._staple(ctx, files, proofs)
        return ctx

    @staticmethod
    def _staple(ctx, files, proofs):
        """Answer a client's status request with the tls_ocsp_file for the certificate in use."""
        by_cert = {}
        for (cert_path, _), proof in zip(files, proofs):
            with open(cert_path, "rb") as f:
                leaf = crypto.load_certificate(crypto.FILETYPE_PEM, f.read())
            by_cert[crypto.dump_certificate(crypto.FILETYPE_ASN1, leaf)] = proof

        def staple(connection, data):
            cert = connection.get_certificate()
            path = by_cert.get(crypto.dump_certificate(crypto.FILETYPE_ASN1, cert)) if cert else None
            try:
                with open(path, "rb") as f:
                    return f.read()
            except (OSError, TypeError):
                return b""

        ctx.set_ocsp_server_callback(staple)

    def _servername(self, connection):
        name = connection.get_servername()
        if name is None:
            return
        session = connection.session
        session.tls_sni = name.decode("ascii", "replace")
        connection.set_context(self._context(session))

    # -- after the handshake -----------------------------------------------

    def record(self, session, transport):
        """Fill the $tls_in_* values from the finished handshake."""
        connection = transport.getHandle()
        session.tls_cipher = cipher_text(connection)
        session.tls_version = connection.get_protocol_version_name()
        name = connection.get_servername()
        if name is not None:
            session.tls_sni = name.decode("ascii", "replace")
        cert = connection.get_peer_certificate()
        if cert is not None:
            session.tls_peerdn = peer_dn(cert.get_subject())
            session.tls_certificate_verified = not connection.verify_failed
        else:
            session.tls_peerdn = None
            session.tls_certificate_verified = False


def _strict_verify(connection, cert, errno, depth, ok):
    """tls_verify_hosts: a certificate that does not verify ends the handshake."""
    if not ok:
        connection.verify_failed = True
    return bool(ok)


def _try_verify(connection, cert, errno, depth, ok):
    """tls_try_verify_hosts: note the failure ($tls_in_certificate_verified) and go on."""
    if not ok:
        connection.verify_failed = True
    return True


def _pem_blocks(path):
    with open(path, "rb") as f:
        data = f.read()
    marker = b"-----END CERTIFICATE-----"
    return [block + marker for block in data.split(marker) if b"-----BEGIN CERTIFICATE-----" in block]
