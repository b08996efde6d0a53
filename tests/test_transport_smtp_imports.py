"""What delivering by SMTP loads: pyOpenSSL only once a session starts TLS."""

import subprocess
import sys

from twisted.trial import unittest

PROBE = """
import sys
from exim_py import daemon_imports
daemon_imports.defer_twisted_tls()
import exim_py.delivery.engine, exim_py.transports.smtp, exim_py.smtp.client
from twisted.internet import reactor
print(sorted(name for name in ("OpenSSL", "cryptography", "exim_py.smtp.tls_client")
             if name in sys.modules))
"""


class SmtpTransportImportTests(unittest.TestCase):

    def test_tls_stack_not_loaded_without_tls(self):
        """A daemon process that has the smtp transport and client loaded,
        but has not started TLS, has not imported pyOpenSSL, cryptography or
        the TLS client module (memory in every process, and an import that
        otherwise lands on the first delivery)."""
        out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                             check=True).stdout
        self.assertEqual(out.strip(), "[]")
