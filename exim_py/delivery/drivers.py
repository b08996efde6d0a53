"""Building router and transport instances from the configuration.

A configuration's routers and transports are ``DriverConfig`` records; the
registry names the module for each driver.  Instances are built once per
configuration and cached here, because a router or transport may prepare
things (parsed route lists, compiled commands) in its constructor.
"""

import weakref

from exim_py import registry
from exim_py.errors import ConfigError

class DriverBase:
    """What router and transport instances share: their name and options."""

    def __init__(self, dconf, config):
        self.dconf = dconf
        self.config = config
        self.name = dconf.name
        self.options = dconf.options

    def opt(self, name):
        """The raw (unexpanded) value of option ``name``."""
        return self.options[name]


_routers = weakref.WeakKeyDictionary()
_transports = weakref.WeakKeyDictionary()


def _build(kind, dconf, config):
    module = registry.load(kind, dconf.driver)
    if module is None:
        raise ConfigError("%s %s: driver %r is not available in exim_py"
                          % (kind, dconf.name, dconf.driver), dconf.filename, dconf.line)
    cls = module.Router if kind == "router" else module.Transport
    return cls(dconf, config)


def routers(config):
    """The configuration's routers as instances, in order."""
    try:
        return _routers[config]
    except (KeyError, TypeError):
        pass
    built = [_build("router", d, config) for d in config.routers]
    try:
        _routers[config] = built
    except TypeError:
        pass
    return built


def make_transport(config, name):
    """The transport called ``name``; KeyError when there is none."""
    cache = _transports.get(config) if _cacheable(config) else None
    if cache is None:
        cache = {}
        if _cacheable(config):
            _transports[config] = cache
    if name not in cache:
        dconf = config.transports[name]
        cache[name] = _build("transport", dconf, config)
    return cache[name]


def _cacheable(config):
    try:
        weakref.ref(config)
        return True
    except TypeError:
        return False
