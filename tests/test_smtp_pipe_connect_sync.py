"""Synchronisation checks for a host that may use PIPECONNECT, as exim4 makes them.

Exim does not hold a client to RFC 2920 synchronisation while it is allowed
to pipeline from the connection's start (pipelining_connect_advertise_hosts,
"*" by default): commands sent behind EHLO, HELO or NOOP are answered in
turn.  The exemption ends with the first DATA or BDAT; a later DATA with
input behind it is a synchronisation error again.  For other hosts every
check applies from the start.  Each dialogue is played to exim_py's daemon
and to exim4, and the reply codes must be the same.
"""

import os
import socket

from twisted.internet import defer, threads
from twisted.trial import unittest

from tests.support.end_to_end import Daemon, exim_py_script, free_port
from tests.support.exim_peer import EximPeer

CONF = """\
primary_hostname = peer.test.example
spool_directory = {dir}/spool
log_file_path = {dir}/log/%slog
host_lookup =
queue_only = true
tls_advertise_hosts =
acl_smtp_rcpt = accept
{extra}
begin routers
everything:
  driver = redirect
  data = :blackhole:
"""

MESSAGE = b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\nSubject: x\r\n\r\nbody\r\n.\r\n"


def codes(port, flights):
    """Send each flight after the banner, each once the replies to the one
    before are in: a flight is (bytes, how many replies it gets; the server
    may close before that).  Then shut down our side and read to the end.
    The reply codes, multi-line replies counted once."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        f = s.makefile("rb")
        f.readline()
        got = []

        def read(count):
            while len(got) < count:
                line = f.readline()
                if not line:
                    return
                if line[3:4] != b"-":
                    got.append(int(line[:3]))

        for flight, replies in flights:
            s.sendall(flight)
            read(len(got) + replies)
        try:
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass            # the server has closed already
        read(float("inf"))
        return got


class PipeConnectSyncTests(unittest.TestCase):
    """exim_py and exim4 enforce synchronisation at the same points."""

    def start(self, extra=""):
        directory = os.path.realpath(self.mktemp())
        for sub in ("spool", "log"):
            os.makedirs(os.path.join(directory, sub))
        config = os.path.join(directory, "exim.conf")
        with open(config, "w") as f:
            f.write(CONF.format(dir=directory, extra=extra))
        port = free_port()
        ours = Daemon([exim_py_script(), "-C", config, "-oX", "127.0.0.1.%d" % port, "-bdf"],
                      port).start()
        self.addCleanup(ours.stop)
        theirs = EximPeer(tls=False, extra=extra).start()
        self.addCleanup(theirs.stop)
        return ours.port, theirs.port

    @defer.inlineCallbacks
    def both(self, ports, flights):
        ours, theirs = yield defer.gatherResults(
            [threads.deferToThread(codes, port, flights) for port in ports])
        self.assertEqual(ours, theirs)
        return ours

    @defer.inlineCallbacks
    def test_commands_behind_ehlo_answered(self):
        """MAIL and RCPT sent with EHLO in one flight, and the first message's
        DATA with its text behind it: all answered."""
        ports = self.start()
        replies = yield self.both(ports, [(b"EHLO client.example\r\n" + MESSAGE, 5)])
        self.assertEqual(replies, [250, 250, 250, 354, 250, 421])

    @defer.inlineCallbacks
    def test_second_data_is_checked(self):
        """After the first DATA the exemption is over: a DATA with input
        behind it gets 554 and the connection is dropped."""
        ports = self.start()
        replies = yield self.both(ports, [(b"EHLO client.example\r\n" + MESSAGE, 5), (MESSAGE, 3)])
        self.assertEqual(replies, [250, 250, 250, 354, 250, 250, 250, 554])

    @defer.inlineCallbacks
    def test_host_not_allowed_pipeconnect(self):
        """pipelining_connect_advertise_hosts not matching: MAIL behind EHLO
        is a synchronisation error at once."""
        ports = self.start("pipelining_connect_advertise_hosts = :")
        replies = yield self.both(ports, [(b"EHLO client.example\r\nMAIL FROM:<a@b.example>\r\n", 1)])
        self.assertEqual(replies, [554])
