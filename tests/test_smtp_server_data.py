"""Message content after DATA and BDAT: the end marker, dot-unstuffing,
bare CR and LF, and SMTP smuggling (CVE-2023-51766) regression tests.

A smuggling attempt hides a second message behind an end marker that some
server accepts and another does not.  Only <CR><LF>.<CR><LF> ends DATA
here, so each hidden "end" below must stay message content and the
commands after it must not run.
"""

from twisted.trial import unittest

from exim_py.smtp.data import DataCollector, unstuff
from tests.test_smtp_server import Dialogue, make_policy

SMUGGLED = b"MAIL FROM:<evil@attacker.example>\r\nRCPT TO:<victim@y.example>\r\nDATA\r\nSubject: smuggled\r\n"


class EndOfDataTests(unittest.TestCase):
    """DataCollector finds the one real end marker wherever reads split it."""

    def test_terminator_split_across_reads(self):
        """Every way of splitting the input gives the same content and the same remainder."""
        wire = b"Subject: a\r\n\r\nline\r\n..dot\r\n.\r\nQUIT\r\n"
        for i in range(len(wire)):
            for j in range(i, len(wire)):
                collector = DataCollector()
                rest = None
                for part in (wire[:i], wire[i:j], wire[j:]):
                    rest = collector.feed(part) if rest is None else rest + part
                self.assertEqual(rest, b"QUIT\r\n", (i, j))
                self.assertEqual(collector.content(), b"Subject: a\r\n\r\nline\r\n..dot\r\n")

    def test_empty_message(self):
        """A '.' straight after DATA is an empty message."""
        collector = DataCollector()
        self.assertEqual(collector.feed(b".\r\nNOOP\r\n"), b"NOOP\r\n")
        self.assertEqual(collector.content(), b"")

    def test_size_limit_keeps_counting(self):
        """Beyond the limit content is counted, not kept, and the end is still found."""
        collector = DataCollector(limit=10)
        self.assertIsNone(collector.feed(b"x" * 100 + b"\r\n"))
        self.assertEqual(collector.feed(b".\r\n"), b"")
        self.assertTrue(collector.too_big)
        self.assertEqual(collector.content(), b"")


class LocalLineEndTests(unittest.TestCase):
    """With lf_line_ends (-bs input only) a bare-LF dot line also ends DATA."""

    def test_lf_dot_lf_ends_local_data(self):
        """LF.LF and LF.CRLF end the content for a local session, split anywhere."""
        for wire in (b"Subject: a\n\nline\n..dot\n.\nQUIT\n", b"Subject: a\n\nline\n..dot\n.\r\nQUIT\n"):
            for i in range(len(wire)):
                collector = DataCollector(lf_line_ends=True)
                rest = collector.feed(wire[:i])
                rest = collector.feed(wire[i:]) if rest is None else rest + wire[i:]
                self.assertEqual(rest, b"QUIT\n", (wire, i))
                self.assertEqual(collector.content(), b"Subject: a\n\nline\n..dot\n")

    def test_cr_dot_cr_never_ends(self):
        """CR.CR is content even for a local session (spec: it never terminates)."""
        collector = DataCollector(lf_line_ends=True)
        self.assertIsNone(collector.feed(b"Subject: a\r\n\r\nx\r.\rQUIT\r\n"))

    def test_network_collector_ignores_lf_dot_lf(self):
        """The network default keeps LF.LF as content (the smuggling rule)."""
        collector = DataCollector()
        self.assertIsNone(collector.feed(b"Subject: a\n\nline\n.\nQUIT\n"))


class StoredFormTests(unittest.TestCase):
    """unstuff(): wire form to Exim's stored form."""

    def test_dot_unstuffing(self):
        """RFC 5321 4.5.2: one leading dot is removed from each line."""
        self.assertEqual(unstuff(b"..a\r\n...b\r\nc.\r\n")[0], b".a\n..b\nc.\n")

    def test_counts(self):
        """Line count, NUL count and the longest line are reported."""
        self.assertEqual(unstuff(b"ab\r\nc\0d\r\n"), (b"ab\nc\0d\n", 2, 1, 3))

    def test_bare_cr_in_header_continues_the_line(self):
        """A bare CR inside a header ends the line but cannot start a new header."""
        data = unstuff(b"Subject: a\r\nX-A: b\rX-Evil: c\r\n\r\nbody\r\n")[0]
        self.assertEqual(data, b"Subject: a\nX-A: b\n X-Evil: c\n\nbody\n")

    def test_bare_lf_in_crlf_body_is_a_space(self):
        """With CRLF lines, a bare LF in the body becomes a space."""
        self.assertEqual(unstuff(b"S: x\r\n\r\nbo\ndy\r\n")[0], b"S: x\n\nbo dy\n")

    def test_lf_only_message_keeps_lf_lines(self):
        """A message whose first line ends in a bare LF has LF line endings."""
        self.assertEqual(unstuff(b"S: x\n\nline one\nline two\n")[0], b"S: x\n\nline one\nline two\n")


class SmugglingTests(unittest.TestCase):
    """Fake end markers inside DATA are content; the hidden commands never run."""

    def _attempt(self, fake_end):
        policy, spool = make_policy(self)
        d = Dialogue(policy)
        d.take()
        d.send("EHLO c\r\n")
        d.send("MAIL FROM:<a@b.example>\r\n")
        d.send("RCPT TO:<c@d.example>\r\n")
        d.send("DATA\r\n")
        out = d.send(b"Subject: real\r\n\r\nreal body" + fake_end + SMUGGLED)
        self.assertEqual(out, "", "a fake end marker %r ended the message" % (fake_end,))
        self.assertEqual(d.proto._mode, "data")
        d.send(b"smuggled body\r\n.\r\n")
        return d, spool

    def _check(self, fake_end):
        d, spool = self._attempt(fake_end)
        # the real end: the spool write happens in a thread, so wait for the reply
        from twisted.internet import defer, reactor, task

        @defer.inlineCallbacks
        def wait():
            for _ in range(200):
                if d.transport.value():
                    break
                yield task.deferLater(reactor, 0.01, lambda: None)
            out = d.take()
            self.assertTrue(out.startswith("250 OK id="), out)
            ids = list(spool.message_ids())
            self.assertEqual(len(ids), 1, "exactly one message, holding the smuggled text")
            body = spool.read_body(ids[0])
            self.assertIn(b"evil@attacker.example", body)
            self.assertIn(b"smuggled body", body)
        return wait()

    def test_lf_dot_lf(self):
        """<LF>.<LF> does not end DATA."""
        return self._check(b"\n.\n")

    def test_lf_dot_crlf(self):
        """<LF>.<CR><LF> does not end DATA."""
        return self._check(b"\n.\r\n")

    def test_cr_dot_cr(self):
        """<CR>.<CR> does not end DATA."""
        return self._check(b"\r.\r")

    def test_crlf_dot_cr(self):
        """<CR><LF>.<CR> (no LF) does not end DATA."""
        return self._check(b"\r\n.\r")

    def test_crlf_dot_lf(self):
        """<CR><LF>.<LF> does not end DATA."""
        return self._check(b"\r\n.\n")

    def test_cr_dot_crlf(self):
        """<CR>.<CR><LF> does not end DATA."""
        return self._check(b"\r.\r\n")

    def test_crlf_dot_space_crlf(self):
        """A line holding '. ' is content, not the end."""
        return self._check(b"\r\n. \r\n")


class BdatTests(unittest.TestCase):
    """CHUNKING (RFC 3030): chunk replies, sequence errors, no dot handling."""

    def setUp(self):
        self.policy, self.spool = make_policy(self)
        self.d = Dialogue(self.policy)
        self.d.take()
        self.d.send("EHLO c\r\n")

    def test_bdat_without_recipients(self):
        """BDAT before a valid RCPT is refused and its data skipped."""
        self.assertEqual(self.d.send("BDAT 5\r\nhello"), "503 valid RCPT command must precede BDAT\r\n")
        self.assertEqual(self.d.send("NOOP\r\n"), "250 OK\r\n")

    def test_bdat_missing_size(self):
        """BDAT needs a size."""
        self.assertEqual(self.d.send("BDAT\r\n"), "501 missing size for BDAT command\r\n")

    def test_chunks_then_only_bdat(self):
        """After a non-LAST chunk NOOP is allowed; any other command is refused and
        abandons the message, and then only RSET is (Exim's bdat_getc)."""
        self.d.send("MAIL FROM:<a@b.example>\r\n")
        self.d.send("RCPT TO:<c@d.example>\r\n")
        self.assertEqual(self.d.send("BDAT 12\r\nSubject: a\r\n"), "250 12 byte chunk received\r\n")
        self.assertEqual(self.d.send("NOOP\r\n"), "250 OK\r\n")
        self.assertEqual(self.d.send("DATA\r\n"), "503 only BDAT permissible after non-LAST BDAT\r\n")
        self.assertEqual(self.d.send("BDAT 1 LAST\r\n"), "503 only RSET accepted now\r\n")
        self.assertEqual(self.d.send("RSET\r\n"), "250 Reset OK\r\n")
        self.assertEqual(self.d.send("BDAT 1 LAST\r\nx"), "503 valid RCPT command must precede BDAT\r\n")

    def test_zero_size_chunk(self):
        """An empty first chunk is taken; a later zero-size chunk that is
        not LAST is refused with 504."""
        self.d.send("MAIL FROM:<a@b.example>\r\n")
        self.d.send("RCPT TO:<c@d.example>\r\n")
        self.assertEqual(self.d.send("BDAT 0\r\n"), "250 0 byte chunk received\r\n")
        self.assertEqual(self.d.send("BDAT 0\r\n"), "504 zero size for BDAT command\r\n")

    def test_bdat_data_is_not_dot_unstuffed(self):
        """A '.' line inside a chunk is content, not an end marker."""
        from twisted.internet import defer, reactor, task
        self.d.send("MAIL FROM:<a@b.example>\r\n")
        self.d.send("RCPT TO:<c@d.example>\r\n")
        chunk = b"Subject: a\r\n\r\n.\r\n..x\r\n"
        self.d.send(b"BDAT %d LAST\r\n" % len(chunk) + chunk)

        @defer.inlineCallbacks
        def wait():
            for _ in range(200):
                if self.d.transport.value():
                    break
                yield task.deferLater(reactor, 0.01, lambda: None)
            out = self.d.take()
            self.assertRegex(out, r"^250- 22 byte chunk, total 22\r\n250 OK id=\S+\r\n$")
            ids = list(self.spool.message_ids())
            self.assertEqual(self.spool.read_body(ids[0]), b".\n..x\n")
        return wait()


class DataTimeoutTests(unittest.TestCase):
    """smtp_receive_timeout while the message is arriving."""

    def test_data_timeout_abandons_message(self):
        """A client silent in the middle of DATA gets Exim's 421 and nothing is stored."""
        from twisted.internet import task
        policy, spool = make_policy(self)
        clock = task.Clock()
        d = Dialogue(policy, clock=clock)
        d.take()
        d.send("EHLO c\r\n")
        d.send("MAIL FROM:<a@b.example>\r\n")
        d.send("RCPT TO:<c@d.example>\r\n")
        d.send("DATA\r\n")
        d.send("Subject: half\r\n\r\nhalf a mess")
        clock.advance(299)
        self.assertEqual(d.take(), "")
        clock.advance(2)
        self.assertEqual(d.take(), "421 mx.test.example SMTP incoming data timeout - closing connection.\r\n")
        self.assertTrue(d.transport.disconnecting)
        self.assertEqual(list(spool.message_ids()), [])
