"""Exim's command line: parse the flags into an Invocation and run one mode.

Each mode lives with the part of exim_py it belongs to (``-bP`` with the
configuration, ``-be`` with the expansion engine, ``-bd`` with the daemon...);
this module only parses and dispatches, so that adding a mode is one line in
``MODES`` and one function in its owner.  The program also answers as
``sendmail``, ``mailq``, ``newaliases``, ``rmail`` and ``runq`` when argv[0]
has that name, as Exim does.
"""

import importlib
import importlib.util
import os
import re
import sys

from exim_py import EXIM_COMPAT_VERSION, __version__
from exim_py.config.options import read_time
from exim_py.errors import ConfigError, UsageError

DEFAULT_CONFIG = "/etc/exim_py/exim.conf"

USAGE = """\
usage: exim_py [-C file] [-D NAME=value ...] [options] [recipient ...]
  -bV                 show version, features and drivers, then check the configuration
  -bP [option ...]    print configuration options (all, routers, transport NAME, macros ...)
  -be [string ...]    expand strings (from arguments, else from standard input)
  -bem FILE           as -be, with the message in FILE available to header variables
  -bd / -bdf          run the daemon (-bdf: stay in the foreground); -oX ports, -oP pidfile, -q<time>
  -bs                 an SMTP session on standard input and output
  -bh IP / -bhc IP    simulate an SMTP session from IP, running the ACLs, delivering nothing
  -bt / -bv ADDRESS   test routing / verify addresses
  -bf / -bF FILE      test a user / system filter against a message on stdin
                      (-bfl LOCALPART, -bfd DOMAIN, -bfp PREFIX, -bfs SUFFIX)
  -bp[c|r|u|a]        list the queue
  -q[q][i][f[f]][time] run the queue (once, or every <time> in the daemon)
  -M[c|rm|f|t|g|ar|md|vh|vb|vl] ID ...  act on queued messages
  -t, -i, -f ADDR, -F NAME, -od[i|b|q]  local submission (as sendmail)
  --help, --version
"""


class Invocation:
    """What the command line asked for."""

    def __init__(self):
        self.mode = "receive"          # see MODES
        self.mode_flag = ""            # the flag that chose the mode, e.g. "-bpc", "-Mrm"
        self.modes_given = set()       # every mode a flag asked for, the last one winning
        self.args = []                 # arguments after the options (recipients, ids, strings...)
        self.config_file = None
        self.macros = {}               # -D NAME=value, in order
        self.daemon_foreground = False
        self.listen = None             # -oX
        self.pid_file = None           # -oP
        self.tls_on_connect = False    # -tls-on-connect: every daemon port starts with TLS
        self.queue_interval = None     # -q<time> with -bd, in seconds
        self.queue_flags = ""          # the q/i/f/ff/l part of -q...
        self.queue_select_recipient = None   # -R
        self.queue_select_sender = None      # -S
        self.delivery_mode = None      # -od?: "i", "b", "q", "qs", "f"
        self.queue_smtp = False        # -odqs: route now, leave SMTP deliveries queued
        self.extract_recipients = False  # -t
        self.dot_ends = True           # -i / -oi turn this off
        self.sender = None             # -f
        self.sender_name = None        # -F
        self.error_mode = None         # -oe?
        self.host_check_address = None  # -bh / -bhc IP
        self.message_file = None       # -bem FILE
        self.verbose = False
        self.debug = None
        self.dont_deliver = False      # -N
        self.received_protocol = None  # -oMr
        self.sender_host_address = None  # -oMa
        self.sender_ident = None       # -oMt
        self.sender_host_name = None   # -oMs
        self.oM = {}                   # every -oM? value, keyed by the letter(s)
        self.argv0 = "exim_py"
        self.no_labels = False         # -n with -bP
        self.filter_file = None        # -bf FILE
        self.system_filter_file = None  # -bF FILE
        self.filter_local_part = None  # -bfl, -bfd, -bfp, -bfs: the -bf recipient
        self.filter_domain = None
        self.filter_prefix = None
        self.filter_suffix = None


# mode -> (module, function).  A mode whose module is not part of this build
# says so plainly instead of pretending.
MODES = {
    "version": ("exim_py.config.show", "version_mode"),
    "print_options": ("exim_py.config.show", "print_options_mode"),
    "expand": ("exim_py.expand.be", "expand_mode"),
    "daemon": ("exim_py.daemon", "daemon_mode"),
    "smtp_stdio": ("exim_py.smtp.stdio", "smtp_stdio_mode"),
    "host_check": ("exim_py.smtp.stdio", "host_check_mode"),
    "address_test": ("exim_py.delivery.addrtest", "address_test_mode"),
    "verify": ("exim_py.delivery.addrtest", "verify_mode"),
    "queue_list": ("exim_py.spool.listing", "queue_list_mode"),
    "queue_run": ("exim_py.delivery.queuerun", "queue_run_mode"),
    "message_action": ("exim_py.delivery.msgactions", "message_action_mode"),
    "receive": ("exim_py.delivery.submit", "receive_mode"),
    "newaliases": ("exim_py.delivery.submit", "newaliases_mode"),
    "filter_test": ("exim_py.filter.bftest", "filter_test_mode"),
    "log_line": ("exim_py.delivery.msgactions", "log_line_mode"),
}

def parse_time(text):
    """A -q<time> value as Exim reads it ('30m', '1h30m'): every number needs a unit."""
    seconds = read_time(text)
    if seconds < 0:
        raise UsageError("bad time value %r" % (text,))
    return seconds


def parse_args(argv):
    """Parse Exim's command line (without argv[0]) into an Invocation."""
    inv = Invocation()
    args = list(argv)
    i = 0

    def take(flag):
        nonlocal i
        i += 1
        if i >= len(args):
            raise UsageError("%s requires an argument" % flag)
        return args[i]

    while i < len(args):
        a = args[i]
        if a == "--":
            i += 1
            break
        if not a.startswith("-") or a == "-":
            break
        if a == "--help":
            inv.mode = "help"
        elif a == "--version":
            inv.mode = "version_short"
        elif a == "-C":
            inv.config_file = take(a)
        elif a.startswith("-C"):
            inv.config_file = a[2:]
        elif a.startswith("-D"):
            spec = a[2:] or take(a)
            name, eq, value = spec.partition("=")
            name = name.strip()
            if not re.match(r"^[A-Z][A-Za-z0-9_]*$", name):
                raise UsageError("macro name set by -D must start with an upper-case letter: %r" % name)
            inv.macros[name] = value.strip() if eq else ""
        elif a == "-z":
            # -z TEXT: write TEXT to the main log (an administrator's note)
            inv.mode, inv.mode_flag = "log_line", a
            inv.log_text = take(a)
        elif a == "-bV":
            inv.mode, inv.mode_flag = "version", a
        elif a == "-bP":
            inv.mode, inv.mode_flag = "print_options", a
        elif a in ("-be", "-bem"):
            inv.mode, inv.mode_flag = "expand", a
            if a == "-bem":
                inv.message_file = take(a)
        elif a in ("-bd", "-bdf"):
            inv.mode, inv.mode_flag = "daemon", a
            inv.daemon_foreground = a == "-bdf"
        elif a == "-bs":
            inv.mode, inv.mode_flag = "smtp_stdio", a
        elif a in ("-bh", "-bhc"):
            inv.mode, inv.mode_flag = "host_check", a
            inv.host_check_address = take(a)
        elif a in ("-bf", "-bF"):
            # Both may be given: the system filter is tested first.
            inv.mode, inv.mode_flag = "filter_test", a
            setattr(inv, "filter_file" if a == "-bf" else "system_filter_file", take(a))
        elif a in ("-bfd", "-bfl", "-bfp", "-bfs"):
            name = {"d": "domain", "l": "local_part", "p": "prefix", "s": "suffix"}[a[3]]
            setattr(inv, "filter_" + name, take(a))
        elif a == "-bt":
            inv.mode, inv.mode_flag = "address_test", a
        elif a in ("-bv", "-bvs"):
            inv.mode, inv.mode_flag = "verify", a
        elif re.match(r"^-bp[acru]*$", a):
            inv.mode, inv.mode_flag = "queue_list", a
        elif a == "-bm":
            # reading a message is what Exim does anyway: -bm changes no other mode
            if inv.mode == "receive":
                inv.mode_flag = a
        elif a == "-bi":
            inv.mode, inv.mode_flag = "newaliases", a
        elif re.match(r"^-M(c|rm|f|t|g|ar|md|vh|vb|vl|es|mad)?$", a):
            inv.mode, inv.mode_flag = "message_action", a
        elif a.startswith("-q") and re.match(r"^-q(q)?(i)?(f{0,2})?(l)?(.*)$", a):
            m = re.match(r"^-q(q?i?f{0,2}l?)(.*)$", a)
            flags, rest = m.group(1), m.group(2)
            inv.queue_flags = flags
            if rest.startswith(("R", "S")):
                sel = rest[0]
                value = take(a)
                if sel == "R":
                    inv.queue_select_recipient = value
                else:
                    inv.queue_select_sender = value
            elif rest:
                inv.queue_interval = parse_time(rest)
            if inv.mode != "daemon":
                inv.mode, inv.mode_flag = "queue_run", a
        elif a in ("-R", "-Rf", "-Rff", "-S", "-Sf", "-Sff"):
            value = take(a)
            if a.startswith("-R"):
                inv.queue_select_recipient = value
            else:
                inv.queue_select_sender = value
            inv.queue_flags = a[2:]
            inv.mode, inv.mode_flag = "queue_run", a
        elif a == "-odqs":
            # SMTP deliveries only are queued; a foreground -odi/-odf
            # given with it still holds, as in Exim.
            inv.queue_smtp = True
            if inv.delivery_mode not in ("i", "f"):
                inv.delivery_mode = "qs"
        elif re.match(r"^-od[ibqf]s?$", a):
            inv.delivery_mode = a[3:]
        elif a == "-oX":
            inv.listen = take(a)
        elif a == "-oP":
            inv.pid_file = take(a)
        elif a == "-tls-on-connect":
            inv.tls_on_connect = True
        elif a in ("-oi", "-i"):
            inv.dot_ends = False
        elif re.match(r"^-oe[empqw]$", a):
            inv.error_mode = a[3]
        elif a.startswith("-oM") and len(a) > 3:
            key = a[3:]
            value = take(a)
            inv.oM[key] = value
            if key == "a":
                inv.sender_host_address = value
            elif key == "r":
                inv.received_protocol = value
            elif key == "s":
                inv.sender_host_name = value
            elif key == "t":
                inv.sender_ident = value
        elif a == "-t":
            inv.extract_recipients = True
        elif a == "-f" or a == "-r":
            inv.sender = take(a)
        elif a.startswith("-f") or (a.startswith("-r") and len(a) > 2):
            inv.sender = a[2:]
        elif a == "-F":
            inv.sender_name = take(a)
        elif a.startswith("-F"):
            inv.sender_name = a[2:]
        elif a == "-N":
            inv.dont_deliver = True
        elif a == "-v":
            inv.verbose = True
        elif a.startswith("-d"):
            inv.debug = a[2:]
        elif a == "-n":
            inv.no_labels = True       # -bP: values only; for sendmail, "no aliasing" (ignored)
        elif a in ("-m", "-om", "-oo", "-x", "-U", "-Ac", "-Am", "-oA", "-oB", "-odb"):
            pass  # sendmail flags Exim accepts and ignores
        elif a.startswith(("-oB", "-oL", "-ov", "-B", "-L", "-h", "-X")):
            pass  # likewise ignored; -B/-X/-h take their values attached
        else:
            raise UsageError("unknown, unsupported or incomplete option: %s" % a)
        inv.modes_given.add(inv.mode)
        i += 1
    inv.args = args[i:]
    return inv


# Modes Exim refuses to combine with -bs (its check of the options as a whole).
NOT_WITH_SMTP_INPUT = {"address_test", "verify", "print_options", "daemon", "newaliases",
                       "filter_test", "queue_run"}


def incompatible(inv):
    """Does the command line combine -bs with what Exim refuses alongside it
    (-f, -t, -bt, -bv, -bP, -bd, -bi, -bf/-bF, a queue run)?"""
    return "smtp_stdio" in inv.modes_given and bool(
        inv.sender is not None or inv.extract_recipients or inv.modes_given & NOT_WITH_SMTP_INPUT)


def config_path(inv):
    """The configuration file to use: -C, else $EXIM_PY_CONFIG, else the built-in default."""
    return inv.config_file or os.environ.get("EXIM_PY_CONFIG") or DEFAULT_CONFIG


def _argv0_defaults(inv, name):
    """sendmail, mailq, newaliases, rmail and runq behave as Exim does under those names."""
    if name == "mailq" and inv.mode == "receive":
        inv.mode, inv.mode_flag = "queue_list", "-bp"
    elif name == "newaliases" and inv.mode == "receive":
        inv.mode, inv.mode_flag = "newaliases", "-bi"
    elif name == "runq" and inv.mode == "receive":
        inv.mode, inv.mode_flag = "queue_run", "-q"
    elif name == "rmail":
        inv.dot_ends = False


def main(argv=None):
    """The command-line entry point: returns the process exit status."""
    if argv is None:
        argv = sys.argv
    name = os.path.basename(argv[0]) if argv else "exim_py"
    try:
        inv = parse_args(argv[1:])
    except UsageError as e:
        sys.stderr.write("exim_py: %s\n%s" % (e, USAGE))
        return 1
    inv.argv0 = name
    if incompatible(inv):
        sys.stderr.write("exim: incompatible command-line options or arguments\n")
        return 1
    _argv0_defaults(inv, name)
    if inv.mode == "help":
        sys.stdout.write(USAGE)
        return 0
    if inv.mode == "version_short":
        sys.stdout.write("exim_py version %s (Exim %s compatible)\n" % (__version__, EXIM_COMPAT_VERSION))
        return 0
    if inv.mode == "receive" and not inv.args and not inv.extract_recipients:
        sys.stderr.write("exim_py: no recipients given and -t not set\n%s" % USAGE)
        return 1
    module_name, func_name = MODES[inv.mode]
    if importlib.util.find_spec(module_name) is None:
        sys.stderr.write("exim_py: %s is not available in this version of exim_py yet\n"
                         % (inv.mode_flag or inv.mode))
        return 2
    handler = getattr(importlib.import_module(module_name), func_name)
    try:
        return handler(inv) or 0
    except ConfigError as e:
        sys.stderr.write("%s\n" % e)
        return 1
    except UsageError as e:
        sys.stderr.write("exim_py: %s\n" % e)
        return 1
    except KeyboardInterrupt:
        return 130
