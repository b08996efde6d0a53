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


def _scripted_server(replies, *more_connections):
    """An SMTP server on a free port that answers one connection per list of
    replies, closing each when its list ends: (port, received lines, thread)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    received = []

    def serve():
        for script in (replies,) + more_connections:
            conn, _ = listener.accept()
            with conn, conn.makefile("rwb") as f:
                f.write(b"220 ready\r\n")
                f.flush()
                for reply in script:
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

    def test_postmaster_check(self):
        """callout=postmaster: after the address is accepted, RSET, MAIL FROM:<>
        and RCPT TO:<postmaster@domain> on the same connection; a 5xx fails it."""
        co, problem = callout.parse_options(["callout=postmaster"], int)
        self.assertIsNone(problem)
        port, received, thread = _scripted_server(["250 OK", "250 OK", "250 OK", "250 OK",
                                                   "250 OK", "550 NOT OK", "221 bye"])
        plan = callout._Plan(co)
        outcome = callout._dialogue(_Host(), port, None, "myhost.test.ex", "",
                                    "ok@otherhost", co, None, plan)
        thread.join(10)
        self.assertEqual(outcome, ("postmaster", 550, b"NOT OK"))
        self.assertEqual(received, ["EHLO myhost.test.ex", "MAIL FROM:<>",
                                    "RCPT TO:<ok@otherhost>", "RSET", "MAIL FROM:<>",
                                    "RCPT TO:<postmaster@otherhost>", "QUIT"])
        self.assertEqual(plan.domain["postmaster"], callout.FAIL)
        self.assertEqual(plan.address, callout.OK)

    def test_size_on_main_mail_only(self):
        """A known message size goes on the main MAIL as SIZE= when the host
        lists SIZE, not on the MAIL before the random local part."""
        co, _ = callout.parse_options(["callout=no_cache,random"], int)
        port, received, thread = _scripted_server(["250-hi\r\n250-SIZE\r\n250 OK", "250 OK",
                                                   "550 no", "250 OK", "250 OK", "250 OK",
                                                   "221 bye"])
        plan = callout._Plan(co)
        plan.size = 420000
        outcome = callout._dialogue(_Host(), port, None, "h", "", "z@remote.domain", co,
                                    "random@remote.domain", plan)
        thread.join(10)
        self.assertEqual(outcome, ("rcpt", None, None))
        self.assertEqual(received[1:6], ["MAIL FROM:<>", "RCPT TO:<random@remote.domain>",
                                         "RSET", "MAIL FROM:<> SIZE=421024",
                                         "RCPT TO:<z@remote.domain>"])

    def test_lmtp_transport_says_lhlo(self):
        """A callout through an LMTP transport greets with LHLO."""
        port, received, thread = _scripted_server(["250 OK", "250 OK", "550 not liked",
                                                   "221 bye"])
        co = callout.CalloutOptions()
        plan = callout._Plan(co)
        plan.lmtp = True
        outcome = callout._dialogue(_Host(), port, None, "h", "", "z@remote.lmtp", co,
                                    None, plan)
        thread.join(10)
        self.assertEqual(received[0], "LHLO h")
        self.assertEqual(outcome, ("rcpt", 550, b"not liked"))

    def test_new_connection_after_random_refusal_drops(self):
        """A server that drops the connection after refusing the random local
        part is called again for the real address."""
        co, _ = callout.parse_options(["callout=random"], int)
        port, received, thread = _scripted_server(["250 OK", "250 OK", "550 bad, dropping"],
                                                  ["250 OK", "250 OK", "250 OK", "221 bye"])
        plan = callout._Plan(co)
        outcome = callout._dialogue(_Host(), port, None, "h", "", "r@two.test", co,
                                    "random@two.test", plan)
        thread.join(10)
        self.assertEqual(outcome, ("rcpt", None, None))
        self.assertEqual(received[-3:], ["MAIL FROM:<>", "RCPT TO:<r@two.test>", "QUIT"])
        self.assertEqual(plan.domain["random"], callout.FAIL)


def _pipelining_server(replies):
    """A server offering PIPELINING that reads MAIL and RCPT both before it
    answers either (as Exim's test 0578 server does): (port, lines, thread)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    received = []

    def serve():
        conn, _ = listener.accept()
        with conn, conn.makefile("rwb") as f:
            f.write(b"220 ready\r\n")
            f.flush()
            received.append(f.readline().decode().rstrip("\r\n"))
            f.write(b"250-hi\r\n250-PIPELINING\r\n250 OK\r\n")
            f.flush()
            received.append(f.readline().decode().rstrip("\r\n"))
            received.append(f.readline().decode().rstrip("\r\n"))
            f.write("".join(r + "\r\n" for r in replies).encode())
            f.flush()
            received.append(f.readline().decode().rstrip("\r\n"))
            f.write(b"221 bye\r\n")
            f.flush()
        listener.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener.getsockname()[1], received, thread


class CalloutPipeliningTests(unittest.TestCase):
    """Callouts pipeline MAIL and RCPT when the host offers PIPELINING."""

    def dialogue(self, replies, co=None, sender=""):
        port, received, thread = _pipelining_server(replies)
        co = co or callout.CalloutOptions()
        co.timeout = 5
        outcome = callout._dialogue(_Host(), port, None, "h", sender, "z@test.ex", co)
        thread.join(10)
        return outcome, received

    def test_mail_and_rcpt_in_one_write(self):
        """Both commands are sent before any reply is read; a 250 to each
        verifies the address."""
        outcome, received = self.dialogue(["250 OK mail", "250 OK rcpt"])
        self.assertEqual(outcome, ("rcpt", None, None))
        self.assertEqual(received, ["EHLO h", "MAIL FROM:<>", "RCPT TO:<z@test.ex>", "QUIT"])

    def test_refused_mail_wins_over_rcpt_reply(self):
        """A refused MAIL decides, and the pipelined RCPT's reply is read and
        set aside."""
        outcome, received = self.dialogue(["550 REJECT mail from",
                                           "530 BAD SEQUENCE no sender accepted for rcpt"])
        self.assertEqual(outcome, ("mail", 550, b"REJECT mail from"))
        self.assertEqual(received[-1], "QUIT")

    def test_mailfrom_option(self):
        """callout=mailfrom=ADDRESS (for header_sender) is read as the MAIL
        FROM address to use."""
        co, problem = callout.parse_options(["callout=mailfrom=abcd@x.y.z"], int)
        self.assertIsNone(problem)
        self.assertEqual(co.mailfrom, "abcd@x.y.z")
