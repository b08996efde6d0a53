"""A second stapling server: ``openssl s_server -status_file``.

Exim built with GnuTLS refuses to load a revoked or expired OCSP response
(its log says "The session or certificate has expired") and then offers no
TLS at all, so it cannot show how a client treats a bad staple.  OpenSSL's
test server staples whatever file it is given, so it can.  It speaks TLS
from the first byte (no SMTP), which is enough to test the handshake and the
staple check.
"""

import subprocess

from tests.support.exim_peer import free_port
from tests.support.peers import require_command


class StaplingServer:
    """``openssl s_server`` on a free loopback port, stapling ``status_file``."""

    def __init__(self, cert_path, key_path, status_file=None):
        self.openssl = require_command("openssl")
        self.port = free_port()
        args = [self.openssl, "s_server", "-accept", "127.0.0.1:%d" % (self.port,),
                "-cert", cert_path, "-key", key_path, "-naccept", "1"]
        if status_file:
            args += ["-status_file", status_file]
        self.process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT)
        # s_server prints ACCEPT once it listens.
        for line in self.process.stdout:
            if line.strip() == b"ACCEPT":
                break
        else:
            raise RuntimeError("openssl s_server did not start")

    def stop(self):
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.process.stdin.close()
        self.process.stdout.close()
