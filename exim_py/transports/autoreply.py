"""The autoreply transport: answering a message with a new one (spec chapter
"The autoreply transport"; RFC 3834 for Auto-Submitted:).

The reply is built from the transport's options (to, cc, bcc, from,
reply_to, subject, headers, text, file) and queued from the null sender,
like a bounce, with References: and Auto-Submitted: auto-replied.
``return_message`` appends the original message.  ``once`` remembers whom
a reply went to: exim_py keeps that record in an SQLite file at the
``once`` path (Exim uses a DBM file there), or, with ``once_file_size``, in
a plain file of "time address" lines that never grows past that size.
Exim filter files (which pass reply data with the address) are not
interpreted by exim_py, so the options are the only source of the reply.
"""

import os
import time

from exim_py.config.options import BOOL, INT, OCTINT, STRING, Option, OptionTable
from exim_py.delivery.address import OK, DEFER
from exim_py.errors import ExpansionError, ForcedFail
from exim_py.transports.base import TransportBase

OPTIONS = OptionTable([
    Option("bcc", STRING, None, "blind copy recipients", expand=True),
    Option("cc", STRING, None, "Cc: recipients", expand=True),
    Option("file", STRING, None, "file whose contents follow the text", expand=True),
    Option("file_expand", BOOL, False, "expand the file's contents"),
    Option("file_optional", BOOL, False, "a missing file is not an error"),
    Option("from", STRING, None, "the From: header", expand=True),
    Option("headers", STRING, None, "extra header lines", expand=True),
    Option("log", STRING, None, "file recording each reply sent", expand=True),
    Option("mode", OCTINT, 0o600, "mode of created log and once files"),
    Option("never_mail", STRING, None, "addresses never to reply to", expand=True),
    Option("once", STRING, None, "record of recipients already answered", expand=True),
    Option("once_file_size", INT, 0, "size limit of a plain-file once record"),
    Option("once_repeat", STRING, "0s", "time after which to answer again", expand=True),
    Option("reply_to", STRING, None, "the Reply-To: header", expand=True),
    Option("return_message", BOOL, False, "include the original message"),
    Option("subject", STRING, None, "the Subject: header", expand=True),
    Option("text", STRING, None, "the body text", expand=True),
    Option("to", STRING, None, "To: recipients", expand=True),
])


def _addresses(text):
    """The addresses in a To:/Cc:/Bcc: style value."""
    from email.utils import getaddresses
    return [a for _, a in getaddresses([text]) if a]


class Transport(TransportBase):
    """driver = autoreply"""

    def deliver(self, message, addresses, ctx):
        from twisted.internet import threads     # Twisted only when delivering
        return threads.deferToThread(self.deliver_blocking, message, addresses, ctx)

    def _opt(self, name, addr, ctx):
        try:
            return self.expand_opt(name, addr, ctx)
        except ForcedFail:
            return None

    def deliver_blocking(self, message, addresses, ctx):
        addr = addresses[0]
        try:
            self._reply(message, addr, ctx)
        except (ExpansionError, OSError) as e:
            self.fail_all(addresses, DEFER, "Failed to send autoreply: %s" % e)
            return
        for a in addresses:
            a.set_result(OK)

    def _reply(self, message, addr, ctx):
        """Queue the reply; False when there was nobody (left) to send it to."""
        to = self._opt("to", addr, ctx) or ""
        cc = self._opt("cc", addr, ctx) or ""
        bcc = self._opt("bcc", addr, ctx) or ""
        recipients = _addresses(to) + _addresses(cc) + _addresses(bcc)
        never = self._opt("never_mail", addr, ctx)
        if never:
            from exim_py import match
            mctx = ctx.expand_context(addr)
            recipients = [r for r in recipients if not match.match_address(r, never, mctx)]
        if not recipients:
            return False
        once = self._opt("once", addr, ctx)
        to_list = _addresses(to)
        if once and to_list and self._already_sent(once, to_list[0], addr, ctx):
            return False
        text = self._compose(message, addr, ctx, to, cc)
        from exim_py.delivery.bounce import inject_message
        new_id = inject_message(ctx.config, ctx.spool, ctx.logger, message.id, recipients, text)
        ctx.created.append(new_id)
        if once and to_list:
            self._remember(once, to_list[0], ctx)
        log = self._opt("log", addr, ctx)
        if log:
            self._log(log, to, cc, bcc, text, ctx)
        return True

    def _compose(self, message, addr, ctx, to, cc):
        lines = []
        for header, option in (("From", "from"), ("Reply-To", "reply_to")):
            value = self._opt(option, addr, ctx)
            if value:
                lines.append("%s: %s\n" % (header, value))
        if to:
            lines.append("To: %s\n" % to)
        if cc:
            lines.append("Cc: %s\n" % cc)
        subject = self._opt("subject", addr, ctx)
        if subject:
            lines.append("Subject: %s\n" % subject)
        mid = [h.value.strip() for h in message.headers
               if h.flag != "*" and h.name.lower() == "message-id"]
        if mid:
            lines.append("In-Reply-To: %s\n" % mid[0])
            lines.append("References: %s\n" % mid[0])
        lines.append("Auto-Submitted: auto-replied\n")
        extra = self._opt("headers", addr, ctx)
        if extra:
            lines.extend(h if h.endswith("\n") else h + "\n" for h in extra.split("\n") if h)
        body = []
        text = self._opt("text", addr, ctx)
        if text:
            body.append(text if text.endswith("\n") else text + "\n")
        path = self._opt("file", addr, ctx)
        if path:
            try:
                with open(path, encoding="utf-8", errors="surrogateescape") as f:
                    content = f.read()
                if self.options["file_expand"]:
                    content = ctx.expand(content, addr, transport=self)
                body.append(content)
            except OSError:
                if not self.options["file_optional"]:
                    raise
        if self.options["return_message"]:
            body.append("------ This is a copy of the message, including all the headers. "
                        "------\n")
            body.append(b"".join(self.message_chunks(message, [addr], ctx)).decode(
                "utf-8", "surrogateescape"))
        return "".join(lines) + "\n" + "".join(body)

    # -- the "once" record ----------------------------------------------------

    def _repeat_seconds(self, addr, ctx):
        text = self._opt("once_repeat", addr, ctx) or "0s"
        from exim_py.cli import parse_time
        try:
            return parse_time(text.strip())
        except Exception:
            raise ExpansionError("Invalid time value \"%s\" for once_repeat" % text)

    def _already_sent(self, path, recipient, addr, ctx):
        repeat = self._repeat_seconds(addr, ctx)
        when = self._lookup_once(path, recipient)
        if when is None:
            return False
        return repeat == 0 or ctx.now() - when < repeat

    def _lookup_once(self, path, recipient):
        if not os.path.exists(path):
            return None
        if self.options["once_file_size"] > 0:
            with open(path) as f:
                for line in f:
                    stamp, _, who = line.rstrip("\n").partition(" ")
                    if who == recipient:
                        return int(stamp)
            return None
        import sqlite3
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE IF NOT EXISTS once (address TEXT PRIMARY KEY, sent INTEGER)")
            row = db.execute("SELECT sent FROM once WHERE address = ?", (recipient,)).fetchone()
        return row[0] if row else None

    def _remember(self, path, recipient, ctx):
        now = int(ctx.now())
        created = not os.path.exists(path)
        limit = self.options["once_file_size"]
        if limit > 0:
            lines = []
            if not created:
                with open(path) as f:
                    lines = [ln for ln in f if ln.rstrip("\n").partition(" ")[2] != recipient]
            lines.append("%d %s\n" % (now, recipient))
            while lines and sum(len(ln) for ln in lines) > limit:
                lines.pop(0)      # the oldest entry goes first
            with open(path, "w") as f:
                f.writelines(lines)
        else:
            import sqlite3
            with sqlite3.connect(path) as db:
                db.execute("CREATE TABLE IF NOT EXISTS once (address TEXT PRIMARY KEY,"
                           " sent INTEGER)")
                db.execute("INSERT OR REPLACE INTO once VALUES (?, ?)", (recipient, now))
        if created:
            os.chmod(path, self.options["mode"])

    def _log(self, path, to, cc, bcc, text, ctx):
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ctx.now()))
        subject = ""
        for line in text.split("\n"):
            if line.lower().startswith("subject:"):
                subject = line.split(":", 1)[1].strip()
                break
        entry = "%s\n  To: %s\n" % (stamp, to)
        if cc:
            entry += "  Cc: %s\n" % cc
        if bcc:
            entry += "  Bcc: %s\n" % bcc
        if subject:
            entry += "  Subject: %s\n" % subject
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, self.options["mode"])
        try:
            os.write(fd, entry.encode("utf-8", "surrogateescape"))
        finally:
            os.close(fd)
