"""RFC 2822 address extraction for ${address}, ${domain}, ${local_part}, ${addresses}.

A port of the behaviour of Exim's parse_extract_address() and
parse_find_address_end(): phrases and comments are dropped, quoted local
parts keep their quotes, ``<route,addr>`` source routes are ignored, and
``group: a, b;`` syntax is accepted when asked for.
"""

import re

_SPECIALS = '()<>@,;:\\".[]'
_SPACE = " \t\n\r\f\v"
# The common case, a bare local@domain made of atoms, needs no parser.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9][A-Za-z0-9-]*"
_SIMPLE = re.compile(r"(%s(?:\.+%s)*)@(%s(?:\.%s)*)\Z" % (_ATOM, _ATOM, _LABEL, _LABEL))


class _Fail(Exception):
    pass


def _is_atom_char(c):
    return c and c not in _SPECIALS and c not in _SPACE and ord(c) >= 32 and ord(c) != 127


class _Parser:
    def __init__(self, s, literals=True):
        self.s = s
        self.i = 0
        # allow_domain_literals: without it a literal in a route-addr or a
        # source route fails (an addr-spec outside <> keeps it: Exim does
        # not look at that error there).
        self.literals = literals

    def ch(self, k=0):
        j = self.i + k
        return self.s[j] if j < len(self.s) else ""

    def skip_comment(self):
        s = self.s
        while True:
            while self.i < len(s) and s[self.i] in _SPACE:
                self.i += 1
            if self.ch() != "(":
                return
            level = 1
            self.i += 1
            while self.i < len(s) and level > 0:
                c = s[self.i]
                if c == "\\" and self.i + 1 < len(s):
                    self.i += 1
                elif c == "(":
                    level += 1
                elif c == ")":
                    level -= 1
                self.i += 1

    def local_part(self):
        """Dot-separated words (atoms or quoted strings); may be empty."""
        out = []
        while True:
            self.skip_comment()
            if self.ch() == '"':
                out.append('"')
                self.i += 1
                while self.i < len(self.s) and self.s[self.i] != '"':
                    c = self.s[self.i]
                    out.append(c)
                    if c == "\\" and self.i + 1 < len(self.s):
                        self.i += 1
                        out.append(self.s[self.i])
                    self.i += 1
                if self.ch() != '"':
                    raise _Fail("unmatched doublequote in local part")
                out.append('"')
                self.i += 1
            else:
                # Exim also takes RFC 821 quoted pairs (\x) in a local part.
                while _is_atom_char(self.ch()) or self.ch() == "\\":
                    if self.ch() == "\\" and self.i + 1 < len(self.s):
                        out.append(self.ch())
                        self.i += 1
                    out.append(self.ch())
                    self.i += 1
            self.skip_comment()
            if self.ch() != ".":
                return "".join(out)
            out.append(".")
            self.i += 1

    def domain(self, checked=True):
        out = []
        self.skip_comment()
        if self.ch() == "[":
            if checked and not self.literals:
                raise _Fail("domain literals not allowed")
            if checked:
                return self.checked_literal()
            out.append("[")
            self.i += 1
            while self.i < len(self.s) and self.s[self.i] != "]":
                c = self.s[self.i]
                if ord(c) <= 32 or ord(c) >= 127 or c in "[\\":
                    raise _Fail("malformed domain literal")
                out.append(self.s[self.i])
                self.i += 1
            if self.ch() != "]":
                raise _Fail("missing ] in domain literal")
            out.append("]")
            self.i += 1
            self.skip_comment()
            return "".join(out)
        while True:
            self.skip_comment()
            start = len(out)
            # RFC 821 rule, as Exim applies it here: letters, digits and
            # hyphens, not starting with a hyphen.
            if self.ch() != "-":
                while self.ch().isalnum() and self.ch().isascii() or self.ch() == "-":
                    out.append(self.ch())
                    self.i += 1
            if len(out) == start:
                raise _Fail("domain missing or malformed")
            self.skip_comment()
            if self.ch() != ".":
                return "".join(out)
            out.append(".")
            self.i += 1

    def checked_literal(self):
        """A domain literal where Exim checks it: an optional IPv6: or IPv4:
        tag, then only dots, colons and hex digits up to the ']'."""
        start = self.i
        self.i += 1
        if self.s[self.i:self.i + 5].lower() in ("ipv6:", "ipv4:"):
            self.i += 5
        while self.ch() and self.ch() in ".:0123456789abcdefABCDEF":
            self.i += 1
        if self.ch() != "]":
            raise _Fail("malformed domain literal")
        self.i += 1
        literal = self.s[start:self.i]
        self.skip_comment()
        return literal

    def route(self):
        """A source route (@a,@b:) before an address: read and dropped."""
        commas = False
        while self.ch() == "@":
            self.i += 1
            self.domain()
            if self.ch() != ",":
                break
            self.i += 1
            commas = True
            self.skip_comment()
        if self.ch() == ":":
            self.i += 1
            return
        raise _Fail("colon expected after route list" if commas else "no local part")

    def addr_spec(self, term):
        local = self.local_part()
        if not local:
            raise _Fail("missing or malformed local part")
        if self.ch() == term and term:
            return local, 0
        if self.ch() != "@":
            raise _Fail('"@" or "." expected after "%s"' % local)
        self.i += 1
        domain = self.domain()
        return local + "@" + domain, len(local) + 1


def extract_address(mailbox, state=None, allow_null=False, errors=None,
                    allow_domain_literals=True):
    """(address, domain offset) for ``mailbox`` (offset 0: no domain), or None.

    ``errors``, a list, receives Exim's text for why it failed.
    ``allow_domain_literals`` is the main option of that name.
    ``state`` (a dict with ``allow_group`` / ``found_group``) carries group
    syntax between the pieces of one ${addresses} list.
    """
    m = _SIMPLE.match(mailbox)
    if m:
        return mailbox, m.end(1) + 1
    if state is None:
        state = {"allow_group": False, "found_group": False}
    p = _Parser(mailbox, allow_domain_literals)
    try:
        while True:
            p.skip_comment()
            text = p.local_part()
            if p.ch() not in ("@", "<") or p.ch() == "":
                if p.ch() in ("", ";"):
                    if not text:
                        raise _Fail("empty address")
                    result = (text, 0)
                    break
                while p.ch() != "<" and not (state["allow_group"] and p.ch() == ":"):
                    # Each phrase word must be there: an empty one (at the
                    # end, or at a special character) fails the address.
                    try:
                        word = p.local_part()
                    except _Fail as e:
                        raise _Fail('%s (expected word or "<")' % e)
                    if not word:
                        raise _Fail('missing or malformed local part (expected word or "<")')
                if p.ch() == ":":
                    state["found_group"] = True
                    state["allow_group"] = False
                    p.i += 1
                    continue
            if p.ch() == "<":
                p.i += 1
                # Extra <<...>> pairs are accepted only with the (default
                # false) strip_excess_angle_brackets option.
                brackets = 1
                p.skip_comment()
                routed = False
                if p.ch() == "@":
                    p.route()
                    routed = True
                if allow_null and not routed and p.ch() == ">":
                    result = ("", 0)
                else:
                    result = p.addr_spec(">")
                    if routed and result[1] == 0:
                        raise _Fail("domain missing in source-routed address")
                for _ in range(brackets):
                    if p.ch() != ">":
                        if p.ch() == "":
                            raise _Fail("'>' missing at end of address")
                        raise _Fail("malformed address: %s may not follow %s"
                                    % (mailbox[p.i:p.i + 32], mailbox[:p.i]))
                    p.i += 1
                p.skip_comment()
            elif not text:
                p.route()
                result = p.addr_spec("")
                if result[1] == 0:
                    raise _Fail("domain missing in source-routed address")
            else:
                p.i += 1
                domain = p.domain(checked=False)
                result = (text + "@" + domain, len(text) + 1)
            break
        if p.ch():
            if state["found_group"] and p.ch() == ";":
                state["found_group"] = False
                state["allow_group"] = True
            else:
                raise _Fail("malformed address: %s may not follow %s"
                            % (mailbox[p.i:p.i + 32], mailbox[:p.i]))
        return result
    except _Fail as e:
        if errors is not None:
            errors.append(str(e))
        if state["found_group"] and p.ch() == ";":
            state["found_group"] = False
            state["allow_group"] = True
        return None


def find_address_end(s, nl_ends=False):
    """Index of the comma (or end) that ends the first address in ``s``."""
    i = 0
    n = len(s)
    routing = s[:1] == "@"
    no_term = 1 if routing else 0
    while i < n and (s[i] != "," or no_term > 0) and (s[i] != "\n" or not nl_ends):
        c = s[i]
        if c == "\\" and i + 1 < n:
            i += 2
        elif c == '"':
            i += 1
            while i < n and (s[i] != "\n" or not nl_ends):
                if s[i] == "\\" and i + 1 < n:
                    i += 1
                elif s[i] == '"':
                    i += 1
                    break
                i += 1
        elif c == "(":
            level = 1
            i += 1
            while i < n and (s[i] != "\n" or not nl_ends):
                if s[i] == "\\" and i + 1 < n:
                    i += 1
                elif s[i] == "(":
                    level += 1
                elif s[i] == ")":
                    level -= 1
                    if level <= 0:
                        i += 1
                        break
                i += 1
        else:
            if c == "<":
                routing = s[i + 1:i + 2] == "@"
                no_term = 2 if routing else 1
            elif c == ">":
                no_term -= 1
            elif routing and c == ":":
                no_term -= 1
            i += 1
    return i
