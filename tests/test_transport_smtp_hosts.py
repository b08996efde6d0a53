"""Host selection in the smtp transport: MX order, fallback, retry hints, limits.

A real DNS server (tests/support/dnsserver.py) serves MX records whose first
host (127.0.0.2) has nobody listening and whose second (127.0.0.1) is a real
exim4; exim_py's delivery engine routes with manualroute's ``/MX`` items.
"""

import os
import shutil
import tempfile

from twisted.internet import defer
from twisted.trial import unittest

from exim_py import config as exim_config
from exim_py.delivery import engine
from exim_py.delivery.address import OK, Address
from exim_py.delivery.context import DeliveryContext, Message
from exim_py.envelope import Envelope, Header, Recipient
from exim_py.log import Logger
from exim_py.spool import Spool
from exim_py.transports import smtp_pool
from exim_py.transports.smtp import Transport
from tests.support.dnsserver import DNSServer
from tests.support.exim_peer import EximPeer

ZONE = """\
$ORIGIN mxtest.test.
$TTL 300
@       SOA   ns.test. hostmaster.test. 1 3600 600 86400 300
@       NS    ns.test.
@       MX    10 mx1
@       MX    20 mx2
mx1     A     127.0.0.2
mx2     A     127.0.0.1
"""

CONFIG = """\
primary_hostname = client.example
spool_directory = {dir}/spool
log_file_path = {dir}/log/%slog
dns_nameservers = <; {nameservers}

begin routers

r:
  driver = manualroute
  route_list = * mxtest.test/MX
  self = send
  transport = t

begin transports

t:
  driver = smtp
  port = {port}
  allow_localhost
  hosts_avoid_tls = *
{options}

begin retry

* * F,1h,10m
"""


class _Deliveries(unittest.TestCase):
    """Stores one message and runs exim_py's delivery engine on it."""

    @defer.inlineCallbacks
    def deliver(self, options="", recipient=None, envid=None, longest=0):
        config = self.load(options)
        spool = Spool(os.path.join(self.dir, "spool"))
        envelope = Envelope()
        envelope.sender = "s@client.example"
        envelope.recipients = [recipient or Recipient("user@mxtest.test")]
        envelope.dsn_envid = envid
        envelope.max_received_linelength = longest
        envelope.headers = [Header("Subject: mx\n")]
        message_id = spool.store(envelope, b"body\n")
        yield engine.deliver_message(config, spool, message_id, logger=Logger(config))
        with open(os.path.join(self.dir, "log", "mainlog")) as f:
            defer.returnValue([line for line in f.read().splitlines()
                               if message_id in line and " user@mxtest.test " in line])


class MXFallbackTests(_Deliveries):
    """The first MX refuses, the second answers."""

    def setUp(self):
        self.dns = DNSServer(zones={"mxtest.test": ZONE}, stock=False)
        self.dns.start()
        self.addCleanup(self.dns.stop)
        self.peer = EximPeer().start()
        self.addCleanup(self.peer.stop)
        # Deliveries here keep their connection for a later message (as a
        # daemon does); it is ended before the peer, not left to its close.
        self.addCleanup(smtp_pool.close_idle)
        self.dir = tempfile.mkdtemp(prefix="exim-py-mx-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def load(self, options=""):
        path = os.path.join(self.dir, "exim.conf")
        with open(path, "w") as f:
            f.write(CONFIG.format(dir=self.dir, nameservers=self.dns.nameservers,
                                  port=self.peer.port, options=options))
        return exim_config.load(path)

    @defer.inlineCallbacks
    def test_second_mx_used_after_refusal(self):
        """mx1 refuses; the message goes to mx2, and Exim's peer has it."""
        lines = yield self.deliver()
        self.assertEqual(len(lines), 1)
        self.assertIn("=> user@mxtest.test R=r T=t H=mx2.mxtest.test [127.0.0.1]", lines[0])
        self.assertEqual(len(self.peer.messages()), 1)

    @defer.inlineCallbacks
    def test_refused_host_skipped_until_retry_time(self):
        """After mx1 refused, its retry hint makes the next delivery skip it without
        counting it, so even with hosts_max_try_hardlimit = 1 mx2 is reached."""
        yield self.deliver()
        lines = yield self.deliver("  hosts_max_try_hardlimit = 1")
        self.assertEqual(len(lines), 1)
        self.assertIn("=> user@mxtest.test", lines[0])
        self.assertIn("H=mx2.mxtest.test", lines[0])

    @defer.inlineCallbacks
    def test_hardlimit_stops_before_second_mx(self):
        """hosts_max_try_hardlimit = 1: only mx1 is tried, the address is deferred."""
        lines = yield self.deliver("  hosts_max_try_hardlimit = 1")
        self.assertEqual(len(lines), 1)
        self.assertIn("== user@mxtest.test R=r T=t defer (111)", lines[0])
        self.assertEqual(self.peer.messages(), [])

    @defer.inlineCallbacks
    def test_max_try_still_tries_next_mx_value(self):
        """hosts_max_try = 1 is not a hard limit: one host of the next MX value is
        still tried (spec "How the limits for the number of hosts to try are used")."""
        lines = yield self.deliver("  hosts_max_try = 1")
        self.assertIn("=> user@mxtest.test", lines[0])


STATIC = """\
primary_hostname = client.example
spool_directory = {dir}/spool
log_file_path = {dir}/log/%slog

begin routers

r:
  driver = manualroute
  route_list = * {route}
  self = send
  transport = t

begin transports

t:
  driver = smtp
  allow_localhost
  hosts_avoid_tls = *
{options}

begin retry

* * F,1h,10m
"""


class TransportHostOptionTests(_Deliveries):
    """fallback_hosts, hosts with hosts_override, and "retry time not reached"."""

    def setUp(self):
        self.peer = EximPeer().start()
        self.addCleanup(self.peer.stop)
        # Deliveries here keep their connection for a later message (as a
        # daemon does); it is ended before the peer, not left to its close.
        self.addCleanup(smtp_pool.close_idle)
        self.dir = tempfile.mkdtemp(prefix="exim-py-hosts-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.route = "127.0.0.2::%d" % (self.peer.port,)

    def load(self, options=""):
        path = os.path.join(self.dir, "exim.conf")
        with open(path, "w") as f:
            f.write(STATIC.format(dir=self.dir, route=self.route, options=options))
        return exim_config.load(path)

    @defer.inlineCallbacks
    def test_fallback_hosts_used(self):
        """The router's host refuses; the transport's fallback_hosts takes the message."""
        lines = yield self.deliver("  fallback_hosts = 127.0.0.1::%d" % (self.peer.port,))
        self.assertIn("=> user@mxtest.test R=r T=t H=127.0.0.1 [127.0.0.1]", lines[0])

    @defer.inlineCallbacks
    def test_router_fallback_hosts_used(self):
        """The router's own fallback_hosts are tried when its hosts fail."""
        static = STATIC.replace("  transport = t\n", "  transport = t\n"
                                "  fallback_hosts = 127.0.0.1::%d\n" % (self.peer.port,), 1)
        self.load = lambda options="": self._load_text(static, options)
        lines = yield self.deliver()
        self.assertIn("=> user@mxtest.test R=r T=t H=127.0.0.1 [127.0.0.1]", lines[0])

    def _load_text(self, template, options):
        path = os.path.join(self.dir, "exim.conf")
        with open(path, "w") as f:
            f.write(template.format(dir=self.dir, route=self.route, options=options))
        return exim_config.load(path)

    @defer.inlineCallbacks
    def test_hosts_override(self):
        """hosts with hosts_override replaces the router's (refusing) host."""
        lines = yield self.deliver("  hosts = 127.0.0.1\n  hosts_override\n  port = %d"
                                   % (self.peer.port,))
        self.assertIn("=> user@mxtest.test R=r T=t H=127.0.0.1 [127.0.0.1]", lines[0])

    @defer.inlineCallbacks
    def test_retry_time_not_reached(self):
        """A second attempt before the host's retry time tries nothing, with Exim's text."""
        yield self.deliver()
        lines = yield self.deliver()
        self.assertIn("defer (-54): retry time not reached for any host for 'mxtest.test'",
                      lines[0])

    @defer.inlineCallbacks
    def test_interface_and_helo_data(self):
        """interface binds the outgoing side; helo_data is expanded with $host_address."""
        yield self.deliver("  hosts = 127.0.0.1\n  hosts_override\n  port = %d\n"
                           "  interface = 127.0.0.2\n  helo_data = ${lc:HELO-$host_address}"
                           % (self.peer.port,))
        self.assertIn("H=(helo-127.0.0.1) [127.0.0.2]", self.peer.mainlog())

    @defer.inlineCallbacks
    def test_dsn_parameters_reach_next_hop(self):
        """NOTIFY, ORCPT and ENVID from the spool go on to a DSN-capable next hop."""
        yield self.deliver("  hosts = 127.0.0.1\n  hosts_override\n  port = %d"
                           % (self.peer.port,),
                           recipient=Recipient("user@mxtest.test", dsn_notify="SUCCESS,DELAY",
                                               orcpt="rfc822;first@mxtest.test"),
                           envid="abc123")
        header = self.peer.messages()[0][0]
        self.assertIn("-dsn_envid abc123", header)
        self.assertIn("\nuser@mxtest.test rfc822;first@mxtest.test ", header)

    @defer.inlineCallbacks
    def test_max_rcpt_and_connection_max_messages(self):
        """Given more addresses than max_rcpt, the transport sends one copy per
        max_rcpt recipients, at most connection_max_messages copies per
        connection (the peer logs each connection with +smtp_connection)."""
        self.peer.stop()
        self.peer = EximPeer(extra="log_selector = +smtp_connection").start()
        self.addCleanup(self.peer.stop)
        config = self.load("  hosts = 127.0.0.1\n  hosts_override\n  port = %d\n"
                           "  max_rcpt = 1\n  connection_max_messages = 2" % (self.peer.port,))
        spool = Spool(os.path.join(self.dir, "spool"))
        envelope = Envelope()
        envelope.sender = "s@client.example"
        envelope.recipients = [Recipient("u%d@mxtest.test" % i) for i in range(3)]
        envelope.headers = [Header("Subject: copies\n")]
        message_id = spool.store(envelope, b"body\n")
        message = Message(message_id, spool.read(message_id), spool.body_path(message_id))
        transport = Transport(config.transports["t"], config)
        addresses = [Address(r.address) for r in envelope.recipients]
        yield transport.deliver(message, addresses, DeliveryContext(config))
        self.assertEqual([a.result for a in addresses], [OK, OK, OK])
        self.assertEqual(len(self.peer.messages()), 3)
        # The second connection was kept for a further message until now.
        yield smtp_pool.close_idle()
        # Two connections (the fixture's readiness probe makes a third line).
        self.assertEqual(self.peer.mainlog().count("closed by QUIT"), 2)

    @defer.inlineCallbacks
    def test_generic_header_and_return_path_options(self):
        """headers_add, headers_remove and return_path shape what the next hop gets."""
        yield self.deliver("  hosts = 127.0.0.1\n  hosts_override\n  port = %d\n"
                           "  headers_add = X-Added: yes\n  headers_remove = Subject\n"
                           "  return_path = bounces@client.example" % (self.peer.port,))
        header, body = self.peer.messages()[0]
        self.assertIn("\n<bounces@client.example>\n", header)
        self.assertIn("X-Added: yes\n", header)
        self.assertNotIn("Subject:", header)
        self.assertEqual(body, b"body\n")

    @defer.inlineCallbacks
    def test_line_too_long(self):
        """A message with a line longer than message_linelength_limit fails before any
        connection, with Exim's text."""
        lines = yield self.deliver("  hosts = 127.0.0.1\n  hosts_override\n  port = %d"
                                   % (self.peer.port,), longest=1200)
        self.assertTrue(lines[0].endswith(
            "** user@mxtest.test R=r T=t: message has lines too long for transport"), lines)
        # Only the bounce (sender <>) reached the peer.
        self.assertEqual([h.split("\n")[2] for h, _ in self.peer.messages()], ["<>"])
