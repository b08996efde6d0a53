"""The mail transaction commands of the SMTP server: MAIL, RCPT, DATA, BDAT, RSET.

A mixin of SMTPServerProtocol: what builds, checks and hands on one
envelope (exim_py.envelope.Envelope), kept apart from reading commands,
timeouts and the session's other commands (smtp/server.py).  Spec chapter
"SMTP processing"; RFC 5321 4.1.1, RFC 1870 (SIZE), RFC 3461 (DSN),
RFC 3030 (CHUNKING).
"""

import re

from exim_py.envelope import Envelope, Recipient
from exim_py.smtp import connlog, data as smtpdata
from exim_py.smtp.params import BadAddress, OptionScanner, c_strtoul, parse_path, xtext_decode_strict
from exim_py.smtp.reply import Reply


_BDAT_ARGUMENT = re.compile(r"([0-9]+)\s*(.*)", re.ASCII | re.DOTALL)


def _prdr_requested(reply):
    """MAIL's positive reply notes a PRDR request (Exim's smtp_in.c adds
    it to the text, an ACL's message too)."""
    if reply is None:
        return Reply(250, "OK, PRDR Requested")
    lines = reply.lines[:-1] + [reply.lines[-1] + ", PRDR Requested"] if reply.lines else None
    return Reply(reply.code, reply.text + ", PRDR Requested", reply.drop, lines)


class TransactionCommands:
    """smtp_MAIL ... smtp_RSET; see SMTPServerProtocol for the attributes used."""

    __slots__ = ()

    # -- MAIL / RCPT -------------------------------------------------------

    def smtp_MAIL(self, arg):
        # until it is accepted, a MAIL counts as rejected for the RCPTs a
        # pipelining client sends after it (Exim's was_rej_mail)
        self._was_rej_mail = True
        if not self.helo_seen and self.policy.helo_required(self.session):
            self.policy.log_no_helo(self.session)
            return self._send(503, "HELO or EHLO required")
        if self.envelope is not None:
            return self._synprot(503, "sender already given", kind="protocol")
        if not arg:
            return self._synprot(501, "MAIL must have an address operand", kind="protocol")
        if self.messages >= self.policy.smtp_accept_max_per_connection > 0:
            self._send(421, "%s too many messages in this connection" % self.policy.hostname(self.session))
            return self._drop()
        env = Envelope(self.session)
        operand, problem = self._mail_params(env, arg) if self.esmtp else (arg, None)
        if problem:
            return self._synprot(501, problem)
        try:
            env.sender = parse_path(operand, allow_empty=True,
                                    domain_literals=self.policy.allow_domain_literals)
        except BadAddress as e:
            return self._synprot(501, str(e), data=operand)
        declared = getattr(env, "size_declared", None)
        if declared:
            limit = self.policy.message_size_limit(self.session)
            if limit and declared > limit:
                connlog.size_reject(self.policy, self.session, env.sender, declared, limit)
                return self._send(552, "Message size exceeds maximum permitted")
        if env.sender and "@" not in env.sender:
            qualified = self.policy.qualify_sender(self.session, env.sender)
            if qualified is None:
                connlog.unqualified(self.policy, self.session, "sender", env.sender)
                return self._send(501, "%s: sender address must contain a domain" % operand)
            env.sender = qualified

        def answered(reply):
            if reply is None or reply.ok:
                self._was_rej_mail = False
                self.envelope = env
                self.rcpt_response = None
                self.rcpt_response_same = True
                if env.prdr:
                    reply = _prdr_requested(reply)
            self._send_reply(reply, 250, "OK")

        self._ask(self.policy.mail, self.session, env, then=answered, sync="MAIL")

    def _mail_params(self, env, arg):
        """Take MAIL's ESMTP parameters off the end of ``arg`` and apply them,
        as Exim's loop over extract_option: (the address operand left, the
        501 text or None).

        The rightmost parameter comes first, so of two the leftmost wins.
        A name Exim does not know, a SIZE that is not a number, BODY when
        8BITMIME was not offered and an empty value end the loop; the
        first two stay in the operand, which then is malformed, the others
        are dropped.  RET, ENVID and PRDR not offered are dropped and the
        loop goes on; SMTPUTF8 not offered is refused."""
        offered = self.extensions
        scan = OptionScanner(arg)
        for name, value in scan.known(self.policy.mail_params(offered)):
            if value == "" and name not in ("PRDR", "SMTPUTF8"):
                break
            if name == "SIZE":
                size = c_strtoul(value)
                if size is None:
                    break
                env.size_declared = size
            elif name == "BODY":
                if "8BITMIME" not in offered:
                    break
                body = value.upper()
                if body not in ("7BIT", "8BITMIME"):
                    return None, "invalid data for BODY"
                env.body_type = body
            elif name == "RET" and "DSN" in offered:
                if env.dsn_ret:
                    return None, "RET can be specified once only"
                env.dsn_ret = value.upper()
                if env.dsn_ret not in ("FULL", "HDRS"):
                    return None, "Value for RET is invalid"
            elif name == "ENVID" and "DSN" in offered:
                if env.dsn_envid is not None:
                    return None, "ENVID can be specified once only"
                # kept as xtext, as Exim stores it and passes it on
                env.dsn_envid = value
            elif name == "AUTH" and value != "<>":
                # RFC 4954 5: honoured only for an authenticated client; the
                # policy decides (acl_smtp_mailauth).
                env.auth_param = xtext_decode_strict(value)
                if env.auth_param is None:
                    return None, "invalid data for AUTH"
                if self.session.authenticated_id is None and not self.policy.config.main.get(
                        "acl_smtp_mailauth"):
                    # without acl_smtp_mailauth only an authenticated client's is taken
                    env.auth_param = None
                    connlog.auth_ignored(self.policy, self.session, value, "client not authenticated")
            elif name == "PRDR" and "PRDR" in offered:
                env.prdr = True
            elif name == "SMTPUTF8":
                if "SMTPUTF8" not in offered:
                    return None, "SMTPUTF8 used when not advertised"
                env.smtputf8 = True
        return scan.operand, None

    def smtp_RCPT(self, arg):
        self._was_rcpt = True
        if self.envelope is None:
            # After a rejected MAIL a pipelining client's RCPTs are not its fault.
            self._note_rcpt_response("503 sender not yet given")
            if self.pipelining and self._last_was_rej_mail:
                self._was_rej_mail = True
                return self._send(503, "sender not yet given")
            self._was_rcpt = False
            return self._synprot(503, "sender not yet given", kind="protocol")
        if not arg:
            self._note_rcpt_response("501 RCPT must have an address operand")
            return self._synprot(501, "RCPT must have an address operand")
        env = self.envelope
        operand, notify, orcpt = arg, None, None
        if self.esmtp:
            operand, notify, orcpt = self._rcpt_params(arg)
            if operand is None:
                return self._synprot(501, notify)
        try:
            address = parse_path(operand, allow_empty=False,
                                 domain_literals=self.policy.allow_domain_literals)
        except BadAddress as e:
            if operand == "":
                return self._rcpt_failed(501, "empty address")
            # a syntax error, counted as one (Exim's synprot_error)
            self._note_rcpt_response("501 %s: %s" % (operand, e))
            return self._synprot(501, str(e), data=operand)
        if "@" not in address:
            qualified = self.policy.qualify_recipient(self.session, address)
            if qualified is None:
                connlog.unqualified(self.policy, self.session, "recipient", address)
                return self._rcpt_failed(501, "%s: recipient address must contain a domain" % operand)
            address = qualified
        limit = self.policy.recipients_max(self.session)
        if limit and len(env.recipients) >= limit:
            if self.policy.recipients_max_reject:
                return self._rcpt_failed(552, "too many recipients")
            return self._rcpt_failed(452, "too many recipients")
        rcpt = Recipient(address, dsn_notify=notify, orcpt=orcpt)

        def answered(reply):
            if reply is None or reply.ok:
                if getattr(env, "rcpt_discarded", False):
                    # an ACL's discard: accepted, and left out (acl_phase)
                    env.rcpt_discarded = False
                    env.recipients_dropped = True
                else:
                    env.recipients.append(rcpt)
                self._note_rcpt_response("250 Accepted" if reply is None else reply.text)
            else:
                self._note_rcpt_response(reply.text)
            self._send_reply(reply, 250, "Accepted")

        self._ask(self.policy.rcpt, self.session, env, rcpt, then=answered, sync="RCPT")

    def _rcpt_params(self, arg):
        """Take RCPT's NOTIFY and ORCPT (DSN offered) off the end of ``arg``,
        as Exim's loop over extract_option: (operand, NOTIFY, ORCPT), or
        (None, the 501 text).  Anything else ends the loop and stays in the
        operand (a bare word joined to it by "=", as Exim puts it back)."""
        scan = OptionScanner(arg)
        notify = orcpt = None
        for name, value in scan.known(self.policy.rcpt_params(self.extensions), rcpt=True):
            if name == "ORCPT":
                if orcpt is not None:
                    return None, "ORCPT can be specified once only", None
                orcpt = value   # kept as xtext, as Exim does
            elif notify:
                return None, "NOTIFY can be specified once only", None
            else:
                # NEVER alone, or a list of the others (an empty value sets nothing)
                words = value.upper().split(",") if value else []
                if words != ["NEVER"] and not set(words) <= {"SUCCESS", "FAILURE", "DELAY"}:
                    return None, "Invalid value for NOTIFY parameter", None
                notify = ",".join(words) or None
        return scan.operand, notify, orcpt

    def _rcpt_failed(self, code, text):
        self._note_rcpt_response("%d %s" % (code, text))
        self._send(code, text)

    def _note_rcpt_response(self, text):
        """Remember RCPT replies: a reply Exim formats itself is kept with its
        code, an ACL's message without it (as Exim's rcpt_smtp_response)."""
        if self.rcpt_response is None:
            self.rcpt_response = text
        elif self.rcpt_response != text:
            self.rcpt_response_same = False

    # -- DATA / BDAT -------------------------------------------------------

    def _no_valid_rcpt(self, verb):
        """Exim's answer to DATA/BDAT without an accepted recipient."""
        lines = []
        if self.rcpt_response is not None and self.rcpt_response_same:
            lines = ["All RCPT commands were rejected with this error:", self.rcpt_response]
        if self.pipelining and self._last_was_rcpt:
            # a pipelining client could not know: not counted as an error
            self._send(503, "\n".join(lines + ["Valid RCPT command must precede %s" % verb]))
        else:
            self._synprot(503, "\n".join(lines + ["valid RCPT command must precede %s" % verb]),
                          kind="protocol")

    def _no_recipients(self):
        """No transaction, or no recipient accepted (one accepted and then
        discarded counts: Exim takes the message and drops it)."""
        env = self.envelope
        return env is None or not env.recipients and not getattr(env, "recipients_dropped", False)

    def smtp_DATA(self, arg):
        if self._no_recipients():
            self._early_pipe = False
            return self._no_valid_rcpt("DATA")

        def answered(reply):
            self._early_pipe = False
            if reply is not None and not reply.ok:
                self._send_reply(reply, 0, "")
                return
            limit = self.policy.message_size_limit(self.session)
            self._collector = smtpdata.DataCollector(limit, self.lf_line_ends)
            self._mode = "data"
            self._send_reply(reply, 354, 'Enter message, ending with "." on a line by itself')

        self._ask(self.policy.predata, self.session, self.envelope, then=answered, sync="DATA")

    def _end_of_data(self):
        collector, self._collector = self._collector, None
        self._mode = "command"
        env = self.envelope
        if collector.too_big:
            self.envelope = None
            self._new_message_expected()
            self.policy.log_too_big(self.session, env, collector.size,
                                    smtpdata.unstuff(collector.content())[0])
            self._send(552, "Message size exceeds maximum permitted")
            return
        message, linecount, zerocount, longest = smtpdata.unstuff(collector.content())
        self._accept_message(env, message, linecount, zerocount, longest)

    def _accept_message(self, env, message, linecount, zerocount, longest, first_line=None):
        def answered(reply):
            if first_line is not None and reply is not None and reply.ok and not reply.lines:
                # BDAT LAST: Exim acknowledges the chunk, then the message
                reply = Reply(reply.code, reply.text, reply.drop,
                              lines=[first_line, "%d %s" % (reply.code, reply.text)])
            self.envelope = None
            self.rcpt_response = None
            self.rcpt_response_same = True
            self._new_message_expected()
            accepted = reply is None or reply.ok
            if accepted:
                self.messages += 1
            connlog.host_check_message_id(self.policy, env.message_id if accepted and env.recipients
                                          else None)
            if self._send_reply(reply, 250, "OK") and accepted:
                self._message_accepted()

        connlog.host_check_message_id(self.policy, None)
        self._ask(self.policy.receive, self.session, env, message, longest, then=answered)

    def _message_accepted(self):
        """Called once a message's positive reply is sent (-bh's protocol
        adds its note that the id is not real)."""

    def smtp_BDAT(self, arg):
        self._early_pipe = False
        if "CHUNKING" not in self.extensions:
            return self._synprot(503, "BDAT command used when CHUNKING not advertised", kind="protocol")
        # Exim reads the argument with sscanf("%u %n"): the size, then the
        # chunk is the last one when all that follows is "LAST"; anything
        # else after the size is ignored
        m = _BDAT_ARGUMENT.match(arg)
        if m is None:
            return self._synprot(501, "missing size for BDAT command", kind="protocol")
        size, last = int(m.group(1)), m.group(2).upper() == "LAST"
        if size == 0 and not last and self._bdat is not None:
            # an empty first chunk is fine, a later one is not
            return self._refuse_chunking(504, "zero size for BDAT command")
        if self._no_recipients():
            # the chunk must still be read and thrown away
            self._skip_chunk(size)
            return self._no_valid_rcpt("BDAT")
        if self._bdat is None:
            self._bdat = smtpdata.BdatCollector(self.policy.message_size_limit(self.session))
        self._bdat_left = size
        self._bdat_last = last
        self._mode = "bdat"
        if self._bdat_left == 0:
            self._mode = "command"
            self._end_of_chunk()

    def _refuse_chunking(self, code, text):
        """A BDAT transfer given up (Exim's bdat_getc): the transaction is
        gone, and until RSET every command but QUIT gets "only RSET
        accepted now"."""
        self._reset_transaction()
        self._rset_only = True
        self._synprot(code, text, kind="protocol")

    def _skip_chunk(self, size):
        if not size:
            return
        self._bdat = smtpdata.BdatCollector(1)
        self._bdat_left = size
        self._bdat_last = True
        self._mode = "bdat" if size else "command"
        self._bdat_discard = True

    def _end_of_chunk(self):
        chunks = self._bdat
        chunks.chunk_done()
        if self._bdat_discard:
            self._bdat = None
            self._bdat_discard = False
            return
        if not self._bdat_last:
            # without PIPELINING the next BDAT must wait for this reply
            if self._buffer and not self.pipelining and self.policy.enforce_sync(self.session):
                return self._sync_error("BDAT")
            self._send(250, "%d byte chunk received" % chunks.last_size)
            return
        self._bdat = None
        env = self.envelope
        if chunks.too_big:
            self.envelope = None
            self.policy.log_too_big(self.session, env, chunks.size, chunks.content()[0])
            self._send(552, "Message size exceeds maximum permitted")
            return

        def answered(reply):
            if reply is not None and not reply.ok:
                self.envelope = None
                self._send_reply(reply, 0, "")
                return
            message, linecount, zerocount, longest = chunks.content()
            env.flags.add("chunking")      # K on the <= line
            self._accept_message(env, message, linecount, zerocount, longest,
                                 first_line="250- %d byte chunk, total %d" % (chunks.last_size, chunks.size))

        # Exim runs the DATA-time checks for BDAT too, after the last chunk.
        self._ask(self.policy.predata, self.session, env, then=answered)

    # -- the end of a transaction -----------------------------------------

    def _reset_transaction(self):
        self.envelope = None
        self._bdat = None
        self.rcpt_response = None
        self.rcpt_response_same = True

    def smtp_RSET(self, arg):
        self.policy.transaction_reset(self.session, self.envelope)
        self._reset_transaction()
        self._rset_only = False
        self._send(250, "Reset OK")
