"""Real Exim 4.96 delivering to exim_py's server through its smtp transport.

exim4 (Debian's build: GnuTLS, PIPELINING, CHUNKING, DSN, AUTH client) is
the client here: ``exim4 -odi`` routes every address to our port and
delivers at once, so the test sees exactly what a production Exim relay
would do to us: EHLO, STARTTLS, AUTH, pipelined MAIL/RCPT, BDAT or DATA.
"""

import os
import shutil
import tempfile

from twisted.internet import defer, reactor, threads
from twisted.trial import unittest

from exim_py.smtp.server import SMTPServerFactory
from exim_py.smtp.tls import ServerTLS
from tests.support.peers import RealExim
from tests.test_smtp_server_bh import AUTHENTICATORS
from tests.test_smtp_server import make_policy
from tests.test_tls_server import shared_pki

CLIENT_CONF = """\
primary_hostname = sender.test.example
keep_environment =
host_lookup =
spool_directory = {dir}/spool
log_file_path = {dir}/log/%slog
begin routers
to_exim_py:
  driver = manualroute
  route_list = * 127.0.0.1::{port}
  transport = to_exim_py
  self = send
begin transports
to_exim_py:
  driver = smtp
  allow_localhost
  hosts_require_tls = {require_tls}
  tls_verify_certificates = {ca}
  tls_verify_cert_hostnames =
  hosts_require_auth = {require_auth}
{extra}
begin authenticators
plain:
  driver = plaintext
  public_name = PLAIN
  client_send = ^fred^secret
begin retry
* * F,1m,1m
"""



class EximClientTests(unittest.TestCase):
    """exim4's smtp transport sends to exim_py; the message lands on our spool intact."""

    def setUp(self):
        self.exim = RealExim()
        self.addCleanup(self.exim.cleanup)
        self.client_dir = tempfile.mkdtemp(prefix="exim4-client-")
        self.addCleanup(shutil.rmtree, self.client_dir, True)
        for sub in ("spool", "log"):
            os.makedirs(os.path.join(self.client_dir, sub))
            shutil.chown(os.path.join(self.client_dir, sub), "Debian-exim", "Debian-exim")
        os.chmod(self.client_dir, 0o755)

    def serve(self, extra="", auth=False, rcpt_acl="accept_all"):
        p = shared_pki()
        conf = "tls_certificate = %s\ntls_privatekey = %s\ndsn_advertise_hosts = *\n%s" % (
            p.ecdsa.chain_path, p.ecdsa.key_path, extra)
        policy, spool = make_policy(self, conf, rcpt_acl)
        if auth:
            # the authenticators section follows the ACLs in the test configuration
            with open(policy.config.filename, "a") as f:
                f.write(AUTHENTICATORS)
            from exim_py.config import load
            from exim_py.smtp.policy import ServerPolicy
            policy = ServerPolicy(load(policy.config.filename), policy.spool_writer)
        policy.tls = ServerTLS.from_config(policy.config, policy)
        port = reactor.listenTCP(0, SMTPServerFactory(policy), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return port.getHost().port, spool

    def send(self, port, body, require_tls="*", require_auth="", extra="", recipients=("rcpt@dest.example",)):
        conf = self.exim.write_config(CLIENT_CONF.format(
            dir=self.client_dir, port=port, require_tls=require_tls, require_auth=require_auth,
            ca=shared_pki().ca_path, extra=extra))
        return threads.deferToThread(self.exim.run, conf, ["-odi", "-oi", "-f", "sender@sender.test.example"]
                                     + list(recipients), input=body)

    @defer.inlineCallbacks
    def test_tls_chunking_message(self):
        """Over STARTTLS with CHUNKING offered, exim4's message arrives byte for byte."""
        port, spool = self.serve()
        filler = ("x" * 900 + "\n") * 6
        body = "Subject: from exim4\n\nline one\n.leading dot\n" + filler + "last\n"
        result = yield self.send(port, body)
        self.assertEqual(result.returncode, 0, result.stderr)
        ids = list(spool.message_ids())
        self.assertEqual(len(ids), 1, "exim4 log:\n%s" % self._log())
        env = spool.read(ids[0])
        self.assertEqual(env.sender, "sender@sender.test.example", self._log())
        self.assertEqual([r.address for r in env.recipients], ["rcpt@dest.example"])
        self.assertEqual(env.session.received_protocol, "esmtps")
        self.assertTrue(spool.read_body(ids[0]).endswith(
            b"line one\n.leading dot\n" + filler.encode() + b"last\n"))
        # K: exim4 used CHUNKING; CV=yes: it verified our certificate chain
        self.assertRegex(self._log(), r"=> rcpt@dest.example .* X=TLS1.3:\S+ CV=yes K ")

    @defer.inlineCallbacks
    def test_plain_data_without_chunking_and_dsn(self):
        """Without CHUNKING exim4 uses DATA; its DSN parameters are stored."""
        port, spool = self.serve("chunking_advertise_hosts =\ntls_advertise_hosts =")
        result = yield self.send(port, "Subject: plain\n\nbody\n", require_tls="")
        self.assertEqual(result.returncode, 0, result.stderr)
        ids = list(spool.message_ids())
        self.assertEqual(len(ids), 1, self._log())
        self.assertEqual(spool.read(ids[0]).session.received_protocol, "esmtp")

    @defer.inlineCallbacks
    def test_auth_plain(self):
        """exim4 authenticates with PLAIN; the message records the authenticated id."""
        port, spool = self.serve(auth=True)
        result = yield self.send(port, "Subject: auth\n\nbody\n", require_auth="*")
        self.assertEqual(result.returncode, 0, result.stderr)
        ids = list(spool.message_ids())
        self.assertEqual(len(ids), 1, self._log())
        env = spool.read(ids[0])
        self.assertEqual(env.session.authenticated_id, "fred")
        self.assertEqual(env.session.received_protocol, "esmtpsa")

    @defer.inlineCallbacks
    def test_rejection_reaches_exim(self):
        """A 550 from our RCPT ACL makes exim4 fail the address with our text."""
        port, spool = self.serve(rcpt_acl="deny_all")
        yield self.send(port, "Subject: x\n\nbody\n", recipients=("nobody@dest.example",))
        self.assertEqual(list(spool.message_ids()), [])
        self.assertIn("** nobody@dest.example", self._log())
        self.assertIn("550 no such user here", self._log())

    @defer.inlineCallbacks
    def test_prdr(self):
        """exim4 uses PRDR: one recipient refused by acl_smtp_data_prdr, the other gets the message."""
        port, spool = self.serve("prdr_enable\nacl_smtp_data_prdr = prdr_check")
        yield self.send(port, "Subject: prdr\n\nbody\n",
                        recipients=("ok@dest.example", "prdrreject@dest.example"))
        # the bounce for the refused recipient comes to us too: look at the original only
        originals = [spool.read(i) for i in spool.message_ids()]
        originals = [env for env in originals if env.sender]
        self.assertEqual(len(originals), 1, self._log())
        self.assertEqual([r.address for r in originals[0].recipients], ["ok@dest.example"])
        log = self._log()
        self.assertIn("** prdrreject@dest.example", log)
        self.assertIn("550 this recipient does not want it", log)
        self.assertRegex(log, r"=> ok@dest.example .* PRDR ")

    def _log(self):
        path = os.path.join(self.client_dir, "log", "mainlog")
        if not os.path.exists(path):
            return ""
        with open(path) as f:
            return f.read()
