"""Message content as it arrives after DATA or BDAT: finding its end and
turning the wire form into the stored form.

DATA is where SMTP smuggling happens (CVE-2023-51766): a server that ends
the message at something other than <CR><LF>.<CR><LF> can be made to read
the rest as new commands that a relay forwarding the message never saw as
such.  Over the network the only terminator is <CR><LF>.<CR><LF> (with the
leading <CR><LF> implied at the very start); <LF>.<LF>, <LF>.<CR><LF>,
<CR>.<CR>, <CR><LF>.<CR> and friends are message content.

A local SMTP session on a pipe (-bs) has no relay in front of it to be
fooled, and local programs write Unix line ends: there, as in Exim, a line
that ends in a bare LF is a line, so <LF>.<LF> and <LF>.<CR><LF> end the
message too (spec: "a subsequent LF not preceded by CR is treated as a line
ending").  <CR>.<CR> never does.

Stored form (spec chapter "Message processing", section on line endings):
lines end in a single LF.  CR is a line ending (a following LF is part of
it).  If the first line of the message ended with CRLF, a bare LF is
suspicious: in the header it ends the line but the next line is made a
continuation (a space is added, as for a bare CR in a header), and in the
body it becomes a space.  If the first line ended with a bare LF, bare LFs
are line endings.  RFC 5321 4.5.2: a leading dot is removed from a line
that follows a real line ending.
"""

import re

TERMINATOR = b"\r\n.\r\n"
# For -bs input only: a dot line between line ends that may be bare LFs.
_LF_TERMINATOR = re.compile(rb"\r?\n\.\r?\n")

_LINE_SPLIT = re.compile(rb"(\r\n|\r|\n)")


class DataCollector:
    """Collects DATA content until <CR><LF>.<CR><LF>, bounded in size.

    ``feed(data)`` returns ``None`` while the message is not finished, or
    the bytes that followed the terminator (the next pipelined commands).
    Content beyond ``limit`` bytes is counted but not kept, so an oversized
    message costs no memory; ``too_big`` then says so.
    """

    def __init__(self, limit=0, lf_line_ends=False):
        self.limit = limit
        self.lf_line_ends = lf_line_ends
        self._chunks = []
        self._kept = 0
        # Bytes on the wire, until that passes the limit; from then on the
        # stored form's size, which is what Exim compares and logs (read=).
        self.size = 0
        self._counting = False
        self._before = b"\n"      # the byte before the next one counted
        self.too_big = False
        # The last few bytes seen, prefixed with the CRLF that precedes the
        # content, so a terminator split across reads is still found.
        self._tail = b"\r\n"

    def feed(self, data):
        tail = self._tail
        if self.lf_line_ends:
            window = tail + data
            m = _LF_TERMINATOR.search(window)
            end, length = (m.start(), m.end() - m.start()) if m else (-1, 0)
            # The line end before the dot: CRLF or a bare LF.
            lead = 2 if m and window[end:end + 1] == b"\r" else 1
        else:
            # Positions are in tail + data, without building it: a terminator
            # that began in the tail is within its first bytes and comes
            # before any that lies wholly in this read.
            length, lead = len(TERMINATOR), 2
            end = (tail + data[:length - 1]).find(TERMINATOR)
            if end < 0:
                end = data.find(TERMINATOR)
                if end >= 0:
                    end += len(tail)
        if end < 0:
            self._keep(data)
            self._tail = (tail + data)[-4:] if len(data) < 4 else data[-4:]
            return None
        # The terminator's line end belongs to the last line of content.
        content_end = end + lead - len(self._tail)
        if content_end > 0:
            self._keep(data[:content_end])
        elif content_end < 0:
            # The terminator began in an earlier read, whose '.' (and CR)
            # were kept as content: take them back.
            self._trim(-content_end)
        return data[end + length - len(self._tail):]

    def _keep(self, data):
        if not self._counting:
            self.size += len(data)
            if not (self.limit and self.size > self.limit):
                self._chunks.append(data)
                return
            # Past message_size_limit on the wire.  Exim measures the stored
            # form (LF line ends, stuffing dots removed), which is smaller:
            # count that from here on, and refuse only when it is over too.
            self._counting = True
            kept = b"".join(self._chunks)
            self._chunks = [kept]
            self.size = self._stored_length(kept)
        self.size += self._stored_length(data)
        if self.size > self.limit:
            self.too_big = True
        if not self.too_big:
            self._chunks.append(data)

    def _stored_length(self, data):
        size, self._before = stored_length(self._before, data, dot_stuffed=True)
        return size

    def _trim(self, count):
        # The '.' (and CR) of a terminator begun in an earlier read: in the
        # stored count its '.' was a stuffing dot and a last CR not yet counted.
        if not self._counting:
            self.size -= count
        if not self.too_big:
            data = b"".join(self._chunks)
            self._chunks = [data[:len(data) - count]]

    def content(self):
        """The wire content, without the terminating '.' line."""
        return b"".join(self._chunks)


def unstuff(raw, dot_stuffed=True):
    """Wire content (CRLF lines, dot-stuffed) → stored content (LF lines).

    Returns ``(data, linecount, zerocount, max_linelength)``.
    """
    # The usual content has only CRLF line ends: turning each into LF
    # removes exactly one byte per LF and leaves no CR behind.  Anything
    # else (a bare CR or LF) takes the slow path.  This runs for every
    # message, so it is done with whole-buffer operations.
    linecount = raw.count(b"\n")
    data = raw.replace(b"\r\n", b"\n")
    if len(raw) - len(data) == linecount and b"\r" not in data:
        if dot_stuffed:
            if data.startswith(b"."):
                data = data[1:]
            if b"\n." in data:
                data = data.replace(b"\n.", b"\n")
        lines = data.split(b"\n")
    else:
        data, lines = _normalise_bare(raw, dot_stuffed)
        linecount = data.count(b"\n")
    longest = max(map(len, lines), default=0)
    return data, linecount, data.count(b"\0"), longest


def _normalise_bare(raw, dot_stuffed):
    """The slow path for content with a bare CR or LF (see the module docstring)."""
    parts = _LINE_SPLIT.split(raw)
    texts, ends = parts[0::2], parts[1::2] + [b""]
    crlf_mode = bool(ends) and ends[0] == b"\r\n"
    out = []
    in_header = True
    pending = b""              # text carried over when a bare LF became a space
    after_real_end = True      # the previous line ended with CRLF (or LF in LF mode)
    continuation = False
    for text, end in zip(texts, ends):
        if after_real_end and dot_stuffed and text.startswith(b"."):
            text = text[1:]
        line = pending + text
        pending = b""
        if continuation:
            line = b" " + line
            continuation = False
        if end == b"\n" and crlf_mode and not in_header:
            pending = line + b" "
            after_real_end = False
            continue
        if in_header and line == b"":
            in_header = False
        out.append(line)
        if end == b"\r" or (end == b"\n" and crlf_mode):
            # a bare CR (or a suspicious bare LF) inside the header must not
            # end the header line (nor start a new header)
            continuation = in_header
            after_real_end = False
        else:
            after_real_end = True
    if pending:
        out.append(pending)
    if out and out[-1] == b"" and ends[-1] == b"":
        out.pop()
        return b"\n".join(out) + b"\n", out
    return b"\n".join(out), out


def stored_length(before, data, dot_stuffed):
    """(the stored size of ``data``, the byte to pass as ``before`` with the
    next read): CRLF is one byte, and with ``dot_stuffed`` a dot that starts
    a line is none.  ``before`` is the byte that preceded ``data`` (an LF at
    the start).  A CR at the end is counted with the next read, when it is
    known whether an LF follows it."""
    window = before + data
    size = (len(data) - window.count(b"\r\n") + (before == b"\r") - data.endswith(b"\r"))
    if dot_stuffed:
        size -= window.count(b"\n.")
    return size, window[-1:]


class BdatCollector:
    """The chunks of one BDAT transfer (RFC 3030), kept until BDAT LAST.

    ``size`` is the bytes the chunks carried (BDAT LAST's "total"), or for a
    message over the limit its stored size, which is what Exim compares
    with message_size_limit and logs."""

    def __init__(self, limit):
        self.limit = limit
        self.last_size = 0
        self.too_big = False
        self._wire = 0
        self._stored = None       # counted once the wire size passes the limit
        self._chunks = []
        self._this = 0
        self._before = b"\n"

    @property
    def size(self):
        return self._stored if self.too_big else self._wire

    def feed_chunk(self, data):
        self._this += len(data)
        self._wire += len(data)
        if self._stored is None:
            if not (self.limit and self._wire > self.limit):
                self._chunks.append(data)
                return
            self._stored, self._before = stored_length(b"\n", b"".join(self._chunks), False)
        size, self._before = stored_length(self._before, data, False)
        self._stored += size
        if self._stored > self.limit:
            self.too_big = True
            self._chunks = []
        elif not self.too_big:
            self._chunks.append(data)

    def chunk_done(self):
        self.last_size, self._this = self._this, 0

    def content(self):
        """Stored form: BDAT data is not dot-stuffed; CR, LF and CRLF all end lines."""
        raw = b"".join(self._chunks)
        if raw and not raw.endswith((b"\n", b"\r")):
            raw += b"\r\n"
        data = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = data.split(b"\n")
        return data, data.count(b"\n"), data.count(b"\0"), max(map(len, lines), default=0)
