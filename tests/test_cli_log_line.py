"""exim_py -z TEXT: an administrator's line in the main log (spec, option -z)."""

import os
import shutil
import tempfile

from twisted.trial import unittest

from tests.support.peers import run_exim_py


class LogLineTests(unittest.TestCase):
    """-z writes its argument to the main log and exits 0."""

    def test_line_written(self):
        """The text appears after the timestamp, as Exim writes it."""
        tmp = tempfile.mkdtemp(prefix="exim-py-z-")
        self.addCleanup(shutil.rmtree, tmp, True)
        conf = os.path.join(tmp, "exim.conf")
        with open(conf, "w") as f:
            f.write("spool_directory = %s/spool\nlog_file_path = %s/%%slog\n" % (tmp, tmp))
        result = run_exim_py(["-C", conf, "-z", "checkpoint two"])
        self.assertEqual((result.returncode, result.stdout), (0, ""), result.stderr)
        with open(os.path.join(tmp, "mainlog")) as f:
            lines = f.read().splitlines()
        self.assertEqual(len(lines), 1)
        self.assertRegex(lines[0], r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d checkpoint two$")
