"""-oMa and -oMi: the address and port a trusted caller gives, read as Exim does.

Exim takes a port off the end (``[ip]:port``, or ``ip.port`` after the four
parts of an IPv4 address or the first dot after an IPv6 address's last
colon) and abandons when what is left is no IP address.  -be, -bm and -bs
share one function for it (exim_py/hostport.py); these tests compare what
-be shows and what -bm spools and logs with Debian's exim4.
"""

import glob
import os
import pwd
import re
import shutil
import tempfile

from twisted.trial import unittest

from exim_py.hostport import NotAnIPAddress, command_line_address
from tests.support.bh import oracle
from tests.support.peers import QUIET_MAIN, run_both, runners

# Values of -oMa whose port is easy to misread: an IPv4-mapped IPv6 address
# has dots after its last colon but no port.
VALUES = ["::ffff:1.2.3.4", "2001:db8::5.25", "1.2.3.4.25", "[1.2.3.4]:26", "1.2.3.4",
          "2001:db8::5", "[2001:db8::6]:27", "::ffff:1.2.3.4.28"]

SHOW_SENDER = "[$sender_host_address] [$sender_host_port]"
SHOW = SHOW_SENDER + " [$interface_address] [$interface_port]"


class CommandLineAddressTests(unittest.TestCase):
    """command_line_address itself, without a peer."""

    def test_mapped_address_has_no_port(self):
        """::ffff:1.2.3.4 is an address with no port, not ::ffff:1.2.3 port 4."""
        self.assertEqual(command_line_address("::ffff:1.2.3.4"), ("::ffff:1.2.3.4", 0))

    def test_ipv6_port_after_dot(self):
        """2001:db8::5.25 is port 25 of 2001:db8::5."""
        self.assertEqual(command_line_address("2001:db8::5.25"), ("2001:db8::5", 25))

    def test_not_an_address(self):
        """Text that is no IP address is refused with Exim's words."""
        with self.assertRaises(NotAnIPAddress) as caught:
            command_line_address("1.2.3.4.x")
        self.assertEqual(str(caught.exception), '"1.2.3.4.x" is not an IP address')


class OmaTests(unittest.TestCase):
    """-oMa / -oMi under -be and -bm, against exim4."""

    def setUp(self):
        self.exim = oracle(self)

    def test_be_variables(self):
        """-be shows the same address and port variables as exim4 -be for each value."""
        conf = self.exim.write_config(QUIET_MAIN)
        for value in VALUES:
            theirs, ours = (result.stdout for result in
                            run_both(self.exim, conf, ["-oMa", value, "-oMi", value, "-be", SHOW],
                                     text=False))
            self.assertEqual(ours, theirs, value)

    def test_be_abandons(self):
        """An -oMa that is no IP address ends -be with Exim's message and status 1."""
        conf = self.exim.write_config(QUIET_MAIN)
        theirs, ours = run_both(self.exim, conf, ["-oMa", "1.2.3.4.x", "-be", SHOW], text=False)
        self.assertEqual((ours.returncode, ours.stdout, ours.stderr),
                         (theirs.returncode, theirs.stdout, theirs.stderr))
        self.assertEqual(ours.stderr, b'exim abandoned: "1.2.3.4.x" is not an IP address\n')

    def submit(self, run, owner, value):
        """(-H host_address line, the logwrite line) after -bm with ``-oMa value``
        by ``run`` (the configuration's path, arguments, input)."""
        spool = tempfile.mkdtemp(prefix="exim_py-oma-")
        self.addCleanup(shutil.rmtree, spool, True)
        if owner:
            os.chown(spool, pwd.getpwnam(owner).pw_uid, -1)
        conf = self.exim.write_config(
            QUIET_MAIN + "spool_directory = %s\nlog_file_path = %s/%%slog\n"
            "acl_not_smtp = n\nbegin acl\nn:\n  warn logwrite = oma %s\n  accept\n"
            % (spool, spool, SHOW), name="%s.conf" % os.path.basename(spool))
        proc = run(conf, ["-oMa", value, "-odq", "-bm", "a@b.example"], b"Subject: x\n\nbody\n")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        headers = glob.glob(os.path.join(spool, "input", "*-H"))
        self.assertEqual(len(headers), 1)
        with open(headers[0], "rb") as f:
            spooled = [line for line in f.read().splitlines() if b"host_address" in line]
        with open(os.path.join(spool, "mainlog"), "rb") as f:
            logged = re.findall(rb"oma .*", f.read())
        return spooled, logged

    def test_bm_host_address(self):
        """-bm spools and shows the address and port exim4 does (the mapped
        address with port 0, the IPv6 one with port 25)."""
        for value in ("::ffff:1.2.3.4", "2001:db8::5.25"):
            exim4, exim_py = runners(self.exim, text=False)
            theirs = self.submit(exim4, "Debian-exim", value)
            ours = self.submit(exim_py, None, value)
            self.assertEqual(ours, theirs, value)
        self.assertEqual(theirs[0], [b"--host_address [2001:db8::5]:25"])
