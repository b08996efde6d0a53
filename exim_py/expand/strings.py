"""String helpers shared by expansion items and operators.

These follow Exim's own helpers (string.c, expand.c): substrings with
negative offsets, the textual and numeric hashes, printable escaping, and the
quoting rules of keyed data and of ${run} command lines.
"""

import codecs

from exim_py.errors import ExpansionError

_SPACE = " \t\n\r\f\v"
HASHCODES = "abcdefghijklmnopqrtsuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
PRIMES = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71,
          73, 79, 83, 89, 97, 101, 103, 107, 109, 113)


_LOWER = {c: c + 32 for c in range(65, 91)}
_UPPER = {c + 32: c for c in range(65, 91)}


def ascii_lower(s):
    """Lower case as C's tolower() in Exim: ASCII letters only."""
    return s.lower() if s.isascii() else s.translate(_LOWER)


def ascii_upper(s):
    return s.upper() if s.isascii() else s.translate(_UPPER)


def _utf8_bytes(error):
    """Encoding error handler: a character beyond one byte goes out as its
    UTF-8 form (a surrogate escape as the byte it stands for)."""
    return error.object[error.start:error.end].encode("utf-8", "surrogateescape"), error.end


codecs.register_error("exim_py.utf8", _utf8_bytes)


# The expansion engine works on byte strings as Exim does: inside it, one
# character stands for one byte (latin-1), so lengths, substrings, hashes and
# the bytes that \x and octal escapes make come out as Exim's.  Everywhere
# else exim_py holds text as UTF-8 with other bytes as surrogate escapes (the
# configuration, the spool, the logs).  These two convert at the border:
# expand() takes and returns the outside form, variables and headers are
# converted as they are read.

def to_latin(s):
    """Outside text (UTF-8, surrogate escapes) as the engine's byte string."""
    if s.isascii():
        return s
    converted = s.encode("utf-8", "surrogateescape").decode("latin-1")
    return converted if s.__class__ is str else s.__class__(converted)


def from_latin(s):
    """The engine's byte string as outside text: bytes that form UTF-8 become
    the characters they spell, any others surrogate escapes."""
    if s.isascii():
        return s
    converted = s.encode("latin-1", "exim_py.utf8").decode("utf-8", "surrogateescape")
    return converted if s.__class__ is str else s.__class__(converted)


def to_bytes(s):
    """The bytes a string stands for: strings hold one character per byte
    (latin-1) as Exim's do; text from elsewhere with wider characters is
    taken as UTF-8."""
    try:
        return s.encode("latin-1")
    except UnicodeEncodeError:
        return s.encode("utf-8", "surrogateescape")


def extract_substr(subject, value1, value2):
    """${substr}: value2 < 0 means "unset" (the rest, or all before)."""
    sublen = len(subject)
    if value1 < 0:
        value1 += sublen
        if value1 < 0:
            value2 += value1
            if value2 < 0:
                value2 = 0
            value1 = 0
        elif value2 < 0:
            value2 = value1
            value1 = 0
    else:
        if value1 > sublen:
            value1 = sublen
            value2 = 0
        elif value2 < 0:
            value2 = sublen
    if value1 + value2 > sublen:
        value2 = sublen - value1
    return subject[value1:value1 + value2]


def compute_hash(subject, value1, value2):
    """${hash}: Exim's old textual hash, value1 characters from value2 codes."""
    if value2 < 0:
        value2 = 26
    elif value2 == 0:
        raise ExpansionError("hash count 0 is not valid")   # Exim itself crashes
    elif value2 > len(HASHCODES):
        raise ExpansionError('hash count "%d" too big' % value2)
    if value1 < 0:
        raise ExpansionError("hash length %d is not valid" % value1)   # Exim misbehaves
    data = bytearray(to_bytes(subject))
    sublen = len(data)
    if value1 >= sublen:
        return subject
    i = 0
    j = value1
    while j < sublen:
        c = data[j]
        shift = (c + j) & 7
        data[i] = (data[i] ^ ((c << shift) | (c >> (8 - shift)))) & 0xFF
        j += 1
        i += 1
        if i >= value1:
            i = 0
    return "".join(HASHCODES[data[k] % value2] for k in range(value1))


_ULONG = (1 << 64) - 1


def compute_nhash(subject, value1, value2):
    """${nhash}: a number below value1, or "a/b" for a div/mod hash."""
    total = 0
    i = 0
    for c in to_bytes(subject):
        if i == 0:
            i = len(PRIMES) - 1
        total += PRIMES[i] * c
        i -= 1
    total &= _ULONG
    # C: the int operands convert to unsigned long (a negative one is huge),
    # and value1 * value2 is an int product that may wrap.
    if value2 < 0:
        if value1 == 0:
            raise ExpansionError("division by zero in nhash")   # Exim itself crashes
        return "%d" % (total % (value1 & _ULONG))
    product = ((value1 * value2 + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)
    if product == 0 or value2 == 0:
        raise ExpansionError("division by zero in nhash")
    total %= product & _ULONG
    return "%d/%d" % (total // (value2 & _ULONG), total % (value2 & _ULONG))


_ESCAPES = {"\n": "\\n", "\r": "\\r", "\b": "\\b", "\v": "\\v", "\f": "\\f", "\t": "\\t"}


def printing(s, tab=False, topbit=False):
    """Exim's string_printing(): non-printing characters as escapes
    (characters above 127 too, unless ``topbit``: print_topbitchars)."""
    if s.isprintable() and s.isascii():
        return s
    out = []
    for c in s:
        o = ord(c)
        if 32 <= o < 127 or (tab and c == "\t") or (topbit and o > 127):
            out.append(c)
        elif c in _ESCAPES:
            out.append(_ESCAPES[c])
        else:
            out.append("\\%03o" % (o & 0xFF if o < 256 else o))
    return "".join(out)


def interpret_escape(s, i):
    """The character for the backslash sequence at s[i] ('\\\\'), and the index after it."""
    i += 1
    c = s[i]
    if "0" <= c <= "7":
        value = ord(c) - 48
        if i + 1 < len(s) and "0" <= s[i + 1] <= "7":
            i += 1
            value = value * 8 + ord(s[i]) - 48
            if i + 1 < len(s) and "0" <= s[i + 1] <= "7":
                i += 1
                value = value * 8 + ord(s[i]) - 48
        return chr(value & 0xFF), i + 1
    if c == "x":
        value = 0
        if i + 1 < len(s) and s[i + 1] in "0123456789abcdefABCDEF":
            i += 1
            value = int(s[i], 16)
            if i + 1 < len(s) and s[i + 1] in "0123456789abcdefABCDEF":
                i += 1
                value = value * 16 + int(s[i], 16)
        return chr(value), i + 1
    return {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}.get(c, c), i + 1


def dequote(s, i):
    """Exim's string_dequote() from s[i]: a word up to white space taken as
    it is, or, when it starts with a double quote, a quoted string with
    backslash escapes.  Returns (text, index after it)."""
    n = len(s)
    if i >= n or s[i] != '"':
        j = i
        while j < n and s[j] not in _SPACE:
            j += 1
        return s[i:j], j
    out = []
    i += 1
    while i < n and s[i] != '"':
        if s[i] == "\\" and i + 1 < n:
            c, i = interpret_escape(s, i)
            out.append(c)
        else:
            out.append(s[i])
            i += 1
    if i < n:
        i += 1
    return "".join(out), i


def split_command(text):
    """A ${run} / pipe command line split into arguments as Exim does:
    white space separates, '...' quotes literally, "..." quotes with escapes."""
    args = []
    i = 0
    n = len(text)
    while True:
        while i < n and text[i] in _SPACE:
            i += 1
        if i >= n:
            return args
        if text[i] == "'":
            j = text.find("'", i + 1)
            if j < 0:
                j = n
            args.append(text[i + 1:j])
            i = j + 1
        else:
            arg, i = dequote(text, i)
            args.append(arg)
