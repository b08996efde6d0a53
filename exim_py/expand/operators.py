"""Expansion operators: ``${name:subject}`` and ``${name_args:subject}``.

Spec chapter "String expansions", section "Expansion operators".  Strings
hold one character per byte (latin-1), as Exim's do, so lengths, hashes and
``from_utf8`` work on bytes.  ``OPERATORS`` maps a name to a function
``f(subject, arg, ctx) -> str``; ``arg`` is what followed the name after an
underscore (``substr_1_2`` → ``"1_2"``), or None.
"""

import base64
import hashlib
import os
import random
import stat

from exim_py.errors import ExpansionError
from exim_py.expand import arith
from exim_py.expand.conditions import ip_version
from exim_py.expand.lists import iter_list
from exim_py.expand.rfc822 import extract_address, find_address_end
from exim_py.expand.strings import (
    ascii_lower, ascii_upper, compute_hash, compute_nhash, extract_substr, printing, to_bytes)

# Names that contain an underscore; any other underscore introduces arguments.
UNDERSCORE_NAMES = frozenset((
    "from_utf8", "local_part", "quote_local_part", "reverse_ip", "time_eval",
    "time_interval", "utf8_domain_from_alabel", "utf8_domain_to_alabel",
    "utf8_localpart_from_alabel", "utf8_localpart_to_alabel"))

def _str(b):
    return b.decode("latin-1")


def op_lc(s, arg, ctx):
    return ascii_lower(s)


def op_uc(s, arg, ctx):
    return ascii_upper(s)


def _digest(fn, upper):
    def op(s, arg, ctx):
        d = fn(to_bytes(s)).hexdigest()
        return d.upper() if upper else d
    return op


def op_sha2(s, arg, ctx):
    fn = {None: hashlib.sha256, "256": hashlib.sha256, "384": hashlib.sha384,
          "512": hashlib.sha512}.get(arg)
    if fn is None:
        raise ExpansionError("unrecognised sha2 variant")
    return fn(to_bytes(s)).hexdigest().upper()


def op_sha3(s, arg, ctx):
    fn = {None: hashlib.sha3_256, "224": hashlib.sha3_224, "256": hashlib.sha3_256,
          "384": hashlib.sha3_384, "512": hashlib.sha3_512}.get(arg)
    if fn is None:
        raise ExpansionError("unrecognised sha3 variant")
    return fn(to_bytes(s)).hexdigest().upper()


def op_base64(s, arg, ctx):
    return _str(base64.b64encode(to_bytes(s)))


_B64 = {c: i for i, c in enumerate(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}


def op_base64d(s, arg, ctx):
    """Exim's b64decode(): white space is skipped, '=' padding may only end
    the string, and a final incomplete group is an error."""
    chars = [c for c in s if c not in " \t\n\r\f\v"] + [""]
    out = bytearray()
    i = 0
    bad = ExpansionError('string "%s" is not well-formed for "base64d" operator' % s)
    while chars[i]:
        x, y = _B64.get(chars[i]), _B64.get(chars[i + 1])
        if x is None or y is None:
            raise bad
        out.append(((x << 2) | (y >> 4)) & 0xFF)
        c3 = chars[i + 2] if i + 2 < len(chars) else ""
        if c3 == "=":
            if chars[i + 3:i + 5] != ["=", ""]:
                raise bad
            break
        x = _B64.get(c3)
        if x is None:
            raise bad
        out.append(((y << 4) | (x >> 2)) & 0xFF)
        c4 = chars[i + 3] if i + 3 < len(chars) else ""
        if c4 == "=":
            if chars[i + 4:i + 5] != [""]:
                raise bad
            break
        y = _B64.get(c4)
        if y is None:
            raise bad
        out.append(((x << 6) | y) & 0xFF)
        i += 4
    # Exim appends the decoded bytes as a C string: they end at a NUL.
    return out.split(b"\0", 1)[0].decode("latin-1")


_B32 = "abcdefghijklmnopqrstuvwxyz234567"
_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _decimal(s, name):
    t = s.lstrip(" \t\n\r\f\v")
    body = t[1:] if t[:1] in "+-" and t else t
    if not body.isdigit() or not body.isascii():
        if s == "":
            return 0
        raise ExpansionError('argument for %s operator is "%s", which is not a decimal number'
                             % (name, s))
    # strtoul(): too big saturates; a minus sign negates modulo 2**64.
    value = min(int(body), (1 << 64) - 1)
    return (-value if t.startswith("-") else value) & ((1 << 64) - 1)


def op_base32(s, arg, ctx):
    n = _decimal(s, "base32")
    out = []
    while n:
        out.append(_B32[n & 31])
        n >>= 5
    return "".join(reversed(out))


def _decode_base(s, alphabet, name):
    n = 0
    for c in s:
        k = alphabet.find(c)
        if k < 0:
            raise ExpansionError('argument for %s operator is "%s", which is not a base %d '
                                 'number' % (name, s, len(alphabet)))
        n = (n * len(alphabet) + k) & 0xFFFFFFFFFFFFFFFF
    # An unsigned long that wraps, printed with %ld as Exim does.
    return "%d" % arith.wrap64(n)


def op_base32d(s, arg, ctx):
    return _decode_base(s, _B32, "base32d")


def op_base62(s, arg, ctx):
    n = _decimal(s, "base62")
    out = []
    for _ in range(6):
        out.append(_B62[n % 62])
        n //= 62
    return "".join(reversed(out))


def op_base62d(s, arg, ctx):
    return _decode_base(s, _B62, "base62d")


def _extract(s, ctx):
    # Exim's parser flags outlive one expansion (see ExpandContext).
    state = {"allow_group": ctx.parse_allow_group, "found_group": ctx.parse_found_group}
    try:
        return extract_address(s, state=state, allow_domain_literals=ctx.main_option(
            "allow_domain_literals", False))
    finally:
        ctx.parse_allow_group = state["allow_group"]
        ctx.parse_found_group = state["found_group"]


def op_address(s, arg, ctx):
    parsed = _extract(s, ctx)
    return parsed[0] if parsed else ""


def op_local_part(s, arg, ctx):
    parsed = _extract(s, ctx)
    if not parsed:
        return ""
    address, domain = parsed
    return address[:domain - 1] if domain > 0 else address


def op_domain(s, arg, ctx):
    parsed = _extract(s, ctx)
    if not parsed or parsed[1] <= 0:
        return ""
    return parsed[0][parsed[1]:]


def op_addresses(s, arg, ctx):
    outsep = ":"
    t = s.lstrip(" \t\n\r\f\v")
    if t.startswith(">"):
        if len(t) < 2:
            raise ExpansionError("output separator missing in expanding ${addresses:%s}" % t)
        outsep, t = t[1], t[2:]
    out = []
    state = {"allow_group": True, "found_group": ctx.parse_found_group}
    literals = ctx.main_option("allow_domain_literals", False)
    while True:
        end = find_address_end(t)
        parsed = extract_address(t[:end], state=state, allow_domain_literals=literals)
        if parsed:
            address = parsed[0].replace(outsep, outsep + outsep)
            if out and address.startswith(outsep):
                address = " " + address
            out.append(address)
        if end >= len(t):
            break
        t = t[end + 1:]
    ctx.parse_found_group = state["found_group"]
    ctx.parse_allow_group = False
    return outsep.join(out)


def op_quote(s, arg, ctx):
    if arg is not None:
        return quote_lookup(s, arg)
    if s and all(c.isalnum() and c.isascii() or c in "_-." for c in s):
        return s
    return _quoted(s)


def _quoted(s):
    return '"%s"' % s.replace("\\", "\\\\").replace('"', '\\"') \
        .replace("\n", "\\n").replace("\r", "\\r")


def op_quote_local_part(s, arg, ctx):
    needs = not s
    last = len(s) - 1
    for i, c in enumerate(s):
        if not (c.isalnum() and c.isascii()) and c not in "!#$%&'*+-/=?^_`{|}~" \
                and (c != "." or i == 0 or i == last):
            needs = True
            break
    return _quoted(s) if needs else s


def quote_lookup(s, arg):
    """${quote_<lookup>:} through exim_py.lookups."""
    name, has_opt, opt = arg.partition("_")
    try:
        from exim_py import lookups
        quote = lookups.quote
    except ImportError:
        raise ExpansionError('unknown lookup type "%s"' % name)
    result = quote(name, s)
    if has_opt:
        # Only lookups with their own quoting take an option after the name.
        try:
            quoter = getattr(lookups._lookup(name), "quote", None)
        except (AttributeError, ExpansionError):
            quoter = None
        if quoter is None:
            raise ExpansionError('"%s" unrecognized after "${quote_%s"' % (opt, name))
    return result


def op_rxquote(s, arg, ctx):
    return "".join(c if c.isalnum() and c.isascii() else "\\" + c for c in s)


def op_escape(s, arg, ctx):
    return printing(s, tab=True, topbit=ctx.main_option("print_topbitchars", False))


def op_escape8bit(s, arg, ctx):
    return "".join(c if ord(c) < 127 and c != "\\" else "\\%03o" % (ord(c) & 0xFF) for c in s)


def op_hexquote(s, arg, ctx):
    return "".join(c if 0x21 <= ord(c) <= 0x7E else "\\x%02x" % (ord(c) & 0xFF) for c in s)


def op_hex2b64(s, arg, ctx):
    if any(c not in "0123456789abcdefABCDEF" for c in s):
        raise ExpansionError('"%s" is not a hex string' % s)
    if len(s) % 2:
        raise ExpansionError('"%s" contains an odd number of characters' % s)
    return _str(base64.b64encode(bytes.fromhex(s)))


def op_eval(s, arg, ctx):
    return "%d" % arith.evaluate(s, False)


def op_eval10(s, arg, ctx):
    return "%d" % arith.evaluate(s, True)


def op_expand(s, arg, ctx):
    from exim_py.expand import expand_latin
    from exim_py.expand.nodes import Tainted
    if s.__class__ is Tainted:
        raise ExpansionError('internal expansion of "%s" failed: attempt to expand tainted '
                             "string '%s'" % (s, s))
    try:
        return expand_latin(s, ctx)
    except ExpansionError as e:
        raise e.__class__('internal expansion of "%s" failed: %s' % (s, e))


def op_strlen(s, arg, ctx):
    return "%d" % len(s)


def op_listcount(s, arg, ctx):
    return "%d" % sum(1 for _ in iter_list(s))


def op_listnamed(s, arg, ctx):
    from exim_py.expand.namedlists import list_named
    return list_named(ctx, s, arg)


def _ip_words(address):
    """An address as Exim's host_aton(): (count, [32-bit words])."""
    import ipaddress
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    n = int(ip)
    if ip.version == 4:
        return 1, [n]
    return 4, [(n >> (96 - 32 * k)) & 0xFFFFFFFF for k in range(4)]


def _nmtoa(count, words, mask, sep):
    if count == 1:
        w = words[0]
        text = "%d.%d.%d.%d" % (w >> 24, (w >> 16) & 255, (w >> 8) & 255, w & 255)
    else:
        text = sep.join("%04x%s%04x" % (w >> 16, sep, w & 0xFFFF) for w in words)
    return text if mask < 0 else "%s/%d" % (text, mask)


def _ipv6_compressed(words):
    groups = []
    for w in words:
        groups += [w >> 16, w & 0xFFFF]
    best, best_len, k = -1, 0, 0
    while k < 8:
        if groups[k] == 0:
            j = k
            while j < 8 and groups[j] == 0:
                j += 1
            if j - k > best_len:
                best, best_len = k, j - k
            k = j
        else:
            k += 1
    if best < 0:
        return ":".join("%x" % g for g in groups)
    if best_len == 8:
        return ":"
    left = ":".join("%x" % g for g in groups[:best])
    right = ":".join("%x" % g for g in groups[best + best_len:])
    return left + "::" + right


def op_mask(s, arg, ctx):
    version = ip_version(s, allow_mask=True)
    if not version:
        raise ExpansionError('"%s" is not an IP address' % s)
    if "/" not in s:
        raise ExpansionError('missing mask value in "%s"' % s)
    address, _, bits = s.partition("/")
    mask = int(bits or "0")
    if mask > (32 if version == 4 else 128):
        raise ExpansionError('mask value too big in "%s"' % s)
    count, words = _ip_words(address)
    total = 32 * count
    value = 0
    for w in words:
        value = (value << 32) | w
    value &= ((1 << total) - 1) ^ ((1 << (total - mask)) - 1)
    words = [(value >> (total - 32 * (k + 1))) & 0xFFFFFFFF for k in range(count)]
    if version == 4 or not (arg and arg.startswith("n")):
        return _nmtoa(count, words, mask, ".")
    return "%s/%d" % (_ipv6_compressed(words), mask)


def _ipv6_words(s):
    version = ip_version(s)
    if version == 0:
        raise ExpansionError('"%s" is not an IP address' % s)
    count, words = _ip_words(s)
    if version == 4:
        words = [0, 0, 0xFFFF] + words
    return words


def op_ipv6norm(s, arg, ctx):
    text = _ipv6_compressed(_ipv6_words(s))
    # Exim counts the terminating NUL into a compressed form's length, so
    # whatever follows in the same string is lost when it is printed.
    return text + "\0" if text.count(":") > 0 and ("::" in text or text == ":") else text


def op_ipv6denorm(s, arg, ctx):
    return _nmtoa(4, _ipv6_words(s), -1, ":")


def op_reverse_ip(s, arg, ctx):
    if not ip_version(s, allow_mask=True):
        raise ExpansionError("reverse_ip() not given an IP address [%s]" % s)
    count, words = _ip_words(s.split("/", 1)[0])
    if count == 1:
        return ".".join(reversed(_nmtoa(1, words, -1, ".").split(".")))
    nibbles = "".join("%08x" % w for w in words)
    return ".".join(reversed(nibbles))


def op_time_eval(s, arg, ctx):
    n = arith.read_time(s)
    if n < 0:
        raise ExpansionError('string "%s" is not an Exim time interval in "time_eval" operator'
                             % s)
    return "%d" % n


def op_time_interval(s, arg, ctx):
    if not s.isdigit() and s != "":
        raise ExpansionError('string "%s" is not a positive number in "time_interval" operator'
                             % s)
    return arith.print_time(int(s or "0"))


def op_from_utf8(s, arg, ctx):
    out = []
    data = to_bytes(s)
    i = 0
    n = len(data)
    while i < n:
        c = data[i]
        i += 1
        if c & 0xC0 == 0xC0:
            extra = (1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
                     1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
                     2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
                     3, 3, 3, 3, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5)[c & 0x3F]
            shift = 6 * extra
            c = (c & (0xFF, 0x1F, 0x0F, 0x07, 0x03, 0x01)[extra]) << shift
            while extra > 0 and i < n:
                shift -= 6
                c |= (data[i] & 0x3F) << shift
                i += 1
                extra -= 1
        out.append(chr(c) if c <= 255 else "_")
    return "".join(out)


def op_utf8clean(s, arg, ctx):
    out = []
    seq = []
    left = 0
    code = 0
    for b in to_bytes(s):
        bad = 0
        if left:
            if b & 0xC0 != 0x80:
                bad = 1
            else:
                code = (code << 6) | (b & 0x3F)
                seq.append(b)
                left -= 1
                if left == 0:
                    if code > 0x10FFFF:
                        bad = -1
                    else:
                        out.append(bytes(seq).decode("latin-1"))
                        seq = []
        else:
            if not b & 0x80:
                out.append(chr(b))
                continue
            if b & 0xE0 == 0xC0:
                if b in (0xC0, 0xC1):
                    bad = -1
                else:
                    left, code = 1, b & 0x1F
            elif b & 0xF0 == 0xE0:
                left, code = 2, b & 0x0F
            elif b & 0xF8 == 0xF0:
                left, code = 3, b & 0x07
            else:
                bad = -1
            seq = [b]
        if bad:
            left = 0
            seq = []
            out.append("?")
            if bad == 1 and not b & 0x80:
                out.append(chr(b))
    if left:
        out.append("?")
    return "".join(out)


def op_stat(s, arg, ctx):
    if "exists" in ctx.forbid:
        raise ExpansionError("Use of the stat() expansion is not permitted")
    try:
        st = os.stat(to_bytes(s))
    except OSError as e:
        raise ExpansionError("stat(%s) failed: %s" % (s, e.strerror))
    return ("mode=%04o smode=%s inode=%d device=%d links=%d uid=%d gid=%d size=%d "
            "atime=%d mtime=%d ctime=%d" % (
                st.st_mode & 0o77777, stat.filemode(st.st_mode), st.st_ino, st.st_dev,
                st.st_nlink, st.st_uid, st.st_gid, st.st_size, int(st.st_atime),
                int(st.st_mtime), int(st.st_ctime)))


def op_randint(s, arg, ctx):
    n = arith.string_integer(s, True)
    if n <= 0:
        raise ExpansionError("randint requires a positive maximum")
    return "%d" % random.SystemRandom().randrange(n)


def _substr_args(name, arg, one_number):
    """The numbers after substr_/length_/hash_/nhash_, read as Exim reads them."""
    if arg is None:
        raise ExpansionError("missing values after %s" % name)
    full = name + "_" + arg
    values = [0, -1]
    target = 1 if one_number else 0
    if one_number:
        values[1] = 0
    sign = 1
    if not one_number and name[0] == "s" and arg.startswith("-"):
        sign = -1
        arg = arg[1:]
    i = 0
    while i < len(arg):
        c = arg[i]
        if i > 0 and c == "_" and target == 0:
            target = 1
            values[1] = 0
            if i + 1 < len(arg):
                i += 1
        elif not ("0" <= c <= "9"):
            raise ExpansionError('non-digit after underscore in "%s"' % full)
        else:
            values[target] = values[target] * 10 + ord(c) - 48
            i += 1
    return values[0] * sign, values[1]


def _substr_op(name, kind, one_number):
    def op(s, arg, ctx):
        v1, v2 = _substr_args(name, arg, one_number)
        if kind == "hash":
            return compute_hash(s, v1, v2)
        if kind == "nhash":
            return compute_nhash(s, v1, v2)
        return extract_substr(s, v1, v2)
    return op


OPERATORS = {
    "address": op_address, "addresses": op_addresses, "base32": op_base32,
    "base32d": op_base32d, "base62": op_base62, "base62d": op_base62d,
    "base64": op_base64, "base64d": op_base64d, "domain": op_domain,
    "escape": op_escape, "escape8bit": op_escape8bit, "eval": op_eval,
    "eval10": op_eval10, "expand": op_expand, "hex2b64": op_hex2b64,
    "hexquote": op_hexquote, "ipv6denorm": op_ipv6denorm, "ipv6norm": op_ipv6norm,
    "lc": op_lc, "listcount": op_listcount, "listnamed": op_listnamed,
    "mask": op_mask, "md5": _digest(hashlib.md5, False), "quote": op_quote,
    "randint": op_randint, "rxquote": op_rxquote, "sha1": _digest(hashlib.sha1, True),
    "sha2": op_sha2, "sha256": op_sha2, "sha3": op_sha3, "stat": op_stat,
    "str2b64": op_base64, "strlen": op_strlen, "uc": op_uc, "utf8clean": op_utf8clean,
    "from_utf8": op_from_utf8, "local_part": op_local_part,
    "quote_local_part": op_quote_local_part, "reverse_ip": op_reverse_ip,
    "time_eval": op_time_eval, "time_interval": op_time_interval,
}
for _name, _kind, _one in (("length", "substr", True), ("l", "substr", True),
                           ("substr", "substr", False), ("s", "substr", False),
                           ("hash", "hash", False), ("h", "hash", False),
                           ("nhash", "nhash", False), ("nh", "nhash", False)):
    OPERATORS[_name] = _substr_op(_name, _kind, _one)


def find_operator(name):
    """(function, arg) for operator text ``name`` (``substr_1_2``), or (None, None)."""
    if name in UNDERSCORE_NAMES:
        return OPERATORS[name], None
    base, sep, arg = name.partition("_")
    fn = OPERATORS.get(base)
    if fn is None:
        return None, None
    return fn, (arg if sep else None)
