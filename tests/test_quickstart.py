"""The README's quick start, run as a newcomer runs it.

``exim_py -C etc/exim.conf -bdf`` (the console script pip installs) listens,
and the real swaks talks to it: mail for a user of this machine lands in a
maildir under ``EXIM_PY_VAR`` with the headers Exim adds, unknown local
users and relaying from a host outside ``relay_from_hosts`` are refused with
Exim's replies.  The port and the directory are chosen per run with ``-oX``
and ``-DEXIM_PY_VAR`` (never the fixed 2525 or /tmp/exim_py-var), so the test can
run next to others.
"""

import email
import glob
import os
import pwd
import re

from twisted.trial import unittest

from tests.support.peers import RealExim, require_command
from tests.support.end_to_end import (
    ROOT, Daemon, exim_py, exim_py_script, free_port, normalise_log, read_text, swaks, wait_for)

CONF = os.path.join(ROOT, "etc", "exim.conf")


class QuickStartTests(unittest.TestCase):
    """The default configuration driven by swaks over a real socket."""

    def setUp(self):
        require_command("swaks", "Debian package swaks")
        self.var = os.path.realpath(self.mktemp())
        os.makedirs(self.var)
        self.port = free_port()
        self.user = pwd.getpwuid(os.getuid()).pw_name
        self.daemon = Daemon([exim_py_script(), "-C", CONF, "-DEXIM_PY_VAR=" + self.var,
                              "-oX", "127.0.0.1.%d" % self.port, "-bdf"], self.port)
        self.daemon.start()
        self.addCleanup(self.daemon.stop)

    def mainlog(self):
        return read_text(os.path.join(self.var, "log", "mainlog"))

    def test_message_to_local_user_is_delivered_to_maildir(self):
        """swaks to $USER@localhost gets 250 with the id, and the message arrives in
        EXIM_PY_VAR/mail/$USER/Maildir/new with Return-path, Envelope-to,
        Delivery-date and Exim's Received: header; the mainlog shows <=, => and
        Completed in Exim's format."""
        out = swaks(["--server", "127.0.0.1:%d" % self.port, "--to", self.user + "@localhost",
                     "--from", "newcomer@example.org", "--helo", "client.example",
                     "--header", "Subject: quick start", "--body", "It works.\n"])
        [message_id] = re.findall(r"<-  250 OK id=(\S+)", out)
        maildir = os.path.join(self.var, "mail", self.user, "Maildir", "new")
        wait_for(lambda: glob.glob(os.path.join(maildir, "*")), "a file in " + maildir)
        wait_for(lambda: message_id + " Completed" in self.mainlog(), "Completed in the mainlog")
        [path] = glob.glob(os.path.join(maildir, "*"))
        with open(path, "rb") as f:
            raw = f.read()
        msg = email.message_from_bytes(raw)
        self.assertEqual(msg["Return-path"], "<newcomer@example.org>")
        self.assertEqual(msg["Envelope-to"], self.user + "@localhost")
        self.assertRegex(msg["Delivery-date"], r"^\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}$")
        self.assertRegex(
            raw.decode(),
            r"\nReceived: from \[127\.0\.0\.1\] \(helo=client\.example\)\n"
            r"\tby \S+ with esmtp \(Exim 4\.96\)\n"
            r"\t\(envelope-from <newcomer@example\.org>\)\n"
            r"\tid %s\n\tfor %s@localhost;\n\t\w{3}, \d\d \w{3} \d{4} [0-9:]{8} [+-]\d{4}\n"
            % (re.escape(message_id), re.escape(self.user)))
        self.assertEqual(msg["Subject"], "quick start")
        self.assertEqual(msg.get_payload().strip(), "It works.")
        ours = normalise_log(self.mainlog(), message_id).splitlines()
        self.assertEqual(len(ours), 3, ours)
        self.assertRegex(ours[0], r"^TIME ID1 <= newcomer@example\.org H=\(client\.example\) "
                                  r"\[127\.0\.0\.1\] P=esmtp S=\d+ id=\S+$")
        self.assertEqual(ours[1:], [
            "TIME ID1 => %s <%s@localhost> R=local_maildir T=local_maildir" % (self.user, self.user),
            "TIME ID1 Completed"])

    def test_unknown_local_user_refused_at_rcpt(self):
        """A local part that is no user of this machine gets Exim's 550 at RCPT,
        and the rejection is logged."""
        out = swaks(["--server", "127.0.0.1:%d" % self.port, "--to", "no-such-user-xq@localhost",
                     "--from", "newcomer@example.org", "--helo", "client.example"], ok=False)
        self.assertIn("<** 550 Unrouteable address", out)
        wait_for(lambda: "rejected RCPT <no-such-user-xq@localhost>: Unrouteable address"
                 in self.mainlog(), "the rejection in the mainlog")

    def test_not_an_open_relay(self):
        """From a host outside relay_from_hosts (127.0.0.2 is loopback but not
        127.0.0.1) a remote domain gets '550 relay not permitted'."""
        out = swaks(["--server", "127.0.0.1:%d" % self.port, "--local-interface", "127.0.0.2",
                     "--to", "victim@remote.example", "--from", "spammer@example.org",
                     "--helo", "spammer.example"], ok=False)
        self.assertIn("<** 550 relay not permitted", out)
        wait_for(lambda: "H=(spammer.example) [127.0.0.2] F=<spammer@example.org> rejected RCPT "
                         "<victim@remote.example>: relay not permitted" in self.mainlog(),
                 "the relay refusal in the mainlog")


class DefaultConfigurationTests(unittest.TestCase):
    """etc/exim.conf is an Exim 4.96 configuration: exim4 reads it and answers as exim_py does."""

    def test_same_answers_as_exim4(self):
        """exim4 -bt and -bh with etc/exim.conf give exim_py's routing and SMTP
        replies: users of this machine are accepted and routed to the maildir,
        others refused at RCPT, relaying allowed from 127.0.0.1 only."""
        exim = RealExim()
        self.addCleanup(exim.cleanup)
        with open(CONF) as f:
            conf = exim.write_config(f.read())
        var = "-DEXIM_PY_VAR=" + exim.dir
        user = pwd.getpwuid(os.getuid()).pw_name
        addresses = [user + "@localhost", "no-such-user-xq@localhost"]
        ours = exim_py(["-C", CONF, var, "-bt"] + addresses)
        theirs = exim.run(conf, [var, "-bt"] + addresses)
        self.assertEqual(ours.stdout, theirs.stdout)
        self.assertIn("router = local_maildir, transport = local_maildir", ours.stdout)
        # postmaster and abuse are passed on to EXIM_PY_POSTMASTER (root unless -D says otherwise).
        roles = [var, "-DEXIM_PY_POSTMASTER=" + user, "-bt", "postmaster@localhost",
                 "abuse@localhost"]
        ours = exim_py(["-C", CONF] + roles)
        self.assertEqual(ours.stdout, exim.run(conf, roles).stdout)
        self.assertIn("<-- postmaster@localhost\n  router = local_maildir", ours.stdout)
        dialogue = ("helo client.example\nmail from:<a@example.org>\nrcpt to:<%s@localhost>\n"
                    "rcpt to:<no-such-user-xq@localhost>\nrcpt to:<x@remote.example>\nquit\n" % user)
        for host in ("127.0.0.1", "127.0.0.2"):
            ours = exim_py(["-C", CONF, var, "-bh", host], input=dialogue)
            theirs = exim.run(conf, [var, "-bh", host], input=dialogue)
            replies = [re.sub(r"^220 .*", "220", line) for line in ours.stdout.splitlines()
                       if re.match(r"\d{3}[ -]", line)]
            self.assertEqual(replies, [re.sub(r"^220 .*", "220", line)
                                       for line in theirs.stdout.splitlines()
                                       if re.match(r"\d{3}[ -]", line)])
            self.assertEqual(replies[3:6], ["250 Accepted", "550 Unrouteable address",
                                            "250 Accepted" if host == "127.0.0.1"
                                            else "550 relay not permitted"])
