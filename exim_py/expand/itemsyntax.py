"""Parsing the items with braced arguments: ${if}, ${lookup}, ${extract}...

Each ``_item_*`` function is called by the Parser (parser.py) after the item
name, reads the item's arguments with Exim's syntax rules and error texts,
and returns the node that expands it (items.py); the few nodes that only
exist because of how an item is parsed (an ``${extract}`` whose argument
count is decided when it is expanded, an ``${if}`` cut short by a syntax
error) are defined here.
"""

from exim_py.errors import ExpansionError
from exim_py.expand import items as I
from exim_py.expand.nodes import ErrorNode, Node, Steps, Text, YesNo
from exim_py.expand.parser import (
    CONDITIONS, ITEMS, MALFORMED_CURLY, Parser, _SPACE, _Syntax, _before, is_known)
from exim_py.expand.regex import compile_regex


def _item_if(p, name):
    p.ws()
    cond = p.condition()
    progress = {}
    try:
        return I.If(cond, p.yesno("if", progress))
    except _Syntax as e:
        yes, no = _branches(progress, e)
        e.nodes = [IfBranch(cond, yes, no)]
        raise


def _branches(progress, e):
    """The yes/no strings of an item cut short by syntax error ``e``: those
    that were complete, and the part read of the one the error is in (Exim
    expands it only if it is the chosen one; the other is only scanned)."""
    yes, no = progress.get("yes"), progress.get("no")
    if yes is not None and no is not None:
        return yes, no
    if e.error is None:
        partial = Steps(e.nodes) if e.nodes else None
        return (partial, None) if yes is None else (yes, partial)
    # The error's text depends on whether Exim expands or only scans the
    # string it is in: expanded if chosen, else scanned.
    expanded = Steps(list(e.nodes) + [e.error])
    scanned = ErrorNode(e.message, alt=e.alt)
    e.error = None
    if yes is None:
        return expanded, scanned
    return Steps([yes, scanned]), expanded


class IfBranch(Node):
    """An ``${if}`` cut short by a syntax error: Exim still tests the
    condition and expands the branch it chose, if that branch was complete."""

    __slots__ = ("cond", "yes", "no")

    def __init__(self, cond, yes, no):
        self.cond = cond
        self.yes = yes
        self.no = no

    def ev(self, ctx):
        branch = self.yes if self.cond.test(ctx) else self.no
        return branch.ev(ctx) if branch is not None else ""


def _item_lookup(p, name):
    p.ws()
    key = None
    if p.ch() == "{":
        p.i += 1
        key = p.braced()
        p.ws()
    done = [key] if key else []
    with _before(done):
        if not (p.ch().isascii() and p.ch().isalpha()):
            p.fail("missing lookup type")
        start = p.i
        while p.i < p.n and p.s[p.i] != "{" and p.s[p.i] not in _SPACE:
            p.i += 1
        ltype = p.s[start:p.i]
        p.ws()
        try:
            kind = I.lookup_kind(ltype)
        except ExpansionError as e:
            p.fail(str(e))
        if kind == "single" and key is None:
            p.fail('missing {key} for single-key "%s" lookup' % ltype)
        if kind == "query" and key is not None:
            p.fail('a single key was given for lookup type "%s", which is not a single-key '
                   'lookup type' % ltype)
        if p.ch() != "{":
            p.curly("missing '{' for lookup file-or-query arg")
        p.i += 1
        source = p.braced()
        done.append(source)
        p.ws()
    progress = {}
    try:
        return I.Lookup(key, ltype, source, p.yesno("lookup", progress))
    except _Syntax as e:
        # Exim has done the lookup, and expanded the string it chose if that
        # string was complete, before it reaches the error.
        yes, no = _branches(progress, e)
        tail = YesNo("lookup", bare=True) if yes is None and no is None \
            else YesNo("lookup", yes or Steps(()), no)
        e.nodes = [I.Lookup(key, ltype, source, tail)]
        raise


def _item_extract(p, name):
    p.ws()
    json = None
    if p.ch() != "{" and p.s.startswith("json", p.i):
        p.i += 4
        json = "json"
        if p.ch() == "s":
            json = "jsons"
            p.i += 1
    args, starts = [], []
    while True:
        if p.ch() != "{":
            break
        starts.append(p.i)
        p.i += 1
        try:
            args.append(p.braced())
        except _Syntax as e:
            # Whether the string being read is an argument (expanded), the
            # chosen yes/no string (expanded) or the other (scanned) is only
            # known when the first argument is.
            e.nodes = [ExtractPartial(Extract(p.s, list(args), starts, None, json),
                                      Steps(e.nodes), e.error,
                                      ErrorNode(e.message, alt=e.alt))]
            e.error = None
            raise
        p.ws()
    # The Extract node itself expands what Exim expands before any error.
    fail_at = None
    if p.s.startswith("fail", p.i) and p.s[p.i + 4:p.i + 5] in ("}", " ", "\t", ""):
        fail_at = p.i
        p.i += 4
        p.ws()
    if p.ch() != "}":
        # Reported as Exim does when the item is expanded (not merely
        # scanned): which text is wrong depends on the first argument.
        e = _Syntax(p.curly_text("missing '}' closing extract"),
                    Extract(p.s, args, starts, fail_at, json, garbage_at=p.i,
                            malformed=_malformed_state(p)))
        if p.maybe_malformed:
            e.alt = MALFORMED_CURLY
        raise e
    starts.append(p.i)
    p.i += 1
    return Extract(p.s, args, starts, fail_at, json, malformed=_malformed_state(p))


def _malformed_state(p):
    """True if a header name certainly swallowed a '}', None if that depends
    on a header lookup, else False (see ErrorNode)."""
    if p.malformed:
        return True
    return None if p.maybe_malformed else False


class ExtractPartial(Node):
    """An ``${extract}`` cut short by a syntax error in its braced string
    number len(done.args): expands what Exim expands before the error, then
    raises the error as Exim words it when expanding, or when scanning."""

    __slots__ = ("done", "prefix", "error", "scanned")

    def __init__(self, done, prefix, error, scanned):
        self.done = done
        self.prefix = prefix
        self.error = error
        self.scanned = scanned

    def ev(self, ctx):
        args = self.done.args
        k = len(args)                   # the string the error is in
        expanded = True
        if args:
            first = args[0].ev(ctx).strip(_SPACE)
            if not first:
                raise ExpansionError('first argument of "extract" must not be empty')
            digits = first[1:] if first[0] == "-" else first
            need = 3 if (digits.isdigit() or not digits) and not self.done.json else 2
            for arg in args[1:min(k, need)]:
                arg.ev(ctx)
            if k >= need:
                found = self.done.found(ctx, need)
                if k == need + 1 and found:
                    args[need].ev(ctx)
                expanded = (k == need and found) or (k == need + 1 and not found)
        if expanded:
            self.prefix.ev(ctx)
            if self.error is not None:
                self.error.ev(ctx)
        return self.scanned.ev(ctx)


class Extract(Node):
    """``${extract}``: whether the first argument is a number decides, at
    expansion time, how many of the braced strings are arguments."""

    __slots__ = ("text", "args", "starts", "fail_at", "json", "variants", "garbage_at",
                 "malformed")

    def __init__(self, text, args, starts, fail_at, json, garbage_at=None, malformed=False):
        self.variants = {}       # the item for 2 or 3 arguments, built once
        self.malformed = malformed     # a header name swallowed a '}' before
        self.garbage_at = garbage_at   # where text that cannot follow begins
        self.text = text
        self.args = args
        self.starts = starts
        self.fail_at = fail_at
        self.json = json

    def tail_error(self, ctx, need, extra):
        """Exim's error for what follows the arguments when it is not '}'
        (after the extraction, whose own errors come first)."""
        found = self.found(ctx, need)
        rest = self.text[self.garbage_at:]
        if extra == 0:
            if self.fail_at is not None:
                rest = self.text[self.fail_at:]
            self._curly("curly-bracket problem in conditional yes/no parsing: 'yes' part did "
                        "not start with '{'\n remaining string is '%s'" % rest, ctx)
        if extra == 1 and self.fail_at is None:
            raise ExpansionError('syntax error in "extract" item - "fail" expected')
        if extra == 1 and not found:
            self._curly("curly-bracket problem in conditional yes/no parsing: did not close "
                        "with '}' after forcedfail\n remaining string is '%s'" % rest, ctx)
        if extra > 2:
            rest = self.text[self.starts[need + 2]:]
        self._curly("curly-bracket problem in conditional yes/no parsing: did not close "
                    "with '}'\n remaining string is '%s'" % rest, ctx)

    def found(self, ctx, need):
        """Whether the extraction finds something ($value is left as it was)."""
        probe = YesNo("extract", Text("1"), Text(""))
        return I.Extract(self.args[:need], probe, self.json).ev(ctx) == "1"

    def _curly(self, message, ctx=None):
        # malformed: True (certain), None (if a header lookup says so), False.
        if self.malformed or (self.malformed is None and ctx is not None and (
                ctx.malformed_header or not ctx.nested_expansion)):
            message = MALFORMED_CURLY
        raise ExpansionError(message)

    def ev(self, ctx):
        args = self.args
        if not args:
            self._curly("missing '{' for arg 1 of extract", ctx)
        first = args[0].ev(ctx).strip(_SPACE)
        if not first:
            raise ExpansionError('first argument of "extract" must not be empty')
        digits = first[1:] if first[0] == "-" else first
        need = 3 if (digits.isdigit() or not digits) and not self.json else 2
        if len(args) < need:
            for arg in args[1:]:
                arg.ev(ctx)
            self._curly("missing '{' for arg %d of extract" % (len(args) + 1), ctx)
        extra = len(args) - need
        if self.garbage_at is not None:
            self.tail_error(ctx, need, extra)
        if extra == 0 and self.fail_at is not None:
            self.found(ctx, need)
            self._curly("curly-bracket problem in conditional yes/no parsing: 'yes' part did "
                        "not start with '{'\n remaining string is '%s'"
                        % self.text[self.fail_at:], ctx)
        if extra > 2 or (extra == 2 and self.fail_at is not None):
            # Exim extracts and expands the string it chose before it finds
            # what follows wrong.
            args[need if self.found(ctx, need) else need + 1].ev(ctx)
            at = self.starts[need + 2] if extra > 2 else self.fail_at
            self._curly("curly-bracket problem in conditional yes/no parsing: did not close "
                        "with '}'\n remaining string is '%s'" % self.text[at:], ctx)
        item = self.variants.get(need)
        if item is None:
            if extra == 0:
                yesno = YesNo("extract", bare=True)
            else:
                yesno = YesNo("extract", args[need], args[need + 1] if extra == 2 else None,
                              self.fail_at is not None)
            item = self.variants[need] = I.Extract(args[:need], yesno, self.json)
        return item.ev(ctx)


def _item_listextract(p, name):
    args = []
    # Exim checks the number as soon as it has read it.
    done = []
    with _before(done):
        for k in (1, 2):
            p.ws()
            if p.ch() != "{":
                p.curly("missing '{' for arg %d of listextract" % k)
            p.i += 1
            args.append(p.braced())
            done.append(I.ListNumber(args[0]) if k == 1 else args[1])
            if k == 1 and isinstance(args[0], Text):
                # Exim checks a literal number even where it is not used.
                first = args[0].text.strip(_SPACE)
                digits = first[1:] if first[:1] == "-" else first
                if digits and not digits.isdigit():
                    p.fail('first argument of "listextract" must be numeric')
    try:
        return I.ListExtract(args[0], args[1], p.yesno("listextract"))
    except _Syntax as e:
        e.nodes[0:0] = [I.ListExtract(args[0], args[1], YesNo("listextract", bare=True))]
        raise


def _item_env(p, name):
    p.ws()
    if p.ch() != "{":
        p.fail("")
    p.i += 1
    key = p.braced()
    with _before([key]):
        return I.Env(key, p.yesno("env"))


def _item_listop(p, name):
    p.ws()
    if p.ch() != "{":
        p.curly("missing '{' for first arg of %s" % name)
    p.i += 1
    lst = p.braced()
    done = [lst]
    init = None
    with _before(done):
        if name == "reduce":
            p.ws()
            if p.ch() != "{":
                p.curly("missing '{' for second arg of reduce")
            p.i += 1
            init = p.braced()
            done.append(init)
        p.ws()
        if p.ch() != "{":
            p.curly("missing '{' for last arg of %s" % name)
        p.i += 1
        try:
            expr = p.condition() if name == "filter" else p.seq(True)
        except _Syntax as e:
            # Exim only scans the expression here: nothing in it is expanded.
            e.error = None
            e.add_suffix(' inside "%s" item' % name)
            e.nodes = []
            raise
        p.ws()
        if p.ch() != "}":
            p.fail('missing } at end of condition or expression inside "%s"; could be an '
                   'unquoted } in the content' % name)
        p.i += 1
        p.ws()
        if p.ch() != "}":
            p.fail('missing } at end of "%s"' % name)
        p.i += 1
    return I.ListOp(name, lst, init, expr)


def _item_sort(p, name):
    parts = []
    with _before(parts):
        for what, dollar in (("list", True), ("comparator", False), ("extractor", True)):
            p.ws()
            if p.ch() != "{":
                p.curly("missing '{' for %s arg of sort" % what)
            p.i += 1
            start = p.i
            try:
                parts.append(p.braced(dollar))
            except _Syntax as e:
                if what == "extractor":
                    # Exim only scans the extractor here.
                    e.nodes, e.error = [], None
                raise
            if what == "comparator":
                # The comparator is never $-expanded: check it now, as Exim does.
                try:
                    op = sort_operator(parts[1].ev(None))
                except ExpansionError as e:
                    p.fail(str(e))
        extractor = p.s[start:p.i - 1]
        if p.ch() != "}":
            p.fail('missing } at end of "sort"')
        p.i += 1
    return I.Sort(parts[0], op, extractor)


def sort_operator(text):
    """The comparison a ${sort} comparator names, or Exim's error."""
    p = Parser(text)
    op = p.condition_name()
    if not op:
        raise ExpansionError('condition name expected, but found "%s"' % text[:16])
    if op not in CONDITIONS:
        raise ExpansionError("")
    if op not in ("<", "<=", ">", ">=", "ge", "gei", "gt", "gti", "le", "lei", "lt", "lti"):
        raise ExpansionError("comparator not handled for sort")
    return op


def _item_run(p, name):
    preexpand = False
    while p.ch() == ",":
        p.i += 1
        if p.s.startswith("preexpand", p.i):
            preexpand = True
            p.i += 9
        else:
            t = p.i + 1
            while t < p.n and p.s[t].isalpha():
                t += 1
            p.fail("bad option '%s' for run" % p.s[p.i:t])
    p.ws()
    if p.ch() != "{":
        p.curly("missing '{' for command arg of run")
    p.i += 1
    start = p.i
    if preexpand:
        command = p.seq(True)
        p.ws()
    else:
        # Exim only scans for the end here (errors show when each argument
        # is expanded), stopping where the scan stopped.
        try:
            p.seq(True)
        except _Syntax:
            pass
        command = p.s[start:p.i]
    with _before([command] if preexpand else []):
        if p.ch() != "}":
            p.curly("missing '}' closing command arg of run")
        p.i += 1
        return I.Run(command, preexpand, p.yesno("run"))


def _item_readsocket(p, name):
    args = p.read_subs(4, 2, False, name)
    fail = None
    with _before(args):
        if p.ch() == "{":
            p.i += 1
            fail = p.braced()
            p.ws()
        if p.ch() != "}":
            p.curly("missing '}' closing readsocket")
        p.i += 1
    from exim_py.expand.readsocket import ReadSocket
    return ReadSocket(args, fail)


def _item_prvscheck(p, name):
    first = p.read_subs(1, 1, False, name)
    rest = p.read_subs(2, 1, True, name, done=first)
    return I.PrvsCheck(first[0], rest[0], rest[1])


def _item_certextract(p, name):
    p.ws()
    if p.ch() != "{":
        p.curly("missing '{' for field arg of certextract")
    p.i += 1
    field = p.braced()
    with _before([field]):
        p.ws()
        if p.ch() != "{":
            p.curly("missing '{' for cert variable arg of certextract")
        p.i += 1
        if p.ch() != "$":
            p.fail('second argument of "certextract" must be a certificate variable')
        p.i += 1
        var = p.braced(dollar=False)
    try:
        return CertExtract(field, var, p.yesno("certextract"))
    except _Syntax as e:
        e.nodes[0:0] = [CertExtract(field, var, YesNo("certextract", bare=True))]
        raise


class CertExtract(Node):
    """``${certextract}``: exim_py keeps no certificates in variables yet, so an
    unset certificate gives the "no" string and a set one an error."""

    __slots__ = ("field", "var", "yesno")

    def __init__(self, field, var, yesno):
        self.field = field
        self.var = var
        self.yesno = yesno

    def ev(self, ctx):
        self.field.ev(ctx)
        name = self.var.ev(ctx)
        if not is_known(name):
            raise ExpansionError('no variable named "%s"' % name)
        if not name.endswith(("peercert", "ourcert")):
            raise ExpansionError('"%s" is not a certificate' % name)
        if ctx.get(name) is not None:
            raise ExpansionError("certextract is not supported by exim_py")
        saved = ctx.lookup_value
        ctx.lookup_value = None
        return self.yesno.choose(ctx, False, saved)


def _subs_item(cls, n, m, with_name=False):
    def parse(p, name):
        args = p.read_subs(n, m, True, name)
        return cls(name, args) if with_name else cls(args)
    return parse


def _substr_item(n):
    def parse(p, name):
        args = p.read_subs(n, 2, True, name)
        node = I.Substr(name, args)
        with _before(args):
            try:
                node.check_skipped()
            except ExpansionError as e:
                p.fail(str(e))
        return node
    return parse


def _item_sg(p, name):
    args = p.read_subs(3, 3, True, name)
    if isinstance(args[1], Text):
        # Exim 4.96 compiles the pattern even where the item is only scanned.
        with _before(args):
            try:
                compile_regex(args[1].text)
            except ExpansionError as e:
                p.fail(str(e))
    return I.Sg(args)


def _item_perl(p, name):
    p.read_subs(9, 1, True, name)
    return I.Unsupported("A setting of perl_startup is needed when using the Perl interpreter")


def _item_dlfunc(p, name):
    args = p.read_subs(10, 2, True, name)
    return DlFunc(args)


class DlFunc(Node):
    __slots__ = ("args",)

    def __init__(self, args):
        self.args = args

    def ev(self, ctx):
        path = self.args[0].ev(ctx)
        raise ExpansionError('dlopen "%s" failed: exim_py cannot load C functions' % path)


ITEMS.update({
    "acl": _subs_item(I.Acl, 10, 1),
    "authresults": _subs_item(I.AuthResults, 1, 1),
    "certextract": _item_certextract,
    "dlfunc": _item_dlfunc,
    "env": _item_env,
    "extract": _item_extract,
    "filter": _item_listop,
    "hash": _substr_item(3),
    "hmac": _subs_item(I.Hmac, 3, 3),
    "if": _item_if,
    "imapfolder": _subs_item(I.ImapFolder, 3, 1),
    "length": _substr_item(2),
    "listextract": _item_listextract,
    "listquote": _subs_item(I.ListQuote, 2, 2),
    "lookup": _item_lookup,
    "map": _item_listop,
    "nhash": _substr_item(3),
    "perl": _item_perl,
    "prvs": _subs_item(I.Prvs, 3, 2),
    "prvscheck": _item_prvscheck,
    "readfile": _subs_item(I.ReadFile, 2, 1),
    "readsocket": _item_readsocket,
    "reduce": _item_listop,
    "run": _item_run,
    "sg": _item_sg,
    "sort": _item_sort,
    "srs_encode": _subs_item(I.SrsEncode, 3, 3),
    "substr": _substr_item(3),
    "tr": _subs_item(I.Tr, 3, 3),
})
