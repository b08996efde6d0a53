"""The ESMTP client's session set-up: greeting, EHLO/HELO, STARTTLS and AUTH.

A mixin of ``client.ESMTPClient`` (the states before the first MAIL), kept
apart from the transaction states.  It follows the spec's "Errors in
outgoing SMTP": a refused greeting or EHLO is a host error; a failed TLS
negotiation may ask for a new connection in clear (tls_tempfail_tryclear);
AUTH tries each mechanism both sides have (RFC 4954), RFC 3207 4.2 says
to forget what the server said before TLS.
"""

import base64
import binascii

from exim_py.errors import EximError
from exim_py.smtp.outbound import (DEFER, ERRNO_AUTHFAIL, ERRNO_TLSFAILURE, ERRNO_TLSREQUIRED,
                                   FAIL, ClientSettings, reply_text)


def _without_tls(settings):
    clone = ClientSettings.__new__(ClientSettings)
    clone.__dict__.update(settings.__dict__)
    clone.tls = None
    return clone


class SessionSetup:
    """Greeting, EHLO, STARTTLS and AUTH states of ``client.ESMTPClient``."""

    def smtpState_banner(self, code, lines, arg):
        self.result.greeting = reply_text(code, lines)
        if code // 100 != 2:
            # A permanent error on connection fails every address; a
            # temporary one defers (spec, "Errors in outgoing SMTP").
            self._host_error(FAIL if code >= 500 else DEFER, self._smtp_error(code, lines),
                             reply=reply_text(code, lines), code=code)
            return
        self._greet()

    def _greet(self):
        if self.settings.lmtp:
            self._send("LHLO " + self.settings.helo_data, "ehlo")
        elif self.settings.esmtp:
            self._send("EHLO " + self.settings.helo_data, "ehlo")
        else:
            self._send("HELO " + self.settings.helo_data, "helo")

    def smtpState_ehlo(self, code, lines, arg):
        if code // 100 != 2:
            if self._tls is not None or self.settings.lmtp:
                self._host_error(FAIL if code >= 500 else DEFER, self._smtp_error(code, lines),
                                 reply=reply_text(code, lines), code=code)
                return
            self._send("HELO " + self.settings.helo_data, "helo")
            return
        self.extensions = {}
        for line in lines[1:]:
            words = line.split()
            if words:
                self.extensions[words[0].upper()] = words[1:]
        self.result.extensions = self.extensions
        self._after_hello()

    def smtpState_helo(self, code, lines, arg):
        if code // 100 != 2:
            self._host_error(FAIL if code >= 500 else DEFER, self._smtp_error(code, lines),
                             reply=reply_text(code, lines), code=code)
            return
        self.extensions = {}
        self._after_hello()

    def _after_hello(self):
        s = self.settings
        if self._tls is None and s.tls and "STARTTLS" in self.extensions:
            self._send("STARTTLS", "starttls")
            return
        if self._tls is None and s.tls == "require":
            self._host_error(DEFER, "a TLS session is required, but the server did not offer "
                             "TLS support", ERRNO_TLSREQUIRED)
            return
        if s.auth and "AUTH" in self.extensions and self.result.authenticated is None:
            offered = [m.upper() for m in self.extensions["AUTH"]]
            self._auth_candidates = [a for a in s.authenticators
                                     if a.public_name.upper() in offered]
            if self._auth_candidates:
                self._next_authenticator()
                return
        if s.auth == "require" and self.result.authenticated is None:
            self._host_error(DEFER, "authentication required but %s" % (
                "authentication attempt(s) failed" if self._auth_candidates else
                "no mutually supported authenticator"), ERRNO_AUTHFAIL)
            return
        self._next_transaction()

    def smtpState_starttls(self, code, lines, arg):
        if code // 100 != 2:
            if self.settings.tls == "require" or (code < 500 and
                                                  not self.settings.tls_tempfail_tryclear):
                self._host_error(DEFER, self._smtp_error(code, lines),
                                 reply=reply_text(code, lines), code=code)
                return
            # Not required: carry on in clear on this same session.
            self.settings = _without_tls(self.settings)
            self._after_hello()
            return
        self._start_tls()

    def _start_tls(self):
        # pyOpenSSL and cryptography are loaded by the first session that
        # starts TLS, not by every process that may deliver by SMTP.
        from exim_py.smtp import tls_client
        try:
            self._tls = tls_client.ClientTLS(self.settings.tls_settings)
        except tls_client.TLSFailure as exc:
            self._tls_failed("TLS session: %s" % (exc,))
            return
        self._expect("handshake", stage="initial connection" if self.settings.tls_on_connect
                     else "STARTTLS")
        # Anything that came in clear after the 220 must not be read as if it
        # had come over TLS (the STARTTLS response injection attack).
        self.clearLineBuffer()
        try:
            self.transport.startTLS(self._tls)
        except (tls_client.SSL.Error, ValueError) as exc:
            self._tls_failed("TLS session: (SSL_connect): %s" % (exc,))

    def handshakeCompleted(self):
        from exim_py.smtp import tls_client
        if self._pending and self._pending[0][0] == "handshake":
            self._pending.pop(0)
            self._disarm()
        try:
            self.result.tls = self._tls.check(self._tls.connection)
        except tls_client.TLSFailure as exc:
            self._tls_failed("TLS session: %s" % (exc,))
            return
        if self.settings.tls_on_connect:
            self._expect("banner", stage="initial connection")
            return
        # RFC 3207 4.2: forget what the server said before TLS and ask again.
        self.extensions = {}
        self._send("EHLO " + self.settings.helo_data, "ehlo")

    def _tls_failed(self, message):
        """TLS could not be set up (handshake, verification or OCSP): unless TLS is
        required, tls_tempfail_tryclear asks for a new connection in clear."""
        if self.settings.tls != "require" and self.settings.tls_tempfail_tryclear:
            self.result.retry_in_clear = True
        self._host_error(DEFER, message, ERRNO_TLSFAILURE)

    def _next_authenticator(self):
        while self._auth_candidates:
            auth = self._auth_candidates.pop(0)
            sasl = auth.client_start(self.extensions.get("AUTH", []))
            if sasl is None:
                continue
            self._sasl = (auth, sasl)
            initial = sasl.initial_response()
            command = "AUTH " + auth.public_name
            if initial is not None:
                command += " " + (base64.b64encode(initial).decode("ascii") or "=")
            self._send(command, "auth", stage="AUTH " + auth.public_name)
            return
        self._sasl = None
        if self.settings.auth == "require":
            self._host_error(DEFER, "authentication required but authentication attempt(s) "
                             "failed", ERRNO_AUTHFAIL)
            return
        self._next_transaction()

    def smtpState_auth(self, code, lines, arg):
        auth, sasl = self._sasl
        if code == 334:
            try:
                challenge = base64.b64decode(lines[0].strip(), validate=True)
                response = sasl.respond(challenge)
            except (binascii.Error, ValueError, EximError) as exc:
                self.transport.write(b"*\r\n")
                self._expect("auth", stage="AUTH " + auth.public_name)
                sasl.failure = str(exc)
                return
            self.transport.write(base64.b64encode(response) + b"\r\n")
            self._expect("auth", stage="AUTH " + auth.public_name)
            return
        if code // 100 == 2:
            self.result.authenticated = auth.public_name
            self.result.authenticator = auth
            self._auth_candidates = []
            self._next_transaction()
            return
        if code >= 500 or code // 100 == 4:
            # Try the next mechanism both server and client have.
            self._next_authenticator()
            return
        self._host_error(DEFER, self._smtp_error(code, lines), reply=reply_text(code, lines),
                         code=code)
