"""The one place that names every driver exim_py has.

Each entry maps a driver name, as written in the configuration file
(``driver = redirect``, ``lsearch;``), to the module that implements it.
Modules are imported only when a configuration uses them.  A driver module
declares its private options in an ``OPTIONS`` table next to its code and
provides the class named in its kind's contract (see HACKING.rst).

Adding a driver: write the module, add one line here, add its tests and its
README section.  ``-bV`` lists exactly what is here and importable.
"""

import importlib
import importlib.util

ROUTERS = {
    "accept": "exim_py.routers.accept",
    "dnslookup": "exim_py.routers.dnslookup",
    "manualroute": "exim_py.routers.manualroute",
    "redirect": "exim_py.routers.redirect",
}

TRANSPORTS = {
    "appendfile": "exim_py.transports.appendfile",
    "autoreply": "exim_py.transports.autoreply",
    "pipe": "exim_py.transports.pipe",
    "smtp": "exim_py.transports.smtp",
}

AUTHENTICATORS = {
    "cram_md5": "exim_py.auths.cram_md5",
    "dovecot": "exim_py.auths.dovecot",
    "plaintext": "exim_py.auths.plaintext",
}

LOOKUPS = {
    "cdb": "exim_py.lookups.cdb",
    "dnsdb": "exim_py.lookups.dnsdb",
    "dsearch": "exim_py.lookups.dsearch",
    "iplsearch": "exim_py.lookups.iplsearch",
    "lmdb": "exim_py.lookups.lmdb",
    "lsearch": "exim_py.lookups.lsearch",
    "nwildlsearch": "exim_py.lookups.nwildlsearch",
    "passwd": "exim_py.lookups.passwd",
    "sqlite": "exim_py.lookups.sqlite",
    "spf": "exim_py.lookups.spf",
    "wildlsearch": "exim_py.lookups.wildlsearch",
}

# A driver whose module pulls in heavy dependencies (Twisted, OpenSSL) may keep
# its OPTIONS, GENERIC_DEFAULTS and validate() in a light module named here.
# Reading a configuration imports only that one; the driver module itself is
# imported when an instance is built, so "-bpc" or a daemon that has not yet
# delivered over SMTP does not load the SMTP client.
DECLARATIONS = {
    ("transport", "smtp"): "exim_py.transports.smtp_settings",
}

KINDS = {
    "router": ROUTERS,
    "transport": TRANSPORTS,
    "authenticator": AUTHENTICATORS,
    "lookup": LOOKUPS,
}


def available(kind):
    """Names of the drivers of ``kind`` whose module is present, sorted."""
    table = KINDS[kind]
    return sorted(n for n, mod in table.items() if importlib.util.find_spec(mod) is not None)


def load(kind, name):
    """The module implementing driver ``name`` of ``kind``, or None if exim_py has none."""
    mod = KINDS[kind].get(name)
    if mod is None or importlib.util.find_spec(mod) is None:
        return None
    return importlib.import_module(mod)


def declarations(kind, name):
    """The module holding driver ``name``'s option table and checks, or None.

    That is the driver module itself unless DECLARATIONS names a lighter one.
    """
    light = DECLARATIONS.get((kind, name))
    if light is None:
        return load(kind, name)
    if importlib.util.find_spec(KINDS[kind][name]) is None:
        return None
    return importlib.import_module(light)
