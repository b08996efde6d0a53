"""An SMTP reply as the server's policy gives it, and its wire form."""


class Reply:
    """A policy's answer that replaces the default reply: code, text, whether to drop,
    and optionally the exact ``lines`` to send (when they carry more than code and text)."""

    __slots__ = ("code", "text", "drop", "lines")

    def __init__(self, code, text, drop=False, lines=None):
        self.code = int(code)
        self.text = text
        self.drop = drop
        self.lines = lines

    @property
    def ok(self):
        return 200 <= self.code < 400

    def __repr__(self):
        return "Reply(%d, %r%s)" % (self.code, self.text, ", drop" if self.drop else "")


def format_reply(code, text):
    """Exim's multi-line reply: every line but the last has a '-' after the code."""
    if "\n" not in text:
        return ("%d %s\r\n" % (code, text)).encode("utf-8", "surrogateescape")
    lines = text.split("\n")
    out = []
    for i, line in enumerate(lines):
        out.append("%d%s%s\r\n" % (code, "-" if i < len(lines) - 1 else " ", line))
    return "".join(out).encode("utf-8", "surrogateescape")
