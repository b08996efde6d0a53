"""Server-side TLS over loopback: STARTTLS, TLS-on-connect, client certificates,
the $tls_in_* values, and STARTTLS command injection.

Clients are real: openssl s_client and Python's ssl module.
"""

import os
import re
import socket
import ssl
import subprocess

from twisted.internet import defer, reactor, threads
from twisted.trial import unittest

from exim_py.envelope import Session
from exim_py.smtp.server import SMTPServerFactory
from exim_py.smtp.tls import ServerTLS
from tests.support import pki
from tests.support.peers import require_command
from tests.test_smtp_server import make_policy

_PKI = None


def shared_pki():
    """One PKI for the whole module (making keys is the slow part)."""
    global _PKI
    if _PKI is None:
        _PKI = pki.standard()
    return _PKI


class Client:
    """A blocking SMTP client on a raw socket, to control exactly what is sent when."""

    def __init__(self, port, tls_on_connect=False, context=None, server_name=None):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        if tls_on_connect:
            self.sock = context.wrap_socket(self.sock, server_hostname=server_name)
        self.file = self.sock.makefile("rb")

    def reply(self):
        lines = []
        while True:
            line = self.file.readline().decode()
            if not line:
                return lines
            lines.append(line.rstrip("\r\n"))
            if line[3:4] != "-":
                return lines

    def send(self, data):
        self.sock.sendall(data if isinstance(data, bytes) else data.encode())

    def command(self, line):
        self.send(line + "\r\n")
        return self.reply()

    def starttls(self, context, server_name=None):
        self.sock = context.wrap_socket(self.sock, server_hostname=server_name)
        self.file = self.sock.makefile("rb")

    def close(self):
        self.sock.close()


def client_context(cert=None):
    ctx = ssl.create_default_context(cafile=shared_pki().ca_path)
    if cert is not None:
        ctx.load_cert_chain(cert.cert_path, cert.key_path)
    return ctx


class TLSServerTests(unittest.TestCase):
    """STARTTLS and TLS-on-connect with the certificates from tests.support.pki."""

    def start(self, extra="", tls_on_connect=False):
        p = shared_pki()
        conf = "tls_certificate = %s\ntls_privatekey = %s\n%s" % (
            p.ecdsa.chain_path, p.ecdsa.key_path, extra)
        policy, spool = make_policy(self, conf)
        policy.tls = ServerTLS.from_config(policy.config, policy)
        self.policy, self.spool = policy, spool
        port = reactor.listenTCP(0, SMTPServerFactory(policy, tls_on_connect=tls_on_connect),
                                 interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return port.getHost().port

    @defer.inlineCallbacks
    def test_starttls_then_message(self):
        """STARTTLS is offered, the chain verifies, and the message records the cipher."""
        port = self.start()

        def run():
            c = Client(port)
            c.reply()
            ehlo = c.command("EHLO client.example")
            assert "250-STARTTLS" in ehlo, ehlo
            assert c.command("STARTTLS") == ["220 TLS go ahead"]
            c.starttls(client_context(), "mx.test.example")
            after = c.command("EHLO client.example")
            out = [c.command("MAIL FROM:<a@b.example>"), c.command("RCPT TO:<c@d.example>"),
                   c.command("DATA")]
            c.send("Subject: tls\r\n\r\nsecret\r\n.\r\n")
            out.append(c.reply())
            c.command("QUIT")
            c.close()
            return after, out
        after, out = yield threads.deferToThread(run)
        self.assertNotIn("250-STARTTLS", after)
        self.assertTrue(out[-1][0].startswith("250 OK id="), out)
        env = self.spool.read(list(self.spool.message_ids())[0])
        self.assertEqual(env.session.received_protocol, "esmtps")
        self.assertTrue(env.session.tls_cipher.startswith("TLS1.3:"), env.session.tls_cipher)

    @defer.inlineCallbacks
    def test_openssl_s_client_sees_the_chain(self):
        """openssl s_client -starttls smtp verifies the server's chain against the root."""
        openssl = require_command("openssl")
        port = self.start()
        result = yield threads.deferToThread(
            subprocess.run, [openssl, "s_client", "-connect", "127.0.0.1:%d" % port, "-starttls", "smtp",
                             "-CAfile", shared_pki().ca_path, "-verify_return_error", "-brief", "-nocommands", "-ign_eof"],
            input="QUIT\r\n", capture_output=True, text=True, timeout=20)
        self.assertIn("Verification: OK", result.stderr)
        self.assertIn("221 mx.test.example closing connection", result.stdout)

    @defer.inlineCallbacks
    def test_tls_on_connect(self):
        """On a tls_on_connect port the banner comes inside TLS."""
        port = self.start(tls_on_connect=True)

        def run():
            c = Client(port, tls_on_connect=True, context=client_context(), server_name="mx.test.example")
            banner = c.reply()
            ehlo = c.command("EHLO client.example")
            c.close()
            return banner, ehlo
        banner, ehlo = yield threads.deferToThread(run)
        self.assertEqual(banner, ["220 mx.test.example ESMTP Exim 4.96"])
        self.assertNotIn("250-STARTTLS", ehlo)

    @defer.inlineCallbacks
    def test_starttls_injection_is_discarded(self):
        """Commands pipelined in clear after STARTTLS never run (sync off so they reach us)."""
        port = self.start("smtp_enforce_sync = false")

        def run():
            c = Client(port)
            c.reply()
            c.command("EHLO client.example")
            c.send("STARTTLS\r\nMAIL FROM:<injected@evil.example>\r\n")
            go = c.reply()
            c.starttls(client_context(), "mx.test.example")
            c.command("EHLO client.example")
            # had the injected MAIL run, this would be "503 sender already given"
            mail = c.command("MAIL FROM:<a@b.example>")
            c.close()
            return go, mail
        go, mail = yield threads.deferToThread(run)
        self.assertEqual(go, ["220 TLS go ahead"])
        self.assertEqual(mail, ["250 OK"])

    @defer.inlineCallbacks
    def test_starttls_injection_with_sync_is_dropped(self):
        """With smtp_enforce_sync (the default), input after STARTTLS is a sync error."""
        port = self.start()

        def run():
            c = Client(port)
            c.reply()
            c.command("EHLO client.example")
            c.send("STARTTLS\r\nMAIL FROM:<injected@evil.example>\r\n")
            out = c.reply()
            c.close()
            return out
        self.assertEqual((yield threads.deferToThread(run)), ["554 SMTP synchronization error"])

    @defer.inlineCallbacks
    def test_state_reset_after_starttls(self):
        """RFC 3207 4.2: a MAIL given before STARTTLS is forgotten, and EHLO is needed again."""
        port = self.start()

        def run():
            c = Client(port)
            c.reply()
            c.command("EHLO client.example")
            c.command("MAIL FROM:<a@b.example>")
            c.command("STARTTLS")
            c.starttls(client_context(), "mx.test.example")
            no_ehlo = c.command("MAIL FROM:<a@b.example>")
            c.command("EHLO client.example")
            out = c.command("RCPT TO:<c@d.example>")
            c.close()
            return no_ehlo, out
        no_ehlo, out = yield threads.deferToThread(run)
        self.assertEqual(no_ehlo, ["503 HELO or EHLO required"])
        self.assertEqual(out, ["503 sender not yet given"])

    @defer.inlineCallbacks
    def test_handshake_never_started(self):
        """A client silent after STARTTLS gets a clear-text 421 when smtp_receive_timeout ends."""
        port = self.start("smtp_receive_timeout = 1s")

        def run():
            c = Client(port)
            c.reply()
            c.command("EHLO client.example")
            go = c.command("STARTTLS")
            after = c.reply()
            c.close()
            return go, after
        go, after = yield threads.deferToThread(run)
        self.assertEqual(go, ["220 TLS go ahead"])
        self.assertEqual(after, ["421 mx.test.example: SMTP command timeout - closing connection"])

    @defer.inlineCallbacks
    def test_client_certificate_verified(self):
        """tls_verify_hosts: a client certificate from the trusted CA is accepted and recorded."""
        p = shared_pki()
        port = self.start("tls_verify_hosts = *\ntls_verify_certificates = %s" % p.ca_path)

        def run(cert):
            c = Client(port)
            c.reply()
            c.command("EHLO client.example")
            c.command("STARTTLS")
            try:
                c.starttls(client_context(cert), "mx.test.example")
                return c.command("EHLO client.example")
            except (ssl.SSLError, OSError) as e:
                return e
            finally:
                c.close()
        good = yield threads.deferToThread(run, p.client)
        self.assertEqual(good[0], "250-mx.test.example Hello client.example [127.0.0.1]")
        bad = yield threads.deferToThread(run, None)
        self.assertIsInstance(bad, (ssl.SSLError, OSError, list))
        if isinstance(bad, list):
            self.assertEqual(bad, [], "a client without a certificate must not get an EHLO reply")


class CertificateSelectionTests(unittest.TestCase):
    """Which certificate the server shows: SNI re-expansion and RSA + ECDSA lists."""

    def start(self, conf):
        policy, spool = make_policy(self, conf)
        policy.tls = ServerTLS.from_config(policy.config, policy)
        self.spool = spool
        port = reactor.listenTCP(0, SMTPServerFactory(policy), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return port.getHost().port

    def peer_cn(self, port, server_name, context):
        c = Client(port)
        c.reply()
        c.command("EHLO client.example")
        c.command("STARTTLS")
        c.starttls(context, server_name)
        cert = c.sock.getpeercert()
        c.command("EHLO client.example")
        c.command("MAIL FROM:<a@b.example>")
        c.command("RCPT TO:<c@d.example>")
        c.command("DATA")
        c.send("Subject: sni\r\n\r\nx\r\n.\r\n")
        c.reply()
        c.close()
        return dict(x[0] for x in cert["subject"])["commonName"]

    @defer.inlineCallbacks
    def test_sni_selects_certificate(self):
        """tls_certificate mentioning $tls_in_sni is re-expanded for the name the client asks."""
        p = shared_pki()
        port = self.start(
            "tls_certificate = ${if eq{$tls_in_sni}{alt.test.example}{%s}{%s}}\n"
            "tls_privatekey = ${if eq{$tls_in_sni}{alt.test.example}{%s}{%s}}\n"
            % (p.alt.chain_path, p.ecdsa.chain_path, p.alt.key_path, p.ecdsa.key_path))
        default = yield threads.deferToThread(self.peer_cn, port, "mx.test.example", client_context())
        alt = yield threads.deferToThread(self.peer_cn, port, "alt.test.example", client_context())
        self.assertEqual((default, alt), ("mx.test.example", "alt.test.example"))
        snis = sorted(self.spool.read(i).session.tls_sni for i in self.spool.message_ids())
        self.assertEqual(snis, ["alt.test.example", "mx.test.example"])

    @defer.inlineCallbacks
    def test_rsa_and_ecdsa_list(self):
        """With RSA and ECDSA certificates listed, an RSA-only client gets the RSA one."""
        p = shared_pki()
        port = self.start("tls_certificate = %s : %s\ntls_privatekey = %s : %s\n"
                          % (p.ecdsa.chain_path, p.rsa.chain_path, p.ecdsa.key_path, p.rsa.key_path))
        rsa_only = client_context()
        rsa_only.maximum_version = ssl.TLSVersion.TLSv1_2
        rsa_only.set_ciphers("ECDHE-RSA-AES128-GCM-SHA256")

        def key_type():
            c = Client(port)
            c.reply()
            c.command("EHLO client.example")
            c.command("STARTTLS")
            c.starttls(rsa_only, "mx.test.example")
            cipher = c.sock.cipher()[0]
            c.close()
            return cipher
        self.assertEqual((yield threads.deferToThread(key_type)), "ECDHE-RSA-AES128-GCM-SHA256")
        cn = yield threads.deferToThread(self.peer_cn, port, "mx.test.example", client_context())
        self.assertEqual(cn, "mx.test.example")


class TLSVariableTests(unittest.TestCase):
    """$tls_in_* as an ACL sees them after the handshake."""

    @defer.inlineCallbacks
    def test_variables_in_acl(self):
        """cipher, version, SNI, peer DN and certificate_verified reach the MAIL ACL."""
        p = shared_pki()
        conf = ("tls_certificate = %s\ntls_privatekey = %s\ntls_try_verify_hosts = *\n"
                "tls_verify_certificates = %s\n"
                "acl_smtp_mail = deny message = cv=$tls_in_certificate_verified dn=$tls_in_peerdn "
                "ver=$tls_in_ver sni=$tls_in_sni cipher=${if def:tls_in_cipher{yes}{no}}\n"
                % (p.ecdsa.chain_path, p.ecdsa.key_path, p.ca_path))
        policy, _ = make_policy(self, conf)
        policy.tls = ServerTLS.from_config(policy.config, policy)
        port = reactor.listenTCP(0, SMTPServerFactory(policy), interface="127.0.0.1")
        self.addCleanup(port.stopListening)

        def run(cert):
            c = Client(port.getHost().port)
            c.reply()
            c.command("EHLO client.example")
            c.command("STARTTLS")
            c.starttls(client_context(cert), "mx.test.example")
            c.command("EHLO client.example")
            out = c.command("MAIL FROM:<a@b.example>")
            c.close()
            # a long ACL message is folded over several lines, as Exim does
            return " ".join(line[4:] for line in out)
        with_cert = yield threads.deferToThread(run, p.client)
        self.assertEqual(with_cert, "cv=1 dn=/O=exim_py tests/CN=client.test.example ver=TLSv1.3 "
                                    "sni=mx.test.example cipher=yes")
        stranger = yield threads.deferToThread(run, p.stranger)
        self.assertEqual(stranger, "cv=0 dn=/O=exim_py tests/CN=stranger.example ver=TLSv1.3 "
                                   "sni=mx.test.example cipher=yes")


class OcspStaplingTests(unittest.TestCase):
    """tls_ocsp_file: the server staples the DER response when the client asks."""

    @defer.inlineCallbacks
    def test_openssl_sees_the_staple(self):
        """openssl s_client -status shows the stapled response as successful and good."""
        openssl = require_command("openssl")
        p = shared_pki()
        proof = p.pki.server_ocsp("mx-ocsp", p.ecdsa)
        conf = "tls_certificate = %s\ntls_privatekey = %s\ntls_ocsp_file = %s\n" % (
            p.ecdsa.chain_path, p.ecdsa.key_path, proof)
        policy, _ = make_policy(self, conf)
        policy.tls = ServerTLS.from_config(policy.config, policy)
        port = reactor.listenTCP(0, SMTPServerFactory(policy), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        result = yield threads.deferToThread(
            subprocess.run, [openssl, "s_client", "-connect", "127.0.0.1:%d" % port.getHost().port,
                             "-starttls", "smtp", "-status", "-nocommands", "-ign_eof"],
            input="QUIT\r\n", capture_output=True, text=True, timeout=20)
        self.assertIn("OCSP Response Status: successful", result.stdout)
        self.assertIn("Cert Status: good", result.stdout)


class DhParamTests(unittest.TestCase):
    """tls_dhparam: which Diffie-Hellman group a DHE cipher suite gets, checked
    with openssl s_client forcing DHE-RSA-AES128-GCM-SHA256 over TLS 1.2."""

    def start(self, conf):
        p = shared_pki()
        policy, _ = make_policy(self, "tls_certificate = %s\ntls_privatekey = %s\n%s" % (
            p.rsa.chain_path, p.rsa.key_path, conf))
        policy.tls = ServerTLS.from_config(policy.config, policy)
        port = reactor.listenTCP(0, SMTPServerFactory(policy), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return port.getHost().port

    @defer.inlineCallbacks
    def handshake(self, conf):
        """(s_client's stderr, stdout) for a DHE-only TLS 1.2 client."""
        openssl = require_command("openssl")
        port = self.start(conf)
        result = yield threads.deferToThread(
            subprocess.run, [openssl, "s_client", "-connect", "127.0.0.1:%d" % port,
                             "-starttls", "smtp", "-tls1_2", "-cipher", "DHE-RSA-AES128-GCM-SHA256",
                             "-brief", "-nocommands", "-ign_eof"],
            input="QUIT\r\n", capture_output=True, text=True, timeout=20)
        return result.stderr, result.stdout

    @defer.inlineCallbacks
    def test_named_group(self):
        """A standard group's name: DHE is negotiated with a prime of its size."""
        err, out = yield self.handshake("tls_dhparam = ffdhe2048")
        self.assertIn("Ciphersuite: DHE-RSA-AES128-GCM-SHA256", err)
        self.assertIn("Server Temp Key: DH, 2048 bits", err)
        self.assertIn("221 ", out)

    @defer.inlineCallbacks
    def test_group_above_max_bits(self):
        """ffdhe3072 is used when tls_dh_max_bits allows it, and not with the
        default limit of 2236 bits (Exim then offers no DHE at all)."""
        err, _ = yield self.handshake("tls_dhparam = ffdhe3072\ntls_dh_max_bits = 4096")
        self.assertIn("Server Temp Key: DH, 3072 bits", err)
        err, _ = yield self.handshake("tls_dhparam = ffdhe3072")
        self.assertNotIn("Ciphersuite: DHE", err)
        self.assertIn("handshake failure", err)

    @defer.inlineCallbacks
    def test_legacy_name_and_file(self):
        """An "ike" name (RFC 3526 group 14), and a PKCS#3 file holding a group."""
        from exim_py.smtp import dhprimes
        err, _ = yield self.handshake("tls_dhparam = ike14")
        self.assertIn("Server Temp Key: DH, 2048 bits", err)
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(dhprimes.pem("ike14"))
        err, _ = yield self.handshake("tls_dhparam = %s" % os.path.abspath(path))
        self.assertIn("Ciphersuite: DHE-RSA-AES128-GCM-SHA256", err)

    @defer.inlineCallbacks
    def test_none_refuses_dhe(self):
        """tls_dhparam = none: no DH group, so a client that wants DHE fails."""
        err, _ = yield self.handshake("tls_dhparam = none")
        self.assertNotIn("Ciphersuite: DHE", err)
        self.assertIn("handshake failure", err)

    def test_deprecated_groups_are_logged(self):
        """The RFC 8247-deprecated groups are logged: ike23 in the main log,
        ike22 (a MUST NOT) in the panic log as well; OpenSSL then refuses
        ike22's 1024-bit prime, so TLS cannot be set up with it."""
        from exim_py.errors import ConfigError
        from tests.support.acl import ListLog
        logged = {}
        for name in ("ike23", "ike22", "ffdhe2048"):
            p = shared_pki()
            policy, _ = make_policy(self, "tls_certificate = %s\ntls_privatekey = %s\n"
                                          "tls_dhparam = %s" % (p.rsa.chain_path, p.rsa.key_path, name))
            policy.logger = ListLog()
            policy.tls = ServerTLS.from_config(policy.config, policy)
            if name == "ike22":
                self.assertRaises(ConfigError, policy.tls_context, Session())
            else:
                policy.tls_context(Session())
            logged[name] = policy.logger.lines
        line = "WARNING: deprecated Diffie-Hellman parameter '%s' used"
        self.assertEqual(logged, {"ike23": [("main", line % "ike23")],
                                  "ike22": [("panic", line % "ike22")], "ffdhe2048": []})

    @defer.inlineCallbacks
    def test_unknown_name(self):
        """A name that is no standard group: STARTTLS is answered 454, as
        when Exim cannot set up TLS."""
        port = self.start("tls_dhparam = no-such-group")

        def run():
            c = Client(port)
            c.reply()
            c.command("EHLO client.example")
            answer = c.command("STARTTLS")
            c.close()
            return answer
        self.assertEqual((yield threads.deferToThread(run)), ["454 TLS currently unavailable"])
        self.flushLoggedErrors()


class DhPrimeTests(unittest.TestCase):
    """The groups tls_dhparam names are exactly OpenSSL's groups of those names."""

    def test_groups_match_openssl(self):
        """Each computed (or stored) group prints as OpenSSL's own does."""
        from exim_py.smtp import dhprimes
        openssl = require_command("openssl")
        theirs = {"ffdhe2048": "ffdhe2048", "ffdhe4096": "ffdhe4096", "ffdhe8192": "ffdhe8192",
                  "ike5": "modp_1536", "ike14": "modp_2048", "ike18": "modp_8192",
                  "ike22": "dh_1024_160", "ike24": "dh_2048_256"}

        def text(pem):
            out = subprocess.run([openssl, "pkeyparam", "-text", "-noout"], input=pem,
                                 capture_output=True, check=True).stdout
            return [line for line in out.splitlines() if b"GROUP" not in line]
        for ours, group in theirs.items():
            pem = subprocess.run([openssl, "genpkey", "-genparam", "-algorithm", "DH",
                                  "-pkeyopt", "group:" + group], capture_output=True, check=True).stdout
            self.assertEqual(text(dhprimes.pem(ours)), text(pem), ours)
            bits = int(re.search(rb"\((\d+) bit\)", text(pem)[0]).group(1))
            self.assertEqual(dhprimes.prime_bits(dhprimes.pem(ours)), bits, ours)
