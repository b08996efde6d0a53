"""Exim filter files (the filter language of Exim's "Exim filter files"
document): ``parser`` reads a filter into commands and conditions,
``interpreter`` obeys them, ``bftest`` is ``exim_py -bf``/``-bF``.

Sieve filters are recognised but not interpreted by exim_py.
"""

import re

_FIRST_LINE = re.compile(r"#\s*(exim|sieve)\s+filter", re.IGNORECASE)


def filter_type(text):
    """"exim" or "sieve" when ``text`` starts as a filter file does (its first
    line "# Exim filter" or "# Sieve filter", any case), else None."""
    m = _FIRST_LINE.match(text.lstrip(" \t\n"))
    return m.group(1).lower() if m else None
