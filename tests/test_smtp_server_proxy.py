"""Proxy Protocol v1 and v2 in front of the server (hosts_proxy)."""

import socket
import struct

from twisted.internet import task
from twisted.trial import unittest

from exim_py.smtp import proxy
from tests.test_smtp_server import Dialogue, make_policy

SHOW = ("hosts_proxy = 192.0.2.7\n"
        "acl_smtp_helo = deny message = client=$sender_host_address:$sender_host_port "
        "proxy=$proxy_local_address ext=$proxy_external_address:$proxy_external_port "
        "session=$proxy_session\n")


def v2_header(src, dst, sport, dport, command=1):
    body = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
    return proxy.V2_SIGNATURE + struct.pack("!BBH", 0x20 | command, 0x11, len(body)) + body


class ProxyProtocolTests(unittest.TestCase):
    """The PROXY header names the real client before the banner."""

    def dialogue(self, extra=SHOW, clock=None):
        policy, _ = make_policy(self, extra)
        return Dialogue(policy, clock=clock)

    def test_v1_header(self):
        """A v1 line makes the proxied client the session's host."""
        d = self.dialogue()
        self.assertEqual(d.take(), "")
        banner = d.send("PROXY TCP4 203.0.113.9 198.51.100.2 40001 25\r\n")
        self.assertTrue(banner.startswith("220 mx.test.example"), banner)
        self.assertEqual(d.send("HELO c\r\n"), "550 client=203.0.113.9:40001 proxy=192.0.2.7 "
                                               "ext=198.51.100.2:25 session=yes\r\n")

    def test_v2_header_split_across_reads(self):
        """A binary v2 header may arrive in pieces."""
        d = self.dialogue()
        header = v2_header("203.0.113.10", "198.51.100.3", 40002, 587)
        d.send(header[:7])
        self.assertEqual(d.take(), "")
        self.assertTrue(d.send(header[7:]).startswith("220 "))
        self.assertIn("client=203.0.113.10:40002", d.send("HELO c\r\n"))

    def test_garbage_refuses_commands(self):
        """Without a valid header every command but QUIT is refused."""
        d = self.dialogue()
        self.assertTrue(d.send("EHLO not-a-proxy\r\n").startswith("220 "))
        self.assertEqual(d.send("HELO c\r\n"), "503 Command refused, required Proxy negotiation failed\r\n")
        self.assertEqual(d.send("QUIT\r\n"), "221 mx.test.example closing connection\r\n")

    def test_timeout(self):
        """No header within proxy_protocol_timeout: the same refusal."""
        clock = task.Clock()
        d = self.dialogue(clock=clock)
        clock.advance(3)
        self.assertTrue(d.take().startswith("220 "))
        self.assertEqual(d.send("HELO c\r\n"), "503 Command refused, required Proxy negotiation failed\r\n")

    def test_not_for_other_hosts(self):
        """Hosts outside hosts_proxy talk SMTP straight away."""
        d = self.dialogue("hosts_proxy = 10.0.0.1\n")
        self.assertTrue(d.take().startswith("220 "))
