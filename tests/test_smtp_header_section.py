"""Where the header section of a received message ends, for header_maxsize.

Exim's receive.c ends the headers at a blank line or at the first line that
is neither a header nor a continuation (that line starts the body), so a
message that begins with body text has no headers to be too long (Exim's
test 0525 sends 200000 such lines over -bs).
"""

import os
import shutil
import tempfile

from twisted.trial import unittest

from exim_py.smtp.policy_message import _header_section
from tests.support.peers import run_exim_py

CONFIG = """\
primary_hostname = myhost.test.ex
spool_directory = {dir}/spool
log_file_path = {dir}/%slog
keep_environment =
acl_smtp_rcpt = accept
header_maxsize = 1K
"""


class HeaderSectionTests(unittest.TestCase):
    """_header_section and the 552 for header_maxsize."""

    def test_body_text_ends_the_headers(self):
        """A line that is not a header starts the body; continuations belong
        to the header above them; a blank line ends the section."""
        self.assertEqual(_header_section(b"aaaa\nb: c\n"), b"")
        self.assertEqual(_header_section(b"A: b\n c\nbody\n"), b"A: b\n c\n")
        self.assertEqual(_header_section(b"A: b\n\nB: c\n"), b"A: b\n")
        self.assertEqual(_header_section(b"A: b"), b"A: b")

    def session(self, data_lines):
        tmp = tempfile.mkdtemp(prefix="exim-py-hdr-")
        self.addCleanup(shutil.rmtree, tmp, True)
        conf = os.path.join(tmp, "exim.conf")
        with open(conf, "w") as f:
            f.write(CONFIG.format(dir=tmp))
        lines = ["helo test", "mail from:<abc@xyz>", "rcpt to:<def@pqr>", "data"]
        lines += data_lines + [".", "quit", ""]
        return run_exim_py(["-C", conf, "-bs", "-odq"], input="\n".join(lines)).stdout

    def test_headerless_message_is_not_too_long(self):
        """Many lines of body text with no header above them are accepted."""
        self.assertIn("250 OK id=", self.session(["a" * 79] * 100))

    def test_long_header_section_refused(self):
        """Real headers beyond header_maxsize still get Exim's 552."""
        out = self.session(["X-%d: %s" % (i, "a" * 70) for i in range(30)] + ["", "body"])
        self.assertIn("552 Message header is ridiculously long", out)
