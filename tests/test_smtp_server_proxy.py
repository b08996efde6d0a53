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


class HAProxyTests(unittest.TestCase):
    """A real HAProxy in front of the server, speaking PROXY v1 and v2."""

    def test_haproxy_send_proxy(self):
        """Through haproxy (send-proxy and send-proxy-v2) the ACL sees the proxy and the client."""
        import os
        import shutil
        import subprocess
        import tempfile
        import time

        from twisted.internet import reactor, threads
        from exim_py.smtp.server import SMTPServerFactory
        from tests.support.peers import require_command
        from tests.test_daemon import free_port

        haproxy = require_command("haproxy", "Debian package haproxy")
        policy, _ = make_policy(self, SHOW.replace("192.0.2.7", "127.0.0.1"))
        port = reactor.listenTCP(0, SMTPServerFactory(policy), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        directory = tempfile.mkdtemp(prefix="haproxy-")
        self.addCleanup(shutil.rmtree, directory, True)
        fronts = {"send-proxy": free_port(), "send-proxy-v2": free_port()}
        conf = ["global", "  maxconn 20", "defaults", "  mode tcp", "  timeout connect 5s",
                "  timeout client 10s", "  timeout server 10s"]
        for option, front in fronts.items():
            conf += ["listen l%d" % front, "  bind 127.0.0.1:%d" % front,
                     "  server s1 127.0.0.1:%d %s" % (port.getHost().port, option)]
        path = os.path.join(directory, "haproxy.cfg")
        with open(path, "w") as f:
            f.write("\n".join(conf) + "\n")
        proc = subprocess.Popen([haproxy, "-db", "-f", path], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        self.addCleanup(lambda: (proc.kill(), proc.wait()))

        def talk(front):
            deadline = time.monotonic() + 10
            while True:
                try:
                    s = socket.create_connection(("127.0.0.1", front), timeout=10)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            f = s.makefile("rb")
            f.readline()
            s.sendall(b"HELO c\r\n")
            answer = f.readline().decode()
            s.close()
            return answer

        def run():
            return {option: talk(front) for option, front in fronts.items()}

        def check(answers):
            for option, answer in answers.items():
                self.assertRegex(answer, r"^550 client=127\.0\.0\.1:\d+ proxy=127\.0\.0\.1 "
                                         r"ext=127\.0\.0\.1:%d session=yes\r\n$" % fronts[option])
        return threads.deferToThread(run).addCallback(check)
