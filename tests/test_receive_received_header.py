"""The Received: header exim_py adds: received_header_text's default is
evaluated directly (receive._default_received_text), and must give what
expanding the option gives, for every shape of connection."""

import os
import tempfile

from twisted.trial import unittest

from exim_py import receive
from exim_py.config import load
from exim_py.config.main_options import RECEIVED_HEADER_TEXT
from exim_py.envelope import Envelope, Recipient, Session
from exim_py.expand import ExpandContext, expand

CONFIG = "primary_hostname = mx.example\nqualify_domain = example\n"


def _config(extra=""):
    fd, path = tempfile.mkstemp(suffix=".conf")
    with os.fdopen(fd, "w") as f:
        f.write(CONFIG + extra)
    try:
        return load(path)
    finally:
        os.unlink(path)


def _envelope(address="192.0.2.7", name=None, helo="client.example", ident=None,
              protocol="esmtp", tls=None, sender="a@x.example", recipients=("b@y.example",)):
    s = Session()
    s.sender_host_address = address
    s.sender_host_port = 40000 if address else None
    s.sender_host_name = name
    s.helo_name = helo
    s.sender_ident = ident
    s.received_protocol = protocol
    if tls:
        s.tls_version, s.tls_cipher = tls
    env = Envelope(s)
    env.sender = sender
    env.recipients = [Recipient(r) for r in recipients]
    env.message_id = "1xUzHW-018SZz-1v"
    return env


CASES = {
    "helo only": {},
    "host name and a different helo": {"name": "host.example"},
    "host name equal to helo": {"name": "client.example"},
    "helo an IP literal": {"helo": "[192.0.2.7]"},
    "no helo": {"helo": None},
    "ident and host name": {"name": "host.example", "ident": "joe"},
    "tls": {"tls": ("TLSv1.3", "TLS1.3:ECDHE_X25519__RSA_PSS_RSAE_SHA256__AES_256_GCM:256")},
    "null sender, two recipients": {"sender": "", "recipients": ("b@y.example", "c@y.example")},
    "8-bit helo": {"helo": "h\u00e9lo.example"},
    "local, no host": {"address": None, "helo": None, "protocol": "local"},
}


class DefaultReceivedHeaderTests(unittest.TestCase):

    def test_direct_text_equals_expansion(self):
        """For each kind of connection, the directly built header text is
        exactly the expansion of the default received_header_text."""
        config = _config()
        for label, kw in CASES.items():
            env = _envelope(**kw)
            ctx = receive.expansion_context(env, config, ExpandContext(config=config))
            direct = receive._default_received_text(ctx)
            self.assertIsNotNone(direct, label)
            self.assertEqual(direct, expand(RECEIVED_HEADER_TEXT, ctx), label)

    def test_ident_without_host_left_to_the_engine(self):
        """An ident with no rcvhost needs ${quote_local_part:}: the engine does
        it, and the header is still the expansion's."""
        config = _config()
        env = _envelope(address=None, ident="joe smith", helo="h.example", protocol="local")
        ctx = receive.expansion_context(env, config, ExpandContext(config=config))
        self.assertIsNone(receive._default_received_text(ctx))
        header = receive.received_header(env, config, 0, ctx=ExpandContext(config=config))
        self.assertIn('from "joe smith" (helo=h.example)', header.text)

    def test_configured_text_is_expanded(self):
        """A received_header_text of the configuration's own is expanded as written."""
        config = _config("received_header_text = X-Got: by $primary_hostname for $received_for\n")
        header = receive.received_header(_envelope(), config, 0, ctx=ExpandContext(config=config))
        self.assertTrue(header.text.startswith("X-Got: by mx.example for b@y.example;\n\t"), header.text)

    def test_default_header_shape(self):
        """The default header for an SMTP arrival, field by field."""
        config = _config()
        header = receive.received_header(_envelope(name="host.example"), config, 0,
                                         ctx=ExpandContext(config=config))
        self.assertTrue(header.text.startswith(
            "Received: from host.example ([192.0.2.7] helo=client.example)\n\t"
            "by mx.example with esmtp (Exim 4.96)\n\t"
            "(envelope-from <a@x.example>)\n\t"
            "id 1xUzHW-018SZz-1v\n\tfor b@y.example;\n\t"), header.text)


class HostStringsTests(unittest.TestCase):

    def test_follow_the_session(self):
        """$sender_fullhost/$sender_rcvhost are kept per session between messages,
        but a new HELO name, a looked-up host name or the incoming port show at once."""
        env = _envelope()
        s = env.session
        self.assertEqual(receive.host_strings(s), ("(client.example) [192.0.2.7]",
                                                   "[192.0.2.7] (helo=client.example)"))
        s.helo_name = "other.example"
        self.assertEqual(receive.host_strings(s)[0], "(other.example) [192.0.2.7]")
        s.sender_host_name = "host.example"
        self.assertEqual(receive.host_strings(s)[1], "host.example ([192.0.2.7] helo=other.example)")
        self.assertEqual(receive.host_strings(s, incoming_port=True)[0],
                         "host.example (other.example) [192.0.2.7]:40000")
        self.assertEqual(receive.host_strings(s)[0], "host.example (other.example) [192.0.2.7]")


class IncomingPortExim4Tests(unittest.TestCase):
    """$sender_rcvhost and $sender_fullhost with log_selector = +incoming_port,
    against exim4 -bh."""

    def test_port_in_host_strings(self):
        """Without a host name the port goes into $sender_rcvhost's comment
        ("port=N"), and after the address in $sender_fullhost, as exim4 shows."""
        from tests.support import bh
        exim = bh.oracle(self)
        path = exim.write_config(
            "log_selector = +incoming_port\nhost_lookup =\nacl_smtp_helo = acl_helo\n"
            "begin acl\nacl_helo:\n"
            "  warn logwrite = RCV [$sender_rcvhost] FULL [$sender_fullhost]\n  accept\n")
        lines = bh.same_session(self, exim, path, bh.script(["EHLO client.example", "QUIT"]),
                                address="192.0.2.7.4321", summary=bh.logged)
        self.assertIn("LOG: RCV [[192.0.2.7] (port=4321 helo=client.example)] "
                      "FULL [(client.example) [192.0.2.7]:4321]", lines)
