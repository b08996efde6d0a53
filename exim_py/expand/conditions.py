"""Expansion conditions (``${if}``, ``forall``, ``${filter}``...), evaluated.

Spec chapter "String expansions", section "Expansion conditions".  Each
condition node has ``test(ctx) -> bool``; ``negate`` is the count of ``!``
in front of it folded into one flag.  Parsing is in parser.py.
"""

import functools
import hashlib
import ipaddress
import os
import base64
import warnings

from exim_py.errors import ExpansionError, LookupDefer
from exim_py.expand import arith
from exim_py.expand.headers import find_header
from exim_py.expand.lists import iter_list
from exim_py.expand.nodes import Node
from exim_py.expand.regex import compile_regex, set_numeric
from exim_py.expand.strings import ascii_lower, from_latin, to_bytes, to_latin
from exim_py.expand.variables import unknown_message, value_of

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import crypt as _crypt
    except ImportError:         # Python 3.13 dropped it; crypteq then says so
        _crypt = None


@functools.lru_cache(maxsize=4096)
def ip_version(text, allow_mask=False):
    """4 or 6 if ``text`` is an IP address (as Exim's string_is_ip_address),
    else 0; with ``allow_mask`` a /bits suffix is accepted."""
    if allow_mask and "/" in text:
        text, _, bits = text.partition("/")
        if bits and not bits.isdigit():     # an empty mask is let through
            return 0
    if ":" in text:
        try:
            ipaddress.IPv6Address(text)
        except ValueError:
            return 0
        return 6
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return 0
    return 4


class Cond:
    """Base class for conditions."""

    __slots__ = ("negate",)

    def test(self, ctx):
        return self.check(ctx) != self.negate


class DefVar(Cond):
    """``def:name`` — the variable is set and not empty."""

    __slots__ = ("name",)

    def __init__(self, negate, name):
        self.negate = negate
        self.name = name

    def check(self, ctx):
        # a plain string value is the usual case (as in nodes.Var)
        value = ctx.variables.get(self.name)
        if value.__class__ is str and self.name not in ("value", "item"):
            return value != ""
        try:
            return value_of(ctx, self.name) != ""
        except ExpansionError:      # an unset ACL variable with strict_acl_vars
            raise ExpansionError(unknown_message(
                'unknown variable "%s" after "def:"' % self.name, self.name))


class DefHeader(Cond):
    """``def:h_name`` — the header exists (possibly empty)."""

    __slots__ = ("name",)

    def __init__(self, negate, name):
        self.negate = negate
        self.name = name

    def check(self, ctx):
        return find_header(ctx, self.name, exists_only=True) is not None


class Flag(Cond):
    """``first_delivery`` and ``queue_running``."""

    __slots__ = ("attr",)

    def __init__(self, negate, attr):
        self.negate = negate
        self.attr = attr

    def check(self, ctx):
        return bool(getattr(ctx, self.attr))


class OneArg(Cond):
    """exists, isip, isip4, isip6 (and the authentication tests Exim may lack)."""

    __slots__ = ("name", "arg")

    def __init__(self, negate, name, arg):
        self.negate = negate
        self.name = name
        self.arg = arg

    def check(self, ctx):
        value = self.arg.ev(ctx)
        name = self.name
        if name == "exists":
            if "exists" in ctx.forbid:
                raise ExpansionError("File existence tests are not permitted")
            return os.path.exists(to_bytes(value))
        if name == "isip":
            return ip_version(value) != 0
        if name == "isip4":
            return ip_version(value) == 4
        if name == "isip6":
            return ip_version(value) == 6
        raise ExpansionError('support for "%s" not compiled' % name)


def _num(text):
    return 0 if text == "" else arith.string_integer(text)


_STRCMP = {
    "eq": lambda a, b: a == b, "lt": lambda a, b: a < b, "le": lambda a, b: a <= b,
    "gt": lambda a, b: a > b, "ge": lambda a, b: a >= b,
}
_SIGN = {"eq": lambda c: c == 0, "lt": lambda c: c < 0, "le": lambda c: c <= 0,
         "gt": lambda c: c > 0, "ge": lambda c: c >= 0}


def strcmpic(s, t):
    """Exim's strcmpic(), quirk included: when ``s`` is a prefix of ``t`` the
    result is positive, so "" sorts after "x" in the caseless comparisons."""
    s, t = ascii_lower(s), ascii_lower(t)
    for i, c in enumerate(s):
        d = ord(c) - (ord(t[i]) if i < len(t) else 0)
        if d:
            return d
    return ord(t[len(s)]) if len(t) > len(s) else 0


def string_compare(op, a, b):
    """eq, lt, le, gt, ge and their caseless forms eqi, lti ..."""
    if op in _STRCMP:
        return _STRCMP[op](a, b)
    return _SIGN[op[:-1]](strcmpic(a, b))
_NUMCMP = {
    "<": lambda a, b: a < b, "<=": lambda a, b: a <= b, "=": lambda a, b: a == b,
    "==": lambda a, b: a == b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
}


NUMERIC = frozenset(_NUMCMP)


class Number(Node):
    """A numeric comparison's first string, read as a number (which can fail)
    before Exim reads the second: for the part parsed before a syntax error."""

    __slots__ = ("arg",)

    def __init__(self, arg):
        self.arg = arg

    def ev(self, ctx):
        _num(self.arg.ev(ctx))
        return ""


class TwoArg(Cond):
    """The comparisons and the list/regex matches that take two strings."""

    __slots__ = ("name", "a", "b")

    def __init__(self, negate, name, a, b):
        self.negate = negate
        self.name = name
        self.a = a
        self.b = b

    def check(self, ctx):
        name = self.name
        a = self.a.ev(ctx)
        if name in _NUMCMP:
            x = _num(a)
            return _NUMCMP[name](x, _num(self.b.ev(ctx)))
        b = self.b.ev(ctx)
        if name in _STRCMP or name[:-1] in _STRCMP:
            return string_compare(name, a, b)
        if name == "match":
            m = compile_regex(b).search(a)
            if m is None:
                return False
            set_numeric(ctx, m)
            return True
        if name in ("inlist", "inlisti"):
            fold = ascii_lower if name == "inlisti" else str
            key = fold(a)
            for item in iter_list(b):
                if fold(item) == key:
                    ctx.lookup_value = item
                    return True
            return False
        if name == "crypteq":
            return crypteq(a, b)
        return _list_match(ctx, name, a, b)


def _list_match(ctx, name, subject, liststring):
    """match_domain / match_address / match_local_part / match_ip: the list is
    taken as it is (not expanded again), caselessly, and the matching item's
    data becomes $value."""
    try:
        from exim_py.match import match_list
    except ImportError:
        raise ExpansionError('"%s" needs exim_py.match, which is not available' % name)
    # List matching deals in exim_py's usual text; the engine in bytes.
    subject, liststring = from_latin(subject), from_latin(liststring)
    if name == "match_ip":
        if subject and not ip_version(subject):
            raise ExpansionError('"%s" is not an IP address' % subject)
        kind, subject = "host", _Host(subject)
    else:
        kind = {"match_domain": "domain", "match_address": "address",
                "match_local_part": "localpart"}[name]
    try:
        result = match_list(kind, subject, liststring, ctx, caseless=True, expand=False)
    except LookupDefer as e:
        # Exim has no text for an unknown named list here.
        reason = "" if str(e).startswith("unknown named") else str(e)
        raise ExpansionError('unable to complete match against "%s": %s'
                             % (liststring, reason))
    if result:
        ctx.lookup_value = result.value if result.value is None else to_latin(result.value)
        if result.numeric:
            ctx.numeric = [to_latin(n) if n.__class__ is str else n for n in result.numeric]
    return bool(result)


class _Host:
    """The host argument match_host() expects, for ${if match_ip}."""

    def __init__(self, address):
        self.address = address
        self.name = ""


def crypteq(plain, encrypted):
    """``crypteq``: {md5} and {sha1} in hex or base64, else crypt(3)."""
    lower = encrypted.lower()
    for scheme, fn, b64len, hexlen in (("{md5}", hashlib.md5, 24, 32),
                                       ("{sha1}", hashlib.sha1, 28, 40)):
        if lower.startswith(scheme):
            coded = encrypted[len(scheme):]
            digest = fn(to_bytes(plain)).digest()
            if len(coded) == b64len:
                return base64.b64encode(digest).decode() == coded
            if len(coded) == hexlen:
                return digest.hex() == coded.lower()
            return False
    if lower.startswith("{crypt}"):
        encrypted = encrypted[7:]
    elif lower.startswith("{crypt16}"):
        raise ExpansionError('crypt16 is not supported by exim_py')
    elif encrypted.startswith("{"):
        raise ExpansionError('unknown encryption mechanism in "%s"' % encrypted)
    if len(encrypted) < 2:
        return False
    if _crypt is None:
        raise ExpansionError("crypt error: crypt() is not available in this Python")
    coded = _crypt.crypt(plain, encrypted)
    return coded is not None and coded == encrypted


class Combine(Cond):
    """``and{{c1}{c2}...}`` and ``or{...}``: stop at the first deciding one."""

    __slots__ = ("name", "subs")

    def __init__(self, negate, name, subs):
        self.negate = negate
        self.name = name
        self.subs = subs

    def check(self, ctx):
        want = self.name == "or"
        for sub in self.subs:
            try:
                result = sub.test(ctx)
            except ExpansionError as e:
                raise wrap_error(e, '%s inside "%s{...}" condition' % (e, self.name))
            if result == want:
                return want
        return not want


class CombinePartial(Node):
    """An and{}/or{} cut short by a syntax error: its complete subconditions
    are tested until one decides; only if none does is the part read of the
    next one expanded (``rest``) and its expansion-time error (``error``)
    raised.  Otherwise the caller's scan-time error follows."""

    __slots__ = ("combine", "rest", "error")

    def __init__(self, combine, rest, error):
        self.combine = combine
        self.rest = rest
        self.error = error

    def ev(self, ctx):
        want = self.combine.name == "or"
        for sub in self.combine.subs:
            try:
                if sub.test(ctx) == want:
                    return ""
            except ExpansionError as e:
                raise wrap_error(e, '%s inside "%s{...}" condition' % (e, self.combine.name))
        self.rest.ev(ctx)
        if self.error is not None:
            self.error.ev(ctx)
        return ""


def wrap_error(e, message):
    """The same kind of error (forced or not) with a longer message."""
    new = e.__class__(message)
    return new


class ForEach(Cond):
    """``forall{list}{cond}`` / ``forany{list}{cond}`` with $item set."""

    __slots__ = ("name", "lst", "sub", "any")

    def __init__(self, negate, name, lst, sub):
        self.negate = negate
        self.name = name
        self.lst = lst
        self.sub = sub
        self.any = name.startswith("forany")

    def test(self, ctx):
        # Exim: an empty list gives the opposite of what was asked for.
        result = self.negate
        saved = ctx.iterate_item
        try:
            for item in self.items(ctx):
                ctx.iterate_item = item
                try:
                    cond = self.sub.test(ctx)
                except ExpansionError as e:
                    raise wrap_error(e, '%s inside "%s" condition' % (e, self.name))
                result = cond != self.negate
                if cond == self.any:
                    break
        finally:
            ctx.iterate_item = saved
        return result


    def items(self, ctx):
        return iter_list(self.lst.ev(ctx))


class Bool(Cond):
    """``bool{}`` (strict) and ``bool_lax{}``."""

    __slots__ = ("lax", "arg")

    def __init__(self, negate, lax, arg):
        self.negate = negate
        self.lax = lax
        self.arg = arg

    def check(self, ctx):
        return bool_value(self.arg.ev(ctx), self.lax)


def bool_value(text, lax):
    """Exim's reading of a string as a boolean (raises for strict nonsense)."""
    t = text.strip(" \t\n\r\f\v")
    if not t:
        return False
    digits = t[1:] if t[0] == "-" else t
    # A lone "-" counts as a number (zero), as in Exim.
    if (digits.isdigit() and digits.isascii()) or t == "-":
        if lax and len(t) > 1:
            return True
        return t != "-" and int(t) != 0
    low = t.lower()
    if low in ("true", "yes"):
        return True
    if low in ("false", "no"):
        return False
    if lax:
        return True
    raise ExpansionError('unrecognised boolean value "%s"' % t)


class AclCond(Cond):
    """``acl{{name}{arg}...}``: runs an ACL through the hook the ACL engine sets."""

    __slots__ = ("args",)

    def __init__(self, negate, args):
        self.negate = negate
        self.args = args

    def check(self, ctx):
        args = [a.ev(ctx) for a in self.args if a is not None]
        from exim_py.expand.items import call_acl
        ok, message = call_acl(ctx, args)
        ctx.lookup_value = message
        return ok


class InboundSrs(Cond):
    """``inbound_srs{local part}{secret}``: is the local part a valid SRS0
    address made with ``secret`` in the last ten days?  Sets $srs_recipient."""

    __slots__ = ("local_part", "secret")

    def __init__(self, negate, args):
        self.negate = negate
        self.local_part, self.secret = args

    def check(self, ctx):
        import hmac
        import re
        import time
        local_part, secret = self.local_part.ev(ctx), self.secret.ev(ctx)
        m = re.match(r"(?i)^SRS0=([^=]+)=([A-Z2-7]{2})=([^=]*)=(.*)$", local_part)
        if not m:
            return False
        quote = '"' if local_part.startswith('"') or any(
            not (c.isalnum() and c.isascii()) and c not in "!#$%&'*+-/=?^_`{|}~.="
            for c in local_part) else ""
        recipient = "%s%s%s@%s" % (quote, ascii_lower(m.group(4)), quote,
                                   ascii_lower(m.group(3)))
        ctx.set("srs_recipient", recipient)
        if not secret:
            return True
        b32 = "abcdefghijklmnopqrstuvwxyz234567"
        stamp = 0
        for c in m.group(2):
            stamp = stamp * 32 + b32.index(c.lower())
        if ((int(time.time()) // 86400 - stamp) & 0x3FF) > 10:
            return False
        if len(m.group(1)) != 4:
            return False
        digest = hmac.new(to_bytes(secret), to_bytes(recipient), hashlib.md5).hexdigest()
        return digest[:4] == m.group(1)


class Unsupported(Cond):
    """A condition exim_py parses but cannot evaluate (saslauthd, pam, radius...)."""

    __slots__ = ("name", "args")

    def __init__(self, negate, name, args):
        self.negate = negate
        self.name = name
        self.args = args

    def check(self, ctx):
        raise ExpansionError('support for "%s" not compiled' % self.name)
