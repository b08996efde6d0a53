"""transport_filter on the smtp transport: the filter runs as the data is
written, so a filter that cannot be run, or that fails, is found out after
DATA and the filter's output (Exim's tests 0504 and 0201, which real Exim
4.96 passes)."""

import os
import shutil
import tempfile

from twisted.trial import unittest

from tests.support.peers import run_exim_py
from tests.test_acl_callout_hold import _next_hop

CONFIG = """\
primary_hostname = myhost.test.ex
spool_directory = {dir}/spool
log_file_path = {dir}/%slog
keep_environment =

begin routers

r1:
  driver = accept
  transport = t3

begin transports

t3:
  driver = smtp
  hosts = 127.0.0.1
  port = {port}
  allow_localhost
  transport_filter = {filter}

begin retry

* * F,1d,1d
"""


class SmtpTransportFilterTests(unittest.TestCase):
    """A transport filter that fails to execute, on a remote delivery."""

    def deliver(self, command):
        tmp = tempfile.mkdtemp(prefix="exim-py-tf-")
        self.addCleanup(shutil.rmtree, tmp, True)
        port, received, thread = _next_hop(1)
        conf = os.path.join(tmp, "exim.conf")
        with open(conf, "w") as f:
            f.write(CONFIG.format(dir=tmp, port=port, filter=command))
        run_exim_py(["-C", conf, "-odi", "userx"], input="Test 3\n")
        thread.join(30)
        with open(os.path.join(tmp, "mainlog")) as f:
            return received[0], f.read()

    def test_filter_that_cannot_run(self):
        """The session goes through DATA; nothing but the dot follows (the
        filter wrote nothing) and the delivery is deferred with the reason."""
        lines, log = self.deliver("/non/existent/file")
        self.assertEqual([line.split()[0].split(":")[0] for line in lines],
                         ["EHLO", "MAIL", "RCPT", "DATA", ".", "QUIT"])
        self.assertIn("== userx@myhost.test.ex R=r1 T=t3 defer", log)
        self.assertIn("failed to run transport filter /non/existent/file", log)

    def test_failing_filter_output_is_sent(self):
        """A filter that exits non-zero: its output goes to the server, which
        accepts it, and the delivery is still deferred."""
        lines, log = self.deliver("/bin/sh -c 'cat; exit 99'")
        data = lines[lines.index("DATA") + 1:lines.index(".")]
        self.assertIn("Test 3", data)
        self.assertIn("defer", log)
        self.assertIn("transport filter process failed (99)", log)
        self.assertNotIn("=> userx", log)
