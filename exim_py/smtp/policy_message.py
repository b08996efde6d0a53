"""What happens to a message the SMTP server has read: header limits, the
headers Exim adds, the PRDR and DATA ACLs, then the spool and delivery.

A mixin of ServerPolicy (smtp/policy.py): its ``receive`` is the one call
the protocol makes once the data is in, and its Reply (250 with the
message id, or the refusal) is the answer to the dot or to BDAT LAST.
Spec chapters "SMTP processing" (message reception), "Access control lists"
(the DATA ACL) and "Message processing"; RFC 5321 4.5.3.1 for the limits.
"""

from twisted.internet import defer

from exim_py import EXIM_COMPAT_VERSION, receive as receiving
from exim_py.log import msglog_received_line, received_fields, received_line
from exim_py.smtp import acl_phase
from exim_py.smtp.reply import Reply


class MessagePolicy:
    """``receive`` and its steps; see ServerPolicy for the attributes used."""

    def message_abandoned(self, envelope, partial, lost=False):
        """A message is given up before its end: a data timeout or SIGTERM,
        or (``lost``) the client gone.  ``partial`` is the wire data so far
        (None when not known, for BDAT).  Exim gives a message its id once
        it has read the header section; a timeout or SIGTERM after that is
        logged with the id, the not-QUIT ACL's lines included, so the
        envelope gets one.  A lost connection drops the id first, and its
        line says whether the data stopped in the header section."""
        if envelope is None:
            return
        if lost:
            envelope.lost_where = "" if partial is None else _lost_where(partial)
        elif (partial is None or _header_read(partial)) and not envelope.message_id \
                and self.spool_writer is not None:
            envelope.message_id = self.spool_writer.new_message_id()

    def receive(self, session, envelope, message, longest=None):
        """After the data: headers built (exim_py.receive), the DATA ACL, then the spool.

        ``message`` is the stored form (dot-unstuffed, LF line ends);
        ``longest`` its longest line when the caller knows it.  The reply
        carries the message id; the 250 is not sent before the message is
        durable.
        """
        too_long = self._header_limits(message)
        if too_long is not None:
            return too_long
        envelope.message_id = self.spool_writer.new_message_id()
        controls = acl_phase.message_controls(session, envelope)
        # No remote host (-bs from a local program): a local message, which
        # gets Message-ID:, From: and Date: when missing, as Exim's receive.c.
        local = not session.sender_host_address
        ctx = self._receive_context(session, envelope, local or "submission" in controls)
        body = receiving.receive(envelope, message, self.config, local=local,
                               submission="submission" in controls,
                               suppress_local_fixups="suppress_local_fixups" in controls,
                               expand=self.expand_mod.expand, ctx=ctx, longest=longest)
        envelope.received_body = body
        acl_phase.add_acl_headers(envelope, session)
        prdr = acl_phase.run_prdr(self, session, envelope)
        if prdr is not None and prdr[1] == "550":
            return Reply(550, "", lines=["353 PRDR content analysis beginning"] + prdr[0]
                         + ["550 id=%s %s" % (envelope.message_id, prdr[2])])
        # nothing left to ask about when every recipient was discarded or
        # refused by the PRDR ACL (receive.c)
        reply = self._run_acl("data", "acl_smtp_data", session, envelope) if envelope.recipients else None
        if isinstance(reply, defer.Deferred):
            return reply.addCallback(self._after_data_acl, session, envelope, body, prdr)
        return self._after_data_acl(reply, session, envelope, body, prdr)

    def _receive_context(self, session, envelope, fixups):
        """The expansion context the headers are made in.  The default
        Received: text reads only the message's own variables (which
        receiving.receive adds) and these two, so a remote, non-submission
        message does without the session's full set of variables."""
        if fixups or self._option("received_header_text") != receiving.RECEIVED_HEADER_TEXT:
            return self.expand_context(session, envelope)
        return self.expand_mod.ExpandContext(
            config=self.config, headers=envelope.headers,
            variables={"primary_hostname": self.primary_hostname, "version_number": EXIM_COMPAT_VERSION})

    def _msglog_line(self, envelope, fields):
        """The message log's "Received from" line, from the <= line's fields
        when both logs select the same (None: the spool makes it, or there
        are no message logs)."""
        msglog = getattr(getattr(self.spool_writer, "spool", None), "msglog_logger", None)
        if msglog is None or fields is None or msglog.selectors != self.logger.selectors:
            return None
        return msglog_received_line(envelope, msglog, fields)

    def _header_limits(self, message):
        """header_maxsize and header_line_maxsize: Exim's 552s, or None."""
        limit = self._option("header_maxsize", 1024 * 1024)
        line_limit = self._option("header_line_maxsize", 0)
        if not line_limit and len(message) <= limit:
            return None     # the header section is part of the message
        header = _header_section(message)
        if limit and len(header) > limit:
            return Reply(552, "Message header is ridiculously long")
        if line_limit:
            headers, _, _ = receiving.split_message(header + b"\n")
            if any(len(h.text.encode("utf-8", "surrogateescape")) > line_limit for h in headers):
                return Reply(552, "A message header line is too long")
        return None

    def _after_data_acl(self, reply, session, envelope, body, prdr=None):
        if prdr is not None:
            # the per-recipient replies go first, whatever the DATA ACL says
            final = self._after_data_acl(reply, session, envelope, body)
            return defer.maybeDeferred(lambda: final).addCallback(self._prdr_reply, envelope, prdr)
        if reply is not None and not reply.ok:
            return reply
        acl_phase.add_acl_headers(envelope, session)
        controls = acl_phase.message_controls(session, envelope)
        # mua_wrapper ignores every queueing option and control (spec
        # chapter "Using Exim as a non-queueing client").
        wrapper = self._option("mua_wrapper", False)
        if "freeze" in controls and not wrapper:
            envelope.frozen = True
        # an accepting DATA ACL's message replaces "OK id=..." (receive.c)
        accepted = reply if reply is not None and reply.lines else None
        if not envelope.recipients:
            # every recipient discarded: Exim logs the arrival and its end,
            # and keeps nothing; refused by the PRDR ACL: nothing more to log
            if self.logger is not None and getattr(envelope, "discarded", None):
                log_msg = getattr(envelope, "discard_log", None) if envelope.discarded == "DATA" else None
                for line in (received_line(envelope, self.logger),
                             "=> blackhole (%s ACL discarded recipients)%s" % (
                                 envelope.discarded, ": " + log_msg if log_msg else ""),
                             "Completed"):
                    self.logger.main(line, message_id=envelope.message_id)
            return accepted or Reply(250, "OK id=%s" % envelope.message_id)
        if self.host_checking:
            # -bh stores nothing, but shows the <= line it would have logged
            if self.logger is not None:
                self.logger.main(received_line(envelope, self.logger), message_id=envelope.message_id)
            return accepted or Reply(250, "OK id=%s" % envelope.message_id)
        # the <= line's fields, made once for the main log and the message log
        fields = received_fields(envelope, self.logger) if self.logger is not None else None
        d = self.spool_writer.store(envelope, body, self._msglog_line(envelope, fields),
                                    (self.logger, "<= " + fields) if fields is not None else None)

        def stored(message_id):
            # smtp_accept_queue_per_connection: beyond that many messages in
            # one session, leave them for the queue runner
            count = getattr(session, "message_count", 0) + 1
            session.message_count = count
            per_connection = self._option("smtp_accept_queue_per_connection", 10)
            busy = per_connection and count > per_connection
            delivery = None
            queued = self._option("queue_only", False) or "queue_only" in controls \
                or envelope.frozen or busy
            if self.deliver is not None and (wrapper or not queued):
                delivery = self.deliver(message_id, envelope)
            fake = controls.get("fakereject"), controls.get("fakedefer")
            if fake[0] is not None or fake[1] is not None:
                options = fake[0] if fake[0] is not None else fake[1]
                text = options[1:] if options.startswith("/") else \
                    "Your message has been rejected but is being kept for evaluation.\n" \
                    "If it was a legitimate message, it may still be delivered to the target recipient(s)."
                reply = Reply(550 if fake[0] is not None else 450, text)
            else:
                reply = accepted or Reply(250, "OK id=%s" % message_id)
            # -bs -odi: the reply (and so the next command) waits for the delivery
            if self.reply_after_delivery and isinstance(delivery, defer.Deferred):
                return delivery.addBoth(lambda _: reply)
            return reply

        return d.addCallback(stored)

    @staticmethod
    def _prdr_reply(final, envelope, prdr):
        lines = ["353 PRDR content analysis beginning"] + prdr[0]
        if final.ok and final.text.startswith("OK id="):
            lines.append("%s id=%s %s" % (prdr[1], envelope.message_id, prdr[2]))
        else:
            lines.extend(final.lines or ["%d %s" % (final.code, final.text)])
        return Reply(final.code, final.text, drop=final.drop, lines=lines)


def _header_read(partial):
    """Whether wire data ``partial`` holds the end of the header section
    (whole lines only: a header line still arriving is not yet read)."""
    lines = partial[:partial.rfind(b"\n") + 1].replace(b"\r\n", b"\n")
    return len(_header_section(lines)) < len(lines)


def _lost_where(partial):
    """What Exim's "lost while reading message data" line adds for wire
    data ``partial``: " (header)" before a whole line came, "" once the
    body has started, else " (after header)".  Exim knows a header line
    has ended only when it sees the next line's first character, so the
    last line read is still in the header section unless it is blank."""
    end = partial.rfind(b"\n")
    if end < 0:
        return " (header)"
    lines = partial[:end + 1].replace(b"\r\n", b"\n")[:-1].split(b"\n")
    header_name = receiving._HEADER_NAME
    for i, line in enumerate(lines):
        if not line:
            return ""
        if not (header_name.match(line) or (i and line[:1] in (b" ", b"\t"))):
            return "" if i < len(lines) - 1 else " (after header)"
    return " (after header)"


def _header_section(message):
    """The header lines at the top of ``message``: they end at a blank line,
    or at the first line that is neither a header nor a continuation, which
    starts the body (as receive.split_message and Exim's receive.c decide)."""
    header_name = receiving._HEADER_NAME
    pos, n = 0, len(message)
    while pos < n:
        end = message.find(b"\n", pos)
        end = n if end < 0 else end
        line = message[pos:end]
        if not line or not (header_name.match(line) or (pos and line[:1] in (b" ", b"\t"))):
            break
        pos = end + 1
    return message[:pos]
