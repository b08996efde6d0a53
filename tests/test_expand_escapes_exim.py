"""Backslash escapes in expansion strings make bytes, as in Exim.

``\\xe9`` and ``\\351`` give the single byte 0xE9 (not the two UTF-8 bytes of
the character U+00E9), escapes that spell a UTF-8 sequence give those
bytes, and 8-bit text written literally keeps its bytes; byte-counting
operators see bytes.  Each test compares exim_py with Debian's exim4 byte
for byte: ``-be`` output, a ``logwrite`` line under ``-bh`` and a header
added by an ACL as the -H spool file stores it.
"""

import glob
import os
import pwd
import shutil
import tempfile

from twisted.trial import unittest

from tests.support.bh import oracle
from tests.support.peers import QUIET_MAIN, both_outputs, run_both, runners


# Strings whose bytes depend on how escapes and 8-bit text are read.
CASES = [
    "\\xe9",
    "\\351",
    "a\\xe9b\\351c",
    "\\xc3\\xa9",
    "\\303\\251",
    "é",
    "${strlen:\\xe9}",
    "${strlen:é}",
    "${length_1:é}",
    "${hex2b64:${md5:\\xe9}}",
    "${escape:\\xe9é\\x01}",
    "${tr{\\xe9}{\\xe9}{e}}",
    "${if eq{\\xc3\\xa9}{é}{same}{different}}",
    "${lc:\\xc9}",
    "${str2b64:\\xe9\\xff}",
]


class EscapeBytesTests(unittest.TestCase):
    """Escapes and 8-bit text through -be, logwrite and add_header."""

    def setUp(self):
        self.exim = oracle(self)

    def test_be_output_bytes(self):
        """Every case prints the same bytes under exim_py -be as under exim4 -be."""
        conf = self.exim.write_config(QUIET_MAIN)
        for case in CASES:
            theirs, ours = both_outputs(self.exim, conf, ["-be", case])
            self.assertEqual(ours, theirs, case)

    def test_config_text_bytes(self):
        """8-bit text from the configuration (a named list, an ACL's message)
        and arguments handed to ${acl} and to list matching keep their bytes."""
        conf = self.exim.write_config(
            QUIET_MAIN + "domainlist dl = é.example : b\nbegin acl\na:\n"
            "  accept message = got $acl_arg1 ${strlen:$acl_arg1} \\xe9\n")
        cases = ["${listnamed:dl}", "${strlen:${listnamed:dl}}", "${acl{a}{é}}",
                 "${acl{a}{\\xe9}}", "${if match_domain{é.example}{+dl}{y$value}{n}}",
                 "${if match_domain{\\xc3\\xa9.example}{+dl}{y}{n}}",
                 "${if match_domain{\\xe9.example}{+dl}{y}{n}}"]
        for case in cases:
            theirs, ours = both_outputs(self.exim, conf, ["-be", case])
            self.assertEqual(ours, theirs, case)

    def test_file_name_bytes(self):
        """${readfile}, exists and ${stat} use the file whose name has the
        bytes the string has: \\xe9 names a different file from é."""
        conf = self.exim.write_config(QUIET_MAIN)
        for name, text in ((b"f\xe9", b"latin\n"), (b"f\xc3\xa9", b"utf8\n")):
            path = os.path.join(os.fsencode(self.exim.dir), name)
            with open(path, "wb") as f:
                f.write(text)
            os.chmod(path, 0o644)
        for case in ("${readfile{%s/f\\xe9}}" % self.exim.dir,
                     "${if exists{%s/f\\xe9}{y}{n}}" % self.exim.dir,
                     "${if exists{%s/f\\xe8}{y}{n}}" % self.exim.dir,
                     "${extract{size}{${stat:%s/f\\xe9}}}" % self.exim.dir,
                     "${readfile{%s/fé}}" % self.exim.dir):
            theirs, ours = both_outputs(self.exim, conf, ["-be", case])
            self.assertEqual(ours, theirs, case)
        self.assertEqual(theirs, b"utf8\n\n")

    def test_be_stdin_bytes(self):
        """Lines read from standard input keep their 8-bit bytes as exim4 does."""
        conf = self.exim.write_config(QUIET_MAIN)
        data = "\n".join(CASES).encode("utf-8") + b"\n\xe9${strlen:\xe9}\n"
        theirs, ours = both_outputs(self.exim, conf, ["-be"], data)
        self.assertEqual(ours, theirs)

    def test_logwrite_bytes(self):
        """A logwrite string with escapes and UTF-8 text logs Exim's octal escapes
        for the same bytes (\\351 for \\xe9, \\303\\251 for é)."""
        conf = self.exim.write_config(
            QUIET_MAIN + "acl_smtp_rcpt = r\nbegin acl\nr:\n"
            "  warn logwrite = A\\xe9B\\351C é \\xc3\\xa9 ${length_1:é} ${strlen:é}\n"
            "  deny\n")
        dialogue = b"HELO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nQUIT\r\n"

        def logwrite_line(stderr):
            lines = [line for line in stderr.splitlines() if line.startswith(b"LOG: A")]
            self.assertEqual(len(lines), 1, stderr)
            return lines[0]

        theirs, ours = (logwrite_line(result.stderr) for result in
                        run_both(self.exim, conf, ["-bh", "127.0.0.1"], dialogue, text=False))
        self.assertEqual(theirs, b"LOG: A\\351B\\351C \\303\\251 \\303\\251 \\303 2")
        self.assertEqual(ours, theirs)

    def test_reject_message_bytes(self):
        """A deny's message and log_message, and a warn's log_message, carry the
        bytes exim4 gives them: on the 550 reply, and on the -bh LOG lines."""
        conf = self.exim.write_config(
            QUIET_MAIN + "acl_smtp_rcpt = r\nbegin acl\nr:\n"
            "  warn log_message = LM é \\xe9 \\x01\n"
            "  deny message = DM é \\xe9\n       log_message = DL é \\xe9\n")
        dialogue = b"HELO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nQUIT\r\n"

        def lines(result):
            return ([line for line in result.stdout.split(b"\r\n") if line.startswith(b"550")],
                    [line for line in result.stderr.splitlines() if b"LOG: " in line
                     and b" M=" not in line and (b"LM" in line or b"DL" in line)])

        theirs, ours = (lines(result) for result in
                        run_both(self.exim, conf, ["-bh", "127.0.0.1"], dialogue, text=False))
        self.assertEqual(theirs[0], [b"550 DM \xc3\xa9 \xe9"])
        self.assertEqual(ours, theirs)

    def test_add_header_bytes(self):
        """A header added by an ACL holds the escaped byte itself, as exim4's
        -H file does."""
        def spool_header(run, owner):
            spool = tempfile.mkdtemp(prefix="exim_py-escapes-")
            self.addCleanup(shutil.rmtree, spool, True)
            if owner:
                os.chown(spool, pwd.getpwnam(owner).pw_uid, -1)
            conf = self.exim.write_config(
                QUIET_MAIN + "spool_directory = %s\nlog_file_path = %s/%%slog\n"
                "acl_smtp_rcpt = r\nbegin acl\nr:\n"
                "  accept add_header = X-Esc: a\\xe9b \\303\\251 é\n" % (spool, spool),
                name="%s.conf" % os.path.basename(spool))
            run(conf, ["-odq", "-bs"],
                b"HELO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n"
                b"Subject: t\r\n\r\nbody\r\n.\r\nQUIT\r\n")
            files = glob.glob(os.path.join(spool, "input", "*-H"))
            self.assertEqual(len(files), 1, spool)
            with open(files[0], "rb") as f:
                return [line for line in f.read().splitlines() if b"X-Esc:" in line]

        exim4, exim_py = runners(self.exim, text=False)
        theirs = spool_header(exim4, "Debian-exim")
        ours = spool_header(exim_py, None)
        self.assertEqual(theirs, [b"017  X-Esc: a\xe9b \xc3\xa9 \xc3\xa9"])
        self.assertEqual(ours, theirs)
