"""Writing configuration files for tests, and a small router driver for the loader's tests.

``write_config`` puts a configuration (and any files it includes) in a fresh
directory.  ``TestRouterDriver`` is a real driver module shape (``OPTIONS``,
``GENERIC_DEFAULTS``, ``validate``) registered for the duration of one test,
so that the loader's handling of private options can be tested whatever
drivers the rest of exim_py has at the time.
"""

import importlib.machinery
import io
import os
import sys
import types

from exim_py import registry
from exim_py.config.options import BOOL, INT, STRING, Option, OptionTable
from exim_py.errors import ConfigError


def write_config(test, text, name="exim.conf", files=None):
    """Write ``text`` (and ``files``: {relative path: text}) in a new directory; return the path."""
    directory = os.path.abspath(test.mktemp())
    os.makedirs(directory)
    for relative, content in (files or {}).items():
        path = os.path.join(directory, relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(content)
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def _validate(dconf):
    if dconf.options["testdrv_limit"] < 0:
        raise ConfigError("%s router:\n  testdrv_limit must not be negative" % dconf.name)


def register_plain_router(test, name, generic_defaults=None):
    """Register a router ``name`` with no private options (like Exim's accept) until ``test`` ends."""
    module = types.ModuleType("exim_py_test_router_" + name)
    module.__spec__ = importlib.machinery.ModuleSpec(module.__name__, None)
    module.OPTIONS = OptionTable()
    module.GENERIC_DEFAULTS = dict(generic_defaults or {})
    sys.modules[module.__name__] = module
    test.addCleanup(sys.modules.pop, module.__name__, None)
    routers = dict(registry.ROUTERS, **{name: module.__name__})
    test.patch(registry, "ROUTERS", routers)
    test.patch(registry, "KINDS", dict(registry.KINDS, router=routers))
    return module


def register_test_router(test, name="testdrv"):
    """Register a router driver called ``name`` with private options, a driver default
    and a validate() hook, until ``test`` ends; return its module."""
    module = register_plain_router(test, name, {"retry_use_local_part": True})
    module.OPTIONS = OptionTable([
        Option("testdrv_flag", BOOL, False, "a private boolean"),
        Option("testdrv_limit", INT, 10, "a private integer"),
        Option("testdrv_text", STRING, None, "a private string", expand=True),
    ])
    module.validate = _validate
    return module


def capture(function, *args):
    """Run ``function(*args)`` with stdout and stderr captured: (result, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    try:
        result = function(*args)
    finally:
        sys.stdout, sys.stderr = saved
    return result, out.getvalue(), err.getvalue()
