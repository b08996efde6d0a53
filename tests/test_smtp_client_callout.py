"""Verification callouts through the smtp transport's settings, against real Exim."""

import os
import shutil
import tempfile

from twisted.internet import defer
from twisted.trial import unittest

from exim_py import config as exim_config
from exim_py.delivery.address import DEFER, FAIL, OK, Address, Host
from exim_py.delivery.context import DeliveryContext
from exim_py.smtp.callout import callout
from exim_py.transports.smtp import Transport
from tests.support.exim_peer import EximPeer, free_port
from tests.support.pki_client import TestPKI

CONFIG = """\
primary_hostname = client.example
spool_directory = {dir}/spool

begin transports

t:
  driver = smtp
  allow_localhost
{options}
"""


class CalloutTests(unittest.TestCase):
    """callout() stops after RCPT and reports Exim's callout texts."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="exim-py-callout-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.configure()

    def configure(self, options=""):
        path = os.path.join(self.dir, "exim.conf")
        with open(path, "w") as f:
            f.write(CONFIG.format(dir=self.dir, options=options))
        config = exim_config.load(path)
        self.transport = Transport(config.transports["t"], config)
        self.ctx = DeliveryContext(config, mode="verify", verify_kind="recipient")

    def address(self, text, port):
        addr = Address(text)
        addr.host_list = [Host("127.0.0.1", "127.0.0.1", port)]
        return addr

    def start_peer(self, **kw):
        peer = EximPeer(**kw).start()
        self.addCleanup(peer.stop)
        return peer

    @defer.inlineCallbacks
    def test_accepted(self):
        """A 250 to RCPT verifies the address; no message is sent."""
        peer = self.start_peer()
        result = yield defer.ensureDeferred(callout(
            self.transport, self.address("ok@test.example", peer.port), self.ctx))
        self.assertEqual(result, (OK, None))
        self.assertEqual(peer.messages(), [])

    @defer.inlineCallbacks
    def test_rejected(self):
        """A 550 to RCPT fails with Exim's "response to ... was:" text."""
        peer = self.start_peer()
        result = yield defer.ensureDeferred(callout(
            self.transport, self.address("reject1@test.example", peer.port), self.ctx))
        self.assertEqual(result, (FAIL, 'response to "RCPT TO:<reject1@test.example>" from '
                                        '127.0.0.1 [127.0.0.1] was: 550 no such user here'))

    @defer.inlineCallbacks
    def test_deferred(self):
        """A 451 to RCPT cannot decide: DEFER."""
        peer = self.start_peer()
        result = yield defer.ensureDeferred(callout(
            self.transport, self.address("defer1@test.example", peer.port), self.ctx))
        self.assertEqual(result, (DEFER, "Could not complete recipient verify callout"))

    @defer.inlineCallbacks
    def test_unreachable(self):
        """No server listening: DEFER."""
        result = yield defer.ensureDeferred(callout(
            self.transport, self.address("ok@test.example", free_port()), self.ctx))
        self.assertEqual(result[0], DEFER)

    @defer.inlineCallbacks
    def test_hosts_verify_avoid_tls(self):
        """Callouts use STARTTLS like deliveries, except to hosts in
        hosts_verify_avoid_tls (Exim's log shows X= only for the first)."""
        pki = TestPKI()
        self.addCleanup(shutil.rmtree, pki.dir, True)
        cert = pki.issue("server", "mx.test.example", sans=["mx.test.example"])
        peer = self.start_peer(tls_certificate=cert.cert_path, tls_privatekey=cert.key_path)
        yield defer.ensureDeferred(callout(
            self.transport, self.address("reject1@test.example", peer.port), self.ctx))
        self.configure("  hosts_verify_avoid_tls = *")
        yield defer.ensureDeferred(callout(
            self.transport, self.address("reject2@test.example", peer.port), self.ctx))
        log = peer.mainlog()
        self.assertRegex(log, r"X=TLS\S+ .*rejected RCPT <reject1@test.example>")
        self.assertRegex(log, r"\[127.0.0.1\] F=<> rejected RCPT <reject2@test.example>")
