"""``verify = recipient/callout=...,hold``: the callout's connection serves
the delivery.

The dialogues are those of Exim's own test 0580 (which real Exim 4.96
passes): a scripted next hop records every line, and exim_py takes the
message over ``-bs -odi``, verifying each recipient with a held callout.
"""

import os
import shutil
import socket
import tempfile
import threading

from twisted.trial import unittest

from tests.support.peers import run_exim_py

CONFIG = """\
primary_hostname = myhost.test.ex
spool_directory = {dir}/spool
log_file_path = {dir}/%slog
keep_environment =
acl_smtp_rcpt = check_rcpt

begin acl

check_rcpt:
  accept local_parts = unverified
  accept verify = recipient/callout=use_sender,no_cache,hold

begin routers

r_remote:
  driver = manualroute
  route_list = * 127.0.0.1
  self = send
  transport = t1

begin transports

t1:
  driver = smtp
  port = {port}
"""


def _next_hop(connections):
    """A server answering ``connections`` connections in turn, one at a time,
    as Exim's test server does: every line received goes into the list
    returned, one list per connection; message data lines are kept too."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    listener.settimeout(30)
    received = []

    def serve():
        for _ in range(connections):
            conn, _ = listener.accept()
            lines = []
            received.append(lines)
            with conn, conn.makefile("rwb") as f:
                f.write(b"220 Welcome\r\n")
                f.flush()
                data = False
                for raw in f:
                    line = raw.decode().rstrip("\r\n")
                    lines.append(line)
                    if data:
                        if line == ".":
                            data = False
                            f.write(b"250 yeah got that message\r\n")
                        else:
                            continue
                    elif line.startswith("DATA"):
                        data = True
                        f.write(b"354 hit me\r\n")
                    elif line.startswith("QUIT"):
                        f.write(b"221 Bye\r\n")
                        f.flush()
                        break
                    else:
                        f.write(b"250 OK\r\n")
                    f.flush()
        listener.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener.getsockname()[1], received, thread


def _commands(lines):
    """The SMTP commands of one connection (message data left out)."""
    out, data = [], False
    for line in lines:
        if data:
            data = line != "."
            continue
        out.append(line.split(":")[0] if ":" in line else line.split()[0])
        data = line == "DATA"
    return out


class CalloutHoldTests(unittest.TestCase):
    """Exim's "lazy close" of a recipient callout (spec, callout option hold)."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="exim-py-hold-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def send(self, connections, recipients):
        port, received, thread = _next_hop(connections)
        conf = os.path.join(self.dir, "exim.conf")
        with open(conf, "w") as f:
            f.write(CONFIG.format(dir=self.dir, port=port))
        session = ["helo test", "mail from:<userx@ok.example>"]
        session += ["rcpt to:<%s>" % r for r in recipients]
        session += ["data", "Subject: test", "", "body", ".", "quit", ""]
        result = run_exim_py(["-C", conf, "-bs", "-odi"], input="\n".join(session))
        thread.join(30)
        self.assertFalse(thread.is_alive(), "the next hop did not see every connection")
        self.assertIn("250 OK id=", result.stdout, result.stderr)
        return [_commands(lines) for lines in received]

    def test_delivery_uses_the_held_connection(self):
        """One recipient: after the callout's RCPT the same connection goes on
        with DATA and the message, then QUIT; no second connection."""
        self.assertEqual(self.send(1, ["usery@test.ex"]),
                         [["EHLO", "MAIL FROM", "RCPT TO", "DATA", "QUIT"]])

    def test_further_recipients_on_the_held_connection(self):
        """A second verified recipient is one more RCPT on the held connection,
        and the delivery of both follows there."""
        self.assertEqual(self.send(1, ["usery4@test.ex", "usery5@test.ex"]),
                         [["EHLO", "MAIL FROM", "RCPT TO", "RCPT TO", "DATA", "QUIT"]])

    def test_unmatched_envelope_quits_the_held_connection(self):
        """A recipient that was not verified on the held connection makes it
        unusable: it gets QUIT before the delivery connects afresh."""
        self.assertEqual(self.send(2, ["usery@test.ex", "unverified@test.ex"]),
                         [["EHLO", "MAIL FROM", "RCPT TO", "QUIT"],
                          ["EHLO", "MAIL FROM", "RCPT TO", "RCPT TO", "DATA", "QUIT"]])


class _Recorder:
    """Stands in for the held smtplib client: records what is sent on it."""

    def __init__(self):
        self.sent = []
        self.closed = False

    def docmd(self, command):
        self.sent.append(command)
        return 221, b"bye"

    def close(self):
        self.closed = True


class _Settings:
    tls = "try"
    tls_on_connect = False


class _Factory:
    settings = _Settings()


class _Envelope:
    """Something a weak reference can point at, as a real Envelope."""


class _Txn:
    def __init__(self, sender, addresses):
        self.sender = sender
        self.recipients = [type("R", (), {"address": a})() for a in addresses]


class HeldConnectionChoiceTests(unittest.TestCase):
    """Which deliveries may take a held connection."""

    def test_not_used_when_the_delivery_would_start_tls(self):
        """A held connection whose server offered STARTTLS is not used by a
        delivery that would start TLS (the callout talked in clear): it gets
        QUIT and the delivery connects afresh."""
        from exim_py.smtp import callout as held
        envelope, conn = _Envelope(), _Recorder()
        entry = held.hold(envelope, conn, "127.0.0.1", 25, "a@b", "c@d",
                          b"hi there\nSTARTTLS\nPIPELINING")
        self.addCleanup(held.release, entry)
        connected = []
        held.deliver_or_connect(None, "127.0.0.1", 25, [_Txn("a@b", ["c@d"])], _Factory(),
                                lambda: connected.append(True))
        from twisted.internet import reactor, task
        d = task.deferLater(reactor, 0.5, lambda: None)
        d.addCallback(lambda _: self.assertEqual((connected, conn.sent, conn.closed),
                                                 ([True], ["QUIT"], True)))
        d.addCallback(lambda _: self.assertIsNone(held.held_for(envelope)))
        return d
