"""The nwildlsearch lookup: wildlsearch without expanding the keys in the file."""

from exim_py.lookups import wildlsearch


class Lookup(wildlsearch.Lookup):
    expand_keys = False
