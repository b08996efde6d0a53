"""tls_dhparam's Exim-specific names: exim.dev.20160529.1 to .3 and "default".

Exim ships three 2048-bit primes of its own; "default" (any case) names the
third, and an OpenSSL-built Exim uses that one when tls_dhparam is unset.
openssl checks that each is a safe prime with generator 2, and a TLS 1.2
client that insists on DHE (openssl s_client) is shown the prime the name
stands for: it is read back from the server's ServerKeyExchange message.
"""

import subprocess

from twisted.internet import defer, reactor, threads
from twisted.trial import unittest

from exim_py.smtp import dhprimes
from exim_py.smtp.server import SMTPServerFactory
from exim_py.smtp.tls import ServerTLS
from tests.support.peers import require_command
from tests.test_smtp_server import make_policy
from tests.test_tls_server import shared_pki

EXIM_NAMES = ("exim.dev.20160529.1", "exim.dev.20160529.2", "exim.dev.20160529.3")


def prime(name):
    return dhprimes.prime(dhprimes.pem(name))


def served_prime(msg_output):
    """The DH prime in the ServerKeyExchange that ``openssl s_client -msg`` dumped."""
    lines = msg_output.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("<<< ") and "ServerKeyExchange" in line:
            data = bytearray()
            for follow in lines[i + 1:]:
                if not follow.startswith("    "):
                    break
                data.extend(int(h, 16) for h in follow.split())
            length = int.from_bytes(data[4:6], "big")     # after type and length
            return int.from_bytes(data[6:6 + length], "big")
    raise AssertionError("no ServerKeyExchange in:\n" + msg_output)


class EximPrimeTests(unittest.TestCase):
    """The three primes and the names that reach them."""

    def test_primes_are_safe_2048_bit_primes(self):
        """openssl's own check accepts each as DH parameters (a safe prime,
        generator 2) of 2048 bits."""
        openssl = require_command("openssl")
        for name in EXIM_NAMES:
            result = subprocess.run([openssl, "dhparam", "-check", "-noout"],
                                    input=dhprimes.pem(name), capture_output=True, timeout=60)
            self.assertEqual(result.returncode, 0, name)
            self.assertIn(b"DH parameters appear to be ok", result.stdout + result.stderr)
            self.assertEqual(dhprimes.prime_bits(dhprimes.pem(name)), 2048)
        self.assertEqual(len({prime(n) for n in EXIM_NAMES}), 3)

    def test_default_is_the_third_in_any_case(self):
        """"default", "Default" and "EXIM.DEV.20160529.3" are one prime."""
        self.assertEqual(prime("default"), prime("exim.dev.20160529.3"))
        self.assertEqual(prime("Default"), prime("EXIM.DEV.20160529.3"))


class ServedPrimeTests(unittest.TestCase):
    """Which prime a DHE handshake uses, as the client sees it."""

    @defer.inlineCallbacks
    def served(self, setting):
        p = shared_pki()
        policy, _ = make_policy(self, "tls_certificate = %s\ntls_privatekey = %s\n%s" % (
            p.rsa.chain_path, p.rsa.key_path, setting))
        policy.tls = ServerTLS.from_config(policy.config, policy)
        port = reactor.listenTCP(0, SMTPServerFactory(policy), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        openssl = require_command("openssl")
        result = yield threads.deferToThread(
            subprocess.run, [openssl, "s_client", "-connect", "127.0.0.1:%d" % port.getHost().port,
                             "-starttls", "smtp", "-tls1_2", "-cipher", "DHE-RSA-AES128-GCM-SHA256",
                             "-msg", "-ign_eof"],
            input="QUIT\r\n", capture_output=True, text=True, timeout=30)
        return served_prime(result.stdout)

    @defer.inlineCallbacks
    def test_unset_uses_exims_default(self):
        """No tls_dhparam: the client gets exim.dev.20160529.3."""
        self.assertEqual((yield self.served("")), prime("exim.dev.20160529.3"))

    @defer.inlineCallbacks
    def test_named_exim_prime(self):
        """tls_dhparam = Exim.Dev.20160529.1 (names ignore case): that prime."""
        self.assertEqual((yield self.served("tls_dhparam = Exim.Dev.20160529.1")),
                         prime("exim.dev.20160529.1"))
