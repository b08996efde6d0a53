"""The wildlsearch lookup: lsearch whose file keys are patterns, expanded first.

Each key in the file is string-expanded, then matched as a one-item list
(``*suffix``, ``^regex``, a nested lookup, or a literal compared without
regard to case), as the spec's "(n)wildlsearch" section describes.  The
numeric variables a regex sets are not kept: results are cached.
"""

from exim_py.lookups import lsearch


class Lookup(lsearch.Lookup):
    expand_keys = True

    def find_entry(self, path, key, ctx):
        from exim_py.match import match_string_item
        for entry in lsearch.FILES.get(path, lsearch.as_list):
            if match_string_item(key, entry.key, ctx, expand=self.expand_keys):
                return entry
        return None
