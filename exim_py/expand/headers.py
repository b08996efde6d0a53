"""Header variables: $h_, $rh_, $bh_, $lh_ and $message_headers.

Spec chapter "String expansions", section "Expansion items", ``$header_``:
several headers of the same name are joined (with a comma for the address
headers From, To, Cc, Bcc, Reply-To and Sender, which Exim marks with the
type letters B C F R S T), leading and trailing white space is removed unless
the raw form is asked for, and RFC 2047 encoded words are decoded except for
the ``$bh_`` form.
"""

import base64
import binascii
import re

# Headers deleted by an ACL or a router keep their place with this flag.
_DELETED = "*"
_ADDRESS_TYPES = "BCFRST"
_SPACE = " \t\n\r\f\v"
HEADER_INSERT_MAXLEN = 64 * 1024

# Header name -> Exim's type letter (macros.h htype_*), for headers read from
# a file (-bem); the receiving side sets the same letters.
TYPE_BY_NAME = {
    "bcc": "B", "cc": "C", "from": "F", "message-id": "I", "received": "P",
    "reply-to": "R", "sender": "S", "to": "T",
}


def header_type(name):
    """Exim's one-letter type for a header called ``name`` (' ' for others)."""
    return TYPE_BY_NAME.get(name.lower(), " ")


def find_header(ctx, name, raw=False, as_list=False, decode=True, exists_only=False):
    """The value of header ``name`` (which ends with ':'), or None if absent."""
    lname = name.lower()
    n = len(lname)
    pieces = []
    found = False
    comma = False
    for h in ctx.headers:
        if h.flag == _DELETED or not h.text:
            continue
        if h.text[:n].lower() != lname:
            continue
        if exists_only:
            return "1"
        found = True
        s = h.text[n:]
        if not raw:
            s = s.lstrip(_SPACE)
        if as_list:
            s = s.rstrip("\n")
        elif not raw:
            s = s.rstrip(_SPACE)
            if h.flag in _ADDRESS_TYPES:
                comma = True
        pieces.append(s)
    if not found:
        return None
    if as_list:
        return ":".join(p.replace(":", "::") for p in pieces)
    if raw:
        return "".join(pieces)[:HEADER_INSERT_MAXLEN]
    text = (",\n" if comma else "\n").join(p for p in pieces if p)
    text = text[:HEADER_INSERT_MAXLEN]
    return decode_2047(text, ctx.main_option("headers_charset", "UTF-8") if decode else None)


def all_headers(ctx, raw):
    """$message_headers / $message_headers_raw."""
    pieces = []
    for h in ctx.headers:
        if h.flag == _DELETED or not h.text:
            continue
        s = h.text if raw else h.text.strip(_SPACE)
        if s:
            pieces.append(s)
    if raw:
        return "".join(pieces)
    return decode_2047("\n".join(pieces), ctx.main_option("headers_charset", "UTF-8"))


_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([QqBb])\?([^?\s]*)\?=")
_BETWEEN_WORDS = re.compile(r"(\?=)[ \t\r\n]+(?==\?)")


def _word_bytes(m):
    encoding, data = m.group(2).upper(), m.group(3)
    if encoding == "B":
        return base64.b64decode(data + "=" * (-len(data) % 4))
    data = data.replace("_", " ")
    return re.sub(r"=([0-9A-Fa-f]{2})", lambda h: chr(int(h.group(1), 16)),
                  data).encode("latin-1")


def decode_2047(text, charset="UTF-8"):
    """Decode RFC 2047 encoded words in header text.

    The decoded text is converted to ``charset`` (the headers_charset
    option); with None (``$bh_``) the bytes of the declared charset are
    kept.  Malformed words are left as they are.
    """
    if "=?" not in text:
        return text
    text = _BETWEEN_WORDS.sub(r"\1", text)

    def replace(m):
        try:
            data = _word_bytes(m)
        except (ValueError, binascii.Error):
            return m.group(0)
        if charset:
            declared = m.group(1).split("*", 1)[0]
            try:
                data = data.decode(declared, "replace").encode(charset, "replace")
            except LookupError:
                pass
        # Header text is UTF-8 with surrogate escapes, as the spool holds it.
        return data.decode("utf-8", "surrogateescape")

    return _ENCODED_WORD.sub(replace, text)
