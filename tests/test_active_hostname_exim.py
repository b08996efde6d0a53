"""smtp_active_hostname whose expansion fails, against exim4.

Exim expands smtp_active_hostname as a session starts.  A forced failure
(or an empty result) leaves primary_hostname in use; any other failure is
logged ("failed to expand ... (smtp_active_hostname): ...", main and panic
logs) and the connection is closed before the greeting, with nothing said.
``-bh`` sessions are compared with exim4's; a loopback connection to an
exim_py listener shows the socket closing without a greeting.
"""

import socket

from twisted.internet import reactor, threads
from twisted.trial import unittest

from exim_py.smtp.server import SMTPServerFactory
from tests.support.acl import ListLog
from tests.support.bh import oracle, same_session
from tests.support.peers import QUIET_MAIN
from tests.test_smtp_server import make_policy

BAD = "x${nosuchop{a}}"


class ActiveHostnameHostCheckTests(unittest.TestCase):
    """``-bh``: what exim4 does with each kind of expansion result."""

    def setUp(self):
        self.exim = oracle(self)

    def play(self, value):
        """Both programs' -bh sessions for this smtp_active_hostname, compared."""
        path = self.exim.write_config(QUIET_MAIN + "smtp_active_hostname = %s\n" % value)
        return same_session(self, self.exim, path, "EHLO x\r\nQUIT\r\n")

    def test_failure_closes_without_greeting(self):
        """An expansion error: a log line and no reply at all."""
        self.assertEqual(self.play(BAD), ([], [
            'LOG: failed to expand "x${nosuchop{a}}" (smtp_active_hostname): '
            '"${nosuchop" is not a known operator (or a } is missing in a variable reference)']))

    def test_forced_failure_uses_primary_hostname(self):
        """A forced failure is not an error: primary_hostname greets."""
        replies, logs = self.play("x${if eq{a}{b}{y}fail}")
        self.assertEqual(replies[-1], "221 mx.test.example closing connection")
        self.assertEqual(logs, [])

    def test_expanded_name_is_used(self):
        """A good expansion names the server in its replies."""
        replies, _ = self.play("act.${sender_host_address}")
        self.assertEqual(replies[-1], "221 act.127.0.0.1 closing connection")


class ActiveHostnameListenerTests(unittest.TestCase):
    """A real connection to exim_py's listener."""

    def test_socket_closed_before_greeting(self):
        """The client reads end-of-file, no 220; the panic log has the line."""
        policy, _ = make_policy(self, "smtp_active_hostname = %s\n" % BAD)
        policy.logger = log = ListLog()
        port = reactor.listenTCP(0, SMTPServerFactory(policy), interface="127.0.0.1")
        self.addCleanup(port.stopListening)

        def read_all():
            with socket.create_connection(("127.0.0.1", port.getHost().port), timeout=10) as s:
                data = b""
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        return data
                    data += chunk

        def check(data):
            self.assertEqual(data, b"")
            self.assertEqual([t.split(":")[0] for t in log.texts("panic")],
                             ['failed to expand "x${nosuchop{a}}" (smtp_active_hostname)'])

        return threads.deferToThread(read_all).addCallback(check)
