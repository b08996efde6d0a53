"""A slow host name lookup holds up only its own session.

The client's name is looked up as a session starts (main option
``host_lookup``) or when something first asks for ``$sender_host_name``
(the banner, the connect ACL).  Either way the lookup may wait on the DNS
for as long as dns_retrans and dns_retry allow; the daemon must go on
answering its other sessions meanwhile, as exim4's one process per session
does.  The test DNS server never answers the PTR query for 127.0.0.1, so a
client connecting from there waits; one from 127.0.0.2 (answered at once)
must get its banner and its EHLO reply without waiting for it.  What the
banner's lookup finds is compared with exim4's under ``-bh``.
"""

import re
import socket
import time

from twisted.trial import unittest

from tests.support.dnsserver import DNSServer
from tests.support.peers import RealExim, run_exim_py
from tests.test_daemon import DaemonProcess

# each DNS try waits this long for an answer, and there are two (dns_retry = 1)
RETRANS = 2
# what a session that does not wait on the silent server may take, at most,
# on a loaded machine; the waiting one takes 2 * RETRANS
PROMPT = 1.5


def connect(port, source):
    """A client socket from address ``source`` and its reading file."""
    s = socket.socket()
    s.settimeout(20)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s, s.makefile("rb")


def read_reply(f):
    """One whole SMTP reply, as a list of lines."""
    lines = [f.readline()]
    while lines[-1][3:4] == b"-":
        lines.append(f.readline())
    return lines


class SlowLookupTests(unittest.TestCase):
    """While one session waits for its name, another is answered promptly."""

    def setUp(self):
        self.dns = DNSServer(silent=("1.0.0.127.in-addr.arpa",)).start()
        self.addCleanup(self.dns.stop)

    def race(self, extra, banner, fast_greeting, slow_greeting, slow_sessions=1):
        """Start a daemon with ``extra`` and smtp_banner = ``banner``.
        Connect from 127.0.0.1 (whose lookup hangs; ``slow_sessions``
        times), then from 127.0.0.2:
        the second must get ``fast_greeting`` and its EHLO reply promptly,
        the first ``slow_greeting`` once the DNS has timed out."""
        daemon = DaemonProcess(self, "queue_only\ndns_nameservers = %s\ndns_retrans = %ds\n"
                                     "dns_retry = 1\n%s" % (self.dns.nameservers, RETRANS, extra))
        with open(daemon.conf_path) as f:
            text = f.read()
        with open(daemon.conf_path, "w") as f:
            f.write(re.sub(r"(?m)^smtp_banner = .*$", "smtp_banner = " + banner, text))
        daemon.start()
        self.addCleanup(daemon.stop)
        started = time.monotonic()
        for _ in range(slow_sessions):
            slow, slow_file = connect(daemon.port, "127.0.0.1")
            self.addCleanup(slow.close)
        # let the daemon take the first connection and start its lookup
        time.sleep(0.3)
        fast, fast_file = connect(daemon.port, "127.0.0.2")
        self.addCleanup(fast.close)
        fast_started = time.monotonic()
        self.assertEqual(fast_file.readline(), b"220 " + fast_greeting + b"\r\n")
        fast.sendall(b"EHLO client.example\r\n")
        ehlo = read_reply(fast_file)
        self.assertLess(time.monotonic() - fast_started, PROMPT)
        self.assertTrue(ehlo[-1].startswith(b"250 "), ehlo)
        self.assertEqual(slow_file.readline(), b"220 " + slow_greeting + b"\r\n")
        self.assertGreater(time.monotonic() - started, RETRANS)

    def test_connection_time_lookup(self):
        """host_lookup = *: the lookup for 127.0.0.1 runs off the reactor;
        127.0.0.2 is answered at once, and 127.0.0.1 gets its banner once
        the DNS has timed out ($host_lookup_deferred)."""
        self.race("host_lookup = *", "ready deferred=$host_lookup_deferred",
                  b"ready deferred=0", b"ready deferred=1")

    def test_banner_names_the_client(self):
        """Without host_lookup, a banner that shows $sender_host_name looks
        the name up as it is expanded; that wait is the session's own."""
        self.race("host_lookup =", "name=<$sender_host_name> ESMTP", b"name=<> ESMTP", b"name=<> ESMTP")

    def test_connect_acl_names_the_client(self):
        """The same lookup asked for by the connect ACL."""
        self.race("host_lookup =\nacl_smtp_connect = accept logwrite = name=<$sender_host_name>",
                  "ready", b"ready", b"ready")

    def test_reject_list_names_the_client(self):
        """A name item in host_reject_connection looks the name up before
        the connect ACL; that too waits off the reactor."""
        self.race("host_lookup =\nhost_reject_connection = *.nowhere.test", "ready", b"ready", b"ready")

    def test_more_slow_lookups_than_default_threads(self):
        """Twelve sessions waiting on the DNS (more than the reactor's ten
        threads by default) still leave a thread for the next session: the
        pool has one for every session smtp_accept_max allows."""
        self.race("host_lookup = *", "ready", b"ready", b"ready", slow_sessions=12)


class BannerLookupAgainstEximTests(unittest.TestCase):
    """The banner's own lookup, made in a thread, finds what exim4's does."""

    def test_banner_lookup_matches_exim(self):
        """Without host_lookup, ``-bh 127.0.0.1`` with $sender_host_name in
        smtp_banner: exim4 and exim_py both look the name up as the banner
        is expanded ("localhost" from /etc/hosts is not confirmed by the
        DNS, so it fails), and greet alike."""
        exim = RealExim()
        self.addCleanup(exim.cleanup)
        path = exim.write_config("primary_hostname = mx.test.example\nkeep_environment =\nhost_lookup =\n"
                                 "smtp_banner = name=<$sender_host_name> failed=$host_lookup_failed\n")
        theirs = exim.run(path, ["-bh", "127.0.0.1"], input="QUIT\r\n")
        ours = run_exim_py(["-C", path, "-bh", "127.0.0.1"], input="QUIT\r\n")
        greeting = [line for line in theirs.stdout.splitlines() if line.startswith("220 ")]
        self.assertEqual(greeting, ["220 name=<> failed=1"])
        self.assertEqual([line for line in ours.stdout.splitlines() if line.startswith("220 ")], greeting)
