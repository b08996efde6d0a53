"""``mua_wrapper`` with ``-bs``: each message is delivered at once, in the
session's process, whatever queue_only and ACL controls say (spec chapter
"Using Exim as a non-queueing client"; Exim's test 0495)."""

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
mua_wrapper = true
queue_only
acl_smtp_rcpt = check_rcpt

begin acl

check_rcpt:
  accept control = queue_only
         control = freeze

begin routers

r1:
  driver = accept
  transport = t1

begin transports

t1:
  driver = smtp
  hosts = 127.0.0.1
  port = {port}
  allow_localhost
"""


class MuaWrapperSmtpTests(unittest.TestCase):
    """An SMTP session on standard input under mua_wrapper."""

    def test_message_delivered_before_the_session_ends(self):
        """queue_only, control = queue_only and control = freeze are ignored:
        the next hop gets both recipients and the message before exim_py
        exits, and the log shows the deliveries."""
        tmp = tempfile.mkdtemp(prefix="exim-py-mua-")
        self.addCleanup(shutil.rmtree, tmp, True)
        port, received, thread = _next_hop(1)
        conf = os.path.join(tmp, "exim.conf")
        with open(conf, "w") as f:
            f.write(CONFIG.format(dir=tmp, port=port))
        session = ["ehlo a.b", "mail from:<sen@der>", "rcpt to:<a@x.y>", "rcpt to:<b@x.y>",
                   "data", "Subject: hi", "", "body", ".", "quit", ""]
        result = run_exim_py(["-C", conf, "-bs"], input="\n".join(session))
        thread.join(30)
        self.assertIn("250 OK id=", result.stdout)
        lines = received[0] if received else []
        self.assertIn("RCPT TO:<b@x.y>", lines)
        self.assertIn("body", lines)
        with open(os.path.join(tmp, "mainlog")) as f:
            log = f.read()
        self.assertIn("=> a@x.y", log)
        self.assertIn("Completed", log)
