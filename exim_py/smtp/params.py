"""Parsing the arguments of MAIL and RCPT: the address and the ESMTP parameters.

Exim recognises an ESMTP parameter only when the client used EHLO and the
extension it belongs to was advertised; anything else stays part of the
address operand and makes it malformed ("X=Y may not follow <a@b>").
Parameters are taken from the end of the line, as Exim does, so the
address itself may contain spaces inside quotes.  OptionScanner follows
Exim's smtp_in.c extract_option to the byte, quirks included, because the
operand left over is echoed in the 501 replies.
"""

import re

from exim_py.expand.rfc822 import extract_address

# C's isspace() and isalpha() in the C locale
C_SPACE = " \t\n\v\f\r"
_SPACE = frozenset(C_SPACE)
_SPACE_AT = re.compile("[%s]" % C_SPACE)
_ALPHA = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
# a declared size is held in a C int
INT_MAX = 2 ** 31 - 1


class OptionScanner:
    """Takes ESMTP options off the end of a MAIL or RCPT operand one at a
    time, as Exim's extract_option: ``next()`` gives the last ``(name,
    value)`` still there, or None when what is left does not end in one;
    ``operand`` is what is left.

    An option is the last word, cut at its last "=": the name is the
    letters before the "=" (so no digits or hyphens: ``SMTPUTF8=x`` and
    ``X-Y=1`` end the scan) and must follow white space (a tab will do).
    A word without "=" is an option whose value is its name.  A scan never
    stops inside double quotes.  White space at the end is dropped for good.
    ``put_back(rcpt)`` returns the option last taken to the operand, as Exim
    does for one it does not know: the character before it becomes a space
    (MAIL), or for RCPT an "=" when the option had none.
    """

    __slots__ = ("_text", "_end", "_last")

    def __init__(self, text):
        self._text = text
        self._end = len(text)
        self._last = None

    @property
    def operand(self):
        return self._text[:self._end]

    def next(self):
        text = self._text
        v = self._end - 1
        while v > 0 and text[v] in _SPACE:
            v -= 1
        self._end = v + 1
        if _SPACE_AT.search(text, 0, v) is None:
            # one word: no option can follow it (the usual bare "<a@b>")
            return None
        while v > 0 and text[v] != "=" and text[v] not in _SPACE:
            if text[v] == '"':
                v -= 1
                while v > 0 and text[v] != '"':
                    v -= 1
                if v <= 0:
                    return None
            v -= 1
        if v <= 0:
            return None
        if text[v] == "=":
            n = v
            while n > 0 and text[n - 1] in _ALPHA:
                n -= 1
            if n <= 0 or text[n - 1] not in _SPACE:
                return None
            name, value, sep, bare = text[n:v], text[v + 1:self._end], n - 1, False
        else:
            name = value = text[v + 1:self._end]
            sep, bare = v, True
        self._last = (sep, self._end, bare)
        self._end = sep
        return name, value

    def known(self, names, rcpt=False):
        """The options from the end as (NAME in upper case, value) while the
        name is one of ``names``: one that is not is put back (``rcpt`` as for
        put_back) and ends them; so does an operand with no option left."""
        while True:
            option = self.next()
            if option is None:
                return
            name = option[0].upper()
            if name not in names:
                self.put_back(rcpt)
                return
            yield name, option[1]

    def put_back(self, rcpt=False):
        sep, end, bare = self._last
        mark = "=" if rcpt and bare else " "
        self._text = self._text[:sep] + mark + self._text[sep + 1:]
        self._end = end


def c_strtoul(value):
    """The declared size Exim reads from SIZE=: C's strtoul in base 10 over
    the whole value (a sign is allowed, and a negative number wraps round
    to a huge one), held in an int (INT_MAX at most); None when the value
    is not a number."""
    digits = value
    sign = digits[:1]
    if sign in ("+", "-"):
        digits = digits[1:]
    if not digits or not digits.isascii() or not digits.isdigit():
        return None
    number = int(digits)
    if sign == "-" and number:
        return INT_MAX
    return min(number, INT_MAX)


def xtext_decode_strict(value):
    """RFC 3461 4 xtext as Exim's auth_xtextdecode reads it: None when a
    character is a control, a space, "=" or above 127, or a "+" is not
    followed by two hex digits."""
    out = []
    i, n = 0, len(value)
    while i < n:
        c = value[i]
        if c < "!" or c > "\x7f" or c == "=":
            return None
        if c == "+":
            pair = value[i + 1:i + 3]
            if len(pair) < 2 or not all(h in "0123456789abcdefABCDEF" for h in pair):
                return None
            out.append(chr(int(pair, 16)))
            i += 3
            continue
        out.append(c)
        i += 1
    return "".join(out)


class BadAddress(ValueError):
    """An address operand Exim would refuse; ``str()`` is the text after '<operand>: '."""


def parse_path(operand, allow_empty, domain_literals=True):
    """Extract the mailbox from a MAIL/RCPT operand: ``<a@b>``, ``a@b``, ``<@r1,@r2:a@b>``.

    Returns the address ('' for ``<>`` when ``allow_empty``).  Raises
    BadAddress with Exim's explanation otherwise: the operand goes through
    the port of Exim's parse_extract_address that ${address} uses, so the
    texts are its own ('"@" or "." expected after "c"', "unmatched
    doublequote in local part"...).  ``domain_literals`` is the
    allow_domain_literals option.
    """
    text = operand.strip()
    simple = _SIMPLE_PATH.fullmatch(text)
    if simple:
        # <dot-atom@dot-atom>, as nearly every client sends: the full parser
        # would return just what is between the brackets.
        return simple.group(1)
    errors = []
    parsed = extract_address(text, allow_null=allow_empty, errors=errors,
                             allow_domain_literals=domain_literals)
    if parsed is None:
        raise BadAddress(errors[0])
    return parsed[0]


_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
# RFC 821's rule for a domain, as Exim applies it: letters, digits and
# hyphens, not starting with a hyphen
_LABEL = r"[A-Za-z0-9][A-Za-z0-9-]*"
# "<local@domain>": a dot-atom, and labels; no quotes, comments, source
# route or white space, so nothing for the full parser to do
_SIMPLE_PATH = re.compile(r"<(%s(?:\.%s)*@%s(?:\.%s)*)>" % (_ATOM, _ATOM, _LABEL, _LABEL))


def xtext_decode(value):
    """RFC 3461 4: decode '+XX' escapes (ORCPT, ENVID, AUTH=)."""
    # twisted.mail is imported only when a parameter is xtext-encoded.
    from twisted.mail.smtp import xtext_decode as _twisted_xtext_decode
    return _twisted_xtext_decode(value.encode("ascii", "replace"))[0]
