"""Option types, option tables and the values a configuration gives them.

Every option exim_py knows is declared once, as an ``Option`` in an
``OptionTable`` next to its owner (main options in ``main_options.py``,
generic driver options in ``generic_options.py``, private driver options in
the driver's module).  The loader, ``-bP`` and the tests all read the same
tables.  Reading a setting follows Exim's ``readconf_handle_option`` (spec
chapter "The Exim runtime configuration file", section "Common option
syntax"), including its error texts; printing follows ``-bP``.
"""

import grp
import pwd
import re

from exim_py.errors import ConfigError, ExpansionError
from exim_py.expand import expand
# Exim's readconf_readtime and readconf_printtime, shared with the expansions.
from exim_py.expand.arith import print_time as format_time, read_time
from exim_py.expand.lists import iter_list, list_separator, split_list

# Option types (see HACKING.rst for the Python type of each value).
BOOL = "boolean"
INT = "integer"            # decimal, 0-octal, 0x-hex, K/M/G/T suffixes
OCTINT = "octal integer"   # file modes: read in octal, printed with a leading 0
FIXED = "fixed-point"      # three decimal places; unset is None
TIME = "time"              # 1d2h30m10s, in seconds
SIZE = "size"              # an integer printed with a K or M suffix when exact
KSIZE = "size in K"        # held in kilobytes by Exim (check_spool_space): K..T
STRING = "string"
UID = "uid"                # a user name or number
GID = "gid"                # a group name or number
UIDLIST = "uid list"
GIDLIST = "gid list"
LIST = "string list"
HOSTLIST = "host list"
DOMAINLIST = "domain list"
ADDRESSLIST = "address list"
LOCALPARTLIST = "local part list"
TIMELIST = "time list"

#: Types whose value is kept as the raw string from the file.
STRING_TYPES = frozenset({STRING, LIST, HOSTLIST, DOMAINLIST, ADDRESSLIST,
                          LOCALPARTLIST, UIDLIST, GIDLIST})

_INT_MAX = 2 ** 31 - 1
# What C's strtol accepts: base 0 (0x hex, leading-0 octal, decimal) or base 8.
_C_INTEGER = r"\s*[+-]?(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)"
_OCTAL = r"\s*[+-]?[0-7]+"


class Option:
    """One option: its name, type, default value and a one-line description.

    ``expand`` marks a string expanded at use (Exim's ``string*``).
    ``hidden`` options are accepted but not listed by ``-bP`` (synonyms).
    ``repeat`` is the separator with which a second setting is appended to
    the first (``headers_add``, ``set``...) instead of being an error;
    ``repeat="condition"`` combines ``condition`` settings as Exim does.
    ``dollar_string`` lets a boolean or uid/gid option take an expandable
    string instead when its value contains ``$`` (``more``, ``user``...).
    ``synonym_of`` names the option whose value a (hidden) old name sets.
    """

    def __init__(self, name, type, default=None, doc="", expand=False, hidden=False,
                 repeat=None, dollar_string=False, max_items=None, synonym_of=None):
        self.name = name
        self.type = type
        self.default = default
        self.doc = doc
        self.expand = expand
        self.hidden = hidden
        self.repeat = repeat
        self.dollar_string = dollar_string
        self.max_items = max_items
        self.synonym_of = synonym_of

    def __repr__(self):
        return "Option(%r, %r, %r)" % (self.name, self.type, self.default)


class OptionTable:
    """An ordered collection of options, looked up by name."""

    def __init__(self, options=()):
        self._options = {}
        for opt in options:
            self.add(opt)

    def add(self, opt):
        if opt.name in self._options:
            raise ValueError("option %r declared twice" % opt.name)
        self._options[opt.name] = opt

    def get(self, name):
        return self._options.get(name)

    def __contains__(self, name):
        return name in self._options

    def __iter__(self):
        return iter(self._options.values())

    def __len__(self):
        return len(self._options)

    def names(self):
        return list(self._options)

    def __add__(self, other):
        return OptionTable(list(self) + list(other))


class OptionValues:
    """The values of the options of one table, as set by a configuration.

    Every option has a value (its default until the file sets it);
    ``values["name"]`` and ``values.name`` both work.  ``is_set(name)`` tells
    whether the file set it; ``is_hidden(name)`` whether it was set with the
    ``hide`` prefix.
    """

    def __init__(self, table, defaults=None):
        object.__setattr__(self, "table", table)
        values = {opt.name: opt.default for opt in table}
        values.update(defaults or {})
        object.__setattr__(self, "_values", values)
        object.__setattr__(self, "_given", set())
        object.__setattr__(self, "_written", set())     # option names as the file wrote them
        object.__setattr__(self, "_secure", set())

    def __getitem__(self, name):
        return self._values[name]

    def __getattr__(self, name):
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name, value):
        raise AttributeError("configuration values are read-only")

    def __contains__(self, name):
        return name in self._values

    def get(self, name, default=None):
        return self._values.get(name, default)

    def is_set(self, name):
        return name in self._given

    def is_hidden(self, name):
        return name in self._secure

    def items(self):
        return self._values.items()

    def set_default(self, name, value):
        """Give an option that the file did not set the default Exim works out
        when it initialises a driver (for a driver's ``validate(dconf)``)."""
        if name not in self._given:
            self._values[name] = value

    # Mutators used only while loading.
    def _store(self, name, value, given=True):
        self._values[name] = value
        if given:
            self._given.add(name)


def dequote(text):
    """Exim's string_dequote: a double-quoted value with backslash escapes.

    Returns (value, rest, closed) where ``rest`` is what follows the closing
    quote and ``closed`` tells whether there was one.
    """
    out = []
    i = 1
    n = len(text)
    while i < n and text[i] != '"':
        c = text[i]
        if c == "\\" and i + 1 < n:
            value, i = _escape(text, i + 1)
            out.append(value)
            continue
        out.append(c)
        i += 1
    # Escapes give bytes, as in Exim: keep those above 127 as surrogate
    # escapes and let any that form UTF-8 become the characters they spell.
    value = "".join(out).encode("utf-8", "surrogateescape").decode("utf-8", "surrogateescape")
    if i < n:
        return value, text[i + 1:], True
    return value, "", False


_SIMPLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "v": "\v", "e": "\x1b"}


def _escape(text, i):
    """Decode the escape starting at text[i] (after the backslash): (char, next index)."""
    c = text[i]
    if c in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[c], i + 1
    m = re.match(r"[0-7]{1,3}", text[i:])
    if m:
        return _byte(int(m.group(0), 8) & 0xFF), i + len(m.group(0))
    if c == "x":
        m = re.match(r"[0-9A-Fa-f]{1,2}", text[i + 1:])
        if m:
            return _byte(int(m.group(0), 16)), i + 1 + len(m.group(0))
    return c, i + 1


def _byte(value):
    """One byte as text: ASCII itself, anything above as a surrogate escape."""
    return chr(value) if value < 128 else chr(0xDC00 + value)


def printing(s):
    """Exim's string_printing: anything but printable ASCII shown as an escape (for -bP).

    Bytes outside ASCII (UTF-8 text included) come out as octal escapes, as
    Exim shows them unless print_topbitchars is set.
    """
    out = []
    for byte in s.encode("utf-8", "surrogateescape"):
        c = chr(byte)
        if 32 <= byte < 127:
            out.append(c)
        else:
            out.append(_PRINT_ESCAPES.get(c, "\\%03o" % byte))
    return "".join(out)


_PRINT_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\b": "\\b", "\f": "\\f",
                  "\v": "\\v"}


def find_user(name):
    """A passwd entry for a user name or number (Exim's route_finduser), or None."""
    if name.isdigit():
        try:
            return pwd.getpwuid(int(name))
        except KeyError:
            return _NumericId(int(name))
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def find_group(name):
    """A gid for a group name or number (Exim's route_findgroup), or None."""
    if name.isdigit():
        return int(name)
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None


class _NumericId:
    """A uid given as a number that has no passwd entry."""

    def __init__(self, uid):
        self.pw_uid = uid
        self.pw_gid = None


class SettingParser:
    """Applies ``name = value`` lines to an ``OptionValues`` as Exim does.

    ``unknown`` is the error text for an unknown option (with ``%s`` for its
    name), or None to return False so that the caller can try another table
    (a driver's generic options, then its private ones).
    """

    def __init__(self, filename, line):
        self.filename = filename
        self.line = line

    def error(self, message):
        return ConfigError(message, self.filename, self.line)

    def extra_chars(self, rest, *parts):
        comment = " (# is comment only at line start)" if rest.startswith("#") else ""
        return self.error("extra characters follow %s%s" % ("".join(parts), comment))

    def apply(self, values, text, unknown):
        m = re.match(r"\s*", text)
        s = text[m.end():]
        if not s[:1].isalpha():
            raise self.error("option setting expected: %s" % s)
        secure = False
        for _ in range(2):
            m = re.match(r"[A-Za-z0-9_]*", s)
            name = m.group(0)
            s = s[m.end():].lstrip()
            if name != "hide":
                break
            secure = True
        positive = True
        base = name
        if name.startswith("no_"):
            positive, base = False, name[3:]
        if name.startswith("not_"):
            positive, base = False, name[4:]
        opt = values.table.get(base)
        if opt is None:
            if unknown is None:
                return False
            raise self.error(unknown % name)
        # Exim keeps one "set" flag per table entry, so an old synonym and the
        # option it stands for may each be set once.
        written = opt.name
        if written in values._written and opt.repeat is None:
            raise self.error('"%s" option set for the second time' % name)
        values._written.add(written)
        targets = [opt]
        if opt.synonym_of:
            names = opt.synonym_of if isinstance(opt.synonym_of, tuple) else (opt.synonym_of,)
            targets = [values.table.get(n) for n in names]
            opt = targets[0]
        if secure:
            values._secure.add(opt.name)
        if opt.type != BOOL:
            if not positive:
                raise self.error("negation prefix applied to a non-boolean option")
            if not s:
                raise self.error("unexpected end of line (data missing) after %s" % name)
            if s[0] != "=":
                raise self.error('missing "=" after %s' % name)
        elif s and (not positive or s[0] != "="):
            raise self.extra_chars(s, "boolean option ", name)
        if s.startswith("="):
            s = s[1:].lstrip()
        value = self._convert(values, opt, name, s, positive)
        for target in targets:
            values._store(target.name, value)
        return True

    def read_string(self, s, name):
        """A string value: verbatim, or quoted with escapes (readconf.c read_string)."""
        if not s.startswith('"'):
            return s
        value, rest, closed = dequote(s)
        if not closed or len(s) == 1:
            raise self.error("missing quote at end of string value for %s" % name)
        if rest:
            raise self.extra_chars(rest, "string value for ", name)
        return value

    def _convert(self, values, opt, name, s, positive):
        t = opt.type
        if t == BOOL:
            if opt.dollar_string and "$" in s:
                return self.read_string(s, name)
            if not s:
                return positive
            m = re.match(r"[A-Za-z][A-Za-z0-9_]*|", s)
            word = m.group(0)
            rest = s[m.end():].lstrip()
            if word.lower() in ("true", "yes"):
                result = True
            elif word.lower() in ("false", "no"):
                result = False
            else:
                raise self.error('"%s" is not a valid value for the "%s" option' % (word, name))
            if rest:
                raise self.extra_chars(rest, '"%s" ' % word, "for boolean option ", name)
            return result
        if t in (INT, OCTINT, SIZE):
            return self._integer(s, name, octal=(t == OCTINT))
        if t == KSIZE:
            return self._ksize(s, name)
        if t == FIXED:
            return self._fixed(s, name)
        if t == TIME:
            if opt.dollar_string and s.startswith("$"):
                return s
            value = read_time(s)
            if value < 0:
                raise self.error("invalid time value for %s" % name)
            return value
        if t == TIMELIST:
            return self._timelist(opt, s, name)
        value = self.read_string(s, name)
        if t == UID or t == GID:
            return self._id(values, opt, name, value)
        if t in (UIDLIST, GIDLIST) and "$" in value:
            # Exim expands these lists once, when it reads them.
            try:
                value = expand(value)
            except ExpansionError as e:
                raise self.error("failed to expand %s: %s" % (name, e))
        if t == UIDLIST:
            for item in split_list(value):
                if find_user(item) is None:
                    raise self.error("user %s was not found" % item)
        elif t == GIDLIST:
            for item in split_list(value):
                if find_group(item) is None:
                    raise self.error("group %s was not found" % item)
        if opt.repeat == "condition":
            old = values[opt.name] if values.is_set(opt.name) else None
            return value if old is None else "${if and{{bool_lax{%s}}{bool_lax{%s}}}}" % (old, value)
        if opt.repeat:
            return _append_list(values[opt.name] if values.is_set(opt.name) else None,
                                value, opt.repeat)
        return value

    def _integer(self, s, name, octal=False):
        kind = "octal " if octal else ""
        m = re.match(_OCTAL if octal else _C_INTEGER, s)
        if not m:
            raise self.error("%sinteger expected for %s" % (kind, name))
        value = _strtol(m.group(0).strip(), octal)
        rest = s[m.end():]
        if rest[:1] and rest[0] in "TtGgMmKk":
            value *= 1024 ** ("KMGT".index(rest[0].upper()) + 1)
            rest = rest[1:]
        if abs(value) > _INT_MAX:
            raise self.error('absolute value of integer "%s" is too large (overflow)' % s)
        rest = rest.lstrip()
        if rest:
            raise self.extra_chars(rest, kind, "integer value for ", name)
        return value

    def _ksize(self, s, name):
        m = re.match(_C_INTEGER, s)
        if not m:
            raise self.error("integer expected for %s" % name)
        kilobytes = _strtol(m.group(0).strip())
        rest = s[m.end():]
        if rest[:1] and rest[0] in "ZzEePpTtGgMmKk":
            kilobytes *= 1024 ** "KMGTPEZ".index(rest[0].upper())
            rest = rest[1:]
        rest = rest.lstrip()
        if rest:
            raise self.extra_chars(rest, "", "integer value for ", name)
        return kilobytes * 1024

    def _fixed(self, s, name):
        m = re.match(r"\s*([+-]?\d+)", s)
        if not m:
            raise self.error("fixed-point number expected for %s" % name)
        whole = int(m.group(1))
        if whole < 0 or whole * 1000 > _INT_MAX:
            raise self.error('integer "%s" is too large (overflow)' % s)
        thousandths = whole * 1000
        pos = m.end()
        if s[pos:pos + 1] == ".":
            pos += 1
            scale = 100
            while pos < len(s) and s[pos].isdigit():
                thousandths += int(s[pos]) * scale
                scale //= 10
                pos += 1
        rest = s[pos:].lstrip()
        if rest:
            raise self.extra_chars(rest, "fixed-point value for ", name, "")
        return thousandths / 1000.0

    def _timelist(self, opt, s, name):
        times = []
        limit = opt.max_items or 10
        while s:
            if len(times) >= limit:
                raise self.error("too many time values for %s" % name)
            item, colon, rest = s.partition(":")
            value = read_time(item.rstrip())
            if value < 0:
                raise self.error("invalid time value for %s" % name)
            if times and value <= times[-1]:
                raise self.error("time value out of order for %s" % name)
            times.append(value)
            if not colon:
                break
            s = rest.lstrip()
        if times and times[0] == 0:
            return []
        return times

    def _id(self, values, opt, name, value):
        if opt.dollar_string and "$" in value:
            return value
        if opt.type == UID:
            pw = find_user(value)
            if pw is None:
                raise self.error("user %s was not found" % value)
            # A user given by name also sets the matching group unless the
            # group was set already (readconf.c does this for *_user / *_group).
            group = opt.name[:-4] + "group" if opt.name.endswith("user") else None
            if (pw.pw_gid is not None and group in values.table
                    and values.table.get(group).type == GID and values.get(group) is None):
                values._store(group, pw.pw_gid, given=False)
            return pw.pw_uid
        gid = find_group(value)
        if gid is None:
            raise self.error("group %s was not found" % value)
        return gid


def _append_list(old, value, sep):
    """A repeatable option: each item of ``value`` (a list whose separator is
    ``sep`` unless it starts with ``<``) is added to ``old``, separated by
    ``sep`` (readconf.c, opt_rep_str).  Returns None while the list is empty."""
    change, start = list_separator(value)
    items = iter_list(value[start:], change if start else sep)
    out = [old] if old else []
    out.extend(item.replace(sep, sep + sep) for item in items)
    return sep.join(out) if out else None


def _strtol(digits, octal=False):
    """C's strtol with base 0 (or 8): 0x for hex, a leading 0 for octal."""
    if octal or re.match(r"[+-]?0[0-7]+$", digits):
        return int(digits, 8)
    return int(digits, 0)


def format_value(opt, value, hidden=False):
    """One -bP line for ``opt`` with ``value``, exactly as Exim prints it."""
    name = opt.name
    if hidden:
        return "%s = <value not displayable>" % name
    t = opt.type
    if t == BOOL:
        if isinstance(value, str):
            return "%s = %s" % (name, printing(value))
        return name if value else "no_" + name
    if value is None:
        # Exim prints unset fixed-point numbers and id lists without the space.
        return "%s =" % name if t in (UIDLIST, GIDLIST, FIXED) else "%s = " % name
    if t in (INT,):
        return "%s = %d" % (name, value)
    if t == SIZE:
        return "%s = %s" % (name, format_size(value))
    if t == KSIZE:
        return "%s = %s" % (name, format_ksize(value))
    if t == OCTINT:
        return "%s = %s" % (name, "0" if value == 0 else "0%o" % value)
    if t == FIXED:
        whole, frac = divmod(int(round(value * 1000)), 1000)
        digits = "%03d" % frac
        return "%s = %d.%s" % (name, whole, digits.rstrip("0") or "0")
    if t == TIME:
        if isinstance(value, str):
            return "%s = %s" % (name, value)
        return "%s = %s" % (name, format_time(value))
    if t == TIMELIST:
        return "%s = %s" % (name, ":".join(format_time(v) for v in value))
    if t in (UID, GID):
        if isinstance(value, str):
            return "%s = %s" % (name, printing(value))
        return "%s = %s" % (name, _uid_name(value) if t == UID else _gid_name(value))
    if t in (UIDLIST, GIDLIST):
        names = []
        for item in split_list(value):
            if t == UIDLIST:
                names.append(_uid_name(find_user(item).pw_uid))
            else:
                names.append(_gid_name(find_group(item)))
        return "%s =%s" % (name, (" " + ":".join(names)) if names else "")
    return "%s = %s" % (name, printing(value))


def _uid_name(uid):
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _gid_name(gid):
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def format_size(value):
    """An integer printed as Exim's opt_mkint: exact multiples of 1024 as K or M."""
    if value != 0 and value % 1024 == 0:
        value //= 1024
        if value % 1024 == 0:
            return "%dM" % (value // 1024)
        return "%dK" % value
    return "%d" % value


def format_ksize(value):
    """A size held in K by Exim (opt_Kint), printed with the largest exact unit."""
    k = value // 1024
    if k == 0:
        return "0"
    for shift, unit in ((30, "T"), (20, "G"), (10, "M")):
        if k % (1 << shift) == 0:
            return "%d%s" % (k >> shift, unit)
    return "%dK" % k
