"""The ESMTP client: one connection to one host, one or more transactions.

This is the piece the smtp transport and the callouts (verify = recipient/
callout, sender/callout) share.  It knows nothing about configuration: the
caller gives it ``ClientSettings`` for the host (already expanded and
matched), a list of ``Transaction`` objects (envelope + message bytes) and a
host address, and gets back a ``SessionResult`` with an ``Outcome`` for every
recipient (those classes are in ``outbound.py``).

The protocol is a state machine whose states are methods named
``smtpState_<what the reply answers>``: every command sent pushes the name of
the state that will handle its reply, so that pipelined commands (RFC 2920)
and one-at-a-time commands go through the same code.

How replies map to outcomes follows the spec's "Errors in outgoing SMTP"
(chapter "SMTP processing"): host errors (connection, banner, EHLO, lost
connection, timeouts outside MAIL/RCPT/end of data), message errors (MAIL,
DATA, end of data) and recipient errors (RCPT).  Extensions handled: SIZE,
8BITMIME, SMTPUTF8, PIPELINING, CHUNKING (RFC 3030), STARTTLS (RFC 3207),
AUTH (RFC 4954), DSN (RFC 3461) and PRDR (draft-hall-prdr-00); the states up
to the first MAIL (greeting, EHLO, STARTTLS, AUTH) are in ``client_hello.py``.

A connection may outlive its transactions: ``park`` lets the caller keep it
open, idle, and ``reuse`` sends further messages down it (connection reuse,
``transports/smtp_pool.py``).
"""

import errno

from twisted.internet import defer, error, protocol
from twisted.internet.interfaces import IHalfCloseableDescriptor, IHandshakeListener, IPullProducer
from twisted.protocols.basic import LineReceiver
from zope.interface import implementer

from exim_py.errors import EximError
from exim_py.smtp.client_hello import SessionSetup
# ERRNO_AUTHFAIL and ERRNO_TLSREQUIRED are used by callers as client.ERRNO_*.
from exim_py.smtp.outbound import (DEFER, ERRNO_AUTHFAIL, ERRNO_SMTPCLOSED,  # noqa: F401
                                   ERRNO_SMTPFORMAT, ERRNO_TIMEOUT, ERRNO_TLSREQUIRED,
                                   ERRNO_UTF8_FWD, FAIL, OK, Outcome, SessionResult,
                                   Transaction, reply_text, split_by_max_rcpt, to_wire,
                                   xtext)
from exim_py.smtp.sendnow import write_now

# Message data goes to the transport in pieces of this size, each when the
# previous one has drained, so that data_timeout measures real progress.
CHUNK = 64 * 1024

# Exim gives the reply to QUIT one second, then closes (transports/smtp.c).
QUIT_TIMEOUT = 1


@implementer(IHandshakeListener, IPullProducer)
class ESMTPClient(SessionSetup, LineReceiver):
    """Sends ``transactions`` to the host at the other end; fires ``self.finished``."""

    delimiter = b"\n"
    MAX_LENGTH = 65536

    def __init__(self, settings, transactions, clock):
        self.settings = settings
        transactions = split_by_max_rcpt(transactions, settings.max_rcpt)
        self.result = SessionResult(transactions)
        self.clock = clock
        self.finished = defer.Deferred()
        self.extensions = {}
        self._pending = []          # [(state, argument, stage text)] for replies to come
        self._reply_lines = []
        self._timer = None
        self._stage = "initial connection"
        self._queue = list(transactions)
        self._txn = None
        self._accepted = []         # recipients of the current transaction with 2xx to RCPT
        self._body = None
        self._body_pos = 0
        self._tls = None
        self._sasl = None
        self._auth_candidates = []
        self._done = False
        self._state = None
        self._quitting = False
        self._quit_sent = False
        self._quitting_with_data = False     # QUIT is pipelined behind the data
        self._connected = True
        self._pipelined = False
        self._mail_failed = False
        self._unsent = []
        self._dot_sent = False
        self._resumed = None        # extensions of a held callout connection taken over
        # Connection reuse: ``park(self)`` is asked once every transaction
        # is decided; True means the caller keeps the connection open for
        # another message (see ``reuse``) instead of QUIT.
        self.park = None
        self.idle_lost = None       # called when a parked connection goes away
        self._idle = False
        self._needs_rset = False    # the last transaction ended without its data
        self._replies = 0           # replies read in this run (0: a reused one may be stale)
        self._close_waiters = []
        self._excess = []           # recipients of this transaction refused with 452

    # -- plumbing -------------------------------------------------------

    def _send(self, line, state, arg=None, timeout=None, stage=None):
        """Write one command and remember which state method handles its reply."""
        self._write(line.encode("utf-8") + b"\r\n")
        self._expect(state, arg, timeout, stage or line)

    def _write(self, data):
        write_now(self.transport, data)

    def _expect(self, state, arg=None, timeout=None, stage=None):
        self._pending.append((state, arg, stage))
        if len(self._pending) == 1:
            self._arm(timeout or self.settings.command_timeout)

    def _arm(self, seconds):
        """(Re)start the timeout for the reply or data awaited."""
        if self._timer is not None and self._timer.active():
            # Moving a pending timer is cheaper than cancelling it and
            # scheduling another, which every reply would otherwise do.
            self._timer.reset(seconds)
        else:
            self._timer = self.clock.callLater(seconds, self._timed_out)

    def _disarm(self):
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def lineReceived(self, line):
        if self._idle:
            # Nothing was asked: a parked connection the server talks on
            # (421 before closing, say) is not worth keeping.
            self.transport.abortConnection()
            return
        if self._done and not self._quitting:
            return
        line = line.rstrip(b"\r").decode("utf-8", "replace")
        if len(line) < 3 or not line[:3].isdigit() or (len(line) > 3 and line[3] not in " -"):
            self._host_error(DEFER, "SMTP error from remote mail server after %s: "
                             "malformed response: %s" % (self._stage, line[:100]),
                             ERRNO_SMTPFORMAT)
            return
        if line[0] not in "12345":
            # Exim takes only 1xx-5xx codes: anything else is a malformed
            # response, a temporary problem (then QUIT, as for any answer).
            where = self._pending[0][2] if self._pending else self._stage
            self._host_error(DEFER, "SMTP error from remote mail server after %s: "
                             "malformed response: %s" % (where, line[:100]),
                             ERRNO_SMTPFORMAT, code=int(line[:3]))
            return
        self._reply_lines.append(line[4:])
        if len(line) > 3 and line[3] == "-":
            return
        code = int(line[:3])
        lines, self._reply_lines = self._reply_lines, []
        if not self._pending:
            return
        state, arg, stage = self._pending.pop(0)
        self._stage = stage
        self._state = state
        self._replies += 1
        if self._pending:
            self._arm(self.settings.command_timeout)
        else:
            self._disarm()
        getattr(self, "smtpState_" + state)(code, lines, arg)

    def lineLengthExceeded(self, line):
        self._host_error(DEFER, "SMTP error from remote mail server after %s: response too long"
                         % (self._stage,), ERRNO_SMTPFORMAT)

    def _timed_out(self):
        self._timer = None
        if self._quitting:
            self.transport.abortConnection()
            return
        stage = self._pending[0][2] if self._pending else self._stage
        state = self._pending[0][0] if self._pending else None
        self._state = state
        if state == "handshake":
            self._tls_failed("TLS session: (SSL_connect): timed out")
            return
        if self._body is not None:
            # data_timeout: the server stopped taking the message.
            self._host_error(DEFER, "SMTP timeout after sending data block (%d bytes written)"
                             % (self._body_pos,), ERRNO_TIMEOUT)
            return
        text = "SMTP timeout after %s" % (stage,)
        if state in ("mail", "rcpt", "dot", "prdr_rcpt", "prdr_final"):
            # Timeouts after MAIL, RCPT and the end of data are treated like
            # 4xx replies to those commands, not as host errors; the other
            # recipients are deferred without retry data of their own.
            rcpt = self._pending[0][1] if state == "rcpt" else None
            self._fail_current(DEFER, text, "recipient" if rcpt else "message",
                               errno_value=ERRNO_TIMEOUT, rcpt=rcpt)
            self._host_error(DEFER, text, ERRNO_TIMEOUT, kind=None)
            return
        self._host_error(DEFER, text, ERRNO_TIMEOUT)

    def resume_after_envelope(self, extensions):
        """Take over a verify callout's connection (callout option hold): its
        EHLO offered ``extensions`` and it has sent this transaction's MAIL
        and RCPTs, all accepted, so the data comes next."""
        self._resumed = extensions

    def connectionMade(self):
        if self._resumed is not None:
            self.extensions = self.result.extensions = self._resumed
            self._txn = self._queue.pop(0)
            self._txn.chunking_used = "CHUNKING" in self.extensions and self.settings.chunking
            self._accepted = list(self._txn.recipients)
            self._after_rcpts()
            return
        self._stage = "initial connection"
        if self.settings.tls_on_connect:
            # protocol = smtps (RFC 8314): TLS first, then the greeting.
            self._start_tls()
            return
        self._expect("banner", stage="initial connection")

    def connectionLost(self, reason=None):
        self._disarm()
        self._connected = False
        if self._idle and self.idle_lost is not None:
            self.idle_lost(self)
        waiters, self._close_waiters = self._close_waiters, []
        for d in waiters:
            d.callback(None)
        if not self._done:
            self._lost(reason)
        self._finish()
        if not self.finished.called:
            self.finished.callback(self.result)

    def _lost(self, reason):
        """The server closed the connection (or TLS broke) before we were done."""
        where = self._pending[0][2] if self._pending else self._stage
        if self._tls is not None and self.result.tls is None:
            self._tls_failed("TLS session: (SSL_connect): %s" % (
                reason.getErrorMessage() if reason is not None else "connection closed",))
        elif self.result.reused and self._replies == 0:
            # The server had closed a connection kept from an earlier
            # message: the caller tries again on a new one.
            self.result.stale = True
            self._host_error(DEFER, "Remote host closed connection in response to %s"
                             % (where,), ERRNO_SMTPCLOSED)
        elif self._dot_sent and self._txn is not None:
            # Loss of the connection after the end of data is a message error.
            text = "Remote host closed connection in response to %s" % (where,)
            self._fail_current(DEFER, text, "message", errno_value=ERRNO_SMTPCLOSED)
            self._host_error(DEFER, text, ERRNO_SMTPCLOSED, kind=None)
        else:
            text = "Remote host closed connection in response to %s" % (where,)
            self._host_error(DEFER, text, ERRNO_SMTPCLOSED)

    def _finish(self):
        """Give every recipient not yet decided a deferral; the session's outcome is final."""
        if self._done:
            return
        self._done = True
        self._disarm()
        if self._tls is not None and self.result.tls is not None and self.result.host_error is None:
            self._tls.remember(self.result.tls.certificate_verified)
        err = self.result.host_error
        for txn in self.result.transactions:
            for rcpt in txn.recipients:
                if rcpt.address not in txn.outcomes:
                    txn.outcomes[rcpt.address] = Outcome(
                        err.status if err else DEFER,
                        err.message if err else "not tried on this connection",
                        err.kind if err else None, errno=err.errno if err else 0,
                        code=err.code if err else None, stage=err.stage if err else None)

    def _host_error(self, status, message, errno_value=0, reply=None, code=None, kind="host"):
        """A failure of the session: every recipient not yet decided gets ``status``.

        ``kind`` None means the connection is over but no host retry data is
        due (timeouts after MAIL, RCPT and the end of data).
        """
        if self._done:
            return
        self.result.host_error = Outcome(status, message, kind, reply, errno_value, code,
                                         self._state)
        self._finish()
        if self._connected and code is not None and not self._quit_sent:
            # The server answered, refusing: Exim still says QUIT (and reads
            # the reply) before it closes.
            self._pending = []
            self._send_quit()
        elif self._connected:
            self.transport.abortConnection()

    def _fail_current(self, status, message, kind, errno_value=0, reply=None, code=None,
                      rcpt=None):
        """A message or recipient error for the transaction in progress."""
        txn = self._txn
        if txn is None:
            return
        for r in [rcpt] if rcpt is not None else txn.recipients:
            if r.address not in txn.outcomes:
                txn.outcomes[r.address] = Outcome(status, message, kind, reply, errno_value, code,
                                                  self._state)

    def _smtp_error(self, code, lines):
        return "SMTP error from remote mail server after %s: %s" % (
            self._stage, reply_text(code, lines))

    # -- transactions ------------------------------------------------------

    def _next_transaction(self):
        self._txn = None
        self._accepted = []
        self._excess = []
        self._dot_sent = False
        if not self._queue:
            if self.park is not None and self._connected and self.park(self):
                self._park()
            else:
                self._quit()
            return
        txn = self._queue.pop(0)
        self._txn = txn
        if txn.smtputf8 and "SMTPUTF8" not in self.extensions:
            message = "utf8 support required but not offered for forwarding"
            for r in txn.recipients:
                txn.outcomes[r.address] = Outcome(FAIL, message, "message",
                                                  errno=ERRNO_UTF8_FWD)
            self._next_transaction()
            return
        self._send_envelope(txn)

    def _mail_command(self, txn):
        ext = self.extensions
        s = self.settings
        parts = ["MAIL FROM:<%s>" % (txn.sender,)]
        if "SIZE" in ext and s.size_addition >= 0 and txn.data is not None:
            parts.append("SIZE=%d" % (txn.size + s.size_addition,))
        if txn.body_type == "8BITMIME" and "8BITMIME" in ext:
            parts.append("BODY=8BITMIME")
        if txn.smtputf8:
            parts.append("SMTPUTF8")
        auth = self._auth_param(txn)
        if auth is not None:
            parts.append(auth)
        if "PRDR" in ext and s.prdr and len(txn.recipients) > 1 and txn.data is not None:
            parts.append("PRDR")
            txn.prdr_requested = True
        if "DSN" in ext and s.dsn:
            txn.dsn_passed = True
            if txn.dsn_ret:
                parts.append("RET=%s" % (txn.dsn_ret,))
            if txn.dsn_envid:
                parts.append("ENVID=%s" % (xtext(txn.dsn_envid),))
        return " ".join(parts)

    def _auth_param(self, txn):
        """The AUTH= parameter for MAIL, or None (spec, authenticated_sender)."""
        value = txn.auth_sender
        chosen = None
        if txn.auth_sender_option is not None:
            chosen = txn.auth_sender_option(self.result)
            if chosen:
                value = chosen
        if "AUTH" not in self.extensions:
            return None
        if not (self.result.authenticated or (txn.auth_sender_force and chosen)):
            return None
        return "AUTH=%s" % (xtext(value) if value else "<>",)

    def _rcpt_command(self, txn, rcpt):
        command = "RCPT TO:<%s>" % (rcpt.address,)
        if self.settings.lmtp and self.settings.ignore_quota and "IGNOREQUOTA" in self.extensions:
            command += " IGNOREQUOTA"
        if txn.dsn_passed:
            if rcpt.dsn_notify:
                command += " NOTIFY=%s" % (rcpt.dsn_notify,)
            if rcpt.orcpt:
                kind, _, addr = rcpt.orcpt.partition(";")
                command += " ORCPT=%s;%s" % (kind, xtext(addr))
        return command

    def _send_envelope(self, txn):
        pipelining = "PIPELINING" in self.extensions and self.settings.pipelining
        self._pipelined = pipelining
        try:
            mail = self._mail_command(txn)
        except EximError as exc:
            # authenticated_sender did not expand: this message waits.
            for r in txn.recipients:
                txn.outcomes[r.address] = Outcome(DEFER, str(exc), None)
            self._next_transaction()
            return
        commands = [(mail, "mail", None)]
        commands += [(self._rcpt_command(txn, r), "rcpt", r) for r in txn.recipients]
        use_bdat = (txn.data is not None and "CHUNKING" in self.extensions
                    and self.settings.chunking)
        txn.chunking_used = use_bdat
        if not pipelining:
            self._unsent = commands[1:]
            self._send(mail, "mail", stage=mail)
            return
        self._unsent = []
        out = []
        for command, state, arg in commands:
            out.append(command.encode("utf-8") + b"\r\n")
            # Exim's error texts say "pipelined" for MAIL and DATA (not RCPT).
            self._expect(state, arg, stage=("pipelined " if state == "mail" else "") + command)
        if txn.data is not None and not use_bdat and not self.settings.mua_wrapper:
            out.append(b"DATA\r\n")
            self._expect("data", stage="pipelined DATA")
        self._write(b"".join(out))

    def _send_next_unsent(self):
        """Without PIPELINING: send the next RCPT, or move on to the data."""
        if self._unsent:
            command, state, arg = self._unsent.pop(0)
            self._send(command, state, arg, stage=command)
            return True
        return False

    def smtpState_mail(self, code, lines, arg):
        if code == 421 and self.result.reused and self._replies == 1:
            # A kept connection the server is closing (its idle timeout,
            # say): not this message's fault; the caller connects afresh.
            self.result.stale = True
            self._host_error(DEFER, self._smtp_error(code, lines), ERRNO_SMTPCLOSED)
            return
        if code // 100 != 2:
            self._fail_current(FAIL if code >= 500 else DEFER, self._smtp_error(code, lines),
                               "message", reply=reply_text(code, lines), code=code)
            self._mail_failed = True
            if not self._pipelined:
                self._end_transaction(reset=True)
            return
        self._mail_failed = False
        if not self._pipelined:
            self._send_next_unsent()

    def smtpState_rcpt(self, code, lines, rcpt):
        txn = self._txn
        if not self._mail_failed:
            if code // 100 == 2:
                self._accepted.append(rcpt)
            else:
                if code == 452:
                    self._excess.append(rcpt)
                txn.outcomes[rcpt.address] = Outcome(
                    FAIL if code >= 500 else DEFER, self._smtp_error(code, lines), "recipient",
                    reply_text(code, lines), code=code, stage="rcpt")
        if self._pipelined:
            data_pipelined = bool(self._pending) and self._pending[0][0] == "data"
            if rcpt is txn.recipients[-1] and not data_pipelined:
                self._after_rcpts()
            return
        if not self._send_next_unsent():
            self._after_rcpts()

    def _after_rcpts(self):
        """All RCPT replies are in (and DATA's, when it was not pipelined, is not)."""
        txn = self._txn
        if self.settings.mua_wrapper and not self._mail_failed \
                and len(self._accepted) < len(txn.recipients):
            # One refused recipient fails them all (Exim as a non-queueing client).
            refused = next(o for o in txn.outcomes.values() if o.status != OK)
            for r in self._accepted:
                txn.outcomes[r.address] = Outcome(FAIL, refused.message, "recipient",
                                                  refused.reply, code=refused.code,
                                                  stage="rcpt")
            self._end_transaction(reset=True)
            return
        if self._mail_failed or not self._accepted or txn.data is None:
            if txn.data is None:
                for r in self._accepted:
                    txn.outcomes[r.address] = Outcome(OK, "", "recipient")
            self._end_transaction(reset=True)
            return
        if txn.chunking_used:
            self._send_bdat(txn)
        else:
            self._send("DATA", "data", stage="DATA")

    def smtpState_data(self, code, lines, arg):
        txn = self._txn
        if self._pipelined and (self._mail_failed or not self._accepted):
            if code // 100 == 3:
                # Nothing to deliver, but the server wants data: end it at once.
                self.transport.write(b".\r\n")
                self._expect("empty_data", stage="end of data")
                return
            self._end_transaction(reset=True)
            return
        # Exim takes any 3xx as the go-ahead for the data, not only 354.
        if code // 100 != 3:
            self._fail_current(FAIL if code >= 500 else DEFER, self._smtp_error(code, lines),
                               "message", reply=reply_text(code, lines), code=code)
            self._end_transaction(reset=True)
            return
        self._start_body(to_wire(txn.data), b".\r\n", "dot", "end of data")

    def smtpState_empty_data(self, code, lines, arg):
        """The reply to the end of a data phase that carried nothing: it
        decides nothing, and the server's transaction is reset before the next."""
        self._end_transaction(reset=True)

    def _send_bdat(self, txn):
        body = to_wire(txn.data, dot_stuff=False)
        command = "BDAT %d LAST" % (len(body),)
        self._start_body(command.encode("ascii") + b"\r\n" + body, b"", "dot", command)

    def _start_body(self, body, trailer, state, stage):
        if (self._pipelined and not self._queue and not self._excess and self.park is None
                and not self.settings.lmtp):
            # Nothing else will go down this connection (no recipients
            # refused with 452 wait for a follow-up): QUIT travels with the
            # end of the data, as Exim sends it ("will pipeline QUIT"); not
            # under LMTP, whose replies come one per recipient.
            trailer += b"QUIT\r\n"
            self._quit_sent = True
            self._quitting_with_data = True
        self._body = body + trailer
        self._body_pos = 0
        self._body_state = (state, stage)
        self._dot_sent = True
        self._arm(self.settings.data_timeout)
        self.transport.registerProducer(self, False)

    def resumeProducing(self):
        if self._body is None:
            return
        chunk = self._body[self._body_pos:self._body_pos + CHUNK]
        self._body_pos += len(chunk)
        if self._body_pos >= len(self._body):
            # The last chunk: nothing waits for the transport to ask for more.
            self._write(chunk)
        else:
            self.transport.write(chunk)
        self._arm(self.settings.data_timeout)
        if self._body_pos >= len(self._body):
            self._body = None
            if self._quitting_with_data:
                self._shutdown_write()
            self.transport.unregisterProducer()
            state, stage = self._body_state
            self._disarm()
            self._expect(state, stage=stage, timeout=self.settings.final_timeout)

    def stopProducing(self):
        self._body = None

    def smtpState_dot(self, code, lines, arg):
        txn = self._txn
        reply = reply_text(code, lines)
        if getattr(txn, "data_error", None) is not None:
            # The transport_filter failed (or would not run): Exim finds out
            # once it has written the filter's output and the dot, and defers
            # whatever the server answered.
            for rcpt in self._accepted:
                txn.outcomes[rcpt.address] = Outcome(DEFER, txn.data_error, "message", reply,
                                                     code=code, stage="dot")
            self._end_transaction(reset=True)
            return
        if txn.prdr_requested and code == 353:
            # PRDR: one reply per accepted recipient, in RCPT order, then a
            # reply for the message as a whole.
            txn.prdr_used = True
            for rcpt in self._accepted:
                self._expect("prdr_rcpt", rcpt, stage=self._stage,
                             timeout=self.settings.final_timeout)
            self._expect("prdr_final", stage=self._stage)
            return
        if self.settings.lmtp and self._accepted:
            # LMTP (RFC 2033 4.2): one reply per accepted recipient, in order.
            rcpts = list(self._accepted)
            self.smtpState_lmtp_rcpt(code, lines, rcpts[0])
            for rcpt in rcpts[1:]:
                self._expect("lmtp_rcpt", rcpt, stage=self._stage,
                             timeout=self.settings.final_timeout)
            return
        txn.confirmation = reply
        status = OK if code // 100 == 2 else FAIL if code >= 500 else DEFER
        message = "" if status == OK else self._smtp_error(code, lines)
        for rcpt in self._accepted:
            txn.outcomes[rcpt.address] = Outcome(status, message,
                                                 "recipient" if status == OK else "message",
                                                 reply, code=code, stage="dot")
        self._end_transaction(reset=status != OK)

    def smtpState_lmtp_rcpt(self, code, lines, rcpt):
        status = OK if code // 100 == 2 else FAIL if code >= 500 else DEFER
        reply = reply_text(code, lines)
        message = "" if status == OK else "LMTP error after %s: %s" % (self._stage, reply)
        self._txn.outcomes[rcpt.address] = Outcome(status, message, "recipient", reply,
                                                   code=code, stage="dot")
        if status == OK:
            self._txn.confirmation = reply
        if rcpt is self._accepted[-1]:
            self._end_transaction()

    def smtpState_prdr_rcpt(self, code, lines, rcpt):
        status = OK if code // 100 == 2 else FAIL if code >= 500 else DEFER
        message = "" if status == OK else "PRDR error after %s: %s" % (
            self._stage, reply_text(code, lines))
        self._txn.outcomes[rcpt.address] = Outcome(status, message, "recipient",
                                                   reply_text(code, lines), code=code,
                                                   stage="prdr_rcpt")

    def smtpState_prdr_final(self, code, lines, arg):
        self._txn.confirmation = reply_text(code, lines)
        self._end_transaction(reset=code // 100 != 2)

    def _excess_follow_up(self):
        """Recipients refused with 452 (too many recipients, RFC 5321 4.5.3.1.10)
        in a transaction that delivered to others go again in a transaction of
        their own on this connection, as Exim does; without progress they
        keep their deferral."""
        txn, excess, self._excess = self._txn, self._excess, []
        if txn is None or not excess or not any(
                txn.outcomes.get(r.address) is not None
                and txn.outcomes[r.address].status == OK for r in self._accepted):
            return
        follow = Transaction.__new__(Transaction)
        follow.__dict__.update(txn.__dict__)
        follow.recipients = excess
        follow.outcomes = {}
        follow.confirmation = None
        follow.prdr_requested = follow.prdr_used = follow.chunking_used = False
        txn.recipients = [r for r in txn.recipients if r not in excess]
        for r in excess:
            del txn.outcomes[r.address]
        self._queue.insert(0, follow)
        self.result.transactions.append(follow)

    def _end_transaction(self, reset=False):
        """Move on; RSET first when the server may still hold transaction state."""
        self._excess_follow_up()
        self._dot_sent = False
        # Exim resets a transaction that ended without its data before the
        # next MAIL: now when one follows, else when the connection is reused.
        self._needs_rset = reset
        if reset and self._queue:
            self._needs_rset = False
            self._send("RSET", "rset", stage="RSET")
            return
        if self._pending:
            self._pending.append(("resume", None, "RSET"))
            return
        self._next_transaction()

    def smtpState_rset(self, code, lines, arg):
        if code // 100 != 2:
            if self.result.reused and self._txn is None:
                # The RSET that opened the reuse of a kept connection: the
                # caller drops it and tries a new connection.
                self.result.stale = True
            self._host_error(DEFER, self._smtp_error(code, lines), reply=reply_text(code, lines),
                             code=code)
            return
        self._next_transaction()

    def smtpState_resume(self, code, lines, arg):
        self._next_transaction()

    def _park(self):
        """Every transaction is decided and the connection stays open, idle,
        for another message (``reuse``); this run's result is final."""
        self._txn = None
        self._finish()
        self._idle = True
        self.finished.callback(self.result)

    def reuse(self, transactions):
        """Send ``transactions`` down this parked connection: no new greeting,
        EHLO, STARTTLS or AUTH (spec "connection_max_messages"); returns a
        Deferred firing a new SessionResult (``reused``; ``stale`` when the
        server had gone away meanwhile, before anything was accepted)."""
        previous = self.result
        self.result = SessionResult(split_by_max_rcpt(transactions, self.settings.max_rcpt))
        for name in ("tls", "authenticated", "authenticator", "extensions", "greeting"):
            setattr(self.result, name, getattr(previous, name))
        self.result.reused = True
        self.finished = defer.Deferred()
        self._queue = list(self.result.transactions)
        self._done = self._idle = False
        self._replies = 0
        if not self._connected:
            self._lost(None)
            self._finish()
            self.finished.callback(self.result)
        elif self._needs_rset:
            self._needs_rset = False
            self._send("RSET", "rset", stage="RSET")
        else:
            self._next_transaction()
        return self.finished

    def when_closed(self):
        """A Deferred that fires once the connection has closed."""
        if not self._connected:
            return defer.succeed(None)
        d = defer.Deferred()
        self._close_waiters.append(d)
        return d

    def quit_idle(self):
        """QUIT a parked connection (idle too long, end of a run, shutdown)."""
        if not self._idle or not self._connected:
            return
        self._idle = False
        self._send_quit()

    def _quit(self):
        """Every transaction is decided: say QUIT, and close once it is answered."""
        self._txn = None
        self._finish()
        if self._quit_sent:
            self._quitting = True
            self._expect("quit", timeout=QUIT_TIMEOUT, stage="QUIT")
        else:
            self._send_quit()

    def _send_quit(self):
        """Say QUIT and shut down our side with it: Exim sends its FIN right
        behind the QUIT, so that the client, not the busier server, holds
        the TIME_WAIT state; the reply gets a second."""
        self._quitting = True
        self._quit_sent = True
        self.transport.write(b"QUIT\r\n")
        self._shutdown_write()
        self._expect("quit", timeout=QUIT_TIMEOUT, stage="QUIT")

    def _shutdown_write(self):
        """Send FIN once what is written has gone.  Plain TCP only: under TLS
        Exim would send a close_notify first, which Twisted's TLS layer
        cannot do without closing both ways."""
        if (IHalfCloseableDescriptor.providedBy(self.transport)
                and not getattr(self.transport, "TLS", False)):
            self.transport.loseWriteConnection()

    def smtpState_quit(self, code, lines, arg):
        self.transport.loseConnection()


class _ClientFactory(protocol.ClientFactory):
    def __init__(self, settings, transactions, clock, park=None):
        self.settings = settings
        self.transactions = transactions
        self.clock = clock
        self.park = park
        self.deferred = defer.Deferred()

    def buildProtocol(self, addr):
        proto = ESMTPClient(self.settings, self.transactions, self.clock)
        proto.factory = self
        proto.park = self.park
        proto.finished.chainDeferred(self.deferred)
        return proto

    def clientConnectionFailed(self, connector, reason):
        result = SessionResult(self.transactions)
        if reason.check(error.ConnectionRefusedError):
            outcome = Outcome(DEFER, "Connection refused", "host", errno=errno.ECONNREFUSED,
                              stage="connect")
        elif reason.check(error.TimeoutError, error.TCPTimedOutError):
            outcome = Outcome(DEFER, "Connection timed out", "host", errno=errno.ETIMEDOUT,
                              stage="connect")
        else:
            exc = reason.value
            code = getattr(exc, "osError", None) or getattr(exc, "errno", None) or 0
            text = exc.args[-1] if exc.args and isinstance(exc.args[-1], str) else str(exc)
            outcome = Outcome(DEFER, text, "host", errno=code if isinstance(code, int) else 0,
                              stage="connect")
        result.host_error = outcome
        for txn in self.transactions:
            for rcpt in txn.recipients:
                txn.outcomes[rcpt.address] = Outcome(DEFER, outcome.message, "host",
                                                     errno=outcome.errno, stage="connect")
        self.deferred.callback(result)


def deliver(reactor, address, port, settings, transactions, connect_timeout=300,
            interface=None, park=None):
    """Connect to ``address``:``port`` and run ``transactions``; Deferred → SessionResult.

    The Deferred never errbacks: every failure becomes an ``Outcome``.
    ``park(protocol)``, when given, is asked at the end whether to keep the
    connection open for ``protocol.reuse`` rather than QUIT.
    """
    from exim_py.smtp import callout
    factory = _ClientFactory(settings, transactions, reactor, park)
    bind = (interface, 0) if interface else None

    def connect():
        reactor.connectTCP(address, port, factory, timeout=connect_timeout or 300,
                           bindAddress=bind)
    # A recipient callout may have kept its connection for this delivery.
    callout.deliver_or_connect(reactor, address, port, transactions, factory, connect)
    return factory.deferred
