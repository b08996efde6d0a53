"""Host lists of routed addresses: randomized groups and which addresses one
remote delivery may carry (Exim's same_hosts() in deliver.c)."""

from twisted.trial import unittest

from exim_py.delivery.address import Address, Host
from exim_py.delivery.plan import group
from exim_py.routers import hostlist


class _Remote:
    """The two things grouping asks of a remote transport."""

    remote = True
    name = "smtp"

    def max_addresses(self):
        return 100


def _hosts(*names, mx=None):
    return [Host(n, "192.0.2.%d" % (i + 1), mx=mx) for i, n in enumerate(names)]


class BatchKeyTests(unittest.TestCase):
    """hostlist.batch_key: equal exactly when the lists count as the same hosts."""

    def test_randomized_group_in_any_order(self):
        """The hosts of one randomized group get one made-up MX value, so two
        shuffles of the same list have the same key."""
        items = hostlist.parse("a.example : b.example : c.example")
        keys = {hostlist.batch_key(hostlist.randomize_groups(items)) for _ in range(30)}
        self.assertEqual(len(keys), 1)
        self.assertTrue(all(h.mx is not None and h.mx < -1
                            for h in hostlist.randomize_groups(items)))

    def test_groups_keep_their_order(self):
        """'+' starts a new randomized group with a lower made-up MX: hosts
        of different groups are not interchangeable."""
        hosts = hostlist.randomize_groups(hostlist.parse("a : b : + : c"))
        self.assertEqual(hosts[2].name, "c")
        self.assertLess(hosts[2].mx, hosts[0].mx)
        swapped = [hosts[2].copy(mx=hosts[0].mx), hosts[1], hosts[0].copy(mx=hosts[2].mx)]
        self.assertNotEqual(hostlist.batch_key(hosts), hostlist.batch_key(swapped))

    def test_plain_list_order_matters(self):
        """Without MX values (a list that was not randomized) the order counts."""
        one = _hosts("a", "b")
        self.assertNotEqual(hostlist.batch_key(one), hostlist.batch_key(one[::-1]))

    def test_equal_mx_hosts_in_any_order(self):
        """MX hosts of one preference, shuffled by DNS, are the same hosts."""
        one = _hosts("a", "b", mx=10)
        self.assertEqual(hostlist.batch_key(one), hostlist.batch_key(one[::-1]))


class GroupingTests(unittest.TestCase):
    """The delivery engine puts addresses with shuffled lists in one batch."""

    def test_shuffled_lists_share_a_delivery(self):
        """Three addresses whose randomized lists came out in different orders
        go in one remote batch (conformance test 0190)."""
        items = hostlist.parse("h1.example : h2.example : h3.example")
        addresses = []
        for n, order in enumerate(([0, 1, 2], [2, 0, 1], [1, 2, 0])):
            addr = Address("user@domain%d.example" % n)
            addr.transport = _Remote()
            shuffled = hostlist.randomize_groups(items)
            byname = {h.name: h for h in shuffled}
            addr.host_list = [byname[items[i].name] for i in order]
            addresses.append(addr)
        local, remote = group(addresses, None)
        self.assertEqual((len(local), [len(b) for b in remote]), (0, [3]))
