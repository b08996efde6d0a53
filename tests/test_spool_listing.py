"""Queue listing details that a fresh queue does not show: old messages and big ones."""

from twisted.trial.unittest import TestCase

from exim_py.spool.listing import format_age, format_size, sort_key


class ListingFormatTests(TestCase):
    """The age and size columns of -bp, as Exim's queue listing computes them."""

    def test_age(self):
        """Minutes up to 90, then hours (rounded) up to 72, then days (rounded)."""
        self.assertEqual(format_age(59), " 0m")
        self.assertEqual(format_age(90 * 60), "90m")
        self.assertEqual(format_age(91 * 60), " 2h")
        self.assertEqual(format_age(72 * 3600), "72h")
        self.assertEqual(format_age(73 * 3600), " 3d")
        self.assertEqual(format_age(400 * 86400), "400d")

    def test_size(self):
        """Bytes below 1K, one decimal below 10K/10M, whole K or M above."""
        self.assertEqual(format_size(0), "     ")
        self.assertEqual(format_size(220), "  220")
        self.assertEqual(format_size(1536), " 1.5K")
        self.assertEqual(format_size(20 * 1024 + 600), "  21K")
        self.assertEqual(format_size(2 * 1024 * 1024), " 2.0M")
        self.assertEqual(format_size(30 * 1024 * 1024), "  30M")

    def test_sort_order(self):
        """Arrival second first, then the fraction, then the pid field (Exim's queue order)."""
        ids = ["1xUp2q-0001oh-2a", "1xUp2q-0001aa-2b", "1xUp2p-zzzzzz-zz", "1xUp2q-000001-2a"]
        self.assertEqual(sorted(ids, key=sort_key),
                         ["1xUp2p-zzzzzz-zz", "1xUp2q-000001-2a", "1xUp2q-0001oh-2a", "1xUp2q-0001aa-2b"])
