"""The ESMTP server protocol and its factory.

The protocol parses commands and writes Exim's replies; it decides nothing
itself.  Each decision (may this host connect, is this recipient acceptable,
where does an accepted message go) is a call on one policy object, which
``exim_py.smtp.policy.ServerPolicy`` implements from the configuration and
the ACLs.  A policy method may return a Deferred; while one is outstanding
the protocol reads nothing more, so commands are always answered in order.

Commands dispatch by name: ``smtp_MAIL`` answers MAIL.  The mail
transaction's commands (MAIL, RCPT, DATA, BDAT, RSET) are in
smtp/server_mail.py, AUTH and STARTTLS in smtp/server_security.py; this
module reads the input, keeps the session's state and timers and answers the
rest.  Spec chapter "SMTP processing" describes the behaviour; the reply
texts are Exim 4.96's.
"""

from twisted.internet import abstract, defer, error, interfaces, protocol
from twisted.python import failure, log
from zope.interface import implementer

from exim_py.envelope import Session
from exim_py.smtp import connlog, proxy
from exim_py.smtp.params import C_SPACE, BadAddress, parse_path
from exim_py.smtp.policy import NO_GREETING
from exim_py.smtp.sendnow import write_now
from exim_py.smtp.reply import Reply, format_reply
from exim_py.smtp.server_mail import TransactionCommands
from exim_py.smtp.server_security import SecurityCommands

# Exim reads a command into a buffer of this size; longer lines cannot be
# recognised commands.
MAX_COMMAND = 16384

# Which commands must be the last of a pipelined group (Exim's ordering of
# its command table): with PIPELINING only these; without it, also MAIL,
# RCPT and RSET.  RFC 2920 3.1.
SYNC_ALWAYS = frozenset(("HELO", "EHLO", "DATA", "VRFY", "EXPN", "NOOP", "ETRN", "STARTTLS"))
SYNC_UNLESS_PIPELINING = frozenset(("MAIL", "RCPT", "RSET"))
# smtp_accept_max_nonmail counts every command but these, and, as Exim
# counts, one RSET, one HELO or EHLO and one STARTTLS while a new message is
# expected, an EHLO after STARTTLS and the first AUTH (before and after TLS).
MAIL_COMMANDS = frozenset(("MAIL", "RCPT", "DATA", "BDAT", "QUIT"))
UNCOUNTED_AT_START = frozenset(("RSET", "HELO", "EHLO", "STARTTLS", "AUTH"))
UNCOUNTED_PER_MESSAGE = frozenset(("RSET", "HELO", "EHLO", "STARTTLS"))
UNCOUNTED_AFTER_TLS = frozenset(("EHLO", "AUTH"))
# Commands that take no argument ("501 unexpected argument data").
NO_ARGUMENT = frozenset(("RSET", "DATA", "QUIT", "STARTTLS"))

# The few distinct sets of EHLO keywords, each kept once for every session
# offered it (a set of its own costs ~700 bytes per idle connection).
_KEYWORD_SETS = {}


def shared_keywords(keywords):
    keywords = frozenset(keywords)
    return _KEYWORD_SETS.setdefault(keywords, keywords)


@implementer(interfaces.IHandshakeListener, interfaces.IHalfCloseableProtocol)
class SMTPServerProtocol(TransactionCommands, SecurityCommands, protocol.Protocol):
    """One SMTP connection (or one -bs/-bh session on standard input)."""

    # Only CRLF.CRLF ends DATA on a network connection (smtp/data.py).
    lf_line_ends = False

    # Slots for the state every session has: a __dict__ of this many
    # attributes costs ~1.5 kB per idle connection.  Attributes set
    # elsewhere (Twisted's transport, connected...) still go to __dict__.
    __slots__ = ("policy", "clock", "tls_on_connect", "session", "envelope", "_buffer", "_busy",
                 "_closing", "_mode", "_early_pipe", "_collector", "_bdat", "_bdat_left", "_bdat_last",
                 "_bdat_discard", "_rset_only", "_auth", "_when_idle", "_proxy_timer", "_handshake_pending",
                 "_refusing", "helo_seen", "esmtp", "extensions", "pipelining", "tls_active",
                 "synprot_errors", "unknown_commands", "nonmail_commands", "uncounted", "rcpt_response",
                 "rcpt_response_same", "_was_rcpt", "_last_was_rcpt", "_was_rej_mail",
                 "_last_was_rej_mail", "messages", "_timeout", "_last_input", "finished")

    def __init__(self, policy, clock=None, tls_on_connect=False):
        self.policy = policy
        if clock is None:
            from twisted.internet import reactor as clock
        self.clock = clock
        self.tls_on_connect = tls_on_connect
        self.session = Session()
        self.envelope = None
        self._buffer = b""
        self._busy = False          # a policy answer is outstanding
        self._closing = False
        self._mode = "banner"       # proxy, banner, command, data, bdat, auth
        self._collector = None
        self._bdat = None           # chunks of a BDAT transfer in progress
        self._bdat_left = 0
        self._bdat_last = False
        self._bdat_discard = False
        self._rset_only = False     # a BDAT transfer was refused: RSET (or QUIT) next
        self._auth = None
        # what to do once every command so far is answered: input_ended
        # (the client closed its side) or _stop_if_idle (the daemon stops)
        self._when_idle = None
        # Exim's pipe_connect_acceptable: a host that may use PIPECONNECT is
        # not held to synchronisation until its first DATA or BDAT.
        self._early_pipe = False
        self._proxy_timer = None
        self._handshake_pending = False    # STARTTLS accepted, handshake not finished
        self._refusing = None
        self.helo_seen = False
        self.esmtp = False
        self.extensions = frozenset()   # EHLO keywords advertised in this session
        self.pipelining = False
        self.tls_active = False
        self.synprot_errors = 0
        self.unknown_commands = 0
        self.nonmail_commands = 0
        self.uncounted = UNCOUNTED_AT_START     # commands not counted as nonmail just now
        self.rcpt_response = None       # the first reply to a RCPT of this transaction
        self.rcpt_response_same = True  # ... and every later RCPT got the same one
        self._was_rcpt = self._last_was_rcpt = False
        self._was_rej_mail = self._last_was_rej_mail = False
        self.messages = 0
        self._timeout = None            # the smtp_receive_timeout timer
        self._last_input = 0.0          # when input last came (clock.seconds())
        self.finished = defer.Deferred()   # fires when the connection is gone

    # -- connection --------------------------------------------------------

    def connectionMade(self):
        self.session.local = False
        self.policy.fill_session(self.session, self.transport)
        self._reset_timeout()
        required = self.policy.proxy_required(self.session)
        if required.__class__ is bool:
            self._proxy_or_start(required)
        else:
            # hosts_proxy waits on the DNS: a Deferred
            self._ask(lambda: required, then=self._proxy_or_start)

    def _proxy_or_start(self, required):
        if required:
            # hosts_proxy: a PROXY header comes first (smtp/proxy.py)
            self._mode = "proxy"
            self._proxy_timer = self.clock.callLater(self.policy.proxy_protocol_timeout,
                                                     self._proxy_done, None)
            return
        self._start_session()

    def _start_session(self):
        opened = self.policy.connection_opened(self.session, getattr(self, "factory", None))
        if opened is not None:
            # hosts_connection_nolog waits on the DNS: a Deferred
            return self._ask(lambda: opened, then=self._session_opened)
        self._session_opened(None)

    def _session_opened(self, _):
        if self.tls_on_connect:
            # (the handshake's host lists may wait on the DNS first)
            return self._ask(self.policy.tls_lists, self.session, then=self._start_tls_session)
        self._mode = "banner"
        self._ask(self.policy.connect, self.session, then=self._after_connect)

    def _start_tls_session(self, _):
        self.tls_active = True
        early, self._buffer = self._buffer, b""
        self.transport.startTLS(self.policy.tls_context(self.session))
        if early:
            # the TLS handshake began in the same packet as the PROXY header
            self.transport.protocol.dataReceived(early)
        self._mode = "banner"
        self._ask(self.policy.connect, self.session, then=self._after_connect)

    def _proxy_done(self, parsed):
        """The PROXY header was read (``parsed``), or it was bad or late (None)."""
        if self._proxy_timer is not None and self._proxy_timer.active():
            self._proxy_timer.cancel()
        self._proxy_timer = None
        if parsed is None:
            # Exim: the session goes on, but every command is refused
            self._buffer = b""
            proxy.apply(self.session, None)
            self.session.proxy["external_address"] = None
            self._refusing = Reply(503, "Command refused, required Proxy negotiation failed")
        else:
            consumed, info = parsed
            self._buffer = self._buffer[consumed:]
            proxy.apply(self.session, info)
        self._start_session()

    def _after_connect(self, reply):
        if reply is NO_GREETING:
            return self._drop()
        if reply is not None and reply.code == 421 and not reply.drop:
            # a local problem: refuse everything but QUIT, as Exim does
            self._refusing = reply
            self._send_reply(reply, 0, "")
            self._mode = "command"
            return
        if reply is not None and not reply.ok:
            self._send_reply(reply, 0, "")
            return self._drop()
        self._early_pipe = self.policy.pipe_connect(self.session)
        if reply is not None:
            # the connect ACL's accept message is the greeting
            return self._greet(reply)
        # the banner may wait for the client's name ($sender_host_name)
        self._ask(self.policy.banner, self.session, then=self._greet)

    def _greet(self, greeting):
        """Send the greeting: the banner's text, or the connect ACL's Reply
        (None: the banner could not be expanded, and the session ends)."""
        if greeting is None:
            return self._drop()
        # Input before the banner is a synchronisation error unless the host
        # may use PIPECONNECT (spec: smtp_enforce_sync; RFC 2920 has no
        # early talking).
        if self._buffer and self.policy.enforce_sync(self.session) and not self._early_pipe:
            self.policy.log_sync_error(self.session, "input sent without waiting for greeting", self._buffer)
            self._send(554, "SMTP synchronization error")
            return self._drop()
        if greeting.__class__ is Reply:
            self._send_reply(greeting, 0, "")
        else:
            self._send(220, greeting)
        self._mode = "command"

    def connectionLost(self, reason=failure.Failure(error.ConnectionDone())):
        self._cancel_timeout()
        if self._proxy_timer is not None and self._proxy_timer.active():
            self._proxy_timer.cancel()
        if self._handshake_pending:
            # the STARTTLS handshake failed (or the client went away in it)
            self._handshake_pending = False
            self.policy.tls_failed(self.session, self.transport, reason)
        elif not self._closing:
            in_data = self._mode == "data" or self._mode == "bdat"
            if in_data:
                self._message_abandoned(lost=True)
            self.policy.notquit(self.session, in_data, self.envelope)
        self._collector = None
        self._bdat = None
        if not self.finished.called:
            self.finished.callback(None)

    def _new_message_expected(self):
        """A message is over: one RSET, HELO/EHLO and STARTTLS are free again
        (smtp_accept_max_nonmail; Exim's smtp_setup_msg)."""
        self.uncounted = self.uncounted | UNCOUNTED_PER_MESSAGE

    def handshakeCompleted(self):
        """IHandshakeListener: TLS is up, record what it negotiated."""
        self._handshake_pending = False
        self.session.helo_name = None
        self.uncounted = self.uncounted | UNCOUNTED_AFTER_TLS
        self.policy.tls_established(self.session, self.transport)

    # -- input -------------------------------------------------------------

    def dataReceived(self, data):
        self._reset_timeout()
        if self._mode == "data" and not self._busy and not self._buffer:
            rest = self._collector.feed(data)
            if rest is not None:
                self._buffer = rest
                self._end_of_data()
            return
        self._buffer += data
        if not self._busy:
            self._process()

    def _process(self):
        """Handle buffered input until it runs out or a policy answer is awaited."""
        self._process_buffer()
        if self._when_idle is not None and not self._busy and not self._closing:
            self._when_idle()

    def readConnectionLost(self):
        """The client shut down its side of the connection.

        What it sent before is still answered: Exim's own client sends QUIT
        right behind the final dot and then shuts down its side (spec
        "Use of PIPELINING"), and waits for the 250 and 221.
        """
        self._when_idle = self.input_ended
        if not self._busy:
            self._process()

    def writeConnectionLost(self):
        self.transport.loseConnection()

    def input_ended(self):
        """The client closed its side and every earlier command has been
        answered: a lost connection, which Exim answers with 421 (the client
        may still be reading) and logs."""
        in_data = self._mode == "data" or self._mode == "bdat"
        if in_data:
            self._send(421, "Lost incoming connection")
            self._message_abandoned(lost=True)
        else:
            self._send(421, "%s lost input connection" % self.policy.hostname(self.session))
        self.policy.notquit(self.session, in_data, self.envelope)
        self._closing = True
        self.transport.loseConnection()

    def _process_buffer(self):
        while self._buffer and not self._busy and not self._closing:
            if self._mode == "proxy":
                try:
                    parsed = proxy.parse(self._buffer)
                except proxy.ProxyError:
                    return self._proxy_done(None)
                if parsed is None:
                    return
                self._proxy_done(parsed)
            elif self._mode == "command":
                eol = self._buffer.find(b"\n")
                if eol < 0:
                    if len(self._buffer) > MAX_COMMAND:
                        self._buffer = b""
                        self._unknown_command("")
                    return
                line, self._buffer = self._buffer[:eol], self._buffer[eol + 1:]
                if line.endswith(b"\r"):
                    line = line[:-1]
                self._command(line, pending=bool(self._buffer))
            elif self._mode == "data":
                data, self._buffer = self._buffer, b""
                rest = self._collector.feed(data)
                if rest is not None:
                    self._buffer = rest
                    self._end_of_data()
            elif self._mode == "bdat":
                take = min(self._bdat_left, len(self._buffer))
                self._bdat.feed_chunk(self._buffer[:take])
                self._buffer = self._buffer[take:]
                self._bdat_left -= take
                if self._bdat_left == 0:
                    self._mode = "command"
                    self._end_of_chunk()
            elif self._mode == "auth":
                eol = self._buffer.find(b"\n")
                if eol < 0:
                    return
                line, self._buffer = self._buffer[:eol], self._buffer[eol + 1:]
                self._auth_step(line.rstrip(b"\r").decode("ascii", "replace"))
            else:
                return

    def _command(self, raw, pending):
        if len(raw) > MAX_COMMAND:
            return self._unknown_command(raw[:MAX_COMMAND].decode("latin-1"))
        # without the white space at its end, as Exim's command buffer
        line = raw.decode("utf-8", "surrogateescape").rstrip(C_SPACE)
        self.session.smtp_command = line
        # Exim's last_was_rcpt / last_was_rej_mail: what the previous command was
        self._last_was_rcpt, self._was_rcpt = self._was_rcpt, False
        self._last_was_rej_mail, self._was_rej_mail = self._was_rej_mail, False
        verb, _, rest = line.partition(" ")
        verb = verb.upper()
        arg = rest.strip(C_SPACE)
        # MAIL and RCPT are recognised with their "FROM:"/"TO:" right after
        # one space (Exim's command table holds "mail from:" and "rcpt to:").
        if verb in ("MAIL", "RCPT"):
            lead = "FROM:" if verb == "MAIL" else "TO:"
            if not rest[:len(lead)].upper() == lead:
                return self._unknown_command(line)
            arg = rest[len(lead):].strip(C_SPACE)
        if self._refusing is not None and verb != "QUIT":
            return self._send_reply(self._refusing, 0, "")
        if self._rset_only and verb not in ("RSET", "QUIT"):
            return self._synprot(503, "only RSET accepted now", kind="protocol")
        if self._bdat is not None and verb not in ("BDAT", "NOOP", "RSET"):
            # RFC 3030 and Exim: between chunks only BDAT (and NOOP, or RSET
            # to give up); anything else abandons the message
            return self._refuse_chunking(503, "only BDAT permissible after non-LAST BDAT")
        handler = getattr(self, "smtp_" + verb, None) if verb.isalpha() else None
        if handler is None:
            if pending and not self._early_pipe and self.policy.enforce_sync(self.session):
                # Exim enforces synchronisation after unknown commands too
                return self._sync_error(line)
            return self._unknown_command(line)
        if "\0" in line:
            return self._synprot(501, "NUL characters are not allowed in SMTP commands")
        if pending and self._needs_sync(verb):
            return self._sync_error(line)
        if verb in self.uncounted:
            # used up: HELO and EHLO share their turn
            self.uncounted = self.uncounted - ({"HELO", "EHLO"} if verb in ("HELO", "EHLO") else {verb})
        elif verb not in MAIL_COMMANDS and self.policy.limit_nonmail(self.session):
            self.nonmail_commands += 1
            if self.nonmail_commands > self.policy.smtp_accept_max_nonmail:
                connlog.nonmail_drop(self.policy, self.session, line.partition(" ")[0])
                self.policy.notquit(self.session, False, self.envelope, "bad-commands")
                self._send(554, "Too many nonmail commands")
                return self._drop()
        if verb in NO_ARGUMENT and arg:
            # Exim's command reader turns these into a bad-argument command,
            # which stays out of the C= list
            return self._synprot(501, "unexpected argument data")
        self.policy.command_seen(self.session, verb)
        handler(arg)

    def _sync_error(self, line):
        self.policy.log_sync_error(self.session, "next input sent too soon: pipelining was%s advertised"
                                   % ("" if self.pipelining else " not"), self._buffer, line)
        self.policy.notquit(self.session, False, self.envelope, "synchronization-error")
        self._send(554, "SMTP synchronization error")
        self._drop()

    def _needs_sync(self, verb):
        if self._early_pipe or not self.policy.enforce_sync(self.session):
            return False
        if verb in SYNC_ALWAYS:
            return True
        return verb in SYNC_UNLESS_PIPELINING and not self.pipelining

    # -- replies and errors ------------------------------------------------

    def _send(self, code, text):
        if self._closing:
            return
        self._write(format_reply(code, text))

    def _write(self, data):
        write_now(self.transport, data)

    def _send_reply(self, reply, default_code, default_text):
        """Send a policy's reply (or the default); returns False if the connection is dropped."""
        if reply is None:
            self._send(default_code, default_text)
            return True
        if reply.lines:
            if not self._closing:
                self._write("".join(line + "\r\n" for line in reply.lines)
                            .encode("utf-8", "surrogateescape"))
        else:
            self._send(reply.code, reply.text)
        if reply.drop:
            if self._mode != "banner":
                # an ACL's drop (a refusal at connect time is no session yet)
                self.policy.notquit(self.session, self._mode in ("data", "bdat"), self.envelope,
                                    "acl-drop")
            self._drop()
            return False
        return True

    def _synprot(self, code, text, say_why=True, kind="syntax", data=None):
        """A syntax or protocol error; too many of them end the session
        (smtp_max_synprot_errors).  Without ``say_why`` the reply does not
        add why the session ends (Exim's HELO/EHLO check counts the error
        itself, without its synprot_error's extra line or log line).
        ``kind`` is "syntax" or "protocol", for the log line; ``data`` goes
        before the text in the reply ("<data>: text"), not in the log."""
        if say_why:
            # a preamble before the last line is no part of the error (Exim
            # prints it separately)
            connlog.synprot_error(self.policy, self.session, kind, text.rpartition("\n")[2])
        if data is not None:
            text = "%s: %s" % (data, text)
        self.synprot_errors += 1
        if self.synprot_errors > self.policy.smtp_max_synprot_errors:
            self.policy.notquit(self.session, False, self.envelope, "bad-commands")
            connlog.synprot_drop(self.policy, self.session)
            self._send(code, text + "\n" + "Too many syntax or protocol errors" if say_why else text)
            self._drop()
            return
        self._send(code, text)

    def _unknown_command(self, line):
        self.unknown_commands += 1
        if self.unknown_commands > self.policy.smtp_max_unknown_commands:
            self.policy.notquit(self.session, False, self.envelope, "bad-commands")
            connlog.unknown_drop(self.policy, self.session, line)
            self._send(500, "Too many unrecognized commands")
            return self._drop()
        self._synprot(500, "unrecognized command")

    def stop(self):
        """The daemon is stopping (SIGTERM).  Exim's session process notices
        the signal when it next waits for the client: a session waiting
        for a command ends now; one busy with a command (an ACL, the spool
        write) ends once that is answered, and one receiving a message once
        the message is in, or when the daemon's grace runs out (shutdown)."""
        if self._when_idle is None:
            self._when_idle = self._stop_if_idle
        if not self._busy and not self._closing:
            self._stop_if_idle()

    def _stop_if_idle(self):
        if self._mode != "data" and self._mode != "bdat":
            self.shutdown()

    def shutdown(self):
        """End the session for SIGTERM, as Exim's session process does: log
        the close, run the not-QUIT ACL with signal-exit, say 421 and
        close; an unfinished message is abandoned, with receive.c's words
        when it was arriving."""
        if self._closing:
            return
        in_data = self._mode == "data" or self._mode == "bdat"
        if in_data:
            self._message_abandoned()
        self.policy.signal_exit(self.session, self.envelope)
        host = self.policy.hostname(self.session)
        if in_data:
            self._send(421, "%s Service not available - SIGTERM or SIGINT received - closing connection." % host)
        else:
            self._send(421, "%s: Service not available - closing connection" % host)
        self._drop()

    def _message_abandoned(self, lost=False):
        """The message being sent is given up: a timeout or SIGTERM, or
        (``lost``) the client gone (see policy.message_abandoned)."""
        partial = self._collector.content() if self._mode == "data" else None
        self.policy.message_abandoned(self.envelope, partial, lost)

    def _drop(self):
        self._closing = True
        self._cancel_timeout()
        self.transport.loseConnection()

    def _ask(self, method, *args, then, sync=None):
        """Call a policy method; continue with ``then(result)`` once it answers.

        ``sync``: the command's verb, when input that arrived while the
        policy was thinking (an ACL delay) is a synchronisation error, as
        Exim checks again after the ACL.
        """
        self._busy = True
        try:
            result = method(*args)
        except Exception:
            return self._policy_failed(failure.Failure())
        if result is not None and result.__class__ is not Reply and isinstance(result, defer.Deferred):
            result.addCallback(self._policy_answered, then, sync).addErrback(self._policy_failed)
            return
        # most answers are immediate: no Deferred to build and fire
        try:
            self._policy_answered(result, then, sync)
        except Exception:
            self._policy_failed(failure.Failure())

    def _policy_answered(self, result, then, sync):
        self._busy = False
        if self._closing:
            return
        if sync is not None and self._buffer and self._needs_sync(sync):
            return self._sync_error(sync)
        then(result)
        if not self._busy:
            self._process()

    def _policy_failed(self, f):
        self._busy = False
        log.err(f, "exim_py: policy failure")
        try:
            self.policy.log_policy_failure(self.session, f.value)
        except Exception:
            # the log itself is failing: the traceback above is all there is
            log.err(None, "exim_py: could not log the policy failure")
        if not self._closing:
            self._send(451, "Temporary local problem - please try later")
            if self._mode in ("data", "bdat"):
                self._mode = "command"
            self._process()

    # -- timeouts (smtp_receive_timeout) -----------------------------------

    def _reset_timeout(self):
        seconds = self.policy.smtp_receive_timeout
        if not seconds:
            return
        # Input comes often and timeouts rarely: note when it came, and let
        # the timer, when it goes off, see how long ago that was.
        self._last_input = self.clock.seconds()
        if self._timeout is None:
            self._timeout = self.clock.callLater(seconds, self._timeout_due)

    def _timeout_due(self):
        self._timeout = None
        left = self._last_input + self.policy.smtp_receive_timeout - self.clock.seconds()
        if left > 0:
            self._timeout = self.clock.callLater(left, self._timeout_due)
        else:
            self._timed_out()

    def _cancel_timeout(self):
        if self._timeout is not None and self._timeout.active():
            self._timeout.cancel()
        self._timeout = None

    def _timed_out(self):
        host = self.policy.hostname(self.session)
        if self._handshake_pending:
            # The client never completed the TLS handshake after STARTTLS:
            # say it in clear, as Exim does once its handshake times out.
            self._handshake_pending = False
            abstract.FileDescriptor.write(self.transport, format_reply(
                421, "%s: SMTP command timeout - closing connection" % host))
            self.policy.log_timeout(self.session, "tls")
            self._closing = True
            self._cancel_timeout()
            # below the TLS layer too: flush the clear reply, then close
            return abstract.FileDescriptor.loseConnection(self.transport)
        if self._mode in ("data", "bdat"):
            self._send(421, "%s SMTP incoming data timeout - closing connection." % host)
            self._message_abandoned()
        else:
            self._send(421, "%s: SMTP command timeout - closing connection" % host)
        self.policy.log_timeout(self.session, self._mode, self.envelope)
        self.policy.notquit(self.session, False, self.envelope,
                            "data-timeout" if self._mode in ("data", "bdat") else "command-timeout")
        self._drop()

    # -- HELO / EHLO -------------------------------------------------------

    def smtp_HELO(self, arg, verb="HELO"):
        if not self.policy.helo_syntax_ok(self.session, arg):
            connlog.helo_invalid(self.policy, self.session, verb, arg)
            return self._synprot(501, "Syntactically invalid %s argument(s)" % verb, say_why=False)

        previous = self.session.helo_name

        def answered(reply):
            if reply is not None and not reply.ok:
                self.session.helo_name = previous
                self._send_reply(reply, 0, "")
                return
            self.helo_seen = True
            self.esmtp = verb == "EHLO"
            self.session.esmtp = self.esmtp
            self.session.received_protocol = self.policy.protocol_name(self.session, self.esmtp)
            self.envelope = None
            self._bdat = None
            code, greeting = 250, self.policy.helo_greeting(self.session)
            if reply is not None and reply.text:
                # an accepting ACL's message, with its code on every EHLO line
                code, greeting = reply.code, reply.text
            if self.esmtp:
                offered = self.policy.ehlo_extensions(self.session)
                if not self._early_pipe and "PIPECONNECT" in offered:
                    # once a DATA or BDAT has been seen Exim's early pipelining
                    # is over, and a later EHLO no longer offers it
                    offered.discard("PIPECONNECT")
                self.extensions = shared_keywords(offered)
                self.pipelining = "PIPELINING" in self.extensions
                lines = [greeting] + self.policy.ehlo_lines(self.session, self.extensions)
                self._send(code, "\n".join(lines))
            else:
                self.extensions = set()
                self.pipelining = False
                self._send(code, greeting)

        # the HELO ACL sees the new name as $sender_helo_name
        self.session.helo_name = arg
        self._ask(self.policy.helo, self.session, verb, arg, then=answered, sync=verb)

    def smtp_EHLO(self, arg):
        self.smtp_HELO(arg, verb="EHLO")

    # -- the rest ----------------------------------------------------------

    def smtp_NOOP(self, arg):
        self._send(250, "OK")

    def smtp_QUIT(self, arg):
        def answered(reply):
            self._send_reply(reply, 221, "%s closing connection" % self.policy.hostname(self.session))
            self.policy.quit_done(self.session, self.envelope)
            self._closing = True
            self._cancel_timeout()
            self.transport.loseConnection()

        self._ask(self.policy.quit, self.session, then=answered)

    def smtp_HELP(self, arg):
        # (tls_advertise_hosts may wait on the DNS: the text may come later)
        self._ask(self.policy.help_text, self.session, self.tls_active,
                  then=lambda text: self._send(214, "Commands supported:\n" + text))

    def _policy_command(self, method, *args):
        def answered(reply):
            self._send_reply(reply, 250, "OK")

        self._ask(method, self.session, *args, then=answered)

    def smtp_VRFY(self, arg):
        try:
            address = parse_path(arg, allow_empty=False, domain_literals=self.policy.allow_domain_literals)
        except BadAddress as e:
            return self._send(501, str(e) if arg else "empty address")
        if "@" not in address:
            qualified = self.policy.qualify_recipient(self.session, address)
            if qualified is None:
                connlog.unqualified(self.policy, self.session, "verify", address)
                return self._send(501, "%s: recipient address must contain a domain" % arg)
            address = qualified
        self._policy_command(self.policy.vrfy, address, arg)

    def smtp_EXPN(self, arg):
        self._policy_command(self.policy.expn, arg)

    def smtp_ETRN(self, arg):
        if self.envelope is not None:
            return self._synprot(503, "ETRN is not permitted inside a transaction", kind="protocol")
        # an empty argument too goes to the ACL (and then fails the "#" check)
        def answered(reply):
            if reply is not None and reply.code == 501:
                # without smtp_etrn_command an argument must start with "#":
                # a syntax error (the only 501 the policy gives ETRN)
                return self._synprot(501, reply.text)
            self._send_reply(reply, 250, "OK")

        self._ask(self.policy.etrn, self.session, arg, then=answered)


class SMTPServerFactory(protocol.ServerFactory):
    """Makes one SMTPServerProtocol per connection, all asking the same policy."""

    def __init__(self, policy, clock=None, tls_on_connect=False, connections=None, census=None):
        self.policy = policy
        self.clock = clock
        self.tls_on_connect = tls_on_connect
        # shared by all the listeners of one daemon process
        self.connections = connections if connections is not None else set()
        # what the connection limits count (smtp_accept_max...): these
        # sessions, or every process's (daemon_workers.Census)
        self.census = census if census is not None else self.connections

    def startFactory(self):
        """Give the reactor's thread pool a thread for every session
        smtp_accept_max allows (a hundred when it allows any number).  A
        session has at most one blocking step (a name lookup, an ACL that
        may block) in the pool at a time; so one client's slow DNS never
        makes another session wait for a thread, as with Exim's process
        per session.  Threads start only when work comes."""
        reactor = self.clock
        if reactor is None:
            from twisted.internet import reactor
        if not hasattr(reactor, "getThreadPool"):
            return          # a test's task.Clock
        pool = reactor.getThreadPool()
        wanted = self.policy.smtp_accept_max or 100
        if pool.max < wanted:
            pool.adjustPoolsize(maxthreads=wanted)

    def buildProtocol(self, addr):
        refusal = self.policy.refuse_connection(addr, self.census)
        if refusal is not None:
            return _Refuse(refusal)
        p = SMTPServerProtocol(self.policy, self.clock, self.tls_on_connect)
        p.factory = self
        p.peer_address = getattr(addr, "host", None)
        self.connections.add(p)
        p.finished.addBoth(lambda _: self.connections.discard(p))
        return p


class _Refuse(protocol.Protocol):
    """Says one reply and hangs up (smtp_accept_max and friends)."""

    def __init__(self, reply):
        self.reply = reply

    def connectionMade(self):
        self.transport.write(format_reply(self.reply.code, self.reply.text))
        self.transport.loseConnection()
