"""A STARTTLS handshake that fails is logged, as Exim logs it.

Exim writes "TLS error on connection from <host> <reason>" for every failed
handshake after STARTTLS; the reason is its TLS library's (an OpenSSL-built
Exim: "(SSL_accept): " and ERR_error_string's text, or "SSL_accept: TCP
connection closed by peer").  exim_py's lines are checked in full; Debian's
exim4, built with GnuTLS, is the oracle for the part that does not depend on
the library: the host is the one before STARTTLS, HELO name included.
"""

import os
import shutil
import subprocess
import tempfile

from twisted.internet import defer, threads
from twisted.trial import unittest

from tests.support.end_to_end import Daemon, exim_py_script, free_port, read_text, wait_for
from tests.support.exim_peer import EximPeer
from tests.support.peers import ehlo_session, require_command
from tests.support.pki import ServerPKI

CONF = """\
primary_hostname = mx.test.example
spool_directory = {dir}/spool
log_file_path = {dir}/log/%slog
host_lookup =
tls_advertise_hosts = *
tls_certificate = {cert}
tls_privatekey = {key}
"""

PREFIX = "TLS error on connection from (client.example) [127.0.0.1] "


def starttls_then(port, after):
    """EHLO, STARTTLS; then ``after`` in clear (None: close at once)."""
    s, f = ehlo_session(port)
    with s:
        s.sendall(b"STARTTLS\r\n")
        assert f.readline().startswith(b"220 "), "STARTTLS refused"
        if after is not None:
            s.sendall(after)
            f.read()


class HandshakeFailureLogTests(unittest.TestCase):
    """The log line for a handshake that fails after STARTTLS."""

    def setUp(self):
        # exim4 reads the certificate as Debian-exim: a directory open to it
        self.dir = tempfile.mkdtemp(prefix="tls-failure-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        os.chmod(self.dir, 0o755)
        for sub in ("spool", "log", "tls"):
            os.makedirs(os.path.join(self.dir, sub))
        leaf = ServerPKI(os.path.join(self.dir, "tls")).server("mx", ["mx.test.example"])
        config = os.path.join(self.dir, "exim.conf")
        with open(config, "w") as f:
            f.write(CONF.format(dir=self.dir, cert=leaf.chain_path, key=leaf.key_path))
        port = free_port()
        self.daemon = Daemon([exim_py_script(), "-C", config, "-oX", "127.0.0.1.%d" % port,
                              "-bdf"], port).start()
        self.addCleanup(self.daemon.stop)
        self.exim4 = EximPeer(tls_certificate=leaf.chain_path,
                              tls_privatekey=leaf.key_path).start()
        self.addCleanup(self.exim4.stop)

    def tls_errors(self, text):
        return [line.split(" ", 2)[2] for line in text.splitlines() if " TLS error " in line]

    def ours(self):
        return self.tls_errors(read_text(os.path.join(self.dir, "log", "mainlog")))

    @defer.inlineCallbacks
    def both(self, after):
        """Play the dialogue to exim_py and to exim4; their TLS error lines."""
        for port in (self.daemon.port, self.exim4.port):
            yield threads.deferToThread(starttls_then, port, after)
        wait_for(lambda: self.ours() and self.tls_errors(self.exim4.mainlog()), "TLS error lines")
        return self.ours(), self.tls_errors(self.exim4.mainlog())

    @defer.inlineCallbacks
    def test_clear_text_instead_of_a_client_hello(self):
        """Plain text where the ClientHello should be: OpenSSL's "wrong version
        number", with the protocol version named as Exim names it."""
        ours, theirs = yield self.both(b"EHLO client.example\r\n" * 3)
        self.assertEqual(ours, [PREFIX + "(SSL_accept (TLSv1.3)): "
                                "error:0A00010B:SSL routines::wrong version number"])
        self.assertTrue(theirs[0].startswith(PREFIX + "("), theirs)

    @defer.inlineCallbacks
    def test_client_closes_in_the_handshake(self):
        """The client goes away after the 220: Exim's "TCP connection closed by peer"."""
        ours, theirs = yield self.both(None)
        self.assertEqual(ours, [PREFIX + "SSL_accept: TCP connection closed by peer"])
        self.assertTrue(theirs[0].startswith(PREFIX), theirs)

    def test_protocol_version_refused(self):
        """A real client (openssl s_client) offering only TLS 1.0, which the
        server's OpenSSL refuses: "unsupported protocol" for TLSv1."""
        openssl = require_command("openssl")
        subprocess.run([openssl, "s_client", "-connect", "127.0.0.1:%d" % self.daemon.port,
                        "-starttls", "smtp", "-name", "client.example", "-tls1"],
                       input=b"QUIT\r\n", capture_output=True, timeout=30)
        wait_for(self.ours, "a TLS error line")
        self.assertEqual(self.ours(), [PREFIX + "(SSL_accept (TLSv1)): "
                                       "error:0A000102:SSL routines::unsupported protocol"])
