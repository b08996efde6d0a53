"""exim_py.reactor: the daemon's epoll reactor, which hands events to their
handlers without Twisted's per-event logging context."""

import os
import socket
import subprocess
import sys
import textwrap

from twisted.trial import unittest

_SERVER = textwrap.dedent("""
    import sys
    from exim_py import reactor as exim_reactor
    exim_reactor.install()
    from twisted.internet import reactor, protocol
    from twisted.python import log
    log.startLogging(sys.stderr, setStdout=False)

    class Echo(protocol.Protocol):
        def dataReceived(self, data):
            if data.startswith(b"boom"):
                raise RuntimeError("handler failed")
            self.transport.write(data)

    port = reactor.listenTCP(0, protocol.Factory.forProtocol(Echo), interface="127.0.0.1")
    print(type(reactor).__name__, port.getHost().port, flush=True)
    reactor.callLater(20, reactor.stop)
    reactor.run()
""")


class LeanReactorTests(unittest.TestCase):

    def setUp(self):
        self.proc = subprocess.Popen([sys.executable, "-c", _SERVER], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, cwd=os.path.dirname(os.path.dirname(__file__)))
        self.addCleanup(self._stop)
        name, port = self.proc.stdout.readline().split()
        self.name, self.port = name.decode(), int(port)

    def _stop(self):
        self.proc.kill()
        self.proc.communicate()

    def _connect(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        self.addCleanup(s.close)
        return s

    def test_installed_and_serving(self):
        """install() puts LeanEPollReactor in place, and it carries reads and writes."""
        self.assertEqual(self.name, "LeanEPollReactor")
        s = self._connect()
        s.sendall(b"hello\r\n")
        self.assertEqual(s.recv(100), b"hello\r\n")

    def test_handler_exception_drops_only_that_connection(self):
        """An exception from a protocol's handler closes that connection and is
        logged, as under Twisted's own reactor; other connections go on."""
        good, bad = self._connect(), self._connect()
        bad.sendall(b"boom\r\n")
        self.assertEqual(bad.recv(100), b"")
        good.sendall(b"still here\r\n")
        self.assertEqual(good.recv(100), b"still here\r\n")
        self.proc.kill()
        _, err = self.proc.communicate()
        self.assertIn(b"RuntimeError: handler failed", err)
