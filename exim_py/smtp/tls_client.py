"""Client side TLS for the smtp transport and callouts: contexts and peer checks.

One ``ClientTLS`` is made per STARTTLS.  It builds the pyOpenSSL connection
(trust anchors, CRL, client certificate, SNI, cipher list, OCSP request) and,
once the handshake is over, ``check()`` decides whether the session may be
used, following the smtp transport's options (spec chapters "The smtp
transport" and "Encrypted SMTP connections using TLS/SSL"):

- ``tls_verify_hosts``: the chain must verify (and, for hosts in
  ``tls_verify_cert_hostnames``, the certificate must name the host);
- ``tls_try_verify_hosts``: the same checks are made, but a failure only
  leaves ``$tls_out_certificate_verified`` at 0;
- ``hosts_request_ocsp`` / ``hosts_require_ocsp``: see ``ocsp_verify``;
- ``tls_resumption_hosts``: a session the server gave a ticket for is kept
  (in memory, per process, keyed on the host and the TLS settings) and
  offered on the next connection (spec section "TLS Resumption").  Exim
  keeps them in its "tls" hints database so that its many processes share
  them; exim_py's deliveries run in one process.

Verification happens after the handshake rather than inside OpenSSL's
callbacks, so that every outcome (and its log text) is decided in one place;
nothing is sent on the session before ``check()`` has passed.
"""

import collections
import os
import weakref

from OpenSSL import SSL
from OpenSSL.crypto import X509StoreFlags
from cryptography import x509
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from zope.interface import implementer

from exim_py.smtp import certnames, ocsp_verify


class TLSClientSettings:
    """The TLS choices made for one host, already expanded and matched.

    ``verify`` is "require", "try" or None (no verification attempted);
    ``verify_names`` the names to check the certificate against (None: no
    name check); ``verify_certificates`` "system", a file or a directory.
    """

    def __init__(self, verify=None, verify_certificates="system", verify_names=None, crl=None,
                 certificate=None, privatekey=None, sni=None, require_ciphers=None,
                 request_ocsp=False, require_ocsp=False, resume_key=None):
        self.verify = verify
        self.verify_certificates = verify_certificates
        self.verify_names = verify_names
        self.crl = crl
        self.certificate = certificate
        self.privatekey = privatekey
        self.sni = sni
        self.require_ciphers = require_ciphers
        self.request_ocsp = request_ocsp or require_ocsp
        self.require_ocsp = require_ocsp
        # Where to keep a resumable session (None: host not in
        # tls_resumption_hosts).  The settings are part of the key so that
        # a session is only resumed under the same verification rules.
        self.resume_key = None if resume_key is None else (
            resume_key, verify, verify_certificates, tuple(verify_names or ()), crl,
            certificate, sni, require_ciphers)


# $tls_out_resumption bits (spec "TLS Resumption"): support built, ticket
# requested, session offered, session resumed.  Bit 3 (the server issued a
# ticket) is not visible through pyOpenSSL and stays clear.
RESUME_SUPPORTED, RESUME_REQUESTED, RESUME_OFFERED, RESUME_USED = 1, 2, 4, 16


class SessionCache:
    """The most recent sessions, one per key, oldest dropped first.

    Each entry is ``(context, session, verified)``: OpenSSL resumes a
    session only on a connection made from the context that made it, the
    key covers every setting the context was built from, and ``verified``
    is the certificate verdict of the full handshake.
    """

    def __init__(self, size=1000):
        self.size = size
        self._sessions = collections.OrderedDict()

    def get(self, key):
        return self._sessions.get(key)

    def put(self, key, session):
        self._sessions[key] = session
        self._sessions.move_to_end(key)
        while len(self._sessions) > self.size:
            self._sessions.popitem(last=False)

    def discard(self, key):
        self._sessions.pop(key, None)


SESSIONS = SessionCache()


class TLSFailure(Exception):
    """The TLS session may not be used; ``str()`` is the parenthesised reason Exim logs."""


class TLSState:
    """What a finished handshake tells the rest of the delivery ($tls_out_* and log fields)."""

    def __init__(self):
        self.cipher = None          # $tls_out_cipher, e.g. TLS1.3:TLS_AES_256_GCM_SHA384:256
        self.cipher_std = None      # $tls_out_cipher_std
        self.bits = 0               # $tls_out_bits
        self.version = None         # $tls_out_ver
        self.peerdn = None          # $tls_out_peerdn
        self.peercert = None        # cryptography certificate of the server
        self.certificate_verified = False
        self.ocsp = ocsp_verify.OCSP_NOT_REQUESTED
        self.sni = None
        self.resumption = 0         # $tls_out_resumption bits

    def variables(self):
        """The ``$tls_out_*`` variables (and the deprecated ``$tls_*`` aliases)."""
        values = {
            "tls_out_cipher": self.cipher or "",
            "tls_out_cipher_std": self.cipher_std or "",
            "tls_out_bits": str(self.bits),
            "tls_out_ver": self.version or "",
            "tls_out_peerdn": self.peerdn or "",
            "tls_out_certificate_verified": "1" if self.certificate_verified else "0",
            "tls_out_ocsp": str(self.ocsp),
            "tls_out_sni": self.sni or "",
            "tls_out_resumption": str(self.resumption),
        }
        for name in ("cipher", "bits", "peerdn", "sni", "certificate_verified"):
            values["tls_" + name] = values["tls_out_" + name]
        return values


def oneline_dn(name):
    """A certificate name as OpenSSL's X509_NAME_oneline writes it (Exim's $tls_out_peerdn)."""
    return "".join("/%s=%s" % (attr.rfc4514_attribute_name, attr.value)
                   for rdn in name.rdns for attr in rdn)


def _load_trust(ctx, where):
    if where in (None, "", "system"):
        ctx.set_default_verify_paths()
    elif os.path.isdir(where):
        ctx.load_verify_locations(None, where)
    else:
        ctx.load_verify_locations(where)


def _load_crl(ctx, path):
    store = ctx.get_cert_store()
    with open(path, "rb") as f:
        data = f.read()
    blocks = data.split(b"-----END X509 CRL-----")
    for block in blocks:
        if b"-----BEGIN X509 CRL-----" in block:
            store.add_crl(x509.load_pem_x509_crl(block + b"-----END X509 CRL-----\n"))
    if b"-----BEGIN" not in data:
        store.add_crl(x509.load_der_x509_crl(data))
    store.set_flags(X509StoreFlags.CRL_CHECK)


@implementer(IOpenSSLClientConnectionCreator)
class ClientTLS:
    """Makes the client connection for one STARTTLS and judges it afterwards."""

    def __init__(self, settings, sessions=SESSIONS):
        self.settings = settings
        self.sessions = sessions
        self.verify_errors = []     # (errno, depth) from OpenSSL's chain check
        self.staple = None          # bytes of the stapled OCSP response, if any
        self.connection = None      # the pyOpenSSL connection, once made
        self.problem = None         # why verification failed, for debugging
        self.offered = False        # a stored session was offered for resumption
        self.certificates_seen = False  # the verify callback ran (not a resumption)
        cached = sessions.get(settings.resume_key) if settings.resume_key is not None else None
        self.context = cached[0] if cached else self._make_context()

    def _make_context(self):
        s = self.settings
        ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
        ctx.set_options(SSL.OP_NO_SSLv2 | SSL.OP_NO_SSLv3 | SSL.OP_NO_COMPRESSION)
        if s.verify:
            try:
                _load_trust(ctx, s.verify_certificates)
                if s.crl:
                    _load_crl(ctx, s.crl)
            except (SSL.Error, OSError, ValueError) as exc:
                raise TLSFailure("setting up trust anchors: %s" % (exc,)) from None
            # Accept every chain during the handshake and remember what was
            # wrong: check() decides, so that "try" hosts can carry on.
            ctx.set_verify(SSL.VERIFY_PEER, _verify_callback)
        else:
            # Still asked for (and still accepting) every certificate, so
            # that a full handshake can be told from a resumed one.
            ctx.set_verify(SSL.VERIFY_PEER, _verify_callback)
        if s.certificate:
            try:
                ctx.use_certificate_chain_file(s.certificate)
                ctx.use_privatekey_file(s.privatekey or s.certificate)
            except (SSL.Error, OSError) as exc:
                raise TLSFailure("loading client certificate: %s" % (exc,)) from None
        if s.require_ciphers:
            try:
                ctx.set_cipher_list(s.require_ciphers.encode("ascii"))
            except (SSL.Error, UnicodeEncodeError) as exc:
                raise TLSFailure("tls_require_ciphers: %s" % (exc,)) from None
        if s.request_ocsp:
            ctx.set_ocsp_client_callback(_ocsp_callback)
        return ctx

    def clientConnectionForTLS(self, tlsProtocol):
        conn = SSL.Connection(self.context, None)
        if self.settings.sni:
            conn.set_tlsext_host_name(self.settings.sni.encode("idna"))
        if self.settings.request_ocsp:
            conn.request_ocsp()
        # The context's callbacks find this object through the connection, so
        # that a context kept for resumption serves later connections too.
        _OWNERS[conn] = self
        key = self.settings.resume_key
        cached = self.sessions.get(key) if key is not None else None
        if cached is not None and cached[0] is self.context:
            conn.set_session(cached[1])
            self.offered = True
        conn.set_connect_state()
        self.connection = conn
        return conn

    def check(self, conn):
        """Judge the finished handshake on ``conn``: a ``TLSState``, or ``TLSFailure``."""
        s = self.settings
        state = TLSState()
        state.sni = s.sni
        version = conn.get_protocol_version_name()
        state.version = version
        state.bits = conn.get_cipher_bits() or 0
        name = conn.get_cipher_name()
        state.cipher = "%s:%s:%d" % (version.replace("TLSv", "TLS"), name, state.bits)
        state.cipher_std = name
        if s.resume_key is not None:
            state.resumption = RESUME_SUPPORTED | RESUME_REQUESTED
            if self.offered:
                state.resumption |= RESUME_OFFERED
            # A resumed session has no certificate exchange, so OpenSSL never
            # asked the verify callback about a certificate.
            if self.offered and not self.certificates_seen:
                state.resumption |= RESUME_USED
        resumed = bool(state.resumption & RESUME_USED)
        peer = conn.get_peer_certificate(as_cryptography=True)
        state.peercert = peer
        state.peerdn = oneline_dn(peer.subject) if peer is not None else None

        if s.verify:
            if resumed:
                # Nothing was verified now: the session inherits the verdict
                # given when it was first made.
                problem = None if self.sessions.get(s.resume_key)[2] else "certificate invalid"
            else:
                problem = self._verification_problem(peer)
            if problem is None:
                state.certificate_verified = True
            elif s.verify == "require":
                # Exim says no more than this; the detail is in ``problem``.
                self.problem = problem
                raise TLSFailure("(certificate verification failed)")

        if s.request_ocsp:
            state.ocsp = self._ocsp_state(conn, peer)
            if s.require_ocsp and state.ocsp != ocsp_verify.OCSP_VERIFIED:
                raise TLSFailure("(certificate status check failed)")
        return state

    def remember(self, verified):
        """Keep the session for next time, if the server issued a ticket for it.

        Called when the SMTP dialogue is over: with TLS 1.3 the tickets come
        after the handshake, so they have been read by then.
        """
        key = self.settings.resume_key
        if key is None or self.connection is None:
            return
        session = self.connection.get_session()
        if session is not None:
            self.sessions.put(key, (self.context, session, verified))

    def _verification_problem(self, peer):
        if peer is None:
            return "no certificate"
        if self.verify_errors:
            return "certificate invalid"
        if self.settings.verify_names is not None:
            names = self.settings.verify_names
            if not any(certnames.certificate_matches_name(peer, n) for n in names):
                return "certificate name mismatch"
        return None

    def _ocsp_state(self, conn, peer):
        if self.staple is None:
            return ocsp_verify.OCSP_NOT_RESPONDED
        try:
            ocsp_verify.check_staple(self.staple, peer, self._issuer_of(conn, peer))
        except ocsp_verify.OCSPCheckFailed:
            return ocsp_verify.OCSP_FAILED
        return ocsp_verify.OCSP_VERIFIED

    @staticmethod
    def _issuer_of(conn, peer):
        """The issuer of the server's certificate, from the verified chain or the one sent."""
        chain = conn.get_verified_chain(as_cryptography=True) or []
        chain = list(chain) + list(conn.get_peer_cert_chain(as_cryptography=True) or [])
        for cert in chain:
            if cert.subject == peer.issuer and cert != peer:
                return cert
        return None


# pyOpenSSL connection → the ClientTLS that made it (Twisted owns app_data).
_OWNERS = weakref.WeakKeyDictionary()


def _verify_callback(conn, cert, errno, depth, ok):
    """Accept every chain during the handshake, noting what was wrong (see check())."""
    tls = _OWNERS[conn]
    tls.certificates_seen = True
    if not ok:
        tls.verify_errors.append((errno, depth))
    return True


def _ocsp_callback(conn, data, userdata):
    _OWNERS[conn].staple = data or None
    return True
