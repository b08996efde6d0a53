"""SMTP peers that shut down their side of the connection (TCP half-close).

Exim's smtp transport says QUIT and sends its FIN straight behind it (behind
the final dot when the server offers PIPELINING), then still reads the
replies, giving the one to QUIT a second.  Both halves of exim_py take part:
the server answers everything that came before the FIN, as exim4 does, and
the client shuts down its side after QUIT (Exim's test 0623 checks this with
a scripted server that sees the end of input right after QUIT).
"""

import os
import re
import socket
import time

from twisted.internet import defer, protocol, reactor, threads
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.protocols.basic import LineReceiver
from twisted.trial import unittest
from zope.interface import implementer

from exim_py.smtp import client
from exim_py.smtp.outbound import OK, ClientSettings, Transaction
from tests.support.end_to_end import Daemon, exim_py_script, free_port, read_text
from tests.support.exim_peer import EximPeer
from tests.support.peers import ehlo_session
from tests.support.scripted_smtp import STALL, ScriptedSMTPServer

SERVER_CONF = """\
primary_hostname = peer.test.example
spool_directory = {dir}/spool
log_file_path = {dir}/log/%slog
host_lookup =
queue_only = true
acl_smtp_rcpt = accept
begin routers
everything:
  driver = redirect
  data = :blackhole:
"""

ENVELOPE = b"MAIL FROM:<a@sender.example>\r\nRCPT TO:<b@rcpt.example>\r\nDATA\r\n"


def dialogue(port, first, rest):
    """EHLO and wait for its reply; then ``first`` and wait for the replies
    it asks for (None: send nothing more first); then ``rest`` followed by
    a shutdown of our side.  Returns every reply line after EHLO's."""
    s, f = ehlo_session(port)
    with s:
        replies = []
        if first:
            s.sendall(first)
            for _ in range(first.count(b"\r\n")):
                replies.append(f.readline())
        s.sendall(rest)
        s.shutdown(socket.SHUT_WR)
        replies.extend(f.readlines())
    return [re.sub(rb"id=\S+", b"id=ID", line).rstrip(b"\r\n").decode() for line in replies]


class ServerHalfCloseTests(unittest.TestCase):
    """exim_py's daemon and exim4 given the same input, ended by a FIN."""

    def setUp(self):
        self.dir = os.path.realpath(self.mktemp())
        for sub in ("spool", "log"):
            os.makedirs(os.path.join(self.dir, sub))
        config = os.path.join(self.dir, "exim.conf")
        with open(config, "w") as f:
            f.write(SERVER_CONF.format(dir=self.dir))
        port = free_port()
        self.daemon = Daemon([exim_py_script(), "-C", config, "-oX", "127.0.0.1.%d" % port,
                              "-bdf"], port).start()
        self.addCleanup(self.daemon.stop)
        self.exim4 = EximPeer(tls=False).start()
        self.addCleanup(self.exim4.stop)

    def both(self, first, rest):
        """The replies of exim_py and of exim4, each in its own thread."""
        return defer.gatherResults([
            threads.deferToThread(dialogue, self.daemon.port, first, rest),
            threads.deferToThread(dialogue, self.exim4.port, first, rest)])

    @defer.inlineCallbacks
    def test_quit_pipelined_after_dot_then_fin(self):
        """The final dot, QUIT and FIN arriving together (what Exim's client
        sends to a PIPELINING server) get the 250 with the message id and the
        221, and the message is taken without a lost-connection log line."""
        # A body big enough that the spool write is still going on when the
        # FIN is read.
        body = b"Subject: x\r\n\r\n" + b"body line\r\n" * 200000
        ours, theirs = yield self.both(ENVELOPE, body + b".\r\nQUIT\r\n")
        self.assertEqual(ours, ["250 OK", "250 Accepted",
                                '354 Enter message, ending with "." on a line by itself',
                                "250 OK id=ID", "221 peer.test.example closing connection"])
        self.assertEqual(ours, theirs)
        log = read_text(os.path.join(self.dir, "log", "mainlog"))
        self.assertIn(" <= a@sender.example H=(client.example) [127.0.0.1] P=esmtp S=", log)
        self.assertNotIn("disconnection", log)

    @defer.inlineCallbacks
    def test_fin_after_a_command_is_a_lost_connection(self):
        """Input that ends without QUIT: the commands before it are answered,
        then Exim's 421 "lost input connection", and the log says so."""
        ours, theirs = yield self.both(None, b"MAIL FROM:<a@sender.example>\r\n")
        self.assertEqual(ours, ["250 OK", "421 peer.test.example lost input connection"])
        self.assertEqual(ours, theirs)
        log = read_text(os.path.join(self.dir, "log", "mainlog"))
        self.assertIn("unexpected disconnection while reading SMTP command from "
                      "(client.example) [127.0.0.1] D=", log)

    @defer.inlineCallbacks
    def test_fin_inside_the_data(self):
        """A FIN in the middle of the message: 421 "Lost incoming connection",
        nothing is taken, and the log says the data was cut short."""
        ours, theirs = yield self.both(ENVELOPE, b"Subject: x\r\n\r\npartial\r\n")
        self.assertEqual(ours[-1], "421 Lost incoming connection")
        self.assertEqual(ours, theirs)
        log = read_text(os.path.join(self.dir, "log", "mainlog"))
        self.assertIn("SMTP connection from (client.example) [127.0.0.1] lost while reading "
                      "message data", log)
        self.assertNotIn(" <= ", log)


@implementer(IHalfCloseableProtocol)
class _WatchingServer(LineReceiver):
    """Answers like a plain server but holds back the replies to the final
    dot and to QUIT until the client's FIN has arrived, noting when it came."""

    def connectionMade(self):
        self.factory.lines = []
        self.factory.eof_after = None
        self.in_data = False
        self.held = []
        self.sendLine(b"220 watcher.example ESMTP")

    def lineReceived(self, line):
        if self.in_data:
            if line == b".":
                self.in_data = False
                self.factory.lines.append(line)
                if self.factory.pipelining:
                    self.held.append(b"250 OK id=watched")
                else:
                    # the client waits for this before it says QUIT
                    self.sendLine(b"250 OK id=watched")
            return
        self.factory.lines.append(line)
        verb = line[:4].upper()
        if verb == b"EHLO":
            self.sendLine(b"250-watcher.example\r\n" + (
                b"250-PIPELINING\r\n250 OK" if self.factory.pipelining else b"250 OK"))
        elif verb in (b"MAIL", b"RCPT"):
            self.sendLine(b"250 OK")
        elif verb == b"DATA":
            self.in_data = True
            self.sendLine(b"354 go ahead")
        elif verb == b"QUIT":
            self.held.append(b"221 bye")

    def _release(self):
        for reply in self.held:
            self.sendLine(reply)
        self.held = []

    def readConnectionLost(self):
        self.factory.eof_after = list(self.factory.lines)
        self._release()
        self.transport.loseConnection()

    def writeConnectionLost(self):
        self.transport.loseConnection()


class ClientQuitTests(unittest.TestCase):
    """What exim_py's smtp client does with the connection when it says QUIT."""

    def watcher(self, pipelining):
        factory = protocol.ServerFactory.forProtocol(_WatchingServer)
        factory.pipelining = pipelining
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return factory, port.getHost().port

    def send(self, port, **kw):
        settings = ClientSettings(helo_data="client.example", command_timeout=30,
                                  final_timeout=30, **kw)
        txn = Transaction("s@x.example", ["a@y.example"], data=b"Subject: t\n\nbody\n")
        return client.deliver(reactor, "127.0.0.1", port, settings, [txn])

    @defer.inlineCallbacks
    def test_fin_follows_quit(self):
        """Without PIPELINING, QUIT goes after the 250 to the data and our FIN
        right behind it, before the server has said 221 (test 0623 #2)."""
        factory, port = self.watcher(pipelining=False)
        result = yield self.send(port)
        self.assertEqual([o.status for _, o in result.outcomes()], [OK])
        self.assertEqual(factory.eof_after[-2:], [b".", b"QUIT"])

    @defer.inlineCallbacks
    def test_fin_follows_pipelined_quit(self):
        """With PIPELINING, QUIT and the FIN follow the final dot at once; the
        replies to both still count (the delivery succeeds)."""
        factory, port = self.watcher(pipelining=True)
        result = yield self.send(port)
        self.assertEqual([o.status for _, o in result.outcomes()], [OK])
        self.assertEqual(factory.eof_after[-2:], [b".", b"QUIT"])
        self.assertEqual(result.transactions[0].confirmation, "250 OK id=watched")

    @defer.inlineCallbacks
    def test_quit_reply_waited_for_one_second(self):
        """A server that never answers QUIT (nor closes) holds the client for
        about a second, not for command_timeout."""
        server = ScriptedSMTPServer(overrides={"QUIT": STALL})
        self.addCleanup(server.stop)
        started = time.monotonic()
        result = yield self.send(server.port_number)
        self.assertEqual([o.status for _, o in result.outcomes()], [OK])
        self.assertLess(time.monotonic() - started, 10)
        self.assertEqual(server.commands[-1], b"QUIT")

    @defer.inlineCallbacks
    def test_quit_pipelined_only_for_smtp(self):
        """Behind the final dot QUIT is pipelined to an SMTP server that offers
        PIPELINING, but not to an LMTP one, whose replies come one per
        recipient (Exim pipelines QUIT only once the message is complete)."""
        sent = {}
        for lmtp in (False, True):
            server = ScriptedSMTPServer(overrides={
                ".": STALL, "LHLO": "250-test.example\r\n250-PIPELINING\r\n250 OK"})
            self.addCleanup(server.stop)
            settings = ClientSettings(helo_data="client.example", command_timeout=5,
                                      final_timeout=1, lmtp=lmtp)
            txn = Transaction("s@x.example", ["a@y.example"], data=b"Subject: t\n\nbody\n")
            yield client.deliver(reactor, "127.0.0.1", server.port_number, settings, [txn])
            sent[lmtp] = server.commands[server.commands.index(b"."):]
        self.assertEqual(sent, {False: [b".", b"QUIT"], True: [b"."]})
