"""Expansion items with arguments in braces: ${if}, ${lookup}, ${extract}...

Spec chapter "String expansions", section "Expansion items".  Each class is
the evaluated form of one item; parser.py builds them.  Items that may
change ``$0..$9`` or ``$value`` save and restore them as Exim does, so that
the text after the item sees the values from before it.
"""

import base64
import hashlib
import hmac as _hmac
import os
import re
import subprocess
import time

from exim_py.errors import ExpansionError, ForcedFail, LookupDefer
from exim_py.expand import arith
from exim_py.expand.conditions import wrap_error
from exim_py.expand.lists import append_item, iter_list, list_separator
from exim_py.expand.nodes import Node, Tainted, Text, taint_like
from exim_py.expand.regex import compile_regex
from exim_py.expand.strings import (
    HASHCODES, ascii_lower, compute_hash, compute_nhash, extract_substr, from_latin, printing,
    split_command, to_bytes, to_latin)


def _expand_again(text, ctx):
    from exim_py.expand import expand_latin
    return expand_latin(text, ctx)


class If(Node):
    __slots__ = ("cond", "yesno")

    def __init__(self, cond, yesno):
        self.cond = cond
        self.yesno = yesno

    def ev(self, ctx):
        saved_numeric, saved_value = ctx.numeric, ctx.lookup_value
        try:
            ok = self.cond.test(ctx)
            return self.yesno.choose(ctx, ok, ctx.lookup_value)
        finally:
            ctx.numeric, ctx.lookup_value = saved_numeric, saved_value


class Lookup(Node):
    """``${lookup{key}type{file}...}`` and ``${lookup type{query}...}``."""

    __slots__ = ("key", "ltype", "source", "yesno")

    def __init__(self, key, ltype, source, yesno):
        self.key = key
        self.ltype = ltype
        self.source = source
        self.yesno = yesno

    def ev(self, ctx):
        saved_numeric, saved_value = ctx.numeric, ctx.lookup_value
        if "lookup" in ctx.forbid:
            raise ExpansionError("lookup expansions are not permitted")
        key = self.key.ev(ctx) if self.key is not None else None
        source = self.source.ev(ctx)
        if key is None:
            key, source = source, None
        try:
            ctx.lookup_value = do_lookup(ctx, self.ltype, source, key)
            return self.yesno.choose(ctx, ctx.lookup_value is not None, saved_value)
        finally:
            ctx.numeric = saved_numeric


def _lookups():
    try:
        from exim_py import lookups
    except ImportError:
        return None
    return lookups


def do_lookup(ctx, ltype, source, key):
    """One lookup through exim_py.lookups (which caches in the context); a
    partial or default match sets $1 and $2."""
    lookups = _lookups()
    if lookups is None:
        raise ExpansionError('lookup type "%s" is not available in this version of exim_py'
                             % ltype)
    if source.__class__ is Tainted:
        # Exim logs this and fails the lookup (its own message is "(null)").
        raise ExpansionError("Tainted filename for search: '%s'" % source)
    # Lookups deal in exim_py's usual text; the engine in bytes.
    try:
        result, parts = lookups.search_wild(ltype, source and from_latin(source),
                                            from_latin(key), ctx)
    except LookupDefer as e:
        raise ExpansionError('lookup of "%s" gave DEFER: %s' % (printing(key, tab=True), e))
    if parts is not None:
        ctx.numeric = [ctx.numeric[0] if ctx.numeric else "",
                       to_latin(parts[0]), to_latin(parts[1])]
    return result if result is None else to_latin(result)


def lookup_kind(ltype):
    """'query' or 'single' for lookup type text ``ltype``; None when the
    lookups package is absent.  A malformed or unknown type raises
    ExpansionError with Exim's text."""
    lookups = _lookups()
    if lookups is None:
        return None
    parsed = lookups.parse_type(ltype)
    return "query" if lookups.is_query_style(parsed.name) else "single"


class Extract(Node):
    """Keyed (``${extract{key}{string}}``) or numbered extraction."""

    __slots__ = ("args", "yesno", "json")

    def __init__(self, args, yesno, json):
        self.args = args
        self.yesno = yesno
        self.json = json

    def ev(self, ctx):
        saved_numeric, saved_value = ctx.numeric, ctx.lookup_value
        try:
            first = self.args[0].ev(ctx).strip(" \t\n\r\f\v")
            if not first:
                raise ExpansionError('first argument of "extract" must not be empty')
            digits = first[1:] if first[0] == "-" else first
            numbered = digits.isdigit() or digits == ""
            if numbered and not self.json:
                field = -int(digits or "0") if first[0] == "-" else int(digits or "0")
                seps, subject = self.args[1].ev(ctx), self.args[2].ev(ctx)
                ctx.lookup_value = taint_like(get_tokened(field, seps, subject), subject)
            elif self.json:
                from exim_py.expand.json import extract_json
                subject = self.args[1].ev(ctx)
                ctx.lookup_value = taint_like(extract_json(
                    first, numbered, subject, self.json == "jsons"), subject)
            else:
                subject = self.args[1].ev(ctx)
                ctx.lookup_value = taint_like(get_keyed(first, subject), subject)
            return self.yesno.choose(ctx, ctx.lookup_value is not None, saved_value)
        finally:
            ctx.numeric = saved_numeric


def get_keyed(key, s):
    """Exim's expand_getkeyed(): ``key=value`` pairs, values maybe quoted."""
    from exim_py.expand.strings import dequote
    key = ascii_lower(key)
    i = 0
    n = len(s)
    space = " \t\n\r\f\v"
    while i < n and s[i] in space:
        i += 1
    while i < n:
        j = i
        while j < n and s[j] != "=" and s[j] not in space:
            j += 1
        dkey = s[i:j]
        i = j
        while i < n and s[i] in space:
            i += 1
        if i < n and s[i] == "=":
            i += 1
            while i < n and s[i] in space:
                i += 1
        data, i = dequote(s, i)
        if ascii_lower(dkey) == key:
            return data
        while i < n and s[i] in space:
            i += 1
    return None


_SPLITTERS = {}


def get_tokened(field, separators, s):
    """Exim's expand_gettokened(): field N of ``s`` split on any separator char."""
    if field == 0:
        return s
    splitter = _SPLITTERS.get(separators)
    if splitter is None:
        if len(_SPLITTERS) > 1000:
            _SPLITTERS.clear()
        splitter = _SPLITTERS[separators] = (
            re.compile("[%s]" % re.escape(separators)).split if separators else None)
    fields = splitter(s) if splitter else [s]
    if field > 0:
        return fields[field - 1] if field <= len(fields) else None
    return fields[field] if -field <= len(fields) else None


def list_field(text):
    """The field number of ${listextract} from its first argument's text."""
    first = text.strip(" \t\n\r\f\v")
    if not first:
        raise ExpansionError('first argument of "listextract" must not be empty')
    digits = first[1:] if first[0] == "-" else first
    if digits and not digits.isdigit():
        raise ExpansionError('first argument of "listextract" must be numeric')
    return int(digits or "0") * (-1 if first[0] == "-" else 1)


class ListNumber(Node):
    """${listextract}'s first argument, read as Exim reads it (for errors)."""

    __slots__ = ("arg",)

    def __init__(self, arg):
        self.arg = arg

    def ev(self, ctx):
        list_field(self.arg.ev(ctx))
        return ""


class ListExtract(Node):
    __slots__ = ("num", "lst", "yesno")

    def __init__(self, num, lst, yesno):
        self.num = num
        self.lst = lst
        self.yesno = yesno

    def ev(self, ctx):
        saved_numeric, saved_value = ctx.numeric, ctx.lookup_value
        try:
            field = list_field(self.num.ev(ctx))
            text = self.lst.ev(ctx)
            items = list(iter_list(text))
            value = None
            if not items and field >= 2 and list_separator(text)[1]:
                # Exim quirk: after "<X" and nothing else, its next look at
                # the list reads it again with X as the separator.
                again = list(iter_list(text, list_separator(text)[0]))
                value = again[0] if again else None
            elif field > 0 and field <= len(items):
                value = items[field - 1]
            elif field < 0 and -field <= len(items):
                value = items[field]
            ctx.lookup_value = value = taint_like(value, text)
            return self.yesno.choose(ctx, value is not None, saved_value)
        finally:
            ctx.numeric = saved_numeric


class Args(Node):
    """Base for items whose arguments are all expanded first (read_subs)."""

    __slots__ = ("args",)

    def __init__(self, args):
        self.args = args

    def values(self, ctx):
        return [a.ev(ctx) if a is not None else None for a in self.args]

    def ev(self, ctx):
        values = self.values(ctx)
        return taint_like(self.compute(ctx, values), *[v for v in values if v is not None])


class Substr(Args):
    """``${substr}``, ``${length}``, ``${hash}``, ``${nhash}`` with brace arguments."""

    __slots__ = ("name",)

    def __init__(self, name, args):
        super().__init__(args)
        self.name = name

    def check_skipped(self):
        """Exim 4.96 reads these numbers (and checks a hash count) even where
        the item is only scanned, when its variables read as empty: raise
        what that finds for literal arguments."""
        values = [None if a is None else a.text if isinstance(a, Text) else ""
                  for a in self.args]
        sub, val = self.numbers(values)
        if self.name == "hash" and val[1] > len(HASHCODES):
            raise ExpansionError('hash count "%d" too big' % val[1])

    def numbers(self, values):
        sub = list(values) + [None]
        if sub[2] is None:
            sub[2], sub[1] = sub[1], None
            if self.name == "length":
                sub[1], sub[0] = sub[0], None
        val = [0, -1]
        for i in (0, 1):
            if sub[i] is not None:
                v = _c_strtol(sub[i])
                if v is None or (i != 0 and v < 0):
                    raise ExpansionError('"%s" is not a%s number (in "%s" expansion)'
                                         % (sub[i], " positive" if i else "", self.name))
                val[i] = v
        return sub, val

    def compute(self, ctx, values):
        sub, val = self.numbers(values)
        if self.name == "hash":
            return compute_hash(sub[2], val[0], val[1])
        if self.name == "nhash":
            return compute_nhash(sub[2], val[0], val[1])
        return extract_substr(sub[2], val[0], val[1])


def _c_strtol(text):
    """strtol(text, &end, 10) with the whole string consumed, else None."""
    t = text.lstrip(" \t\n\r\f\v")
    body = t[1:] if t[:1] in ("+", "-") else t
    if not body.isdigit() or not body.isascii():
        return 0 if text == "" else None
    value = int(t)
    return max(-(1 << 31), min(value, (1 << 31) - 1))


class Tr(Args):
    def compute(self, ctx, values):
        subject, frm, to = values
        if not to:
            return subject
        last = len(to) - 1
        table = {}
        for i, c in enumerate(frm):
            table[c] = to[min(i, last)]
        return "".join(table.get(c, c) for c in subject)


class Hmac(Args):
    def ev(self, ctx):
        algo, key, text = self.values(ctx)
        if algo == "md5":
            fn = hashlib.md5
        elif algo == "sha1":
            fn = hashlib.sha1
        else:
            raise ExpansionError('hmac algorithm "%s" is not recognised' % algo)
        return _hmac.new(to_bytes(key), to_bytes(text), fn).hexdigest()


class Sg(Args):
    """``${sg{subject}{regex}{replacement}}``: the replacement is expanded again
    for each match, with $0..$9 set from it."""

    def compute(self, ctx, values):
        subject, pattern, replacement = values
        regex = compile_regex(pattern)
        saved = ctx.numeric
        out = []
        pos = 0
        try:
            for m in regex.finditer(subject):
                out.append(subject[pos:m.start()])
                ctx.numeric = [m.group(0)] + [g or "" for g in m.groups()]
                out.append(_expand_again(replacement, ctx))
                pos = m.end()
        finally:
            ctx.numeric = saved
        out.append(subject[pos:])
        return "".join(out)


class ListQuote(Args):
    def compute(self, ctx, values):
        sep, text = values
        if not text:
            return " "
        return text.replace(sep[:1], sep[:1] * 2) if sep else text


class ReadFile(Args):
    def ev(self, ctx):
        if "readfile" in ctx.forbid:
            raise ExpansionError("file insertions are not permitted")
        path, eol = self.values(ctx)
        if path.__class__ is Tainted:
            # Exim refuses to open a file named by untrusted text.
            raise ExpansionError("failed to open %s: Permission denied (euid=%d egid=%d)"
                                 % (path, os.geteuid(), os.getegid()))
        try:
            with open(to_bytes(path), "rb") as f:       # the file name's own bytes
                data = f.read().decode("latin-1")
        except IsADirectoryError:
            data = ""       # fopen() works on a directory; reading gives nothing
        except OSError as e:
            raise ExpansionError("failed to open %s: %s" % (path, e.strerror))
        if eol is not None:
            data = data.replace("\n", eol)
        return data


class Prvs(Args):
    def ev(self, ctx):
        address, key, keynum = self.values(ctx)
        at = address.rfind("@")
        if at <= 0 or at == len(address) - 1:
            raise ExpansionError("prvs first argument must be a qualified email address")
        if keynum is not None and not (len(keynum) == 1 and keynum.isdigit()):
            raise ExpansionError("prvs third argument must be a single digit")
        day = prvs_daystamp(7)
        digest = prvs_hmac(address, key, keynum, day)
        if digest is None:
            raise ExpansionError("prvs hmac-sha1 conversion failed")
        return "prvs=%s%s%s=%s" % (keynum or "0", day, digest, address)


def prvs_daystamp(offset_days):
    days = "%d" % ((int(time.time()) + offset_days * 86400) // 86400)
    return days[-3:] if len(days) >= 3 else "100"


def prvs_hmac(address, key, keynum, daystamp):
    if len(key) > 64:
        return None
    source = (keynum or "0")[:1] + daystamp[:3] + address
    return _hmac.new(to_bytes(key), to_bytes(source),
                     hashlib.sha1).hexdigest()[:6]


class PrvsCheck(Node):
    __slots__ = ("address", "secret", "result")

    def __init__(self, address, secret, result):
        self.address = address
        self.secret = secret
        self.result = result

    def ev(self, ctx):
        for name in ("prvscheck_result", "prvscheck_address", "prvscheck_keynum"):
            ctx.unset(name)
        subject = self.address.ev(ctx)
        m = re.match(r"(?i)^prvs\=([0-9])([0-9]{3})([A-F0-9]{6})\=(.+)\@(.+)$", subject)
        if not m:
            self.secret.ev(ctx)
            if self.result is not None:
                self.result.ev(ctx)
            return ""
        # As Exim, the match's $1..$5 stay set after the item.
        ctx.numeric = [m.group(0)] + list(m.groups())
        keynum, daystamp, digest = m.group(1), m.group(2), m.group(3)
        address = "%s@%s" % (m.group(4), m.group(5))
        ctx.set("prvscheck_address", address)
        ctx.set("prvscheck_keynum", keynum)
        own = prvs_hmac(address, self.secret.ev(ctx), keynum, daystamp)
        if own is None:
            raise ExpansionError("hmac-sha1 conversion failed")
        if own == digest:
            now, expire = int(prvs_daystamp(0)), int(daystamp)
            if expire < 7 and now >= 993:
                now = 0
            if expire >= now:
                ctx.set("prvscheck_result", "1")
        result = self.result.ev(ctx) if self.result is not None else ""
        out = result or address
        ctx.unset("prvscheck_address")
        ctx.unset("prvscheck_keynum")
        return out


class Run(Node):
    """``${run{command args}{yes}{no}}``: no shell; $value and $runrc are set."""

    __slots__ = ("command", "preexpand", "yesno")

    def __init__(self, command, preexpand, yesno):
        self.command = command
        self.preexpand = preexpand
        self.yesno = yesno

    def ev(self, ctx):
        if "run" in ctx.forbid:
            raise ExpansionError("running a command is not permitted")
        if self.preexpand:
            command = self.command.ev(ctx)
            if command.__class__ is Tainted:
                # Exim will not run a command line made from untrusted text.
                raise ExpansionError("couldn't create child process: Operation not permitted")
            argv = split_command(command)
        else:
            argv = []
            for arg in split_command(self.command):
                try:
                    argv.append(_expand_again(arg, ctx))
                except ExpansionError as e:
                    raise wrap_error(e, 'Expansion of "%s" from command "%s" in ${run} '
                                        'expansion failed: %s' % (arg, self.command, e))
        if argv and argv[0].__class__ is Tainted:
            raise ExpansionError("couldn't create child process: Operation not permitted")
        spool = ctx.main_option("spool_directory") or "/"
        cwd = spool if os.path.isdir(spool) else "/"
        try:
            if not argv:
                raise FileNotFoundError("")      # nothing to run: exec fails
            # Exim uses execv(): no search of $PATH, relative to the spool.
            proc = subprocess.run([to_bytes(a) for a in argv],
                                  executable=to_bytes(os.path.join(cwd, argv[0])),
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  timeout=60, start_new_session=True, env=environment(ctx),
                                  cwd=cwd,
                                  preexec_fn=lambda: os.umask(0o077))
            output, rc = proc.stdout.decode("latin-1"), proc.returncode
        except FileNotFoundError:
            output, rc = "", 127
        except PermissionError:
            output, rc = "", 127
        except subprocess.TimeoutExpired:
            raise ExpansionError("command timed out")
        if rc < 0:
            raise ExpansionError("command killed by signal %d" % -rc)
        ctx.set("runrc", rc)
        ctx.lookup_value = output
        return self.yesno.choose(ctx, rc == 0, output)


class ListOp(Node):
    """``${map}``, ``${filter}`` and ``${reduce}`` over a list with $item set."""

    __slots__ = ("name", "lst", "init", "expr")

    def __init__(self, name, lst, init, expr):
        self.name = name
        self.lst = lst
        self.init = init
        self.expr = expr

    def ev(self, ctx):
        text = self.lst.ev(ctx)
        saved_item, saved_value = ctx.iterate_item, ctx.lookup_value
        if self.init is not None:
            ctx.lookup_value = self.init.ev(ctx)
        sep = list_separator(text)[0]
        out = []
        try:
            for item in iter_list(text):
                ctx.iterate_item = item = taint_like(item, text)
                if self.name == "filter":
                    value = ctx.lookup_value
                    try:
                        ok = self.expr.test(ctx)
                    except ExpansionError as e:
                        ctx.lookup_value = saved_value
                        raise wrap_error(e, '%s inside "filter" condition' % e)
                    ctx.lookup_value = value
                    if ok:
                        append_item(out, item, sep)
                    continue
                try:
                    result = self.expr.ev(ctx)
                except ExpansionError as e:
                    raise wrap_error(e, '%s inside "%s" item' % (e, self.name))
                if self.name == "reduce":
                    ctx.lookup_value = result
                else:
                    append_item(out, result, sep)
            if self.name == "reduce":
                return ctx.lookup_value or ""
            return taint_like(sep.join(out), text)
        finally:
            ctx.iterate_item = saved_item
            ctx.lookup_value = saved_value


class Sort(Node):
    __slots__ = ("lst", "op", "extractor")

    def __init__(self, lst, op, extractor):
        self.lst = lst
        self.op = op
        self.extractor = extractor

    def ev(self, ctx):
        from exim_py.expand.conditions import _NUMCMP, string_compare
        text = self.lst.ev(ctx)
        sep = list_separator(text)[0]
        op = self.op
        numeric = not op[0].isalpha()
        if numeric:
            base_num = _NUMCMP[op]

            def before(a, b):
                # Exim converts when comparing; a bad number compares false.
                try:
                    return base_num(arith.string_integer(a), arith.string_integer(b))
                except ExpansionError:
                    return False
        else:
            def before(a, b):
                return string_compare(op, a, b)
        saved = ctx.iterate_item
        keyed = []
        try:
            for item in iter_list(text):
                ctx.iterate_item = item
                field = _expand_again(self.extractor, ctx)
                if not field:
                    raise ExpansionError('field-extract in sort: "%s"' % self.extractor)
                key = field
                # Insertion sort, as Exim: stable for equal keys.
                pos = len(keyed)
                for k, (other, _) in enumerate(keyed):
                    if before(key, other):
                        pos = k
                        break
                keyed.insert(pos, (key, item))
        finally:
            ctx.iterate_item = saved
        out = []
        for _, item in keyed:
            out.append(item.replace(sep, sep + sep))
        return sep.join(out)


def environment(ctx):
    """The environment Exim keeps: keep_environment patterns (empty by
    default) plus add_environment settings (spec: main option keep_environment)."""
    keep = ctx.main_option("keep_environment") or ""
    env = {}
    patterns = list(iter_list(keep))
    for name, value in os.environ.items():
        for pattern in patterns:
            if _name_matches(name, pattern):
                env[name] = value
                break
    for item in iter_list(ctx.main_option("add_environment") or ""):
        name, eq, value = item.partition("=")
        if eq:
            env[name] = value
    return env


def _name_matches(name, pattern):
    if pattern.startswith("^"):
        return compile_regex(pattern).search(name) is not None
    if pattern.startswith("*"):
        return name.endswith(pattern[1:])
    if pattern.endswith("*"):
        return name.startswith(pattern[:-1])
    return name == pattern


class Env(Node):
    __slots__ = ("name", "yesno")

    def __init__(self, name, yesno):
        self.name = name
        self.yesno = yesno

    def ev(self, ctx):
        saved = ctx.lookup_value
        ctx.lookup_value = environment(ctx).get(self.name.ev(ctx))
        return self.yesno.choose(ctx, ctx.lookup_value is not None, saved)


class Acl(Args):
    def ev(self, ctx):
        ok, message = call_acl(ctx, [v for v in self.values(ctx) if v is not None])
        return message or ""


def call_acl(ctx, args):
    """Run ACL args[0] with $acl_arg1.. from the rest: (accepted, message).

    The ACL engine provides ``ctx.acl_runner(name, args) -> (verdict, message)``
    where verdict is "accept", "deny", "defer"...
    """
    runner = getattr(ctx, "acl_runner", None)
    if runner is None:
        raise ExpansionError('ACLs cannot be run from expansions here ("%s")' % args[0])
    # The ACL engine deals in exim_py's usual text; the engine in bytes.
    verdict, message = runner(from_latin(args[0]), [from_latin(a) for a in args[1:]])
    if message:
        message = to_latin(message)
    if verdict in ("accept", "ok"):
        return True, message
    if verdict in ("deny", "fail"):
        return False, message
    error = "%s from acl \"%s\"" % (verdict.upper(), args[0])
    if verdict == "defer":
        raise ForcedFail(error)
    raise ExpansionError(error)


class SrsEncode(Args):
    def ev(self, ctx):
        secret, return_path, domain = self.values(ctx)
        if not return_path:
            return ""
        from exim_py.expand.rfc822 import extract_address
        digest = _hmac.new(to_bytes(secret), to_bytes(return_path.lower()),
                           hashlib.md5).hexdigest()[:4]
        day = (int(time.time()) // 86400) & 0x3FF
        b32 = "abcdefghijklmnopqrstuvwxyz234567"
        errors = []
        parsed = extract_address(return_path, errors=errors)
        if parsed is None:
            raise ExpansionError(errors[0] if errors else "malformed address")
        address, dpos = parsed
        local = address[:dpos - 1] if dpos > 0 else address
        quoted = '"' in local
        if quoted:
            local = local.replace('"', "")
        text = "SRS0=%s=%s%s=%s=%s" % (digest, b32[day >> 5], b32[day & 31],
                                       address[dpos:] if dpos > 0 else "", local)
        if quoted:
            text = '"%s"' % text
        return "%s@%s" % (text, domain)


class AuthResults(Args):
    def ev(self, ctx):
        (name,) = self.values(ctx)
        from exim_py.expand.variables import format_value, value_of
        out = "Authentication-Results: " + name
        # The name as already known: a lazy (callable) $sender_host_name is a
        # lookup not made yet, which Exim does not make for ${authresults}.
        stored = ctx.variables.get("sender_host_name")
        host = "" if callable(stored) else format_value(stored)
        address = value_of(ctx, "sender_host_address")
        if host:
            out += ";\n\tiprev=pass (%s)" % host
        elif value_of(ctx, "host_lookup_deferred") not in ("", "0"):
            out += ";\n\tiprev=temperror"
        elif value_of(ctx, "host_lookup_failed") not in ("", "0"):
            out += ";\n\tiprev=fail"
        else:
            address = ""
        if address and (host or out.endswith(("temperror", "fail"))):
            out += " smtp.remote-ip=" + address
        auth = value_of(ctx, "sender_host_authenticated")
        if auth:
            out += ";\n\tauth=pass (%s)" % auth
            authid = value_of(ctx, "authenticated_id")
            if authid:
                out += " smtp.auth=" + authid
        spf = value_of(ctx, "spf_result")
        if spf:
            # Exim's authres_spf: a guessed result says so; the null sender
            # names the HELO domain instead
            out += ";\n\tspf=" + spf
            if value_of(ctx, "spf_result_guessed") == "yes":
                out += " (best guess record for domain)"
            domain = value_of(ctx, "sender_address_domain")
            helo = value_of(ctx, "sender_helo_name")
            out += (" smtp.mailfrom=" + domain if domain else
                    " smtp.helo=" + helo if helo else " smtp.mailfrom=<>")
        return out


class ImapFolder(Args):
    """``${imapfolder{name}{sep}{specials}}``: a folder name in IMAP's
    modified UTF-7 (RFC 3501 5.1.3), ``sep`` in the name becoming '.'."""

    def ev(self, ctx):
        name, sep, specials = self.values(ctx)
        if sep is None:
            sep, specials = "/", None
        elif len(sep) != 1:
            raise ExpansionError('IMAP folder separator must be one character, found "%s"'
                                 % sep)
        return imap_utf7(name, sep, specials or "",
                         ctx.main_option("headers_charset", "UTF-8"))


def imap_utf7(name, sep, specials, charset):
    if name[:1] == sep:
        name = name[1:]
    if not any(ord(c) >= 0x7F or ord(c) < 0x20 or c in "./&" or c == sep or c in specials
               for c in name):
        return name
    try:
        units = to_bytes(name).decode(charset).encode("utf-16-be")
    except (UnicodeError, LookupError) as e:
        raise ExpansionError("imapfolder: iconv() failed to convert from %s: %s"
                             % (charset, e))
    out = []
    pending = bytearray()       # UTF-16 units waiting to be base64-encoded
    last_sep = False

    def flush():
        if pending:
            out.append("&" + base64.b64encode(bytes(pending)).decode("ascii")
                       .rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for k in range(0, len(units), 2):
        high, low = units[k], units[k + 1]
        c = chr(low)
        if high or low >= 0x7F or low < 0x20 or (c in specials and c != sep):
            last_sep = False
            pending += units[k:k + 2]
            continue
        if c not in "./" or c == sep:
            flush()
            if c == sep:
                if not last_sep:
                    out.append(".")
                    last_sep = True
            else:
                out.append("&-" if c == "&" else c)
                last_sep = False
            continue
        raise ExpansionError("imapfolder: illegal character '%s'" % c)
    flush()
    text = "".join(out)
    return text[:-1] if text.endswith(".") else text


class Unsupported(Node):
    """An item exim_py parses but does not provide (perl, dlfunc ...)."""

    __slots__ = ("message",)

    def __init__(self, message):
        self.message = message

    def ev(self, ctx):
        raise ExpansionError(self.message)
