"""Numbers in expansions: ${eval}, integer conversion, time intervals.

Exim does its arithmetic in C's 64-bit signed integers; the results here wrap
the same way, and the error texts (with the "after processing" position) are
Exim's (spec section "Expansion operators", ``eval``).
"""

import functools
import re

from exim_py.errors import ExpansionError

INT_MAX = (1 << 63) - 1
INT_MIN = -(1 << 63)
_SPACE = " \t\n\r\f\v"
_TIME_PART = re.compile(r"([0-9]+)([wdhms])")
_TIME_UNITS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}


def wrap64(x):
    """Reduce ``x`` to a signed 64-bit value, as C arithmetic overflows."""
    x &= (1 << 64) - 1
    return x - (1 << 64) if x > INT_MAX else x


class _EvalError(Exception):
    pass


class _Evaluator:
    """A recursive-descent evaluator with Exim's precedence: | then ^ then &
    then << >> then + - then * / % then unary + - ~.  ``i`` is the position
    reached, which Exim quotes in its error messages."""

    def __init__(self, text, decimal):
        # A NUL sentinel saves a bounds check on every peek.
        self.s = text + "\0"
        self.i = 0
        self.decimal = decimal

    def skip(self):
        s, i = self.s, self.i
        while s[i] in _SPACE:
            i += 1
        self.i = i

    def expr(self, endket):
        x = self.op_or()
        if endket:
            if self.s[self.i] != ")":
                raise _EvalError("expecting closing parenthesis")
            self.i += 1
            self.skip()
        elif self.i < len(self.s) - 1:
            raise _EvalError("expecting operator")
        return x

    def number(self):
        self.skip()
        c = self.s[self.i]
        if "0" <= c <= "9":
            n = self.read_digits()
            mult = _SUFFIX.get(self.s[self.i])
            if mult:
                n = wrap64(n * mult)
                self.i += 1
            self.skip()
            return n
        if c == "(":
            self.i += 1
            return self.expr(True)
        raise _EvalError("expecting number or opening parenthesis")

    def read_digits(self):
        # sscanf %lli / %lld: base prefixes only in the non-decimal form.
        s, i = self.s, self.i
        if not self.decimal and s[i] == "0":
            if s[i + 1] in "xX" and s[i + 2] in _HEX:
                j = i + 2
                while s[j] in _HEX:
                    j += 1
                value = int(s[i + 2:j], 16)
            else:
                j = i + 1
                while s[j] in "01234567":
                    j += 1
                value = int(s[i:j], 8)
        else:
            j = i
            while "0" <= s[j] <= "9":
                j += 1
            value = int(s[i:j])
        self.i = j
        return min(value, INT_MAX)

    def unary(self):
        self.skip()
        c = self.s[self.i]
        if c == "-":
            self.i += 1
            return wrap64(-self.unary())
        if c == "~":
            self.i += 1
            return ~self.unary()
        if c == "+":
            self.i += 1
            return self.unary()
        return self.number()

    def mult(self):
        x = self.unary()
        while True:
            op = self.s[self.i]
            if op not in "*/%":
                return x
            self.i += 1
            y = self.unary()
            if y == -1 and x == INT_MIN and op != "*":
                x = INT_MAX
            elif op == "*":
                x = wrap64(x * y)
            elif y == 0:
                raise _EvalError("divide by zero" if op == "/" else "modulo by zero")
            else:
                # C truncates towards zero.
                q = abs(x) // abs(y)
                if (x < 0) != (y < 0):
                    q = -q
                x = wrap64(q) if op == "/" else wrap64(x - q * y)

    def sum(self):
        x = self.mult()
        while True:
            op = self.s[self.i]
            if op != "+" and op != "-":
                return x
            self.i += 1
            y = self.mult()
            # Exim's deliberately conservative overflow test, as written.
            if x >= INT_MAX // 2 or (x <= -(INT_MAX // 2) and y <= -(INT_MAX // 2)):
                raise _EvalError("overflow in sum" if op == "+" else "overflow in difference")
            x = wrap64(x + y if op == "+" else x - y)

    def shift(self):
        x = self.sum()
        while True:
            op = self.s[self.i]
            if (op != "<" and op != ">") or self.s[self.i + 1] != op:
                return x
            self.i += 2
            y = self.sum() & 63
            x = wrap64(x << y) if op == "<" else x >> y

    def op_and(self):
        x = self.shift()
        while self.s[self.i] == "&":
            self.i += 1
            x &= self.shift()
        return x

    def op_xor(self):
        x = self.op_and()
        while self.s[self.i] == "^":
            self.i += 1
            x ^= self.op_and()
        return x

    def op_or(self):
        x = self.op_xor()
        while self.s[self.i] == "|":
            self.i += 1
            x |= self.op_xor()
        return x


_HEX = frozenset("0123456789abcdefABCDEF")
_SUFFIX = {"k": 1024, "K": 1024, "m": 1024 * 1024, "M": 1024 * 1024,
           "g": 1024 * 1024 * 1024, "G": 1024 * 1024 * 1024}


@functools.lru_cache(maxsize=4096)
def evaluate(text, decimal=False):
    """The value of arithmetic expression ``text`` (${eval} / ${eval10})."""
    ev = _Evaluator(text, decimal)
    try:
        return ev.expr(False)
    except _EvalError as e:
        raise ExpansionError('error in expression evaluation: %s (after processing "%s")'
                             % (e, text[:ev.i]))


def string_integer(s, isplus=False):
    """Exim's expanded_string_integer(): a decimal with optional K/M/G suffix."""
    msg = 'invalid integer "%s"'
    if s[:1] in _SPACE and s:
        s = s.lstrip(_SPACE)
        if not s:
            return 0
    i = 0
    n = len(s)
    while i < n and s[i] in _SPACE:
        i += 1
    j = i
    if j < n and s[j] in "+-":
        j += 1
    k = j
    while k < n and s[k] in "0123456789":
        k += 1
    if k == j:
        raise ExpansionError('integer expected but "%s" found' % s)
    value = int(s[i:k])
    overflow = value > INT_MAX or value < INT_MIN
    if value < 0 and isplus:
        raise ExpansionError('non-negative integer expected but "%s" found' % s)
    suffix = s[k:k + 1].lower()
    mult = {"k": 1024, "m": 1024 * 1024, "g": 1024 * 1024 * 1024}.get(suffix)
    if mult:
        if value > INT_MAX // mult or value < INT_MIN // mult:
            overflow = True
        else:
            value *= mult
        k += 1
    if overflow:
        raise ExpansionError('absolute value of integer "%s" is too large (overflow)' % s)
    if s[k:].strip(_SPACE) == "":
        return value
    raise ExpansionError(msg % s)


def read_time(s):
    """Exim's time interval (readconf_readtime): ``1d2h30m10s`` -> seconds,
    or -1 when malformed.  Every number needs its unit, and there must be
    at least one; the digits are ASCII ones, as C's isdigit() sees them.
    The configuration's time options are read with it too."""
    total = 0
    pos = 0
    while True:
        m = _TIME_PART.match(s, pos)
        if m is None:
            return -1
        total += int(m.group(1)) * _TIME_UNITS[m.group(2)]
        pos = m.end()
        if pos == len(s):
            return total


def print_time(t):
    """Exim's readconf_printtime(): seconds as '1w2d3h4m5s' ('0s' for zero)."""
    if t < 0:
        return "-" + print_time(-t)
    if t == 0:
        return "0s"
    out = []
    for unit, size in (("w", 7 * 86400), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if t >= size:
            out.append("%d%s" % (t // size, unit))
            t %= size
    return "".join(out)
