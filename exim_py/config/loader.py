"""Sections of a configuration file → an immutable ``Config``.

Spec chapter "The Exim runtime configuration file": the main section (options,
macros, named lists), then ``begin acl``, ``begin routers``, ``begin
transports``, ``begin authenticators``, ``begin retry`` and ``begin rewrite``.
The structure and error texts follow Exim's readconf.c so that a broken file
gets the message Exim would give.  ``Loader(..., collect=True)`` keeps going
after an error that affects one line or one driver, so that ``-bV`` can list
every problem at once.
"""

import collections
import collections.abc
import importlib
import importlib.util
import os
import re
import shutil
import socket
import sys

from exim_py import EXIM_COMPAT_VERSION, registry
from exim_py.config import features
from exim_py.config.acl_syntax import AclParser
from exim_py.config.checks import (check_authenticators, check_headers_rewrite, check_main,
                                   check_router, check_transport)
from exim_py.config.generic_options import GENERIC
from exim_py.config.main_options import MAIN_OPTIONS
from exim_py.config.options import OptionTable, OptionValues, SettingParser
from exim_py.config.reader import Reader, Section
from exim_py.config.retry_rewrite import parse_retry, parse_rewrite
from exim_py.errors import ConfigError, ExpansionError
from exim_py.expand import ExpandContext, expand

NamedList = collections.namedtuple("NamedList", "kind name value cache filename line hidden",
                                   defaults=(False,))
DriverConfig = collections.namedtuple("DriverConfig", "kind name driver options filename line")

_LOCAL_PART_PRECONDITIONS = ("local_parts", "condition", "local_part_prefix", "local_part_suffix",
                             "senders", "require_files")

_MAX_NAMED_LISTS = 32      # of each kind, as Exim 4.96 is built

_LIST_KINDS = (("domainlist", "domain", "domain list"), ("hostlist", "host", "host list"),
               ("addresslist", "address", "address list"),
               ("localpartlist", "localpart", "local part list"))


class _Partial:
    """The part of a Config that exists once the main section is read (for expansions)."""

    def __init__(self, main, named_lists):
        self.main = main
        self.named_lists = named_lists
        self.filename = None


class Config:
    """A loaded configuration (see HACKING.rst for each attribute)."""

    def __init__(self, **fields):
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name, value):
        raise AttributeError("a loaded configuration is read-only")


class _MacroView(collections.abc.Mapping):
    """Config.macros: every macro in substitution order, built-ins made on first use.

    Making the built-ins means reading every driver's option table, which a
    command such as -bpc never needs.
    """

    def __init__(self, reader):
        self._reader = reader
        self._dict = None

    def _macros(self):
        if self._dict is None:
            self._dict = self._reader.macro_dict()
        return self._dict

    def __getitem__(self, name):
        return self._macros()[name]

    def __iter__(self):
        return iter(self._macros())

    def __len__(self):
        return len(self._macros())


def builtin_macros(driver_options=True):
    """Exim's built-in macros for what this exim_py has: _HAVE_*, _DRIVER_*, _OPT_*.

    ``driver_options`` adds _OPT_<KIND>_<DRIVER>_<NAME>, which imports every
    driver's declarations (registry.declarations: option tables, kept light).
    """
    macros = {}
    for name in features.FEATURES:
        macros["_HAVE_" + name.upper()] = "y"
    for kind in ("router", "transport", "authenticator"):
        for driver in registry.available(kind):
            macros["_DRIVER_%s_%s" % (kind.upper(), driver.upper())] = "y"
    for opt in MAIN_OPTIONS:
        if not opt.hidden:
            macros["_OPT_MAIN_" + opt.name.upper()] = "y"
    for kind, table in GENERIC.items():
        for opt in table:
            if not opt.hidden:
                macros["_OPT_%sS_%s" % (kind.upper(), opt.name.upper())] = "y"
        for driver in registry.available(kind) if driver_options else ():
            module = _load_driver(kind, driver)
            for opt in getattr(module, "OPTIONS", ()):
                if not opt.hidden:
                    name = "_OPT_%s_%s_%s" % (kind.upper(), driver.upper(), opt.name.upper())
                    macros[name] = "y"
    return macros


def _load_driver(kind, name):
    """The driver's declarations (OPTIONS...), or None when they cannot be imported
    (reported when the driver is used)."""
    try:
        return registry.declarations(kind, name)
    except Exception:
        return None


def computed_defaults(main):
    """Defaults that depend on the host and on how exim_py runs (see README "Configuration")."""
    out = {}
    if main["primary_hostname"] is None:
        out["primary_hostname"] = _host_name()
    primary = out.get("primary_hostname", main["primary_hostname"])
    if main["qualify_domain"] is None:
        out["qualify_domain"] = primary
    if main["qualify_recipient"] is None:
        out["qualify_recipient"] = out.get("qualify_domain", main["qualify_domain"])
    if main["exim_user"] is None:
        out["exim_user"] = os.geteuid()
    if main["exim_group"] is None:
        out["exim_group"] = os.getegid()
    if main["exim_path"] is None:
        out["exim_path"] = _exim_py_path()
    if main["exim_version"] is None:
        out["exim_version"] = EXIM_COMPAT_VERSION
    spool, log = _default_places()
    if main["spool_directory"] is None:
        out["spool_directory"] = spool
    if main["log_file_path"] is None:
        out["log_file_path"] = log
    return out


def _exim_py_path():
    """The exim_py command, for re-running itself: on $PATH, else next to this Python."""
    beside = os.path.join(os.path.dirname(sys.executable), "exim_py")
    return shutil.which("exim_py") or (beside if os.path.exists(beside) else "exim_py")


def _default_places():
    """Default spool directory and log path: system places as root, else per user.

    As root: /var/spool/exim_py and /var/log/exim_py/%slog.  Otherwise under
    $XDG_STATE_HOME/exim_py (default ~/.local/state/exim_py): spool/ and log/.
    """
    if os.geteuid() == 0:
        return "/var/spool/exim_py", "/var/log/exim_py/%slog"
    base = (os.environ.get("XDG_STATE_HOME")
            or os.path.join(os.path.expanduser("~"), ".local", "state"))
    state = os.path.join(base, "exim_py")
    return os.path.join(state, "spool"), os.path.join(state, "log", "%slog")


def _host_name():
    """Exim's primary_hostname default: uname(), made fully qualified through the resolver."""
    name = os.uname().nodename
    if "." not in name:
        try:
            name = socket.gethostbyname_ex(name)[0] or name
        except OSError:
            pass
    return name


class Loader:
    """Reads one configuration file.  ``load()`` returns a Config or raises ConfigError."""

    def __init__(self, path, macros=None, collect=False, record=False):
        self.path = path
        self.collect = collect
        self.errors = []
        self.reader = Reader(path, macros, builtin_macros, record)
        self.main = OptionValues(MAIN_OPTIONS)
        self.named_lists = {kind: {} for _, kind, _ in _LIST_KINDS}
        self.acls = {}
        self.routers = []
        self.transports = {}
        self.authenticators = []
        self.retry = []
        self.rewrite = []

    def fail(self, error):
        """Record an error that spoils one line or driver (collect mode) or raise it."""
        if not self.collect:
            raise error
        self.errors.append(error)

    def load(self):
        lines = iter(self.reader)
        section = self._read_main(lines)
        while section is not None:
            handler = getattr(self, "_read_" + section.name)
            section = handler(lines, section)
        config = Config(
            filename=self.path, macros=_MacroView(self.reader), main=self.main,
            named_lists=self.named_lists, acls=self.acls, routers=self.routers,
            transports=self.transports, authenticators=self.authenticators,
            retry=self.retry, rewrite=self.rewrite, parsed_lines=self.reader.saved)
        self._check_routers()
        self._validate_acls(config)
        return config

    # -- main section ---------------------------------------------------------

    def _read_main(self, lines):
        for item in lines:
            if isinstance(item, Section):
                self._finish_main()
                return item
            try:
                self._main_line(item)
            except ConfigError as e:
                self.fail(e)
        self._finish_main()
        return None

    def _main_line(self, item):
        text = item.text
        if text[0].isupper():
            self.reader.define_macro(item)
            return
        # "hide " (one space, as readconf.c tests it) may precede a named list.
        hidden = text.startswith("hide ")
        listed = text[5:] if hidden else text
        for prefix, kind, description in _LIST_KINDS:
            if listed.startswith(prefix):
                self._named_list(item, listed[len(prefix):], kind, description, hidden)
                return
        SettingParser(item.filename, item.line).apply(self.main, text, 'main option "%s" unknown')

    def _named_list(self, item, rest, kind, description, hidden):
        force_cache = rest.startswith("_cache")
        if force_cache:
            rest = rest[6:]
        if not rest[:1].isspace():
            raise ConfigError("unrecognized configuration line", item.filename, item.line)
        rest = rest.lstrip()
        m = re.match(r"[A-Za-z0-9_]*", rest)
        name = m.group(0)
        rest = rest[m.end():].lstrip()
        if len(self.named_lists[kind]) >= _MAX_NAMED_LISTS:
            raise ConfigError("too many named %ss (max is %d)" % (description, _MAX_NAMED_LISTS),
                              item.filename, item.line)
        if name in self.named_lists[kind]:
            raise ConfigError('duplicate name "%s" for a named %s' % (name, description),
                              item.filename, item.line)
        if not rest.startswith("="):
            raise ConfigError("missing '=' after \"%s\"" % name, item.filename, item.line)
        value = SettingParser(item.filename, item.line).read_string(rest[1:].lstrip(), name)
        cache = force_cache or "$" not in value
        self.named_lists[kind][name] = NamedList(kind, name, value, cache,
                                                 item.filename, item.line, hidden)

    def _finish_main(self):
        main = self.main
        for name, value in computed_defaults(main).items():
            main._store(name, value, given=False)
        # Exim expands these three once, at start-up, and keeps the results.
        context = ExpandContext(config=_Partial(main, self.named_lists))
        for name in ("spool_directory", "log_file_path", "pid_file_path"):
            value = main[name]
            if value and ("$" in value or "\\" in value):
                try:
                    main._store(name, expand(value, context), given=main.is_set(name))
                except ExpansionError as e:
                    self.fail(ConfigError('failed to expand %s "%s": %s' % (name, value, e)))
        if not main["process_log_path"]:
            main._store("process_log_path", main["spool_directory"] + "/exim-process.info",
                        given=False)
        check_main(main, self.fail)

    # -- driver sections ------------------------------------------------------

    def _read_routers(self, lines, section):
        return self._read_drivers(lines, "router")

    def _read_transports(self, lines, section):
        return self._read_drivers(lines, "transport")

    def _read_authenticators(self, lines, section):
        following = self._read_drivers(lines, "authenticator")
        check_authenticators(self.authenticators, self.fail)
        return following

    def _read_drivers(self, lines, kind):
        current = None      # [name, values, filename, line, module, broken]
        for item in lines:
            if isinstance(item, Section):
                self._finish_driver(kind, current)
                return item
            m = re.match(r"\s*([A-Za-z][A-Za-z0-9_]*)?\s*", item.text)
            name = m.group(1) or ""
            rest = item.text[m.end():]
            if name[:1].isupper() and rest.startswith("="):
                self._finish_driver(kind, current)
                current = None
                self.reader.define_macro(item)
                continue
            if rest.startswith(":"):
                self._finish_driver(kind, current)
                current = self._start_driver(kind, name, rest[1:], item)
                continue
            if current is None:
                self.fail(ConfigError("%s name missing" % kind, item.filename, item.line))
                continue
            if current[5]:
                continue        # collect mode: a driver already known to be broken
            try:
                self._driver_option(kind, current, item)
            except ConfigError as e:
                current[5] = True
                self.fail(e)
        self._finish_driver(kind, current)
        return None

    def _start_driver(self, kind, name, rest, item):
        if self._driver_named(kind, name):
            self.fail(ConfigError('there are two %ss called "%s"' % (kind, name)))
        rest = rest.strip()
        if rest:
            comment = " (# is comment only at line start)" if rest.startswith("#") else ""
            self.fail(ConfigError("extra characters follow driver name %s%s" % (name, comment),
                                  item.filename, item.line))
        return [name, OptionValues(GENERIC[kind]), item.filename, item.line, None, False]

    def _driver_named(self, kind, name):
        if kind == "transport":
            return name in self.transports
        instances = self.routers if kind == "router" else self.authenticators
        return any(d.name == name for d in instances)

    def _driver_option(self, kind, current, item):
        parser = SettingParser(item.filename, item.line)
        values = current[1]
        if current[4] is not None:
            parser.apply(values, item.text, 'option "%s" unknown')
            self._check_setting(kind, values, item)
            return
        if not parser.apply(values, item.text, None):
            name = re.match(r"\s*(?:hide\s+)?([A-Za-z0-9_]*)", item.text).group(1)
            raise ConfigError('option "%s" unknown ("driver" must be specified before any '
                              'private options)' % name, item.filename, item.line)
        self._check_setting(kind, values, item)
        driver = values["driver"]
        if driver is None:
            return
        try:
            module = registry.declarations(kind, driver)
        except Exception as e:      # a driver module that does not import is a bug: say which
            raise ConfigError('%s %s: cannot load %s driver "%s": %s: %s'
                              % (kind, current[0], kind, driver, type(e).__name__, e),
                              item.filename, item.line)
        if module is None:
            raise ConfigError('%s %s: cannot find %s driver "%s"'
                              % (kind, current[0], kind, driver), item.filename, item.line)
        # Rebuild the values over the generic + private tables, keeping what
        # was set so far, with the driver's own generic defaults.
        table = OptionTable(list(GENERIC[kind]) + list(getattr(module, "OPTIONS", ())))
        merged = OptionValues(table, getattr(module, "GENERIC_DEFAULTS", None))
        for name in GENERIC[kind].names():
            if values.is_set(name):
                merged._store(name, values[name])
            elif values[name] != GENERIC[kind].get(name).default:
                merged._store(name, values[name], given=False)   # e.g. group set by user
            if values.is_hidden(name):
                merged._secure.add(name)
        merged._written.update(values._written)
        current[1] = merged
        current[4] = module

    @staticmethod
    def _check_setting(kind, values, item):
        """Settings Exim checks as soon as they are read."""
        if kind == "transport" and re.match(r"\s*(hide\s+)?headers_rewrite\b", item.text):
            check_headers_rewrite(values["headers_rewrite"], item.filename, item.line)

    def _finish_driver(self, kind, current):
        if current is None:
            return
        name, values, filename, line, module, broken = current
        if broken:
            return
        if values["driver"] is None:
            self.fail(ConfigError('no driver defined for %s "%s"' % (kind, name)))
            return
        if module is None:
            return
        if kind == "router" and not values.is_set("retry_use_local_part") and (
                values["check_local_user"]
                or any(values[o] is not None for o in _LOCAL_PART_PRECONDITIONS)):
            # Spec "Generic options for routers", retry_use_local_part: true
            # by default when routing may depend on the local part.
            values._store("retry_use_local_part", True, given=False)
        dconf = DriverConfig(kind, name, values["driver"], values, filename, line)
        check = getattr(module, "validate", None)
        if check is not None:
            try:
                check(dconf)
            except ConfigError as e:
                self.fail(e)
                return
        if kind == "authenticator" and values["public_name"] is None:
            # Exim: an authenticator without public_name is advertised under its own name.
            values._store("public_name", name, given=False)
        if kind == "router":
            check_router(dconf, self.fail)
            self.routers.append(dconf)
        elif kind == "transport":
            check_transport(dconf, self.fail)
            self.transports[name] = dconf
        else:
            self.authenticators.append(dconf)

    def _check_routers(self):
        names = {r.name for r in self.routers}
        for router in self.routers:
            for option in ("pass_router", "redirect_router"):
                target = router.options[option]
                if target is not None and target not in names:
                    self.fail(ConfigError('new_router "%s" not found for "%s" router'
                                          % (target, router.name)))

    # -- other sections -------------------------------------------------------

    def _read_acls(self, lines, section):
        parser = AclParser(self.reader, self.acls, self.fail)
        return parser.read(lines)

    def _read_retrys(self, lines, section):
        return self._read_rules(lines, parse_retry, self.retry)

    def _read_rewrites(self, lines, section):
        return self._read_rules(lines, parse_rewrite, self.rewrite)

    def _read_rules(self, lines, parse, into):
        for item in lines:
            if isinstance(item, Section):
                return item
            try:
                into.append(parse(item))
            except ConfigError as e:
                self.fail(e)
        return None

    def _read_local_scans(self, lines, section):
        raise ConfigError("local_scan() options not supported: (LOCAL_SCAN_HAS_OPTIONS not "
                          "defined in Local/Makefile)", section.filename, section.line)

    def _validate_acls(self, config):
        """The ACL engine checks condition and modifier names, if it is installed."""
        if importlib.util.find_spec("exim_py.acl") is None or \
                importlib.util.find_spec("exim_py.acl.validate") is None:
            return
        validate = getattr(importlib.import_module("exim_py.acl.validate"), "validate_acl", None)
        if validate is None:
            return
        for acl in config.acls.values():
            try:
                validate(acl, config)
            except ConfigError as e:
                self.fail(e)


def load(path, macros=None, record=False):
    """Read, check and return the configuration in ``path`` (``macros``: -D settings).

    With ``record``, ``Config.parsed_lines`` keeps the logical lines as read
    (after macro substitution) for ``-bP config``; otherwise it is None.
    """
    return Loader(path, macros, record=record).load()


def load_collecting(path, macros=None):
    """As ``load``, but gather every error: returns (config or None, [ConfigError...])."""
    loader = Loader(path, macros, collect=True)
    try:
        config = loader.load()
    except ConfigError as e:
        loader.errors.append(e)
        return None, loader.errors
    return (None if loader.errors else config), loader.errors
