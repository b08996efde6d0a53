"""How transports turn the spool's -D body into the bytes they write."""

import io

from twisted.trial import unittest

from exim_py.transports.base import _body_blocks


def line_by_line(data, eol):
    """The per-line conversion message_chunks applies to lines that need no
    escaping: the line's own ending (CR LF or LF) is replaced by ``eol``."""
    out = []
    for line in io.BytesIO(data):
        if line.endswith(b"\r\n"):
            line = line[:-2]
        elif line.endswith(b"\n"):
            line = line[:-1]
        out.append(line + eol)
    return b"".join(out)


class BodyBlocksTests(unittest.TestCase):

    CASES = [b"", b"one\n", b"one\ntwo", b"crlf\r\nlf\n", b"cr\rinside\n", b"double\r\r\n",
             b"ends in cr\r", b"\r", b"\n\n\r\n", b".dot\n..two\n"]

    def test_same_bytes_as_line_by_line(self):
        """Block conversion gives exactly what the line-by-line conversion
        gives, for LF and CR LF line ends, bare CRs and a missing last newline."""
        for data in self.CASES:
            for eol in (b"\n", b"\r\n"):
                self.assertEqual(b"".join(_body_blocks(io.BytesIO(data), eol)),
                                 line_by_line(data, eol), (data, eol))

    def test_cr_lf_split_between_blocks(self):
        """A CR LF that straddles the 64 KB read boundary is still one line end."""
        for tail in (b"\r\n" + b"y" * 100 + b"\n", b"\rz\n", b"\r"):
            data = b"x" * 65535 + tail
            for eol in (b"\n", b"\r\n"):
                self.assertEqual(b"".join(_body_blocks(io.BytesIO(data), eol)),
                                 line_by_line(data, eol))
