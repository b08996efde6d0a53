"""A tiny SMTP server whose every reply a test chooses, for client failure modes.

Real servers cannot be made to stall after RCPT, drop the connection in the
middle of DATA or answer EHLO with 554 on demand; this one can.  It listens on
a free loopback port, records what the client sent, and answers each command
with ``replies(line)``: a reply string, ``STALL`` (never answer), ``DROP``
(close the connection) or, for DATA, ``PAUSE`` (354, then stop reading).
"""

from twisted.internet import protocol, reactor
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.protocols.basic import LineReceiver
from zope.interface import implementer

STALL = object()
DROP = object()
# As a reply to DATA: say 354, then stop reading (the client's writes back up).
PAUSE = object()

EHLO_REPLY = "250-test.example\r\n250-PIPELINING\r\n250-SIZE 1000000\r\n250 8BITMIME"


def default_reply(line):
    verb = line.split(b" ", 1)[0].upper()
    return {
        b"EHLO": EHLO_REPLY, b"HELO": "250 test.example", b"MAIL": "250 OK",
        b"RCPT": "250 Accepted", b"DATA": "354 Enter message", b"RSET": "250 Reset OK",
        b"QUIT": "221 bye", b".": "250 OK id=1",
    }.get(verb, "500 unrecognized command")


@implementer(IHalfCloseableProtocol)
class _ScriptedProtocol(LineReceiver):
    delimiter = b"\r\n"

    def readConnectionLost(self):
        # Exim sends QUIT right after the final dot and then shuts down its
        # side: the replies already written must still reach it.  A server
        # stuck on a command does not notice.
        if not self.stalled:
            self.transport.loseConnection()

    def writeConnectionLost(self):
        self.transport.loseConnection()

    def connectionMade(self):
        self.factory.connections.append(self)
        self.in_data = False
        self.stalled = False
        self.data = []
        self._answer(self.factory.replies(b"<banner>"))

    def _answer(self, reply):
        if reply is STALL or self.stalled:
            # Like a real server stuck on one command: nothing more is answered.
            self.stalled = True
            return
        if reply is DROP:
            self.transport.abortConnection()
            return
        self.transport.write(reply.encode("utf-8") + b"\r\n")

    def lineReceived(self, line):
        if self.in_data:
            if line == b".":
                self.in_data = False
                self.factory.messages.append(b"\r\n".join(self.data) + b"\r\n")
                self.data = []
                self.factory.commands.append(b".")
                self._answer(self.factory.replies(b"."))
            else:
                self.data.append(line)
                reply = self.factory.replies(b"<data line>")
                if reply is DROP:
                    self._answer(reply)
            return
        self.factory.commands.append(line)
        reply = self.factory.replies(line)
        if reply is PAUSE:
            self.transport.write(b"354 go ahead\r\n")
            self.transport.pauseProducing()
            return
        if isinstance(reply, str) and reply[:1] == "3":
            self.in_data = True
        self._answer(reply)


class ScriptedSMTPServer(protocol.ServerFactory):
    """Listens on 127.0.0.1; ``commands`` and ``messages`` record what came in."""

    protocol = _ScriptedProtocol

    def __init__(self, replies=None, overrides=None, interface="127.0.0.1"):
        """``overrides`` maps a command verb ("RCPT"), a whole command line
        ("RCPT TO:<a@b>"), "<banner>" or "<data line>" to a reply."""
        self.overrides = {k.encode("utf-8") if isinstance(k, str) else k: v
                          for k, v in (overrides or {}).items()}
        self._replies = replies or default_reply
        self.commands = []
        self.messages = []
        self.connections = []
        self.port = reactor.listenTCP(0, self, interface=interface)
        self.port_number = self.port.getHost().port

    def replies(self, line):
        verb = line.split(b" ", 1)[0].upper()
        if line in self.overrides:
            return self.overrides[line]
        if verb in self.overrides:
            return self.overrides[verb]
        if line == b"<banner>":
            return "220 test.example ESMTP"
        return self._replies(line)

    def stop(self):
        for conn in self.connections:
            conn.transport.abortConnection()
        return self.port.stopListening()
