"""``-bV`` (version, features, drivers, configuration check) and ``-bP``
(print option values), laid out as Exim lays them out (spec chapter "The
Exim command line", options -bV and -bP).
"""

import os
import re
import sys

from exim_py import EXIM_COMPAT_VERSION, __version__, registry
from exim_py.cli import config_path
from exim_py.config import features
from exim_py.config.generic_options import GENERIC
from exim_py.config.loader import load, load_collecting
from exim_py.config.options import GIDLIST, UIDLIST, find_group, format_value
from exim_py.expand.lists import split_list


def version_mode(inv):
    """-bV: what this exim_py supports, then load the configuration and report every problem."""
    out = sys.stdout
    out.write("Exim version %s (exim_py %s)\n" % (EXIM_COMPAT_VERSION, __version__))
    out.write("Support for:%s\n" % _words(w for w in features.FEATURES.values() if w))
    out.write("Lookups (built-in):%s\n" % _words(registry.available("lookup")))
    out.write("Authenticators:%s\n" % _words(registry.available("authenticator")))
    out.write("Routers:%s\n" % _words(registry.available("router")))
    out.write("Transports:%s\n" % _words(registry.available("transport")))
    path = config_path(inv)
    out.write("Configuration file is %s\n" % path)
    out.flush()
    _config, errors = load_collecting(path, inv.macros)
    for error in errors:
        sys.stderr.write(one_line(error) + "\n")
    return 1 if errors else 0


def _words(names):
    return "".join(" " + n for n in names)


def one_line(error):
    """A ConfigError on one line: ``configuration error in line N of FILE: message``."""
    return str(error).replace(":\n  ", ": ", 1).replace("\n  ", " ")


def is_admin(config):
    """Exim's admin user: root, the Exim user, or a member of admin_groups."""
    uid = os.geteuid()
    if uid == 0 or uid == config.main["exim_user"]:
        return True
    groups = set(os.getgroups()) | {os.getegid()}
    admin_groups = config.main["admin_groups"]
    if admin_groups:
        return any(find_group(g) in groups for g in split_list(admin_groups))
    return False


class OptionPrinter:
    """Prints -bP answers for one loaded configuration; ``ok`` goes false on a failed item."""

    def __init__(self, config, out, err, admin, no_labels=False):
        self.config = config
        self.out = out
        self.err = err
        self.admin = admin
        self.no_labels = no_labels
        self.ok = True

    def line(self, text):
        self.out.write(text + "\n")

    def option(self, opt, value, hidden):
        """One option's line; with -n only its value, where Exim drops the label."""
        text = format_value(opt, value, hidden)
        if self.no_labels:
            if text.startswith(opt.name + " = "):
                text = text[len(opt.name) + 3:]
            elif opt.type in (UIDLIST, GIDLIST):
                text = ""
        self.line(text)

    def main_option(self, name):
        values = self.config.main
        opt = values.table.get(name)
        if opt is None:
            self.line("%s is not a known option" % name)
            self.ok = False
            return
        hidden = values.is_hidden(name) and not self.admin
        if opt.synonym_of:
            target = opt.synonym_of if isinstance(opt.synonym_of, str) else opt.synonym_of[0]
            self.option(opt, values[target], hidden)
            return
        self.option(opt, values[name], hidden)

    def all_main(self):
        for opt in self.config.main.table:
            if not opt.hidden:
                self.main_option(opt.name)

    def named_list(self, name):
        found = False
        for kind in ("address", "domain", "host", "localpart"):
            entry = self.config.named_lists[kind].get(name)
            if entry is not None:
                found = True
                # A list declared with "hide" is never shown, even to admin users.
                value = _HIDDEN if entry.hidden else entry.value
                self.line(value if self.no_labels else "%slist %s = %s" % (kind, name, value))
        if not found:
            self.line('no address, domain, host, or local part list called "%s" exists' % name)
            self.ok = False

    def drivers(self, kind, name=None, names_only=False):
        instances = self._instances(kind)
        if names_only:
            for d in instances:
                self.line(d.name)
            return
        for d in instances:
            if name is None:
                self.line("\n%s %s:" % (d.name, kind))
            elif d.name != name:
                continue
            for opt in self._driver_table(kind, d):
                if not opt.hidden:
                    hidden = d.options.is_hidden(opt.name) and not self.admin
                    self.option(opt, d.options[opt.name], hidden)
            if name is not None:
                return
        if name is not None:
            self.line("%s %s not found" % (kind, name))
            self.ok = False

    @staticmethod
    def _driver_table(kind, dconf):
        """Generic options, then private ones in name order, as Exim's sorted tables print."""
        generic = GENERIC[kind]
        private = [opt for opt in dconf.options.table if opt.name not in generic]
        return list(generic) + sorted(private, key=lambda opt: opt.name)

    def _instances(self, kind):
        if kind == "transport":
            return list(self.config.transports.values())
        return self.config.routers if kind == "router" else self.config.authenticators

    def macros(self, name=None, names_only=False):
        if not self.admin:
            self.err.write("exim: permission denied\n")
            self.ok = False
            return
        for macro, value in self.config.macros.items():
            if name is None or macro == name:
                if names_only:
                    self.line(macro)
                else:
                    self.line(value if self.no_labels else "%s=%s" % (macro, value))
                if name is not None:
                    return
        if name is not None:
            self.line("macro %s not found" % name)
            self.ok = False

    def parsed_config(self):
        """-bP config: the configuration as read, laid out as Exim's print_config does."""
        self.line("# Exim Configuration (%s)" % EXIM_COMPAT_VERSION)
        indent = 0
        for raw in self.config.parsed_lines:
            text = _collapse_spaces(raw.lstrip())
            if not text:
                continue
            if text.startswith("#"):
                self.line(text)
            elif text.startswith("begin") and text[5:6].isspace():
                self.line("")
                self.line(text)
                indent = 2
            elif text.endswith(":") and "=" not in text:
                self.line("")
                self.line("  " + text)
                indent = 4
            elif not self.admin and (text[0].isupper() or re.match(r"hide\s", text)):
                name, equals, _value = text.partition("=")
                if equals:
                    self.line("%s%s= %s" % (" " * indent, name, _HIDDEN))
                else:
                    self.line("%s%s" % (" " * indent, _HIDDEN))
            else:
                self.line(" " * indent + text)

    def environment(self):
        """The environment Exim keeps for itself: keep_environment, then add_environment."""
        environment = kept_environment(self.config.main)
        for key in sorted(environment):
            self.line(key if self.no_labels else "%s=%s" % (key, environment[key]))


def kept_environment(main):
    """os.environ filtered by keep_environment (names, ^regexes, *wildcards; not
    expanded), plus the NAME=value items of add_environment."""
    patterns = split_list(main["keep_environment"] or "")
    kept = {}
    for name, value in os.environ.items():
        for pattern in patterns:
            if (pattern == name or (pattern.startswith("^") and re.search(pattern, name))
                    or (pattern.startswith("*") and name.endswith(pattern[1:]))):
                kept[name] = value
                break
    for item in split_list(main["add_environment"] or ""):
        name, equals, value = item.partition("=")
        if equals:
            kept[name] = value
    return kept


_HIDDEN = "<value not displayable>"


def _collapse_spaces(text):
    """Runs of white space become one space, up to a quote or $ (deliberate layout may follow)."""
    out = []
    i = 0
    while i < len(text):
        c = text[i]
        if not c.isspace():
            out.append(c)
            i += 1
            continue
        j = i
        while j < len(text) and text[j].isspace():
            j += 1
        out.append(" ")
        # Exim looks for the quote or $ where the next character was before
        # it closed the gap, so after a run of n spaces it tests the
        # character n-1 places further on; the layout follows that.
        probe = j + (j - i - 1)
        if probe < len(text) and text[probe] in "\"'$":
            out.append(text[j:])
            return "".join(out)
        i = j
    return "".join(out)


_PLURALS = {"routers": "router", "transports": "transport", "authenticators": "authenticator"}


def print_options_mode(inv):
    """-bP [item ...]: print main options, drivers, macros or named lists as Exim does."""
    path = config_path(inv)
    args = list(inv.args)
    if args[:1] in (["config_file"], ["configure_file"]) and len(args) == 1:
        sys.stdout.write(path + "\n")
        return 0
    config = load(path, inv.macros, record="config" in args)
    printer = OptionPrinter(config, sys.stdout, sys.stderr, is_admin(config),
                            getattr(inv, "no_labels", False))
    if not args:
        printer.all_main()
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg in ("router", "transport", "authenticator", "macro") and i < len(args):
            name = args[i]
            i += 1
            if arg == "macro":
                printer.macros(name)
            else:
                printer.drivers(arg, name)
        elif arg.startswith("+"):
            printer.named_list(arg[1:])
        elif arg in ("config_file", "configure_file"):
            printer.line(path)
        elif arg == "all":
            printer.all_main()
        elif arg in _PLURALS:
            printer.drivers(_PLURALS[arg])
        elif arg.endswith("_list") and arg[:-5] + "s" in _PLURALS:
            printer.drivers(_PLURALS[arg[:-5] + "s"], names_only=True)
        elif arg == "macros":
            printer.macros()
        elif arg == "macro_list":
            printer.macros(names_only=True)
        elif arg == "config":
            printer.parsed_config()
        elif arg == "environment":
            printer.environment()
        elif arg == "local_scan":
            printer.line("local_scan() options are not supported")
            printer.ok = False
        else:
            printer.main_option(arg)
    sys.stdout.flush()
    return 0 if printer.ok else 1

