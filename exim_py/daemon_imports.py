"""What a daemon process imports, and when (an exim_py concern: Exim forks a
small process per session, exim_py holds thousands of sessions in a few
Python processes, so what each process has loaded is most of what idle
sessions cost).

``preload`` imports, before the workers fork, what every daemon process
needs for its first sessions, so that those pages stay shared.

``defer_twisted_tls`` keeps pyOpenSSL and cryptography (several MB in
every process) out of a daemon whose configuration offers TLS to no
client: Twisted's reactor modules import them as they load only to have
``startTLS`` ready, so those modules are imported while
``twisted.protocols.tls`` is a stand-in whose one name,
``TLSMemoryBIOFactory``, imports the real module when it is first called.
An outgoing STARTTLS (smtp transport, callout) or a configuration
reloaded with TLS then imports the libraries in the process that needs
them; TLS itself behaves as before.  ``server_tls`` gives the policy a
``DeferredServerTLS`` in that case, for the same reason.
"""

import ctypes
import importlib
import importlib.util
import sys
import types

# what every daemon process imports while it starts and serves its first
# sessions (the reactor module itself is imported, not installed; modules
# that install the reactor when imported, such as exim_py.delivery.queuerun
# through transports/smtp_pool.py, must not be here)
_PRELOAD = (
    "twisted.internet.default", "twisted.internet.epollreactor", "twisted.internet.tcp",
    "exim_py.reactor",
    "twisted.application.internet", "encodings.idna",
    "exim_py.smtp.server", "exim_py.smtp.policy", "exim_py.smtp.spoolwriter",
    "exim_py.spool", "exim_py.log", "exim_py.auths.base",
)
# ... those that serve TLS to clients, when the configuration does
_PRELOAD_TLS = ("twisted.internet.ssl", "exim_py.smtp.tls")
# ... and those that deliver, unless the daemon only queues (-odq)
_PRELOAD_DELIVERY = ("exim_py.delivery.engine",)

# Twisted's modules that import twisted.protocols.tls (and through it
# pyOpenSSL) when they load, in the order they import each other.
_TLS_USERS = ("twisted.internet._newtls", "twisted.internet.tcp", "twisted.internet.posixbase")
_TWISTED_TLS = "twisted.protocols.tls"
_TWISTED_SSL = "twisted.internet.ssl"


def server_tls_wanted(config, inv=None):
    """Whether this configuration may offer TLS to a client: a port with TLS
    on connect (tls_on_connect_ports, -tls-on-connect), or a
    tls_advertise_hosts that is not empty (unset means ``*``)."""
    main = config.main
    if inv is not None and getattr(inv, "tls_on_connect", False):
        return True
    if (getattr(main, "tls_on_connect_ports", None) or "").strip():
        return True
    advertise = getattr(main, "tls_advertise_hosts", None)
    return advertise is None or advertise.strip() != ""


class DeferredServerTLS:
    """The policy's ``tls`` for a configuration that advertises TLS to no
    host: the real ``exim_py.smtp.tls.ServerTLS`` (and pyOpenSSL with it)
    is made on first use, which such a configuration never reaches."""

    def __init__(self, config, policy):
        self._config = config
        self._policy = policy

    def __getattr__(self, name):
        from exim_py.smtp.tls import ServerTLS
        real = ServerTLS.from_config(self._config, self._policy)
        if self._policy.tls is self:
            self._policy.tls = real
        return getattr(real, name)


def server_tls(config, policy, inv=None):
    """What ``policy.tls`` should be for ``config`` (see DeferredServerTLS)."""
    if server_tls_wanted(config, inv):
        from exim_py.smtp.tls import ServerTLS
        return ServerTLS.from_config(config, policy)
    return DeferredServerTLS(config, policy)


def _tls_memory_bio_factory(*args, **kwargs):
    """Twisted's TLSMemoryBIOFactory, imported (with pyOpenSSL) on first use."""
    from twisted.protocols.tls import TLSMemoryBIOFactory
    return TLSMemoryBIOFactory(*args, **kwargs)


def defer_twisted_tls():
    """Import Twisted's TCP and reactor base modules without pyOpenSSL.

    Returns True when done, False when it cannot be (one of those modules,
    or pyOpenSSL, is already imported, or this Twisted needs more of
    twisted.protocols.tls than the stand-in has); then the imports
    happen as usual, later.
    """
    if any(name in sys.modules for name in _TLS_USERS + (_TWISTED_TLS, "OpenSSL")):
        return False
    import twisted.internet
    import twisted.protocols
    stand_in = types.ModuleType(_TWISTED_TLS, "Stands for twisted.protocols.tls until TLS is used.")
    stand_in.TLSMemoryBIOFactory = _tls_memory_bio_factory
    sys.modules[_TWISTED_TLS] = stand_in
    # posixbase falls back to twisted.internet.ssl only when twisted.protocols.tls is missing
    sys.modules[_TWISTED_SSL] = None
    try:
        importlib.import_module(_TLS_USERS[0])
    except ImportError:
        return False
    else:
        for name in _TLS_USERS[1:]:
            importlib.import_module(name)
        return True
    finally:
        del sys.modules[_TWISTED_TLS]
        del sys.modules[_TWISTED_SSL]
        vars(twisted.protocols).pop("tls", None)
        vars(twisted.internet).pop("ssl", None)


def preload(config, tls=True, deliver=True):
    """Import what a daemon process needs before it runs, without installing
    the reactor, and compute what the configuration computes on first use,
    so that forked workers share these pages with this process.  ``tls``:
    also what serving TLS needs; ``deliver``: also the delivery engine."""
    wanted = _PRELOAD + (_PRELOAD_TLS if tls else ()) + (_PRELOAD_DELIVERY if deliver else ())
    for name in wanted:
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name)
    from exim_py.spool import Spool
    Spool.from_config(config)


def release_free_memory():
    """glibc: give the heap's free pages back to the system (malloc_trim), once
    start-up's temporary objects are gone."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass
