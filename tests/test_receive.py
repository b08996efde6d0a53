"""receive.py: header parsing, counts, input fixups and the host strings."""

import os
import tempfile

from twisted.trial.unittest import TestCase

from exim_py import config as config_module
from exim_py.envelope import Envelope, Header, Recipient, Session
from exim_py.receive import (extract_recipients, host_strings, local_fixups, message_size,
                             remove_transit_headers, split_message)


def load_config(text=""):
    d = tempfile.mkdtemp(prefix="receive-test-")
    path = os.path.join(d, "exim.conf")
    with open(path, "w") as f:
        f.write("spool_directory = %s\nqualify_domain = example.org\nprimary_hostname = mx.example.org\n%s"
                % (d, text))
    return config_module.load(path)


class SplitMessageTests(TestCase):
    """Separating and typing the header lines."""

    def test_headers_and_body(self):
        """Folded lines stay with their header; the blank line belongs to neither part."""
        headers, body, longest = split_message(
            b"Subject: hi\nTo: a@b.c,\n  d@e.f\nfrom: x@y\nMessage-ID: <1@x>\n\nbody line\n\n")
        self.assertEqual([(h.text, h.flag) for h in headers],
                         [("Subject: hi\n", " "), ("To: a@b.c,\n  d@e.f\n", "T"), ("from: x@y\n", "F"),
                          ("Message-ID: <1@x>\n", "I")])
        self.assertEqual(body, b"body line\n\n")
        self.assertEqual(longest, len("Message-ID: <1@x>"))

    def test_non_header_line_starts_body(self):
        """A line that is not a header ends the header section and is kept as the body's first line."""
        headers, body, _ = split_message(b"Subject: x\nNot a header line\nb\n")
        self.assertEqual([h.text for h in headers], ["Subject: x\n"])
        self.assertEqual(body, b"Not a header line\nb\n")
        headers, body, _ = split_message(b"no header here\nline2")
        self.assertEqual((headers, body), ([], b"no header here\nline2\n"))

    def test_counts(self):
        """body_linecount, body_zerocount and max_received_linelength as -H records them."""
        from exim_py.receive import count_body
        env = Envelope()
        headers, body, longest = split_message(b"From: me\n\nhello\n\0zero\n")
        count_body(env, body, longest)
        self.assertEqual((env.body_linecount, env.body_zerocount, env.max_received_linelength), (2, 1, 8))

    def test_flags(self):
        """Each header gets its -H type letter (spec "Format of spool files")."""
        names = ["Bcc", "Cc", "From", "Message-Id", "Received", "Reply-To", "Sender", "To", "X-Other"]
        headers, _, _ = split_message(b"".join(b"%s: v\n" % n.encode() for n in names) + b"\n")
        self.assertEqual("".join(h.flag for h in headers), "BCFIPRST ")


class FixupTests(TestCase):
    """Changes Exim makes to a message on input."""

    def setUp(self):
        self.config = load_config()

    def test_transit_headers_are_marked_deleted(self):
        """Return-path:, Envelope-to: and Delivery-date: are kept as deleted ('*') headers."""
        env = Envelope()
        env.headers, _, _ = split_message(b"Return-path: <x@y>\nEnvelope-to: q@r\nDelivery-date: Mon\n"
                                          b"Subject: x\n\n")
        remove_transit_headers(env, self.config)
        self.assertEqual("".join(h.flag for h in env.headers), "*** ")
        self.assertEqual(message_size(env, b"b\n"), len("Subject: x\n") + 1 + 2)

    def test_transit_removal_can_be_turned_off(self):
        """return_path_remove = false keeps Return-path: live."""
        env = Envelope()
        env.headers, _, _ = split_message(b"Return-path: <x@y>\n\n")
        remove_transit_headers(env, load_config("return_path_remove = false\n"))
        self.assertEqual(env.headers[0].flag, " ")

    def test_extract_recipients(self):
        """-t takes To:, Cc: and Bcc:, drops Bcc:, and moves command-line addresses to the tree."""
        env = Envelope()
        env.recipients = [Recipient("extra@q"), Recipient("x@y")]
        env.headers, _, _ = split_message(b'To: x@y, "A B" <z@w>\nCc: c@d\nBcc: e@f, local\n\n')
        extract_recipients(env, self.config)
        self.assertEqual([r.address for r in env.recipients], ["z@w", "c@d", "e@f", "local@example.org"])
        self.assertEqual(env.non_recipients, {"extra@q", "x@y"})
        self.assertEqual([h.flag for h in env.headers], ["T", "C", "*"])

    def test_extract_resent(self):
        """With Resent- headers, -t takes only the Resent- recipients."""
        env = Envelope()
        env.headers, _, _ = split_message(b"To: x@y\nResent-To: r@s\n\n")
        extract_recipients(env, self.config)
        self.assertEqual([r.address for r in env.recipients], ["r@s"])

    def test_local_fixups(self):
        """Message-Id:, From: (with a quoted full name) and Date: are added at the end, in that order."""
        env = Envelope()
        env.message_id = "1xUp55-00036Y-0V"
        env.sender = "root@example.org"
        env.headers = [Header("Subject: x\n")]
        local_fixups(env, self.config, "E1xUp55-00036Y-0V@mx.example.org", 1795282855,
                     originator_name="Joe Q. Public")
        texts = [h.text for h in env.headers]
        self.assertEqual(texts[:3], ["Subject: x\n", "Message-Id: <E1xUp55-00036Y-0V@mx.example.org>\n",
                                     'From: "Joe Q. Public" <root@example.org>\n'])
        self.assertTrue(texts[3].startswith("Date: "))
        self.assertEqual([h.flag for h in env.headers], [" ", "I", "F", " "])

    def test_fixups_leave_present_headers(self):
        """Headers the message has are not added again; the null sender gets no From:."""
        env = Envelope()
        env.message_id = "1xUp55-00036Y-0V"
        env.sender = ""
        env.headers, _, _ = split_message(b"Message-ID: <a@b>\nDate: Mon, 1 Jan 2024 00:00:00 +0000\n\n")
        local_fixups(env, self.config, "E1xUp55-00036Y-0V@mx.example.org", 0)
        self.assertEqual(len(env.headers), 2)


class HostStringTests(TestCase):
    """$sender_fullhost and $sender_rcvhost, as real exim4 -bs -oMa showed them."""

    def check(self, name, helo, ident, fullhost, rcvhost):
        s = Session()
        s.sender_host_address, s.sender_host_port = "10.1.2.3", 4567
        s.sender_host_name, s.helo_name, s.sender_ident = name, helo, ident
        self.assertEqual(host_strings(s), (fullhost, rcvhost))

    def test_table(self):
        """Each combination of host name, HELO name and ident gives Exim's strings."""
        self.check("h.e", "h.e", "root", "h.e [10.1.2.3]", "h.e ([10.1.2.3] ident=root)")
        self.check("h.e", "H.E", None, "h.e [10.1.2.3]", "h.e ([10.1.2.3])")
        self.check("h.e", "[10.1.2.3]", None, "h.e [10.1.2.3]", "h.e ([10.1.2.3])")
        self.check(None, "[10.1.2.3]", None, "([10.1.2.3]) [10.1.2.3]", "[10.1.2.3]")
        self.check(None, "[10.1.2.4]", None, "([10.1.2.4]) [10.1.2.3]", "[10.1.2.3] (helo=[10.1.2.4])")
        self.check("n.x", "other", None, "n.x (other) [10.1.2.3]", "n.x ([10.1.2.3] helo=other)")
        self.check(None, "other", None, "(other) [10.1.2.3]", "[10.1.2.3] (helo=other)")
        self.check(None, "other", "root", "(other) [10.1.2.3]", "[10.1.2.3] (helo=other ident=root)")
        self.check("host.name.example", "helo.example", "root", "host.name.example (helo.example) [10.1.2.3]",
                   "host.name.example\n\t([10.1.2.3] helo=helo.example ident=root)")

    def test_port(self):
        """With incoming_port the remote port follows the address in
        $sender_fullhost; without a host name $sender_rcvhost has it as
        "port=N" in its comment (as exim4 -bh shows)."""
        s = Session()
        s.sender_host_address, s.sender_host_port = "10.1.2.3", 4567
        self.assertEqual(host_strings(s, incoming_port=True), ("[10.1.2.3]:4567", "[10.1.2.3] (port=4567)"))
        s.sender_host_name = "host.example"
        self.assertEqual(host_strings(s, incoming_port=True),
                         ("host.example [10.1.2.3]:4567", "host.example ([10.1.2.3]:4567)"))

    def test_local(self):
        """A local message has neither."""
        self.assertEqual(host_strings(Session()), (None, None))
