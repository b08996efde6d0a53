"""End to end: SMTP in → spool → routers → transports, across the whole program.

Each scenario drives exim_py as a user would, through its command line and
its daemon over real sockets (real swaks, smtplib, Debian's exim4 as the
relay's next hop), then checks what lands on disk: maildirs, mbox files, the
spool (-H/-D), the mainlog (ids and times normalised) and bounces (parsed as
RFC 3464 reports with Python's email package).  Ports are free ports,
directories temporary, so these tests run beside any others.  The same
scenarios compared line by line with exim4 are in test_end_to_end_exim.py;
the shared fixtures in tests/support/end_to_end.py.
"""

import email
import mailbox
import os
import pwd
import re
import shutil
import signal
import smtplib
import subprocess
import sys
import tempfile
import threading
import time

from twisted.python import log
from twisted.trial import unittest

from tests.support.end_to_end import (
    ROOT, Daemon, MaildirPeer, Site, exim_py_script, free_port, normalise_log, parse, read_text,
    send_message, spool_listing, swaks, wait_for)
from tests.support.exim_peer import EximPeer
from tests.support.pki import ServerPKI


class LocalDeliveryTests(unittest.TestCase):
    """SMTP in → spool → local delivery, submission, refusal, deferral, bounces."""

    def setUp(self):
        self.site = Site(self)
        self.daemon = self.site.daemon().start()
        self.addCleanup(self.daemon.stop)

    def test_smtp_to_maildir_and_mbox(self):
        """One message for a maildir user and an mbox user: both copies carry
        Return-path, Envelope-to, Delivery-date and Exim's Received: header, the
        mbox has its From_ line, the queue is empty and the mainlog reads as
        Exim's (<=, => per recipient with R= and T=, Completed)."""
        message_id = send_message(self.daemon.port, "sender@example.org",
                                  ["alice@test.example", "mboxuser@test.example"],
                                  "Subject: one\n\nbody one\n")
        self.site.wait_completed(message_id)
        self.assertEqual(normalise_log(self.site.mainlog(), message_id), (
            "TIME ID1 <= sender@example.org H=(client.example) [127.0.0.1] P=esmtp S=209\n"
            "TIME ID1 => alice <alice@test.example> R=maildir T=maildir\n"
            "TIME ID1 => mboxuser <mboxuser@test.example> R=mbox T=mbox\n"
            "TIME ID1 Completed\n"))
        [raw] = self.site.maildir("alice")
        box = mailbox.mbox(os.path.join(self.site.dir, "mbox", "mboxuser"))
        [from_mbox] = list(box)
        self.assertEqual(from_mbox.get_from().split(" ", 1)[0], "sender@example.org")
        received = ("Received: from [127.0.0.1] (helo=client.example)\n"
                    "\tby e2e.test.example with esmtp (Exim 4.96)\n"
                    "\t(envelope-from <sender@example.org>)\n"
                    "\tid %s;\n" % message_id)
        for msg, rcpt in ((parse(raw), "alice"), (from_mbox, "mboxuser")):
            self.assertEqual(msg["Return-path"], "<sender@example.org>")
            self.assertEqual(msg["Envelope-to"], rcpt + "@test.example")
            self.assertTrue(msg["Delivery-date"])
            self.assertEqual(msg["Subject"], "one")
            self.assertEqual(msg.get_payload(), "body one\n")
            self.assertIn(received, msg.as_string())
        self.assertEqual(spool_listing(self.site), "")

    def test_local_submission_is_delivered(self):
        """`echo test | exim_py -C CONF bob@test.example` (background delivery, -odb)
        exits 0 and the message reaches bob's maildir, sent by the caller
        qualified with qualify_domain."""
        result = self.site.run("bob@test.example", input="test\n")
        self.assertEqual((result.returncode, result.stdout, result.stderr), (0, "", ""))
        wait_for(lambda: self.site.maildir("bob"), "a message in bob's maildir")
        [raw] = self.site.maildir("bob")
        msg = parse(raw)
        user = pwd.getpwuid(os.getuid()).pw_name
        self.assertEqual(msg["Return-path"], "<%s@test.example>" % user)
        self.assertEqual(msg["Envelope-to"], "bob@test.example")
        self.assertRegex(msg["Received"], r"^from %s by e2e\.test\.example with local \(Exim 4\.96\)" % user)
        self.assertEqual(msg.get_payload(), "test\n")
        [message_id] = re.findall(r"(\S+) <= ", self.site.mainlog())
        self.site.wait_completed(message_id)
        self.assertEqual(
            re.sub(r"S=\d+", "S=n", normalise_log(self.site.mainlog(), message_id)),
            "TIME ID1 <= %s@test.example U=%s P=local S=n\n"
            "TIME ID1 => bob <bob@test.example> R=maildir T=maildir\n"
            "TIME ID1 Completed\n" % (user, user))

    def test_unknown_local_user_refused_at_rcpt(self):
        """RCPT for a local part no router accepts gets Exim's 550, logged, and
        nothing is queued."""
        with smtplib.SMTP("127.0.0.1", self.daemon.port, local_hostname="client.example") as s:
            s.ehlo()
            s.mail("sender@example.org")
            self.assertEqual(s.rcpt("nobody@test.example"), (550, b"Unrouteable address"))
        wait_for(lambda: "rejected RCPT" in self.site.mainlog(), "the rejection")
        rejection = ("H=(client.example) [127.0.0.1] F=<sender@example.org> rejected RCPT "
                     "<nobody@test.example>: Unrouteable address\n")
        self.assertEqual(normalise_log(self.site.mainlog()), "TIME " + rejection)
        self.assertEqual(normalise_log(read_text(os.path.join(self.site.dir, "log", "rejectlog"))),
                         "TIME " + rejection)
        self.assertEqual(list(self.site.spool.message_ids()), [])

    def test_deferred_delivery_retried_with_M(self):
        """A :defer: redirect leaves the message queued (==, listed by -bp with
        its recipient); -M retries it (deferred again while the problem lasts);
        once it is fixed, -M delivers it and the queue is empty."""
        message_id = send_message(self.daemon.port, "sender@example.org", ["later@test.example"],
                                  "Subject: patience\n\nwait for it\n")
        wait_for(lambda: " == " in self.site.mainlog(), "the deferral")
        listing = spool_listing(self.site)
        self.assertRegex(listing, r"^ *\d+[smhd] +\d+ %s <sender@example\.org>\n"
                                  r" {10}later@test\.example\n\n$" % message_id)
        self.assertEqual(self.site.run("-M", message_id).returncode, 0)
        with open(os.path.join(self.site.dir, "ready"), "w"):
            pass
        result = self.site.run("-M", message_id)
        self.assertEqual((result.returncode, result.stderr), (0, ""))
        self.assertEqual(spool_listing(self.site), "")
        [raw] = self.site.maildir("later")
        self.assertEqual(parse(raw)["Subject"], "patience")
        self.assertEqual(normalise_log(self.site.mainlog(), message_id), (
            "TIME ID1 <= sender@example.org H=(client.example) [127.0.0.1] P=esmtp S=%d\n"
            "TIME ID1 == later@test.example R=later defer (-1): mailbox not ready yet\n"
            "TIME ID1 == later@test.example R=later defer (-1): mailbox not ready yet\n"
            "TIME ID1 => later <later@test.example> R=maildir T=maildir\n"
            "TIME ID1 Completed\n") % self.site.spool_size(message_id))

    def test_concurrent_deliveries_to_one_mbox(self):
        """40 messages over 8 simultaneous connections, all for one mbox user:
        the daemon delivers them concurrently, and the mbox holds each one once,
        intact (locking between deliveries)."""
        tokens = ["mbox-%02d" % i for i in range(40)]
        errors = []

        def client(mine):
            try:
                for token in mine:
                    send_message(self.daemon.port, "sender@example.org", ["mboxuser@test.example"],
                                 "Subject: %s\n\n%s\n" % (token, body(token)))
            except Exception as e:          # reported below, with the token
                errors.append((mine, e))
        threads = [threading.Thread(target=client, args=(tokens[i::8],)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertEqual(errors, [])
        wait_for(lambda: self.site.mainlog().count(" Completed\n") == len(tokens),
                 "every delivery completed")
        box = mailbox.mbox(os.path.join(self.site.dir, "mbox", "mboxuser"))
        got = sorted((msg["Subject"], msg.get_payload()) for msg in box)
        self.assertEqual(got, [(token, body(token) + "\n") for token in tokens])

    def test_failure_returns_rfc3464_bounce(self):
        """A :fail: address produces a bounce to the sender: multipart/report
        (report-type=delivery-status) with a message/delivery-status part whose
        per-recipient fields give Final-Recipient, Action: failed and Status 5.x.x,
        and the original message returned; the logs link the bounce to its parent."""
        message_id = send_message(self.daemon.port, "alice@test.example", ["gone@test.example"],
                                  "Subject: two\n\nbody two\n")
        self.site.wait_completed(message_id)
        [raw] = self.site.maildir("alice")
        report = email.message_from_bytes(raw)
        self.assertEqual(report.get_content_type(), "multipart/report")
        self.assertEqual(report.get_param("report-type"), "delivery-status")
        self.assertEqual(report["Return-path"], "<>")
        self.assertEqual(report["To"], "alice@test.example")
        self.assertEqual(report["X-Failed-Recipients"], "gone@test.example")
        text, status, returned = report.get_payload()
        self.assertIn("gone@test.example\n    this mailbox is closed", text.get_payload())
        self.assertEqual(status.get_content_type(), "message/delivery-status")
        per_message, per_recipient = status.get_payload()
        self.assertEqual(per_message["Reporting-MTA"], "dns; e2e.test.example")
        self.assertEqual(per_recipient["Final-Recipient"], "rfc822;gone@test.example")
        self.assertEqual(per_recipient["Action"], "failed")
        self.assertRegex(per_recipient["Status"], r"^5\.\d+\.\d+$")
        self.assertEqual(returned.get_content_type(), "message/rfc822")
        [original] = returned.get_payload()
        self.assertEqual((original["Subject"], original.get_payload()), ("two", "body two\n"))
        self.assertEqual(re.sub(r"S=\d+", "S=n", normalise_log(self.site.mainlog())), (
            "TIME ID1 <= alice@test.example H=(client.example) [127.0.0.1] P=esmtp S=n\n"
            "TIME ID1 ** gone@test.example R=gone: this mailbox is closed\n"
            "TIME ID2 <= <> R=ID1 U=%s P=local S=n\n"
            "TIME ID2 => alice <alice@test.example> R=maildir T=maildir\n"
            "TIME ID2 Completed\n"
            "TIME ID1 Completed\n") % pwd.getpwuid(os.getuid()).pw_name)


class QueueRunnerTests(unittest.TestCase):
    """The daemon's own queue runner (-q<time>) with queue_only."""

    def test_queue_only_arrival_delivered_by_next_queue_run(self):
        """With queue_only and -q2s, an arrival is only queued; the daemon's next
        queue run (logged Start queue run / End queue run, as Exim) delivers it."""
        site = Site(self)
        site.macros.append("-DE2E_QUEUE_ONLY=yes")
        daemon = site.daemon("-q2s").start()
        self.addCleanup(daemon.stop)
        message_id = send_message(daemon.port, "sender@example.org", ["bob@test.example"],
                                  "Subject: queued\n\nlater, please\n")
        site.wait_completed(message_id)
        lines = [re.sub(r"pid=\d+", "pid=N", line)
                 for line in normalise_log(site.mainlog()).splitlines()]
        arrival = lines.index("TIME ID1 <= sender@example.org H=(client.example) [127.0.0.1] "
                              "P=esmtp S=%d" % site.spool_size(message_id))
        self.assertEqual(lines[arrival + 1:arrival + 5], [
            "TIME Start queue run: pid=N",
            "TIME ID1 => bob <bob@test.example> R=maildir T=maildir",
            "TIME ID1 Completed",
            "TIME End queue run: pid=N"])
        [raw] = site.maildir("bob")
        self.assertEqual(parse(raw)["Subject"], "queued")


class RelayTests(unittest.TestCase):
    """exim_py receives over SMTP and relays through its smtp transport to a real exim4."""

    def test_relay_to_exim4_peer(self):
        """A message for relay.test.example goes out by the manualroute router and the
        smtp transport (=> with H= and C="250 OK id=..." naming exim4's id); exim4
        delivers it to its maildir with both Received: headers, and exim_py's
        queue is empty."""
        peer = MaildirPeer(self)
        peer.daemon.start()
        self.addCleanup(peer.daemon.stop)
        site = Site(self)
        site.macros.append("-DE2E_PEER_PORT=%d" % peer.port)
        daemon = site.daemon().start()
        self.addCleanup(daemon.stop)
        message_id = send_message(daemon.port, "sender@example.org", ["carol@relay.test.example"],
                                  "Subject: onwards\n\nrelay me\n")
        site.wait_completed(message_id)
        [delivery] = [line for line in normalise_log(site.mainlog(), message_id).splitlines()
                      if " => " in line]
        # exim4 offers STARTTLS (a self-signed certificate) and CHUNKING: the
        # smtp transport uses both, as Exim does.
        match = re.match(r'TIME ID1 => carol@relay\.test\.example R=relay T=remote_smtp '
                         r'H=127\.0\.0\.1 \[127\.0\.0\.1\] X=TLS1\.3:\S+:256 CV=no K '
                         r'C="250- \d+ byte chunk, total \d+\\\\n250 OK id=ID2"$', delivery)
        self.assertTrue(match, delivery)
        peer_id = re.search(r'250 OK id=(\S+)"', site.mainlog()).group(1)
        wait_for(peer.messages, "the message in exim4's maildir")
        [raw] = peer.messages()
        msg = parse(raw)
        self.assertEqual(msg["Return-path"], "<sender@example.org>")
        self.assertEqual(msg["Envelope-to"], "carol@relay.test.example")
        self.assertEqual(msg.get_payload(), "relay me\n")
        peer_received, our_received = msg.get_all("Received")
        self.assertRegex(peer_received, r"^from \[127\.0\.0\.1\] \(helo=e2e\.test\.example\)\n"
                                        r"\tby peer\.test\.example with esmtps ")
        self.assertIn("id %s" % peer_id, peer_received)
        self.assertRegex(our_received, r"by e2e\.test\.example with esmtp \(Exim 4\.96\)")
        self.assertIn("id %s" % message_id, our_received)
        self.assertIn("%s <= sender@example.org H=(e2e.test.example) [127.0.0.1]" % peer_id,
                      peer.mainlog())
        self.assertEqual(spool_listing(site), "")

    def test_relay_requiring_verified_tls_and_auth(self):
        """With hosts_require_tls, tls_verify_hosts and hosts_require_auth, the
        smtp transport verifies exim4's certificate (the test PKI, name
        localhost), authenticates as fred with PLAIN and delivers: CV=yes and
        A=plain on exim_py's => line, P=esmtpsa and A=plain:fred on exim4's."""
        pki = ServerPKI(tempfile.mkdtemp(prefix="exim_py-e2e-pki-"))
        self.addCleanup(shutil.rmtree, pki.dir, True)
        leaf = pki.server("peer", ["localhost"])
        peer = EximPeer(tls_certificate=leaf.chain_path, tls_privatekey=leaf.key_path).start()
        self.addCleanup(peer.stop)
        site = Site(self)
        site.macros += ["-DE2E_PEER_PORT=%d" % peer.port, "-DE2E_PEER_HOST=localhost",
                        "-DE2E_PEER_CA=" + pki.root.cert_path]
        daemon = site.daemon().start()
        self.addCleanup(daemon.stop)
        message_id = send_message(daemon.port, "alice@test.example", ["carol@relay.test.example"],
                                  "Subject: secure\n\nbody\n")
        site.wait_completed(message_id)
        delivery = normalise_log(site.mainlog(), message_id).splitlines()[1]
        self.assertRegex(delivery, r"^TIME ID1 => carol@relay\.test\.example R=relay T=remote_smtp "
                                   r"H=localhost \[127\.0\.0\.1\] X=TLS1\.3:\S+ CV=yes A=plain K "
                                   r'C="250- \d+ byte chunk, total \d+\\\\n250 OK id=ID2"$')
        [(header, body)] = peer.messages()
        self.assertIn("\n-received_protocol esmtpsa\n", header)
        self.assertIn("\n--auth_id fred\n", header)
        self.assertEqual(body, b"body\n")
        self.assertRegex(peer.mainlog(), r" <= alice@test\.example H=\(e2e\.test\.example\) "
                                         r"\[127\.0\.0\.1\] P=esmtpsa X=\S+ CV=no A=plain:fred ")


class TlsAuthTests(unittest.TestCase):
    """STARTTLS with the test PKI's certificate, then AUTH PLAIN, into the daemon."""

    def test_starttls_then_auth_plain(self):
        """AUTH PLAIN is offered only after STARTTLS (server_advertise_condition);
        swaks verifies the certificate against the test CA, authenticates as fred
        and the message is delivered; the <= line carries X= and A=plain:fred and
        the Received: header says esmtpsa."""
        site = Site(self)
        daemon = site.daemon().start()
        self.addCleanup(daemon.stop)
        common = ["--server", "127.0.0.1:%d" % daemon.port, "--helo", "client.example",
                  "--from", "fred@example.org", "--to", "alice@test.example",
                  "--auth", "PLAIN", "--auth-user", "fred", "--auth-password", "secret"]
        cleartext = swaks(common, ok=False)
        self.assertNotIn("250-AUTH", cleartext)
        self.assertNotIn("Authentication succeeded", cleartext)
        out = swaks(common + ["--tls", "--tls-verify", "--tls-ca-path", site.ca_path,
                              "--tls-sni", "e2e.test.example",
                              "--header", "Subject: secret"])
        self.assertIn(" -> STARTTLS\n<-  220 TLS go ahead\n", out)
        self.assertIn("<~  235 Authentication succeeded", out)
        [message_id] = re.findall(r"<~  250 OK id=(\S+)", out)
        site.wait_completed(message_id)
        received = normalise_log(site.mainlog(), message_id).splitlines()[0]
        self.assertRegex(received, r"^TIME ID1 <= fred@example\.org H=\(client\.example\) "
                                   r"\[127\.0\.0\.1\] P=esmtpsa X=TLS1\.[23]:\S+:\d+ CV=no "
                                   r"A=plain:fred S=\d+ id=\S+$")
        [raw] = site.maildir("alice")
        msg = parse(raw)
        self.assertEqual(msg["Subject"], "secret")
        # Exim built with OpenSSL names the version as OpenSSL does (TLSv1.3).
        self.assertRegex(msg["Received"], r"\tby e2e\.test\.example with esmtpsa  \(TLSv1\.[23]\) "
                                          r"tls \S+\n\t\(Exim 4\.96\)\n")


class TwistdPluginTests(unittest.TestCase):
    """The same daemon under twistd, through twisted/plugins/exim_py_plugin.py."""

    def test_twistd_runs_exim_py(self):
        """`twistd --help` lists exim_py, and `twistd -n exim_py -C CONF --listen
        PORT` accepts a message over SMTP and delivers it."""
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        if not os.path.exists(twistd):
            raise unittest.SkipTest("no twistd next to " + sys.executable)
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        site = Site(self)
        listing = subprocess.run([twistd, "--help"], capture_output=True, text=True, env=env,
                                 cwd=site.dir, timeout=60)
        self.assertRegex(listing.stdout, r"\n +exim_py +exim_py mail transfer agent")
        port = free_port()
        daemon = Daemon([twistd, "-n", "--pidfile=", "exim_py", "-C", site.config]
                        + ["-D", site.macros[0][2:], "--listen", "127.0.0.1.%d" % port],
                        port, env=env)
        daemon.start()
        self.addCleanup(daemon.stop)
        message_id = send_message(port, "sender@example.org", ["alice@test.example"],
                                  "Subject: via twistd\n\nhello\n")
        site.wait_completed(message_id)
        [raw] = site.maildir("alice")
        self.assertEqual(parse(raw)["Subject"], "via twistd")
        self.assertIn("%s => alice <alice@test.example> R=maildir T=maildir" % message_id,
                      site.mainlog())


class CrashSafetyTests(unittest.TestCase):
    """SIGKILL of the daemon loses no acknowledged message (spec: a message is
    acknowledged only once its -H and -D files are on disk)."""

    CONNECTIONS = 20
    PER_CONNECTION = 10

    def test_sigkill_midway_loses_nothing(self):
        """200 messages over 20 concurrent connections into a queue_only daemon;
        SIGKILL after about half are acknowledged.  Every message that got its
        250 is then on the spool intact (-H parsed: sender, recipient; -D: the
        exact body).  Clients resend what was not acknowledged to a restarted
        daemon; a queue run (exim_py -q) is SIGKILLed halfway and a second one
        finishes: every message is in the maildir, none lost, each acknowledged
        id among the deliveries.  Duplicates (stored but not yet acknowledged at
        the first kill; delivered but not yet journalled at the second) are
        counted and logged."""
        site = Site(self)
        site.macros.append("-DE2E_QUEUE_ONLY=yes")
        daemon = site.daemon().start()
        self.addCleanup(lambda: current[0].stop())
        current = [daemon]
        acked = {}                      # token -> message id
        lock = threading.Lock()
        restarted = threading.Event()
        errors = []

        def client(number):
            todo = ["msg-%02d-%02d" % (number, i) for i in range(self.PER_CONNECTION)]
            while todo:
                try:
                    with smtplib.SMTP("127.0.0.1", daemon.port, local_hostname="client.example",
                                      timeout=30) as s:
                        s.ehlo()
                        while todo:
                            token = todo[0]
                            replies = [s.mail("sender@example.org"), s.rcpt("crash@test.example"),
                                       s.data("Subject: %s\n\n%s\n" % (token, body(token)))]
                            if [code for code, _ in replies] != [250, 250, 250]:
                                raise AssertionError(replies)
                            with lock:
                                acked[token] = re.match(rb"OK id=(\S+)", replies[2][1]).group(1).decode()
                            todo.pop(0)
                except smtplib.SMTPConnectError as e:
                    # 421 (smtp_accept_max, 20 by default: the readiness
                    # probe may still count): come back shortly, as MTAs do.
                    if e.smtp_code != 421:
                        errors.append((todo[0], e))
                        return
                    time.sleep(0.1)
                except (OSError, smtplib.SMTPException) as e:
                    # The daemon was killed under this connection: resend what
                    # was not acknowledged once it is back, as a client would.
                    if restarted.is_set():
                        errors.append((todo[0], e))
                        return
                    restarted.wait(60)
                except AssertionError as e:
                    errors.append((todo[0], e))
                    return

        threads = [threading.Thread(target=client, args=(n,)) for n in range(self.CONNECTIONS)]
        for t in threads:
            t.start()
        total = self.CONNECTIONS * self.PER_CONNECTION
        wait_for(lambda: len(acked) >= total // 2, "half the messages acknowledged", timeout=60)
        daemon.kill()
        with lock:
            before_kill = dict(acked)
        for token, message_id in before_kill.items():
            env = site.spool.read(message_id)
            self.assertEqual((env.sender, [r.address for r in env.recipients]),
                             ("sender@example.org", ["crash@test.example"]), message_id)
            self.assertEqual(site.spool.read_body(message_id), (body(token) + "\n").encode())
        current[0] = site.daemon()
        current[0].port = daemon.port
        current[0].argv[current[0].argv.index("-oX") + 1] = "127.0.0.1.%d" % daemon.port
        current[0].start()
        restarted.set()
        for t in threads:
            t.join(120)
        self.assertEqual((errors, len(acked)), ([], total))
        current[0].stop()
        # Now the delivery side: a queue run killed halfway, then another.
        runner = subprocess.Popen([exim_py_script()] + site.args("-q"), start_new_session=True,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(lambda: runner.poll() is None and os.killpg(runner.pid, signal.SIGKILL))
        wait_for(lambda: len(site.maildir("crash")) >= total // 2, "half the queue delivered")
        was_running = runner.poll() is None
        os.killpg(runner.pid, signal.SIGKILL)
        runner.wait()
        at_kill = len(site.maildir("crash"))
        result = site.run("-q")
        self.assertEqual((result.returncode, result.stderr), (0, ""))
        self.assertEqual(spool_listing(site), "")
        copies = {}                     # token -> {message id: deliveries}
        for raw in site.maildir("crash"):
            msg = parse(raw)
            token = msg["Subject"]
            self.assertEqual(msg.get_payload(), body(token) + "\n")
            message_id = re.search(r"\bid ([-0-9A-Za-z]+)", msg["Received"]).group(1)
            ids = copies.setdefault(token, {})
            ids[message_id] = ids.get(message_id, 0) + 1
        self.assertEqual(sorted(copies), sorted(acked))
        for token, message_id in acked.items():
            self.assertIn(message_id, copies[token])
        received_twice = sum(len(ids) - 1 for ids in copies.values())
        delivered_twice = sum(n - 1 for ids in copies.values() for n in ids.values())
        log.msg("crash safety: %d acknowledged before SIGKILL; %d stored twice (stored, "
                "not acknowledged, sent again); queue run killed after %d deliveries "
                "(running: %s); %d delivered twice"
                % (len(before_kill), received_twice, at_kill, was_running, delivered_twice))
        self.assertLessEqual(received_twice, self.CONNECTIONS)
        self.assertLessEqual(delivered_twice, 5)


def body(token):
    """A body that shows truncation or mixing: the token repeated on many lines."""
    return "\n".join("%s line %d" % (token, i) for i in range(40))
