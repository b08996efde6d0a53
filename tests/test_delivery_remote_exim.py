"""Remote deliveries compared with real Exim 4.96, as tests/test_delivery_exim.py
does for local ones: both MTAs send the same message to the same receiving
server (a real exim4 peer, or a small scripted server in a thread) and must
log the same lines and send the same reports: deferral lines with an errno,
a host's own error line, S= on remote deliveries, max_rcpt grouping and
success DSNs (NOTIFY=SUCCESS, dsn_lasthop).
"""

import os
import re

from tests.support.peers import run_exim_py
from tests import test_delivery_exim as local_exim
from tests.test_delivery_exim import HEAD, MESSAGE, REMOTE_TEMPLATE, _EximComparison


TIMEOUT_TEMPLATE = HEAD + """\
host_lookup =
log_selector = +deliver_time
begin routers
r:
  driver = manualroute
  route_list = * 127.0.0.1::PORT
  self = send
  transport = t
begin transports
t:
  driver = smtp
  allow_localhost
  command_timeout = 1s
begin retry
* * F,1h,10m
"""


def _threaded_server(test, reply_to_mail=None, banner=True):
    """A one-port SMTP server in a thread (the MTAs under test run as
    blocking subprocesses): it greets (unless ``banner`` is False, a silent
    host), says 250 to everything, ``reply_to_mail`` to MAIL (None: close
    the connection).  Returns the port."""
    import socket
    import threading
    listener = socket.socket()
    test.addCleanup(listener.close)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    if not banner:
        return listener.getsockname()[1]   # the kernel accepts; nobody speaks

    def serve(conn):
        with conn, conn.makefile("rb") as lines:
            conn.sendall(b"220 scripted ESMTP\r\n")
            for line in lines:
                verb = line[:4].upper()
                if verb == b"MAIL":
                    if reply_to_mail is None:
                        return
                    conn.sendall(reply_to_mail.encode() + b"\r\n")
                elif verb == b"QUIT":
                    conn.sendall(b"221 bye\r\n")
                    return
                else:
                    conn.sendall(b"250 ok\r\n")

    def accept():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()
    threading.Thread(target=accept, daemon=True).start()
    return listener.getsockname()[1]


class DifferentialHostErrorLineTests(_EximComparison):
    """A host or message error gets a line of its own, before the == line."""

    def check(self, port):
        template = TIMEOUT_TEMPLATE.replace("PORT", str(port)).replace(
            "log_selector = +deliver_time\n", "")
        logs, _, dirs = self.run_both(template, ["-odi", "-f", "sender@x.example",
                                                 "a@y.example"], "h%d" % port)
        self.assertEqual(logs[1], logs[0])
        # The message stays queued; its message log has the host line too.
        msglogs = []
        for d in dirs:
            [name] = os.listdir(os.path.join(d, "spool", "msglog"))
            with open(os.path.join(d, "spool", "msglog", name)) as f:
                msglogs.append([ln[20:] for ln in f.read().splitlines()])
        self.assertEqual(msglogs[1], msglogs[0])
        return logs[0]

    def test_banner_timeout(self):
        """No greeting: "H=... : SMTP timeout after initial connection:
        Connection timed out", as exim4 logs it."""
        self.assertIn("ID H=127.0.0.1 [127.0.0.1]: SMTP timeout after initial connection: "
                      "Connection timed out", self.check(_threaded_server(self, banner=False)))

    def test_mail_deferred(self):
        """451 to MAIL (a message error): the SMTP error on the host line."""
        self.assertIn("ID H=127.0.0.1 [127.0.0.1]: SMTP error from remote mail server after "
                      "MAIL FROM:<sender@x.example>: 451 not now",
                      self.check(_threaded_server(self, "451 not now")))

    def test_connection_dropped(self):
        """The server closes the connection at MAIL: "Remote host closed
        connection in response to MAIL FROM:<...>", no errno text."""
        self.assertIn("ID H=127.0.0.1 [127.0.0.1]: Remote host closed connection in response "
                      "to MAIL FROM:<sender@x.example>", self.check(_threaded_server(self)))


class DifferentialTimeoutDeferTests(_EximComparison):
    """A deferral with a positive errno and a host: Exim's field order."""

    def test_errno_text_before_host(self):
        """A server that accepts the connection but never greets: the ==
        line reads "defer (110): Connection timed out H=... DT=...: SMTP
        timeout after initial connection", as exim4 writes it."""
        import socket
        silent = socket.socket()
        self.addCleanup(silent.close)
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)   # the kernel completes the handshake; nobody speaks
        template = TIMEOUT_TEMPLATE.replace("PORT", str(silent.getsockname()[1]))
        logs, _, _ = self.run_both(template, ["-odi", "-f", "sender@x.example",
                                              "a@y.example"], "t")
        deferrals = [[ln for ln in lines if " == " in ln] for lines in logs]
        self.assertEqual(deferrals[1], deferrals[0])
        self.assertIn("ID == a@y.example R=r T=t defer (110): Connection timed out "
                      "H=127.0.0.1 [127.0.0.1] DT=1s: SMTP timeout after initial connection",
                      deferrals[0])


class DifferentialRemoteSizeTests(_EximComparison):
    """S= on a remote delivery line is what went over the wire, as Exim counts it."""

    def check_size(self, chunking):
        from tests.support.exim_peer import EximPeer
        peer = EximPeer(dsn=False, chunking=chunking).start()
        self.addCleanup(peer.stop)
        template = REMOTE_TEMPLATE.replace("host_lookup =\n",
                                           "host_lookup =\nlog_selector = +delivery_size\n")
        template = template.replace("PORT", str(peer.port))
        logs, _, _ = self.run_both(template, ["-odi", "-f", "sender@x.example",
                                              "good@test.example"], "k%d" % chunking,
                                   input="Subject: size\n\n.dot line\nbody\n")
        deliveries = [[ln for ln in lines if " => " in ln] for lines in logs]
        self.assertEqual(deliveries[1], deliveries[0])
        self.assertNotIn(" S=0 ", deliveries[1][0])
        return deliveries[0][0]

    def test_size_after_data(self):
        """After DATA: CRLF line ends, the stuffed dot and the final ".CRLF"
        are counted, giving exim4's S= value."""
        self.assertNotIn(" K ", self.check_size(False))

    def test_size_after_bdat(self):
        """With CHUNKING: only the chunk's bytes, as exim4 counts them."""
        self.assertIn(" K ", self.check_size(True))


class DifferentialMaxRcptTests(_EximComparison):
    """max_rcpt 0 means no limit, and an expanded max_rcpt does not group by 100."""

    def copies(self, max_rcpt, senders=("ex", "py")):
        """101 recipients through one smtp transport: the number of messages
        the receiving exim4 gets from each sender."""
        from tests.support.exim_peer import EximPeer
        peer = EximPeer(dsn=False).start()
        self.addCleanup(peer.stop)
        template = REMOTE_TEMPLATE.replace("PORT", str(peer.port)).replace(
            "  hosts_avoid_tls = *\n", "  hosts_avoid_tls = *\n  max_rcpt = %s\n" % max_rcpt)
        recipients = ["r%d@test.example" % i for i in range(101)]
        copies = []
        for name in senders:
            d, _ = self.prepare(name)
            conf = self.exim.write_config(template.replace("DIR", d), name + "-m.conf")
            args = ["-odi", "-f", "sender@x.example"] + recipients
            before = len(peer.messages())
            if name == "ex":
                self.exim.run(conf, args, input=MESSAGE)
            else:
                run_exim_py(["-C", conf] + args, input=MESSAGE)
            copies.append(len(peer.messages()) - before)
        return copies

    def test_zero_is_unlimited(self):
        """max_rcpt = 0: one transaction carries all 101 recipients, as from exim4."""
        self.assertEqual(self.copies("0"), [1, 1])

    def test_expanded_value(self):
        """max_rcpt = ${if eq{1}{1}{0}} (expanded, as the reference spec allows;
        Exim 4.96 itself takes only a number): a value that needs expanding
        is not used to group addresses, so the default 100 does not split
        the batch and the expanded 0 sends one copy."""
        self.assertEqual(self.copies("${if eq{1}{1}{0}}", senders=("py",)), [1])


DSN_TEMPLATE = REMOTE_TEMPLATE.replace(
    "host_lookup =\n", "host_lookup =\ndsn_advertise_hosts = *\nacl_smtp_rcpt = accept\n")
DSN_SESSION = ("EHLO x\r\nMAIL FROM:<sender@x.example>\r\n"
               "RCPT TO:<good@test.example> NOTIFY=SUCCESS ORCPT=rfc822;good@test.example\r\n"
               "DATA\r\nSubject: dsn\r\n\r\nbody\r\n.\r\nQUIT\r\n")


class DifferentialRemoteSuccessDSNTests(_EximComparison):
    """NOTIFY=SUCCESS for a remote delivery: who sends the success DSN."""

    def run_dsn(self, peer_dsn, template=DSN_TEMPLATE):
        from tests.support.exim_peer import EximPeer
        peer = EximPeer(dsn=peer_dsn).start()
        self.addCleanup(peer.stop)
        self.peer = peer
        template = template.replace("PORT", str(peer.port))
        logs, reports = [], []
        for name in ("ex", "py"):
            d, _ = self.prepare(name)
            conf = self.exim.write_config(template.replace("DIR", d),
                                          "%s-dsn%d.conf" % (name, peer_dsn))
            if name == "ex":
                self.exim.run(conf, ["-bs", "-odi"], input=DSN_SESSION)
            else:
                run_exim_py(["-C", conf, "-bs", "-odi"], input=DSN_SESSION)
            lines = [re.sub(r" U=\S+ P=(local\S*) S=\d+", r" U=* P=\1 S=*", ln)
                     for ln in self.log_lines(d)]
            logs.append([re.sub(r'C="[^"]*"', 'C="..."', ln) for ln in lines])
            # Reports from <> on the peer's queue since the previous sender ran.
            found = [local_exim.DifferentialRemoteBounceTests.normalise(body)
                     for header, body in peer.messages() if "\n<>\n" in header]
            reports.append(found[sum(len(r) for r in reports):])
        self.assertEqual(logs[1], logs[0])
        return logs[0], reports[0], reports[1]

    def test_next_hop_without_dsn(self):
        """The receiving server does not advertise DSN: the sender reports
        the delivery itself ("relayed to non-DSN-aware mailer", Remote-MTA,
        "250 Ok"), the report identical to exim4's."""
        lines, theirs, ours = self.run_dsn(False)
        self.assertIn("ID <= <> R=ID U=* P=local S=*", lines)
        self.assertEqual(len(theirs), 1)
        self.assertEqual(ours, theirs)
        self.assertIn("(relayed to non-DSN-aware mailer)", ours[0])

    def test_next_hop_with_dsn(self):
        """The receiving server advertises DSN: NOTIFY goes on with the
        message and neither exim4 nor exim_py sends a report."""
        lines, theirs, ours = self.run_dsn(True)
        self.assertEqual((theirs, ours), ([], []))
        self.assertFalse([ln for ln in lines if " <= <> " in ln], lines)

    def test_dsn_lasthop(self):
        """A dsn_lasthop router: NOTIFY and ORCPT are not passed on although
        the next hop offers DSN, and the sender reports the delivery itself
        ("relayed via non DSN router"), as exim4 does."""
        template = DSN_TEMPLATE.replace("  transport = t\n", "  transport = t\n  dsn_lasthop\n", 1)
        lines, theirs, ours = self.run_dsn(True, template)
        self.assertEqual(len(theirs), 1)
        self.assertEqual(ours, theirs)
        self.assertIn("(relayed via non DSN router)", ours[0])
        originals = [header for header, _ in self.peer.messages() if "\n<>\n" not in header]
        self.assertEqual(len(originals), 2)
        for header in originals:
            # The recipient line alone: no DSN flags or ORCPT reached the peer.
            self.assertIn("\ngood@test.example\n", header)
