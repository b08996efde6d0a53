"""AUTH and STARTTLS for the SMTP server (RFC 4954, RFC 3207).

A mixin of SMTPServerProtocol: the commands that change who the client is
or how the connection is protected, kept apart from the mail transaction.
"""

from twisted.internet import abstract
from twisted.python import log

from exim_py.smtp.reply import Reply


class SecurityCommands:
    """smtp_AUTH and smtp_STARTTLS; see SMTPServerProtocol for the attributes used."""

    def smtp_AUTH(self, arg):
        if "AUTH" not in self.extensions:
            return self._synprot(503, "AUTH command used when not advertised", kind="protocol")
        if self.session.authenticated_id is not None:
            return self._synprot(503, "already authenticated", kind="protocol")
        if self.envelope is not None:
            return self._synprot(503, "not permitted in mail transaction", kind="protocol")
        exchange = self.policy.auth_exchange(self.session, arg)
        if isinstance(exchange, Reply):
            return self._send_reply(exchange, 0, "")
        self._auth = exchange
        self._mode = "auth"
        self._auth_step(None)

    def _auth_step(self, line):
        """Drive an authenticator exchange: it yields 334 challenges and finally a Reply."""
        def answered(step):
            if isinstance(step, Reply):
                self._auth = None
                self._mode = "command"
                if step.code == 235:
                    self.envelope = None
                if step.code >= 500 and step.code != 535:
                    self._synprot(step.code, step.text)
                else:
                    self._send_reply(step, 0, "")
            else:
                self._send(334, step)

        self._ask(self._auth.step, line, then=answered)

    def smtp_STARTTLS(self, arg):
        if "STARTTLS" not in self.extensions or self.tls_active:
            return self._synprot(503, "STARTTLS command used when not advertised", kind="protocol")

        def answered(reply):
            if reply is not None and not reply.ok:
                self._send_reply(reply, 0, "")
                return
            try:
                context = self.policy.tls_context(self.session)
            except Exception:
                log.err(None, "exim_py: TLS setup failed")
                self._send(454, "TLS currently unavailable")
                return
            # STARTTLS injection (CVE-2011-0411 family): anything the client
            # pipelined after STARTTLS was sent in clear and is thrown away.
            self._buffer = b""
            self._send(220, "TLS go ahead")
            if not hasattr(self.transport, "startTLS"):
                # -bh, -bs: standard input cannot carry a handshake.  Exim
                # says go ahead, its handshake fails on what comes next, and
                # the session ends with the TLS error line (connectionLost).
                self._handshake_pending = True
                self._drop()
                return
            self.transport.startTLS(context)
            self.tls_active = True
            self._handshake_pending = isinstance(self.transport, abstract.FileDescriptor)
            # RFC 3207 4.2: forget everything learnt before TLS.  The HELO
            # name goes once the handshake has worked: Exim's line for a
            # failed one still shows it.
            self.helo_seen = False
            self.esmtp = False
            if not self._handshake_pending:
                self.session.helo_name = None
            self.extensions = set()
            self.pipelining = False
            self.envelope = None

        self._ask(self.policy.starttls, self.session, then=answered)
