"""The parsed form of an expansion string: a tree of nodes with ``ev(ctx)``.

A string is parsed once (parser.py) into these nodes; expanding it again only
walks the tree.  Literal text is kept as plain ``str`` inside a ``Seq``.
Exim reads and expands in one pass, so a syntax error is only reported when
the scan reaches it, after everything before it has been expanded; a
``Partial`` node keeps the part that was parsed before the error so that the
same earlier errors win, in the same order.
"""

from exim_py.errors import ExpansionError, ForcedFail
from exim_py.expand import variables
from exim_py.expand.headers import find_header
from exim_py.expand.strings import to_latin


class Node:
    """Base class: ``ev(ctx)`` returns the expanded text or raises ExpansionError."""

    __slots__ = ()

    def ev(self, ctx):
        raise NotImplementedError


class Tainted(str):
    """Text that came from a message or a client (a header, the body...):
    Exim refuses to expand it again (``${expand:}``).  Parts of exim_py that
    set variables from untrusted data may pass values of this class."""

    __slots__ = ()


def taint_like(result, *sources):
    """``result`` marked Tainted when it was made from tainted text."""
    if result and result.__class__ is not Tainted:
        for source in sources:
            if source.__class__ is Tainted:
                return Tainted(result)
    return result


class Seq(Node):
    """Concatenation of literal strings and nodes."""

    __slots__ = ("parts",)

    def __init__(self, parts):
        self.parts = tuple(parts)

    def ev(self, ctx):
        pieces = [p if p.__class__ is str else p.ev(ctx) for p in self.parts]
        text = "".join(pieces)
        if "\0" in text:
            # Exim's strings end at a NUL (from a \0 or \x escape).
            text = text[:text.index("\0")]
        for piece in pieces:
            if piece.__class__ is Tainted:
                return Tainted(text)
        return text


class Text(Node):
    """A constant string (a Seq made only of literal text)."""

    __slots__ = ("text",)

    def __init__(self, text):
        self.text = text

    def ev(self, ctx):
        return self.text


def make_seq(parts):
    """The smallest node for ``parts``: merged literals, no needless Seq."""
    merged = []
    for p in parts:
        if p.__class__ is str:
            if not p:
                continue
            if merged and merged[-1].__class__ is str:
                merged[-1] += p
                continue
        merged.append(p)
    if not merged:
        return Text("")
    if len(merged) == 1 and merged[0].__class__ is str and "\0" in merged[0]:
        return Text(merged[0][:merged[0].index("\0")])
    if len(merged) == 1:
        return Text(merged[0]) if merged[0].__class__ is str else merged[0]
    if all(p.__class__ is str for p in merged):
        return Text("".join(merged))
    return Seq(merged)


class Var(Node):
    """``$name`` / ``${name}`` for a name Exim knows."""

    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name

    def ev(self, ctx):
        value = ctx.variables.get(self.name)
        if value is not None and value.__class__ is str:
            return value if value.isascii() else to_latin(value)
        if self.name in _ENGINE_VARIABLES:
            return variables.value_of(ctx, self.name)
        return to_latin(variables.value_of(ctx, self.name))


# Variables the engine itself sets, already in its byte form.
_ENGINE_VARIABLES = frozenset(("value", "item"))


class NumVar(Node):
    """``$0`` .. ``$n``: the last regex match or partial lookup."""

    __slots__ = ("n",)

    def __init__(self, n):
        self.n = n

    def ev(self, ctx):
        numeric = ctx.numeric
        return numeric[self.n] if self.n < len(numeric) else ""


class HeaderVar(Node):
    """``$h_name:`` and its raw (rh), undecoded (bh) and list (lh) forms."""

    __slots__ = ("name", "raw", "as_list", "decode")

    def __init__(self, prefix, name):
        self.name = name
        self.raw = prefix in ("r", "l")
        self.as_list = prefix == "l"
        self.decode = prefix != "b"   # $bh_: decoded but not translated

    def ev(self, ctx):
        value = find_header(ctx, self.name, raw=self.raw, as_list=self.as_list,
                            decode=self.decode) if ctx.headers else None
        if value is None and "}" in self.name:
            ctx.malformed_header = True
        return Tainted(to_latin(value)) if value else ""


class ErrorNode(Node):
    """A syntax error, raised when the scan reaches it.  ``alt`` is the text
    Exim gives instead after looking up a header variable whose name
    swallowed a '}' (its hint about a missing colon): Exim looks headers up
    even where it only scans, and forgets it in a nested expansion."""

    __slots__ = ("message", "forced", "alt")

    def __init__(self, message, forced=False, alt=None):
        self.message = message
        self.forced = forced
        self.alt = alt

    def ev(self, ctx):
        malformed = ctx.malformed_header or not ctx.nested_expansion
        message = self.alt if self.alt and malformed else self.message
        if self.forced:
            raise ForcedFail(message)
        raise ExpansionError(message)


class Partial(Node):
    """What was parsed before a syntax error: expanded in order, then the error."""

    __slots__ = ("nodes", "error")

    def __init__(self, nodes, error):
        self.nodes = tuple(nodes)
        self.error = error

    def ev(self, ctx):
        for node in self.nodes:
            node.ev(ctx)
        return self.error.ev(ctx)


class Steps(Node):
    """Nodes expanded one after the other for their errors only (the part of
    a string read before a syntax error)."""

    __slots__ = ("nodes",)

    def __init__(self, nodes):
        self.nodes = tuple(nodes)

    def ev(self, ctx):
        for node in self.nodes:
            node.ev(ctx)
        return ""


class WrapErrors(Node):
    """Expands ``node``, adding ``suffix`` to the message of any error."""

    __slots__ = ("node", "suffix")

    def __init__(self, node, suffix):
        self.node = node
        self.suffix = suffix

    def ev(self, ctx):
        try:
            return self.node.ev(ctx)
        except ExpansionError as e:
            raise e.__class__(str(e) + self.suffix)


class YesNo:
    """The ``{yes}{no}`` / ``fail`` tail shared by if, lookup, extract, run...

    ``kind`` is the item name used in messages; ``${if}`` with no strings
    yields "true", the others yield ``$value``.
    """

    __slots__ = ("kind", "yes", "no", "fail", "bare")

    def __init__(self, kind, yes=None, no=None, fail=False, bare=False):
        self.kind = kind
        self.yes = yes
        self.no = no
        self.fail = fail
        self.bare = bare

    def choose(self, ctx, ok, saved_value):
        """The text for outcome ``ok``; puts ``$value`` back to ``saved_value``
        before the "no" string, as Exim does."""
        if self.bare:
            if self.kind == "if":
                return "true" if ok else ""
            out = (ctx.lookup_value or "") if ok else ""
            ctx.lookup_value = saved_value
            return out
        if ok:
            out = self.yes.ev(ctx)
            ctx.lookup_value = saved_value
            return out
        ctx.lookup_value = saved_value
        if self.no is not None:
            return self.no.ev(ctx)
        if self.fail:
            raise ForcedFail('"%s" failed and "fail" requested' % self.kind)
        return ""
