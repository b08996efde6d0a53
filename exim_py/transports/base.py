"""What every transport shares: option access, the generic options, and
writing a message out with the headers a transport adds or removes.

Contract (HACKING.rst "Delivery"): a transport's ``deliver(message,
addresses, ctx)`` is called on the reactor thread; it returns None or a
Deferred, and sets each address's result.  Local transports do their file
and process work in a thread (``threads.deferToThread``).  The generic
options are in spec chapter "Generic options for transports".
"""

import email.utils
import os
import time

from exim_py.delivery.drivers import DriverBase
from exim_py.delivery.address import DEFER
from exim_py.errors import ExpansionError


class TransportBase(DriverBase):
    """Base class for transport drivers.

    ``remote`` is False for local transports (appendfile, pipe, autoreply:
    one address per call unless ``batch_max`` says more) and True for the
    smtp transport (the engine groups addresses with the same host list,
    up to ``max_addresses()``).
    """

    remote = False

    def expand_opt(self, name, addr, ctx, host=None):
        """Option ``name`` expanded for ``addr`` (None when unset)."""
        value = self.options[name]
        if value is None:
            return None
        return ctx.expand(value, addr, transport=self, host=host)

    def max_addresses(self):
        """How many addresses one ``deliver()`` call may take: a local
        transport's ``batch_max`` (default 1).  Exim batches only while the
        count stays below batch_max, so 0 and 1 alike mean one address per
        delivery (spec chapter "Address batching in local transports"); the
        smtp transport has its own rule for ``max_rcpt``."""
        if "batch_max" not in self.options:
            return 1
        return max(int(self.options["batch_max"] or 1), 1)

    def deliver(self, message, addresses, ctx):
        raise NotImplementedError

    # -- helpers ------------------------------------------------------------

    def return_path(self, message, addr, ctx):
        """The envelope sender for this delivery (generic ``return_path``, errors_to)."""
        rp = addr.errors_to if addr.errors_to is not None else (message.sender or "")
        if self.options["return_path"] is not None:
            rp = ctx.expand(self.options["return_path"], addr, transport=self,
                            extra={"return_path": rp})
        return rp

    def fail_all(self, addresses, result, message, errno=None):
        for a in addresses:
            a.set_result(result, message, errno)

    def added_headers(self, message, addresses, ctx):
        """Header lines this delivery adds: Return-path, Envelope-to, Delivery-date,
        the routers' headers_add and the transport's own headers_add."""
        addr = addresses[0]
        top_lines = []
        if self.options["return_path_add"]:
            top_lines.append("Return-path: <%s>\n" % self.return_path(message, addr, ctx))
        if self.options["envelope_to_add"]:
            seen = []
            for a in addresses:
                original = a.top.address
                if original not in seen:
                    seen.append(original)
            top_lines.append("Envelope-to: %s\n" % ", ".join(seen))
        if self.options["delivery_date_add"]:
            top_lines.append("Delivery-date: %s\n" % rfc2822_date(ctx.now()))
        bottom = list(addr.extra_headers)
        if self.options["headers_add"] is not None:
            text = ctx.expand(self.options["headers_add"], addr, transport=self)
            bottom.extend(split_header_lines(text))
        return top_lines, bottom

    def removed_headers(self, addr, ctx):
        names = [n.lower() for n in addr.remove_headers]
        if self.options["headers_remove"] is not None:
            text = ctx.expand(self.options["headers_remove"], addr, transport=self)
            names.extend(n.strip().lower() for n in text.split(":") if n.strip())
        return names

    def message_chunks(self, message, addresses, ctx, eol=b"\n", dot_stuff=False,
                       check_string=None, escape_string=None):
        """The message as bytes chunks, ready to write (blocking: runs in a thread).

        ``eol`` is the line ending to use (b"\\r\\n" for SMTP); ``dot_stuff``
        doubles a leading dot (RFC 5321 4.5.2); ``check_string`` and
        ``escape_string`` escape lines that start with check_string
        (appendfile's "From " handling for mbox files).  With the generic
        ``transport_filter`` option the message passes through that command
        first; a failing filter raises ExpansionError (the delivery defers).
        """
        check = check_string.encode() if check_string else None
        escape = (escape_string or "").encode()

        def line_out(line):
            if line.endswith(b"\r\n"):
                line = line[:-2]
            elif line.endswith(b"\n"):
                line = line[:-1]
            if check and line.startswith(check):
                line = escape + line[len(check):]
            if dot_stuff and line.startswith(b"."):
                line = b"." + line
            return line + eol

        filtered = self.options["transport_filter"] is not None
        # With nothing to change inside lines, the body is converted in
        # blocks rather than line by line (the same bytes, less work).
        plain = not (filtered or check or dot_stuff)
        lines = self._raw_lines(message, addresses, ctx, with_body=not plain)
        if filtered:
            lines = self._filtered(b"".join(lines), addresses[0], ctx)
        buf, size = [], 0
        for line in lines:
            piece = line_out(line)
            buf.append(piece)
            size += len(piece)
            if size > 65536:
                yield b"".join(buf)
                buf, size = [], 0
        if buf:
            yield b"".join(buf)
        if plain and not self.options["headers_only"]:
            with message.open_body() as body:
                yield from _body_blocks(body, eol)

    def _raw_lines(self, message, addresses, ctx, with_body=True):
        """The message's lines as the transport sends it, LF-terminated
        (without the body's lines unless ``with_body``)."""
        addr = addresses[0]
        headers_only = self.options["headers_only"]
        if not self.options["body_only"]:
            top, bottom = self.added_headers(message, addresses, ctx)
            removed = set(self.removed_headers(addr, ctx))
            for text in top:
                yield from _lines(text.encode())
            for h in message.headers:
                if h.flag == "*" or h.name.lower() in removed:
                    continue
                yield from _lines(h.text.encode("utf-8", "surrogateescape"))
            for text in bottom:
                yield from _lines(text.encode())
            if not headers_only:
                yield b"\n"
        if headers_only or not with_body:
            return
        with message.open_body() as body:
            yield from body

    def _filtered(self, data, addr, ctx):
        """Lines of ``data`` after transport_filter (each argument expanded
        separately, as for the pipe transport's command)."""
        import subprocess
        argv = [ctx.expand(a, addr, transport=self)
                for a in split_command(self.options["transport_filter"])]
        try:
            done = subprocess.run(argv, input=data, capture_output=True,
                                  timeout=self.options["transport_filter_timeout"] or None)
        except subprocess.TimeoutExpired:
            raise ExpansionError("transport filter timed out")
        except OSError as e:
            raise ExpansionError("failed to run transport filter %s: %s" % (argv[0], e.strerror))
        if done.returncode != 0:
            error = ExpansionError("transport filter process failed (%d)" % done.returncode)
            error.output = done.stdout      # the smtp transport still sends it, as Exim
            raise error
        return _lines(done.stdout)


def _body_blocks(body, eol):
    """The body file's bytes in blocks of about 64 KB, each line ending in
    ``eol``: what message_chunks' per-line conversion makes of lines that
    need no escaping (a CR before a line's LF is dropped; a last line
    without a newline gets one)."""
    carry = b""
    last = b"\n"
    while True:
        block = body.read(65536)
        if not block:
            break
        block = carry + block
        # A CR at the end of a block may be the first half of a CR LF.
        carry = b"\r" if block.endswith(b"\r") else b""
        if carry:
            block = block[:-1]
        if not block:
            continue
        last = block[-1:]
        block = block.replace(b"\r\n", b"\n")
        yield block if eol == b"\n" else block.replace(b"\n", eol)
    if carry:
        yield carry + eol
    elif last != b"\n":
        yield eol


def _lines(data):
    """Split bytes into lines keeping their endings; a last line without one gets one."""
    lines = data.splitlines(keepends=True)
    if lines and not lines[-1].endswith(b"\n"):
        lines[-1] += b"\n"
    return lines


def split_command(text):
    """Split a command line into arguments as Exim's transport_set_up_command:
    white space separates, '...' is literal, "..." allows backslash escapes."""
    args = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            return args
        cur = []
        while i < n and not text[i].isspace():
            c = text[i]
            if c == "'":
                j = text.find("'", i + 1)
                j = n if j < 0 else j
                cur.append(text[i + 1:j])
                i = j + 1
            elif c == '"':
                i += 1
                while i < n and text[i] != '"':
                    if text[i] == "\\" and i + 1 < n:
                        i += 1
                    cur.append(text[i])
                    i += 1
                i += 1
            else:
                cur.append(c)
                i += 1
        args.append("".join(cur))


def split_header_lines(text):
    """headers_add text → header lines, each ending in a newline.

    Exim separates added headers by newlines; an empty result adds nothing.
    Continuation lines (starting with white space) stay with their header.
    """
    out = []
    for line in text.split("\n"):
        if not line.strip():
            continue
        if line[0] in " \t" and out:
            out[-1] += line + "\n"
        else:
            out.append(line + "\n")
    return out


def rfc2822_date(when=None):
    """A Date:-style timestamp in local time, as Exim's $tod_full."""
    return email.utils.formatdate(when if when is not None else time.time(), localtime=True)


def defer_on_expansion_error(addresses, what, error):
    """Mark every address deferred because option ``what`` did not expand."""
    for a in addresses:
        a.set_result(DEFER, "Failed to expand %s: %s" % (what, error))


def running_as_root():
    return os.geteuid() == 0


__all__ = ["TransportBase", "split_command", "split_header_lines", "rfc2822_date", "ExpansionError",
           "defer_on_expansion_error", "running_as_root"]
