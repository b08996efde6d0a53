"""The smtp transport's per-host settings kept between messages.

``smtp_settings.for_host`` keeps its answer for a host on the transport
instance when no option it reads can differ between messages.  These tests
pin down that the kept answer is used only then: an expanded option is
still expanded for each message (checked against a real Exim as the next
hop), a host-list option that needs more than the host's address is not
kept, and a new configuration (what SIGHUP loads) starts afresh.
"""

import os
import shutil
import tempfile

from twisted.internet import defer
from twisted.trial import unittest

from exim_py import config as exim_config
from exim_py.delivery import engine
from exim_py.delivery.address import Address, Host
from exim_py.delivery.context import DeliveryContext
from exim_py.delivery.drivers import make_transport
from exim_py.envelope import Envelope, Header, Recipient
from exim_py.log import Logger
from exim_py.spool import Spool
from exim_py.transports import smtp_pool, smtp_settings
from tests.support.exim_peer import EximPeer
from tests.test_transport_smtp_hosts import STATIC


class _Configured(unittest.TestCase):
    """A scratch directory and a way to load test_transport_smtp_hosts' STATIC
    configuration with extra transport options."""

    port = 25

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="exim-py-smtpcache-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def load(self, options=""):
        path = os.path.join(self.dir, "exim.conf")
        with open(path, "w") as f:
            f.write(STATIC.format(dir=self.dir, route="127.0.0.1::%d" % self.port,
                                  options=options))
        return exim_config.load(path)

    def settings(self, config, address="u@a.example", host=None):
        transport = make_transport(config, "t")
        host = host or Host("127.0.0.1", "127.0.0.1")
        return smtp_settings.for_host(transport, host, Address(address),
                                      DeliveryContext(config))[0]


class HostSettingsCacheTests(_Configured):
    """When for_host's answer is kept, and when it is worked out again."""

    def test_static_options_kept_per_host(self):
        """Options without expansions (helo_data's default included) give the
        same settings object for the next message to the same host, and
        another object for another host."""
        config = self.load()
        first = self.settings(config, "u@a.example")
        self.assertEqual(first.helo_data, "client.example")
        self.assertIs(self.settings(config, "v@b.example"), first)
        other = self.settings(config, host=Host("127.0.0.2", "127.0.0.2"))
        self.assertIsNot(other, first)

    def test_expanded_option_per_message(self):
        """helo_data naming a per-address variable is expanded for each
        address: nothing is kept."""
        config = self.load("  helo_data = helo.$domain")
        self.assertEqual(self.settings(config, "u@a.example").helo_data, "helo.a.example")
        self.assertEqual(self.settings(config, "u@b.example").helo_data, "helo.b.example")

    def test_host_list_by_name_not_kept(self):
        """A host-list option with a host name (a DNS question whose answer
        may change) is matched for each message."""
        config = self.load("  hosts_avoid_esmtp = some.name.example")
        first = self.settings(config)
        self.assertIsNot(self.settings(config), first)
        self.assertTrue(first.esmtp)

    def test_network_host_list_kept_and_matched(self):
        """A host list of networks is matched once per host, with the
        right answer for each host."""
        config = self.load("  hosts_avoid_pipelining = !127.0.0.2 : 127.0.0.0/8")
        one = self.settings(config, host=Host("127.0.0.1", "127.0.0.1"))
        two = self.settings(config, host=Host("127.0.0.2", "127.0.0.2"))
        self.assertFalse(one.pipelining)
        self.assertTrue(two.pipelining)
        self.assertIs(self.settings(config, host=Host("127.0.0.1", "127.0.0.1")), one)

    def test_new_configuration_starts_afresh(self):
        """A configuration loaded again (as SIGHUP does) has new transport
        instances, so a changed option is seen at once."""
        self.assertEqual(self.settings(self.load("  helo_data = one.example")).helo_data,
                         "one.example")
        self.assertEqual(self.settings(self.load("  helo_data = two.example")).helo_data,
                         "two.example")

    def test_callout_settings_not_shared(self):
        """Callouts adjust the settings they get, so they get their own."""
        config = self.load()
        transport = make_transport(config, "t")
        host = Host("127.0.0.1", "127.0.0.1")
        delivery = self.settings(config)
        callout = smtp_settings.for_host(transport, host, Address("u@a.example"),
                                         DeliveryContext(config), callout=True)[0]
        self.assertIsNot(callout, delivery)
        self.assertTrue(callout.callout)
        self.assertFalse(delivery.callout)


class PerMessageExpansionTests(_Configured):
    """Against a real Exim as the next hop: what each message's session says."""

    def setUp(self):
        super().setUp()
        self.peer = EximPeer().start()
        self.addCleanup(self.peer.stop)
        self.addCleanup(smtp_pool.close_idle)
        self.port = self.peer.port

    @defer.inlineCallbacks
    def deliver(self, config, sender):
        spool = Spool(os.path.join(self.dir, "spool"))
        envelope = Envelope()
        envelope.sender = sender
        envelope.recipients = [Recipient("user@mxtest.test")]
        envelope.headers = [Header("Subject: cache\n")]
        message_id = spool.store(envelope, b"body\n")
        yield engine.deliver_message(config, spool, message_id, logger=Logger(config))

    @defer.inlineCallbacks
    def test_helo_follows_each_message(self):
        """Two messages through one configuration, helo_data naming the
        sender's domain: the next hop logs each message's own HELO name."""
        config = self.load("  helo_data = ${lc:$sender_address_domain}")
        yield self.deliver(config, "a@First.example")
        yield self.deliver(config, "b@second.example")
        log = self.peer.mainlog()
        self.assertIn("H=(first.example) [127.0.0.1]", log)
        self.assertIn("H=(second.example) [127.0.0.1]", log)
