"""transport_filter on the smtp transport: the filter runs as the data is
written, so a filter that cannot be run is found out after DATA (Exim's test
0504, which real Exim 4.96 passes)."""

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
  transport_filter = /non/existent/file
"""


class SmtpTransportFilterTests(unittest.TestCase):
    """A transport filter that fails to execute, on a remote delivery."""

    def test_failure_comes_after_data(self):
        """The session goes as far as DATA, no message data follows, the
        connection is dropped and the delivery deferred with the reason."""
        tmp = tempfile.mkdtemp(prefix="exim-py-tf-")
        self.addCleanup(shutil.rmtree, tmp, True)
        port, received, thread = _next_hop(1)
        conf = os.path.join(tmp, "exim.conf")
        with open(conf, "w") as f:
            f.write(CONFIG.format(dir=tmp, port=port))
        run_exim_py(["-C", conf, "-odi", "userx"], input="Test 3\n")
        thread.join(30)
        self.assertEqual([line.split(":")[0].split()[0] for line in received[0]],
                         ["EHLO", "MAIL", "RCPT", "DATA"])
        with open(os.path.join(tmp, "mainlog")) as f:
            log = f.read()
        self.assertIn("== userx@myhost.test.ex R=r1 T=t3 defer", log)
        self.assertIn("failed to run transport filter /non/existent/file", log)
