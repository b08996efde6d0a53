"""Parsing expansion strings into node trees, once per string.

The grammar and every syntax error text follow Exim's expand.c: literal text
with backslash escapes and ``\\N...\\N``, ``$name``, ``${name}``, header
variables, ``${op:subject}`` operators and ``${item{arg}...}`` items, and
the conditions of ``${if}``.  Exim reports a syntax error only when its
single left-to-right pass reaches it, so a ``_Syntax`` exception collects,
on its way out, the nodes that Exim would have expanded before the error;
``parse()`` turns them into a ``Partial`` node.  Unknown variable names are
errors even in branches that are not taken, so they are found here too.
"""

from contextlib import contextmanager

from exim_py.errors import ExpansionError
from exim_py.expand import conditions as C
from exim_py.expand.nodes import (
    ErrorNode, HeaderVar, Node, NumVar, Partial, Steps, Tainted, Text, Var, WrapErrors, YesNo,
    make_seq)
from exim_py.expand.operators import find_operator
from exim_py.expand.strings import interpret_escape
from exim_py.expand.variables import is_known, unknown_message

_SPACE = " \t\n\r\f\v"

CONDITIONS = frozenset("""
< <= = == > >= acl and bool bool_lax crypteq def eq eqi exists first_delivery
forall forall_json forall_jsons forany forany_json forany_jsons ge gei gt gti
inbound_srs inlist inlisti isip isip4 isip6 ldapauth le lei lt lti match
match_address match_domain match_ip match_local_part or pam pwcheck
queue_running radius saslauthd
""".split())
_LIST_MATCHES = ("match_address", "match_domain", "match_ip", "match_local_part")
_TWO_ARGS = frozenset(("<", "<=", "=", "==", ">", ">=", "crypteq", "eq", "eqi", "ge",
                       "gei", "gt", "gti", "inlist", "inlisti", "le", "lei", "lt", "lti",
                       "match") + _LIST_MATCHES)


class _Syntax(Exception):
    """A syntax error; ``nodes`` is what Exim expands before reaching it."""

    def __init__(self, message, error=None):
        super().__init__(message)
        self.message = message
        self.nodes = []
        self.error = error      # a node raising the error, when it depends on values
        self.alt = None         # the text instead, after an empty header variable with '}' 

    def add_suffix(self, suffix):
        self.message += suffix
        if self.alt is not None:
            self.alt += suffix
        if self.error is not None:
            self.error = WrapErrors(self.error, suffix)


@contextmanager
def _before(done):
    """Nodes in ``done`` are expanded before any syntax error raised inside."""
    try:
        yield
    except _Syntax as e:
        e.nodes[0:0] = [d for d in done if isinstance(d, Node)]
        raise


def _header_prefix(name):
    """'h', 'r', 'b' or 'l' if ``name`` starts a header variable, else None."""
    t = name
    if t[:1] in ("r", "l", "b") and t[1:2] == "h":
        kind, t = t[0], t[2:]
    elif t[:1] == "h":
        kind, t = "h", t[1:]
    else:
        return None
    return kind if t[:1] == "_" or t.startswith("eader_") else None


NESTED_TOO_DEEPLY = "expansion items nested too deeply"
MALFORMED_CURLY = "missing or misplaced { or } - could be header name not terminated by colon"
MALFORMED_END = "missing } at end of string - could be header name not terminated by colon"

# Item name -> function(parser, name) -> node; filled in by itemsyntax.py.
ITEMS = {}


class Parser:
    def __init__(self, text):
        self.s = text
        self.n = len(text)
        self.i = 0
        # A header name swallowed a '}': certainly (def:), or if that header
        # variable turns out empty when expanded (Exim's malformed_header).
        self.malformed = False
        self.maybe_malformed = False
        self.acl_vars = []         # ACL variables named, for strict_acl_vars

    # -- low level -------------------------------------------------------

    def ch(self):
        return self.s[self.i] if self.i < self.n else ""

    def ws(self):
        s, i, n = self.s, self.i, self.n
        while i < n and s[i] in _SPACE:
            i += 1
        self.i = i

    def name(self, extras):
        s, i, n = self.s, self.i, self.n
        start = i
        while i < n and ((s[i].isalnum() and s[i].isascii()) or s[i] in extras):
            i += 1
        self.i = i
        return s[start:i]

    def number(self):
        start = self.i
        while self.i < self.n and "0" <= self.s[self.i] <= "9":
            self.i += 1
        return int(self.s[start:self.i])

    def fail(self, message):
        raise _Syntax(message)

    def curly(self, message=""):
        e = _Syntax(self.curly_text(message))
        if self.maybe_malformed and not self.malformed:
            e.alt = MALFORMED_CURLY
        raise e

    def curly_text(self, message):
        """Exim's text for a bracketing error (EXPAND_FAILED_CURLY)."""
        if self.malformed:
            return MALFORMED_CURLY
        return message or "missing or misplaced { or }"

    def curly_yesno(self, what):
        self.curly("curly-bracket problem in conditional yes/no parsing: %s\n"
                   " remaining string is '%s'" % (what, self.s[self.i:]))

    def braced(self, dollar=True):
        """An argument ``{...}`` whose '{' has been consumed; eats the '}'."""
        node = self.seq(True, dollar)
        self.i += 1
        if isinstance(node, Op) and node.name in NUL_MAKERS:
            node = CString(node)
        return node

    # -- strings ---------------------------------------------------------

    def seq(self, brace_ends, dollar=True):
        s, n = self.s, self.n
        parts = []
        with _before(parts):
            while self.i < n:
                c = s[self.i]
                if c == "\\":
                    if self.i + 1 >= n:
                        self.fail("\\ at end of string")
                    if s[self.i + 1] == "N":
                        end = s.find("\\N", self.i + 2)
                        if end < 0:
                            parts.append(s[self.i + 2:])
                            self.i = n
                        else:
                            parts.append(s[self.i + 2:end])
                            self.i = end + 2
                    else:
                        ch, self.i = interpret_escape(s, self.i)
                        parts.append(ch)
                    continue
                if c == "}" and brace_ends:
                    return make_seq(parts)
                if c != "$" or not dollar:
                    j = self.i + 1
                    while j < n and s[j] not in "$}\\":
                        j += 1
                    parts.append(s[self.i:j])
                    self.i = j
                    continue
                self.i += 1
                parts.append(self.dollar(parts))
            if brace_ends:
                e = _Syntax(MALFORMED_END if self.malformed else "missing } at end of string")
                if self.maybe_malformed:
                    e.alt = MALFORMED_END
                raise e
        return make_seq(parts)

    def dollar(self, done):
        c = self.ch()
        if c.isascii() and c.isalpha():
            name = self.name("_")
            kind = _header_prefix(name)
            if kind:
                return HeaderVar(kind, self.header_name(name))
            if not is_known(name):
                self.fail(unknown_message('unknown variable name "%s"' % name, name))
            if name.startswith(("acl_c", "acl_m")):
                self.acl_vars.append(name)
            return Var(name)
        if "0" <= c <= "9":
            return NumVar(self.number())
        if c != "{":
            self.fail("$ not followed by letter, digit, or {")
        self.i += 1
        c = self.ch()
        if "0" <= c <= "9":
            n = self.number()
            if self.ch() != "}":
                self.fail("} expected after number")
            self.i += 1
            return NumVar(n)
        if not (c.isascii() and c.isalpha()):
            self.fail("letter or digit expected after ${")
        name = self.name("_-")
        item = ITEMS.get(name)
        if item is not None:
            return item(self, name)
        c = self.ch()
        if c == ":":
            return self.operator(name)
        if c == "}":
            self.i += 1
            if not is_known(name):
                self.fail(unknown_message('unknown variable in "${%s}"' % name, name))
            if name.startswith(("acl_c", "acl_m")):
                self.acl_vars.append(name)
            return Var(name)
        self.fail('"${%s" is not a known operator (or a } is missing in a variable '
                  'reference)' % name)

    def header_name(self, name, certain=False):
        """The rest of a header variable's name, up to and including ':'."""
        rest = name[name.index("_") + 1:]
        start = self.i
        while self.i < self.n and "!" <= self.s[self.i] <= "~" and self.s[self.i] != ":":
            self.i += 1
        rest += self.s[start:self.i]
        if self.ch() == ":":
            self.i += 1
        if "}" in rest:
            if certain:
                self.malformed = True
            else:
                self.maybe_malformed = True
        return rest + ":"

    def operator(self, name):
        fn, arg = find_operator(name)
        self.i += 1
        base = name.partition("_")[0]
        if base in CERT_OPERATORS and self.ch() == "$":
            # Exim first reads up to the '}' with backslashes interpreted
            # and $ taken literally; a certificate variable's name there
            # means the certificate, not a string.
            scan = Parser(self.s)
            scan.i = self.i + 1
            var = scan.seq(True, dollar=False).ev(None)
            if var in CERT_VARIABLES:
                self.i = scan.i + 1
                return CertOp(fn, arg, var)
        subject = self.braced()
        if fn is None:
            with _before([subject]):
                self.fail('unknown expansion operator "%s"' % name)
        return Op(name, fn, arg, subject)

    # -- argument helpers -----------------------------------------------

    def read_subs(self, n, m, check_end, name, done=None, few=None):
        done = list(done or [])
        subs = []
        self.ws()
        with _before(done), _before(subs):
            for k in range(n):
                if self.ch() != "{":
                    if k < m:
                        self.curly(few or "Not enough arguments for '%s' (min is %d)"
                                   % (name, m))
                    break
                self.i += 1
                subs.append(self.braced())
                self.ws()
            if check_end:
                if self.ch() != "}":
                    if self.ch() == "{":
                        self.fail("Too many arguments for '%s' (max is %d)" % (name, n))
                    self.curly("missing '}' after '%s'" % name)
                self.i += 1
        return subs + [None] * (n - len(subs))

    def yesno(self, kind, progress=None):
        """The {yes}{no} / fail tail; ``progress`` (a dict) records the
        strings read so far, for an error found after them."""
        if progress is None:
            progress = {}
        self.ws()
        if self.ch() == "}":
            self.i += 1
            return YesNo(kind, bare=True)
        if self.ch() != "{":
            self.curly_yesno("'yes' part did not start with '{'")
        self.i += 1
        yes = progress["yes"] = self.braced()
        self.ws()
        no = None
        fail = False
        if self.ch() == "{":
            self.i += 1
            no = progress["no"] = self.braced()
        elif self.ch() != "}":
            if self.name("_") != "fail":
                self.fail('syntax error in "%s" item - "fail" expected' % kind)
            fail = True
        self.ws()
        if self.ch() != "}":
            self.curly_yesno("did not close with '}'")
        self.i += 1
        return YesNo(kind, yes, no, fail)

    # -- conditions ------------------------------------------------------

    def condition_name(self):
        """A condition's name: a symbol (< <= = == > >=) or a word."""
        c = self.ch()
        if c and c in "=<>":
            self.i += 1
            if self.ch() == "=":
                self.i += 1
                return c + "="
            return c
        return self.name("_")

    def condition(self):
        negate = False
        while True:
            self.ws()
            if self.ch() != "!":
                break
            negate = not negate
            self.i += 1
        name = self.condition_name()
        if not name:
            self.fail('condition name expected, but found "%s"' % self.s[self.i:self.i + 16])
        if name not in CONDITIONS:
            self.fail('unknown condition "%s"' % name)
        if name in _TWO_ARGS:
            return self.cond_two(negate, name)
        if name == "def":
            return self.cond_def(negate)
        if name in ("first_delivery", "queue_running"):
            return C.Flag(negate, name)
        if name in ("and", "or"):
            return self.cond_combine(negate, name)
        if name.startswith(("forall", "forany")):
            return self.cond_foreach(negate, name)
        if name in ("bool", "bool_lax"):
            self.ws()
            if self.ch() != "{":
                self.fail('missing { after "%s"' % name)
            arg = self.read_subs(1, 1, False, name,
                                 few="too few arguments or bracketing error for %s" % name)[0]
            if isinstance(arg, Text):
                # A literal is checked even in a branch that is not taken.
                try:
                    C.bool_value(arg.text, name == "bool_lax")
                except ExpansionError as e:
                    self.fail(str(e))
            return C.Bool(negate, name == "bool_lax", arg)
        if name in ("acl", "saslauthd"):
            self.ws()
            if self.ch() != "{":
                self.fail('missing { after "%s"' % name)
            self.i += 1
            args = self.read_subs(10 if name == "acl" else 4, 1 if name == "acl" else 2,
                                  True, name,
                                  few="too few arguments or bracketing error for %s" % name)
            return C.AclCond(negate, args) if name == "acl" else C.Unsupported(negate, name, args)
        if name == "inbound_srs":
            return C.InboundSrs(negate, self.read_subs(
                2, 2, False, name, few="too few arguments or bracketing error for inbound_srs"))
        self.ws()
        if self.ch() != "{":
            self.fail('missing { after "%s"' % name)
        self.i += 1
        return C.OneArg(negate, name, self.braced())

    def cond_two(self, negate, name):
        args = []
        done = []       # what Exim has expanded (and made a number) so far
        for k in (0, 1):
            self.ws()
            if self.ch() != "{":
                with _before(done):
                    self.fail('missing { after "%s"' % name if k == 0 else
                              'missing 2nd string in {} after "%s"' % name)
            self.i += 1
            with _before(done):
                args.append(self.braced(dollar=not (k == 1 and name in _LIST_MATCHES)))
            done.append(C.Number(args[0]) if name in C.NUMERIC else args[0])
        return C.TwoArg(negate, name, args[0], args[1])

    def cond_def(self, negate):
        if self.ch() != ":":
            self.fail('":" expected after "def"')
        self.i += 1
        name = self.name("_")
        if _header_prefix(name):
            return C.DefHeader(negate, self.header_name(name, certain=True))
        if not name:
            self.fail('variable name omitted after "def:"')
        if not is_known(name):
            self.fail(unknown_message('unknown variable "%s" after "def:"' % name, name))
        return C.DefVar(negate, name)

    def cond_combine(self, negate, name):
        self.ws()
        if self.ch() != "{":
            self.fail('missing { after "%s"' % name)
        self.i += 1
        subs = []
        try:
            self._subconditions(name, subs)
        except _Syntax as e:
            # Exim tests the complete subconditions until one decides, then
            # only scans; errors from what it expands get the same suffix.
            suffix = ' inside "%s{...}" condition' % name
            e.nodes = [C.CombinePartial(C.Combine(False, name, list(subs)),
                                        WrapErrors(Steps(e.nodes), suffix), e.error)]
            e.error = None
            raise
        self.i += 1
        return C.Combine(negate, name, subs)

    def _subconditions(self, name, subs):
        while True:
            self.ws()
            if self.ch() == "}":
                break
            if self.ch() != "{":
                self.fail('each subcondition inside an "%s{...}" condition must be in '
                          'its own {}' % name)
            self.i += 1
            try:
                sub = self.condition()
            except _Syntax as e:
                e.add_suffix(' inside "%s{...}" condition' % name)
                raise
            # Exim tests it before looking for the closing brace.
            subs.append(sub)
            self.ws()
            if self.ch() != "}":
                self.fail('missing } at end of condition inside "%s" group' % name)
            self.i += 1

    def cond_foreach(self, negate, name):
        self.ws()
        if self.ch() != "{":
            self.fail('missing { after "%s"' % name)
        self.i += 1
        lst = self.braced()
        with _before([lst]):
            self.ws()
            if self.ch() != "{":
                self.fail('missing { after "%s"' % name)
            self.i += 1
            try:
                sub = self.condition()
            except _Syntax as e:
                # Exim only scans the condition here: nothing in it is expanded.
                e.error = None
                e.add_suffix(' inside "%s" condition' % name)
                e.nodes = []
                raise
            self.ws()
            if self.ch() != "}":
                self.fail('missing } at end of condition inside "%s"' % name)
            self.i += 1
        if "json" in name:
            from exim_py.expand.json import JsonForEach
            return JsonForEach(negate, name, lst, sub)
        return C.ForEach(negate, name, lst, sub)


CERT_OPERATORS = frozenset(("md5", "sha1", "sha256", "base64"))
CERT_VARIABLES = frozenset(("tls_in_ourcert", "tls_in_peercert", "tls_out_ourcert",
                            "tls_out_peercert"))


class CertOp(Node):
    """md5, sha1, sha256 or base64 of a certificate variable: the fingerprint
    or the DER encoding.  With no certificate Exim works on the variable's
    name instead, and so does this."""

    __slots__ = ("fn", "arg", "var")

    def __init__(self, fn, arg, var):
        self.fn = fn
        self.arg = arg
        self.var = var

    def ev(self, ctx):
        cert = ctx.get(self.var)
        if not cert:
            return self.fn(self.var, self.arg, ctx)
        import base64
        import hashlib
        der = cert_der(cert)
        if self.fn is find_operator("base64")[0]:
            return base64.b64encode(der).decode("ascii")
        algorithm = {find_operator("md5")[0]: hashlib.md5,
                     find_operator("sha1")[0]: hashlib.sha1}.get(self.fn, hashlib.sha256)
        return algorithm(der).hexdigest().upper()


def cert_der(cert):
    """DER bytes of a certificate given as bytes, a pyOpenSSL X509 or a
    cryptography Certificate."""
    if isinstance(cert, (bytes, bytearray)):
        return bytes(cert)
    if hasattr(cert, "to_cryptography"):
        cert = cert.to_cryptography()
    from cryptography.hazmat.primitives.serialization import Encoding
    return cert.public_bytes(Encoding.DER)


# Operators whose result may hold a NUL (see CString).
NUL_MAKERS = frozenset(("ipv6norm", "from_utf8"))


class CString(Node):
    """An argument that is one operator: Exim takes its value as a C string,
    so it ends at a NUL the operator left in it."""

    __slots__ = ("node",)

    def __init__(self, node):
        self.node = node

    def ev(self, ctx):
        text = self.node.ev(ctx)
        return text.split("\0", 1)[0] if "\0" in text else text


# Operators whose result is new text (a digest, a number, an address Exim
# formats itself) rather than a copy of the subject: not tainted.
UNTAINTING = frozenset((
    "md5", "sha1", "sha2", "sha256", "sha3", "strlen", "listcount", "eval", "eval10",
    "base32", "base32d", "base62", "base62d", "mask", "ipv6norm", "ipv6denorm", "reverse_ip",
    "time_eval", "time_interval", "randint", "stat", "nhash", "nh"))


class Op(Node):
    """``${name:subject}``."""

    __slots__ = ("name", "fn", "arg", "subject")

    def __init__(self, name, fn, arg, subject):
        self.name = name
        self.fn = fn
        self.arg = arg
        self.subject = subject

    def ev(self, ctx):
        subject = self.subject.ev(ctx)
        result = self.fn(subject, self.arg, ctx)
        if subject.__class__ is Tainted and result and self.name not in UNTAINTING \
                and self.name.partition("_")[0] not in UNTAINTING:
            return Tainted(result)
        return result


def parse(text):
    """(node tree, ACL variable names used) for expansion string ``text``;
    never raises: a syntax error becomes a node that raises it."""
    p = Parser(text)
    try:
        tree = p.seq(False)
    except _Syntax as e:
        tree = Partial(e.nodes, e.error or ErrorNode(e.message, alt=e.alt))
    except RecursionError:
        tree = ErrorNode(NESTED_TOO_DEEPLY)
    return tree, tuple(p.acl_vars)


# The item parsers register themselves in ITEMS when this is imported.
from exim_py.expand import itemsyntax  # noqa: E402

__all__ = ["parse", "Parser", "ITEMS", "itemsyntax"]
