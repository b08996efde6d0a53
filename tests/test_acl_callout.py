"""The commands a verification callout sends, as the next hop sees them.

Exim's own test suite matches the callout's commands against a scripted
server, verb case included, so the dialogue is pinned down here line by line.
"""

import socket
import threading

from twisted.trial import unittest

from exim_py.acl import callout


class _Host:
    address = "127.0.0.1"
    name = None


def _scripted_server(replies):
    """A one-connection SMTP server on a free port: (port, received lines, thread)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    received = []

    def serve():
        conn, _ = listener.accept()
        with conn, conn.makefile("rwb") as f:
            f.write(b"220 ready\r\n")
            f.flush()
            for reply in replies:
                line = f.readline()
                if not line:
                    break
                received.append(line.decode().rstrip("\r\n"))
                f.write(reply.encode() + b"\r\n")
                f.flush()
        listener.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener.getsockname()[1], received, thread


class CalloutDialogueTests(unittest.TestCase):
    """The blocking callout client used by verify = .../callout."""

    def test_commands_in_capitals(self):
        """EHLO, MAIL, RCPT and QUIT go out as Exim writes them (capital verbs)."""
        port, received, thread = _scripted_server(["250 OK", "250 OK", "250 OK", "221 bye"])
        outcome = callout._dialogue(_Host(), port, None, "myhost.test.ex", "",
                                    "z@test.ex", callout.CalloutOptions())
        thread.join(10)
        self.assertEqual(outcome, ("rcpt", None, None))
        self.assertEqual(received, ["EHLO myhost.test.ex", "MAIL FROM:<>",
                                    "RCPT TO:<z@test.ex>", "QUIT"])

    def test_helo_after_refused_ehlo(self):
        """A refused EHLO is followed by HELO, also in capitals."""
        port, received, thread = _scripted_server(["500 what", "250 OK", "250 OK",
                                                   "550 no such user", "221 bye"])
        outcome = callout._dialogue(_Host(), port, None, "myhost.test.ex", "",
                                    "z@test.ex", callout.CalloutOptions())
        thread.join(10)
        self.assertEqual(outcome, ("rcpt", 550, b"no such user"))
        self.assertEqual(received[:2], ["EHLO myhost.test.ex", "HELO myhost.test.ex"])
