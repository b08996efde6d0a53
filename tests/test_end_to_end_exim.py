"""End to end against Debian's exim4: the same configuration and the same
traffic through exim_py and through exim4 give the same log lines and the
same delivered bytes (ids, dates and cipher names normalised).

Plain local deliveries, :fail: and :defer: addresses with their bounces,
relaying to a next hop that rejects, defers and accepts, DSN parameters, an
awkward message, pipes, files and autoreplies from routers, a -bs session
and a remote retry.  exim4 runs as Debian-exim and delivers as that user, so
both sides are given ``user = Debian-exim``.
"""

import glob
import os
import pwd
import re
import smtplib
import subprocess

from twisted.trial import unittest

from tests.support.end_to_end import (
    Daemon, MaildirPeer, Site, exim_py_script, free_port, log_by_message, normalise_log,
    normalise_mail, read_text, send_message, wait_for)
from tests.support.peers import require_command


TRICKY = (b"Subject: awkward\r\n\r\n.leading dot\r\n..two dots\r\n.\r\nFrom the start\r\n"
          b">From quoted\r\n" + b"x" * 990 + b"\r\n8bit: \xe9\xe8\r\nbare\rcr and bare\nlf\r\n"
          b"last line without newline")


class SameAsEximTests(unittest.TestCase):
    """The same configuration and the same SMTP traffic through exim_py and
    through Debian's exim4: the same log lines and the same delivered bytes."""

    def run_site(self, command, peer):
        site = Site(self, owner="Debian-exim")
        port = free_port()
        daemon = Daemon([command, "-C", site.config, "-DE2E_DIR=" + site.dir,
                         "-DE2E_USER=Debian-exim", "-DE2E_PEER_PORT=%d" % peer.port,
                         "-oX", "127.0.0.1.%d" % port, "-bdf"], port)
        daemon.start()
        self.addCleanup(daemon.stop)
        first = send_message(port, "sender@example.org", ["alice@test.example", "mboxuser@test.example"],
                             "Subject: one\nX-Test: plain delivery\n\nbody one\n")
        site.wait_completed(first)
        second = send_message(port, "alice@test.example", ["gone@test.example"],
                              "Subject: two\n\nbody two\n")
        site.wait_completed(second)
        third = send_message(port, "alice@test.example", ["later@test.example"],
                             "Subject: three\n\nbody three\n")
        wait_for(lambda: "%s == " % third in site.mainlog(), "the deferral")
        fourth = send_message(port, "alice@test.example",
                              ["rejectme@relay.test.example", "deferme@relay.test.example",
                               "ok@relay.test.example"], "Subject: four\n\nbody four\n")
        wait_for(lambda: len(site.maildir("alice")) == 3 and
                 [len(lines) for lines in log_by_message(site.mainlog())] == [4, 3, 3, 2, 4, 3],
                 "every delivery and both bounces:\n" + site.mainlog())
        # RFC 3461/3464: headers only returned, an envelope id, the original
        # recipient, a success notification and a failure report.
        with smtplib.SMTP("127.0.0.1", port, local_hostname="client.example") as s:
            s.ehlo()
            s.mail("alice@test.example", ["RET=HDRS", "ENVID=env-123"])
            s.rcpt("bob@test.example", ["NOTIFY=SUCCESS", "ORCPT=rfc822;Bob@Test.Example"])
            s.rcpt("gone@test.example", ["NOTIFY=FAILURE"])
            self.assertEqual(s.data("Subject: five\n\nbody five\n")[0], 250)
        wait_for(lambda: len(site.maildir("alice")) == 5 and
                 [len(lines) for lines in log_by_message(site.mainlog())][6:] == [4, 3, 3],
                 "the success notification and the failure report:\n" + site.mainlog())
        # Transparency (RFC 5321 4.5.2), mbox From_ escaping, 8-bit data, bare
        # CR and LF, a long line and a last line without its newline, to a
        # maildir, an mbox and across SMTP to the next hop.
        with smtplib.SMTP("127.0.0.1", port, local_hostname="client.example") as s:
            s.ehlo()
            s.mail("alice@test.example", ["BODY=8BITMIME"])
            for rcpt in ("bob@test.example", "mboxuser@test.example", "ok@relay.test.example"):
                s.rcpt(rcpt)
            self.assertEqual(s.data(TRICKY)[0], 250)
        wait_for(lambda: len(site.maildir("bob")) == 2 and
                 len(log_by_message(site.mainlog())[9]) == 5, "the awkward message delivered")
        # A pipe and a file from a redirect router, and an autoreply.
        send_message(port, "alice@test.example",
                     ["piped@test.example", "filed@test.example", "away@test.example"],
                     "Subject: seven\n\nbody seven\n")
        wait_for(lambda: len(site.maildir("alice")) == 6 and
                 [len(lines) for lines in log_by_message(site.mainlog())][10:] == [5, 3],
                 "the pipe, file and autoreply deliveries:\n" + site.mainlog())
        daemon.stop()
        self.assertIn(fourth, site.mainlog())
        return site

    def test_same_logs_and_mail_as_exim4(self):
        """Plain delivery to a maildir and an mbox, a :fail: address with its
        bounce, a :defer: address, and a relayed message whose recipients the
        next hop (exim4) rejects, defers and accepts, and DSN parameters (RET=HDRS,
        ENVID, ORCPT, NOTIFY=SUCCESS / FAILURE), an awkward message (dots, From_,
        8-bit, bare CR/LF) and a pipe, a file and an autoreply from routers:
        exim_py's mainlog (per message), the bounces, the success notification,
        the autoreply and the maildir, mbox, file and pipe output equal exim4's
        once ids, dates and cipher names are normalised."""
        if os.getuid() != 0:
            raise unittest.SkipTest("exim4 with -C and local deliveries as Debian-exim need root")
        exim4 = require_command("exim4", "Debian package exim4-daemon-heavy")
        peer = MaildirPeer(self)
        peer.daemon.start()
        self.addCleanup(peer.daemon.stop)
        ours = self.run_site(exim_py_script(), peer)
        theirs = self.run_site(exim4, peer)
        our_log = ours.mainlog().replace(ours.dir, "DIR")
        # exim_py keeps a connection open for two seconds after a delivery and
        # the next message for that host goes down it, marked '*' (an exim_py
        # difference, README): every such line follows a delivery to its host.
        continued = re.findall(r" => .* H=(\S+ \[[^]]+\])\*", our_log)
        for host in continued:
            self.assertIn(" H=%s " % (host,), our_log.split(" H=%s*" % (host,))[0])
        self.assertEqual(log_by_message(re.sub(r"(H=\S+ \[[^]]+\])\*", r"\1", our_log)),
                         log_by_message(theirs.mainlog().replace(theirs.dir, "DIR")))
        for user in ("alice", "bob"):
            self.assertEqual(sorted(normalise_mail(m) for m in ours.maildir(user)),
                             sorted(normalise_mail(m) for m in theirs.maildir(user)))
        self.assertEqual(normalise_mail(read_text(os.path.join(ours.dir, "mbox", "mboxuser"))),
                         normalise_mail(read_text(os.path.join(theirs.dir, "mbox", "mboxuser"))))
        for name in ("piped", "filed"):
            self.assertEqual(normalise_mail(read_text(os.path.join(ours.dir, "mbox", name))),
                             normalise_mail(read_text(os.path.join(theirs.dir, "mbox", name))))
        self.assertIn("\nSubject: seven\n\nbody seven\n",
                      read_text(os.path.join(ours.dir, "mbox", "piped")))
        relayed = sorted(normalise_mail(m) for m in peer.messages() if b"awkward" in m)
        self.assertEqual(len(relayed), 2)
        self.assertEqual(relayed[0], relayed[1])
        # Run as root, exim_py gives the files to the transport's user, as exim4 does.
        exim_uid = pwd.getpwnam("Debian-exim").pw_uid
        self.assertEqual({os.stat(p).st_uid for p in glob.glob(os.path.join(
            ours.dir, "mail", "alice", "Maildir", "new", "*"))}, {exim_uid})
        self.assertEqual(os.stat(os.path.join(ours.dir, "mbox", "mboxuser")).st_uid, exim_uid)

    def test_bs_session_same_as_exim4(self):
        """An SMTP session on standard input (-bs, a local program): the message
        is delivered as a local message (Message-Id:, From: and Date: added,
        P=local-esmtp); the log and the delivered message equal exim4's."""
        if os.getuid() != 0:
            raise unittest.SkipTest("exim4 with -C and local deliveries as Debian-exim need root")
        exim4 = require_command("exim4", "Debian package exim4-daemon-heavy")
        dialogue = (b"EHLO me\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<alice@test.example>\r\n"
                    b"DATA\r\nSubject: bs\r\n\r\nvia -bs\r\n.\r\nQUIT\r\n")
        results = []
        for command in (exim_py_script(), exim4):
            site = Site(self, owner="Debian-exim")
            result = subprocess.run([command, "-C", site.config, "-DE2E_DIR=" + site.dir,
                                     "-DE2E_USER=Debian-exim", "-bs"], input=dialogue,
                                    capture_output=True, timeout=60)
            self.assertEqual(result.returncode, 0)
            self.assertIn(b"\r\n221 ", result.stdout)
            # both deliver in a process of their own, which may outlive the session
            wait_for(lambda: site.maildir("alice"), "the delivery")
            [message_id] = re.findall(r"(\S+) <= ", site.mainlog())
            site.wait_completed(message_id)
            results.append((log_by_message(site.mainlog()),
                            [normalise_mail(m) for m in site.maildir("alice")]))
        self.assertEqual(results[0], results[1])
        [[arrival, _, _]], [delivered] = results[0]
        self.assertEqual(arrival, "TIME ID1 <= a@example.org U=root P=local-esmtp S=320")
        self.assertIn("\nMessage-Id: <EID@e2e.test.example>\nFrom: a@example.org\nDate: DATE\n",
                      delivered)

    def test_remote_retry_same_as_exim4(self):
        """A relayed message whose next hop is down: the host's own line and the
        deferral (Connection refused), a queue run before the retry time (-54 retry time not reached),
        and once the host is up a forced run (-qf) that delivers it: the same log
        lines as exim4, and the queue empty at the end."""
        if os.getuid() != 0:
            raise unittest.SkipTest("exim4 with -C and local deliveries as Debian-exim need root")
        exim4 = require_command("exim4", "Debian package exim4-daemon-heavy")
        peer = MaildirPeer(self)          # not started yet: its port refuses connections
        sites = []
        for command in (exim_py_script(), exim4):
            site = Site(self, owner="Debian-exim")
            base = [command, "-C", site.config, "-DE2E_DIR=" + site.dir, "-DE2E_USER=Debian-exim",
                    "-DE2E_PEER_PORT=%d" % peer.port]
            for args, text in ((["-odi", "carol@relay.test.example"], b"Subject: retry\n\nbody\n"),
                               (["-q"], None)):
                result = subprocess.run(base + args, input=text, capture_output=True, timeout=60)
                self.assertEqual(result.returncode, 0, result.stderr)
            sites.append((site, base))
        peer.daemon.start()
        self.addCleanup(peer.daemon.stop)
        logs = []
        for site, base in sites:
            self.assertEqual(subprocess.run(base + ["-qf"], capture_output=True,
                                            timeout=60).returncode, 0)
            site.wait_completed(re.search(r"(\S+) <= ", site.mainlog()).group(1))
            self.assertEqual(subprocess.run(base + ["-bp"], capture_output=True, text=True,
                                            timeout=60).stdout, "")
            lines = [re.sub(r"pid=\d+", "pid=N", line) for group in log_by_message(site.mainlog())
                     for line in group] + [
                re.sub(r"pid=\d+", "pid=N", line)
                for line in normalise_log(site.mainlog()).splitlines() if "queue run" in line]
            logs.append(lines)
        ours, theirs = logs
        self.assertEqual(ours, theirs)
        self.assertEqual(ours[:4] + ours[5:], [
            "TIME ID1 <= root@test.example U=USER P=local S=n",
            "TIME ID1 H=127.0.0.1 [127.0.0.1] Connection refused",
            "TIME ID1 == carol@relay.test.example R=relay T=remote_smtp defer (111): "
            "Connection refused",
            "TIME ID1 == carol@relay.test.example R=relay T=remote_smtp defer (-54): "
            "retry time not reached for any host for 'relay.test.example'",
            "TIME ID1 Completed",
            "TIME Start queue run: pid=N",
            "TIME End queue run: pid=N",
            "TIME Start queue run: pid=N -qf",
            "TIME End queue run: pid=N -qf"])
        self.assertTrue(ours[4].startswith("TIME ID1 => carol@relay.test.example R=relay "
                                           "T=remote_smtp H=127.0.0.1 [127.0.0.1] "), ours[4])
