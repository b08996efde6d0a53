"""``exim_py -be`` / ``-bem FILE``: expansion testing from the command line.

As ``exim -be``: each argument is expanded and printed on its own line
(``Failed: <message>`` when the expansion fails); without arguments, lines
are read from standard input, each preceded by a "> " prompt, a trailing
backslash joining the next line (whose leading white space is dropped).
Configuration macros are replaced in each line first, and a line starting
with an upper-case letter defines a macro.  ``-bem`` reads a message (headers
then body) so that header and body variables have values.  The exit status
is 0, as Exim's.
"""

import importlib.util
import os
import pwd
import re
import sys

from exim_py.errors import ExpansionError
from exim_py.expand import ExpandContext, expand
from exim_py.expand.headers import header_type
from exim_py.hostport import checked_address


def _load_config(inv):
    """The configuration for -C (or the default file), or None without one."""
    if importlib.util.find_spec("exim_py.config.loader") is None:
        return None
    from exim_py import config as config_pkg
    load = getattr(config_pkg, "load", None)
    if load is None:
        return None
    from exim_py.cli import config_path
    path = config_path(inv)
    if not inv.config_file and not os.path.exists(path):
        return None
    return load(path, inv.macros)


def _login():
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


# -oM<key> value -> the variables it sets (Exim's "-oM" options).
_OM_VARIABLES = {
    "s": ("sender_host_name",), "r": ("received_protocol",), "t": ("sender_ident",),
    "aa": ("sender_host_authenticated",), "ai": ("authenticated_id",),
    "as": ("authenticated_sender",),
}


def build_context(inv, config):
    """The context -be expands in: the caller as a local sender, -oM* values."""
    ctx = ExpandContext(config=config, first_delivery=False)
    if config is not None:
        from exim_py.acl.engine import install_acl_runner
        install_acl_runner(ctx, config)           # ${acl} works in -be, as in Exim
    if config is None:
        ctx.set("config_file", "")
    from exim_py.expand.variables import qualify_domain
    login = _login()
    oM = getattr(inv, "oM", {}) or {}
    ctx.set("sender_address", "%s@%s" % (login, qualify_domain(ctx)))
    ctx.set("sender_ident", login)
    if "a" not in oM:
        # A local caller counts as authenticated by its login (spec: $authenticated_id).
        ctx.set("authenticated_id", login)
        ctx.set("authenticated_sender", "%s@%s" % (login, qualify_domain(ctx)))
    for key, names in ((("a",), ("sender_host_address", "sender_host_port")),
                       (("i",), ("interface_address", "interface_port"))):
        if key[0] in oM:
            address, port = checked_address(oM[key[0]])
            ctx.set(names[0], address)
            ctx.set(names[1], port)
            if key[0] == "i":
                ctx.set("received_ip_address", address)
                ctx.set("received_port", port)
    for key, names in _OM_VARIABLES.items():
        if key in oM:
            for name in names:
                ctx.set(name, oM[key])
    if inv.sender is not None:
        ctx.set("sender_address", inv.sender)
    return ctx


def load_message(ctx, path):
    """Read a message file for -bem: header variables, body and size variables."""
    from exim_py.envelope import Header
    with open(path, "rb") as f:
        raw = f.read()
    # Held as the spool holds a message: UTF-8, other bytes surrogate escapes.
    data = raw.decode("utf-8", "surrogateescape")
    lines = data.split("\n")
    headers = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.rstrip("\r") == "":
            i += 1
            break
        if line[:1] in (" ", "\t") and headers:
            headers[-1] += line + "\n"
        else:
            headers.append(line + "\n")
        i += 1
    body = "\n".join(lines[i:])
    ctx.headers = [Header(text, header_type(text.split(":", 1)[0].strip()))
                   for text in headers]
    ctx.body = body
    ctx.set("message_size", len(raw))
    ctx.set("message_body_size", len(body.encode("utf-8", "surrogateescape")))
    ctx.set("body_linecount", body.count("\n"))
    ctx.set("message_linecount", data.count("\n"))


class Macros:
    """Replace configuration macros in a line, as Exim does in -be input: a
    macro name is replaced wherever it appears, the longest name first."""

    def __init__(self, macros):
        self.values = dict(macros or {})
        self._index()

    def _index(self):
        # Names grouped by their first two characters; one regex finds the
        # places where a name may start, so a line is scanned once.
        self.by_prefix = {}
        for name in sorted(self.values, key=len, reverse=True):
            self.by_prefix.setdefault(name[:2], []).append(name)
        prefixes = sorted(self.by_prefix, key=len, reverse=True)
        self.finder = re.compile("|".join(re.escape(p) for p in prefixes)) if prefixes else None

    def define(self, name, value):
        self.values[name] = value
        self._index()

    def replace(self, text):
        if self.finder is None or not self.finder.search(text):
            return text
        out = []
        i = 0
        n = len(text)
        while i < n:
            m = self.finder.search(text, i)
            if m is None:
                break
            j = m.start()
            for name in self.by_prefix.get(text[j:j + 2], []) + \
                    self.by_prefix.get(text[j:j + 1], []):
                if text.startswith(name, j):
                    out.append(text[i:j])
                    out.append(self.values[name])
                    i = j + len(name)
                    break
            else:
                out.append(text[i:j + 1])
                i = j + 1
        out.append(text[i:])
        return "".join(out)


class Tester:
    """Expands lines as exim -be does, with the configuration's macros.

    A line starting with an upper-case letter (before or after macro
    replacement) is a macro definition; a malformed one, or one whose name
    overlaps an existing macro's, is reported on standard error only.
    """

    def __init__(self, ctx, macros):
        self.ctx = ctx
        self.macros = Macros(macros)

    def line(self, text):
        """The output line for input ``text``, or None when it prints nothing
        (a malformed macro definition: Exim reports it on standard error)."""
        if text[:1].isupper() and text[:1].isascii():
            return self.define(text)
        text = self.macros.replace(text)
        if text[:1].isupper() and text[:1].isascii():
            return self.define(text)
        try:
            return expand(text, self.ctx)
        except ExpansionError as e:
            return "Failed: %s" % e
        except Exception as e:      # a bug in exim_py: report it, carry on
            import traceback
            traceback.print_exc()
            return "Failed: internal error in exim_py: %r" % (e,)

    def define(self, text):
        m = re.match(r"([A-Z][A-Za-z0-9_]*)\s*(==|=)\s*(.*)$", text)
        if not m:
            return self._error("malformed macro definition")
        name, op, value = m.groups()
        for other in self.macros.values:
            if other == name:
                if op == "=":
                    return self._error('macro "%s" is already defined (use "==" if you want '
                                       'to redefine it' % name)
            elif other in name:
                return self._error('"%s" cannot be defined as a macro because previously '
                                   'defined macro "%s" is a substring' % (name, other))
            elif name in other:
                return self._error('"%s" cannot be defined as a macro because it is a '
                                   'substring of previously defined macro "%s"' % (name, other))
        self.macros.define(name, self.macros.replace(value))
        return "Defined macro '%s'" % name

    @staticmethod
    def _error(message):
        sys.stderr.write("exim_py: %s\n" % message)
        return None


# Exim reads -be arguments as if they were recipients (at most 256 bytes)
# and standard input through a 1024-byte buffer (longer lines are split).
ARG_MAX = 256
LINE_MAX = 1023


def _read_logical_line(stream):
    """One -be input line with continuations joined, or None at end of input."""
    pieces = []
    first = True
    while True:
        raw = stream.readline(LINE_MAX)
        if not raw:
            return "".join(pieces) if not first else None
        line = raw.decode("utf-8", "surrogateescape").rstrip(" \t\n\r\f\v")
        if not first:
            line = line.lstrip(" \t\n\r\f\v")
        first = False
        pieces.append(line)
        if not line or not "".join(pieces).endswith("\\"):
            return "".join(pieces)
        pieces[-1] = pieces[-1][:-1]


def _c_string(text):
    """Exim prints C strings: a NUL produced by an escape ends the result."""
    return text.split("\0", 1)[0] if "\0" in text else text


def _out(text):
    sys.stdout.buffer.write(text.encode("utf-8", "surrogateescape"))


def expand_mode(inv):
    config = _load_config(inv)
    ctx = build_context(inv, config)
    if inv.message_file:
        try:
            load_message(ctx, inv.message_file)
        except OSError as e:
            sys.stderr.write("exim_py: failed to open %s: %s\n" % (inv.message_file, e.strerror))
            return 1
    macros = getattr(config, "macros", None) or dict(inv.macros)
    tester = Tester(ctx, macros)
    if inv.args:
        for arg in inv.args:
            data = os.fsencode(arg)
            if len(data) > ARG_MAX:
                sys.stdout.flush()
                sys.stderr.write("exim_py: length limit exceeded (%d > %d) for: recipient\n"
                                 % (len(data), ARG_MAX))
                return 1
            result = tester.line(data.decode("utf-8", "surrogateescape"))
            if result is not None:
                _out(_c_string(result) + "\n")
        sys.stdout.flush()
        return 0
    stdin = sys.stdin.buffer
    _out("> ")
    while True:
        sys.stdout.flush()      # the prompt is seen before input is read
        text = _read_logical_line(stdin)
        if text is None:
            _out("\n")
            break
        result = tester.line(text)
        _out("> " if result is None else _c_string(result) + "\n> ")
    sys.stdout.flush()
    return 0
