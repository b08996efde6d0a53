"""Base 62 as Exim writes message id fields."""

import random

from twisted.trial import unittest

from exim_py.spool.ids import base62, from_base62


class Base62Tests(unittest.TestCase):

    def test_known_values(self):
        """Zero padding, the alphabet's order (digits, upper, lower case) and the
        lowest digits kept when the number is wider than the field."""
        self.assertEqual(base62(0), "000000")
        self.assertEqual(base62(61, 2), "0z")
        self.assertEqual(base62(62, 2), "10")
        self.assertEqual(base62(36), "00000a")
        self.assertEqual(base62(62 ** 6 - 1), "zzzzzz")
        self.assertEqual(base62(62 ** 6 + 10), "00000A")
        self.assertEqual(base62(3844 + 1, 3), "101")

    def test_round_trip(self):
        """from_base62 reads back every six-digit field base62 writes."""
        rng = random.Random(62)
        for number in [rng.randrange(62 ** 6) for _ in range(500)]:
            self.assertEqual(from_base62(base62(number)), number)
            self.assertEqual(len(base62(number)), 6)
