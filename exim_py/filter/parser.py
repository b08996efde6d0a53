"""Reading an Exim filter file into commands and conditions.

The language (Exim's "Exim filter files" document, and the redirect router
chapter of the specification) is free-form: white space, including
newlines, separates words; ``#`` starts a comment that runs to the end of
the line; an argument is a word or a double-quoted string with backslash
escapes.  The whole file is parsed before any of it is obeyed, so a syntax
error anywhere means that nothing is done.  Error texts are Exim's, with
their line numbers.
"""

from exim_py.expand.strings import interpret_escape

# The keyword arguments of mail and vacation, in the order Exim shows them.
MAIL_ARGS = ("to", "cc", "bcc", "from", "reply_to", "subject", "extra_headers",
             "text", "file", "log", "once", "once_repeat")
# Every command word; one marked True counts as "seen" (a significant
# delivery) unless "unseen" precedes it.
COMMANDS = {
    "add": False, "defer": False, "deliver": True, "elif": False, "else": False,
    "endif": False, "finish": False, "fail": False, "freeze": False,
    "headers": False, "if": False, "logfile": False, "logwrite": False,
    "mail": False, "noerror": False, "pipe": True, "save": True, "seen": False,
    "testprint": False, "unseen": False, "vacation": False,
}

# The comparison words after a left-hand operand, and the test each names.
# An upper-case word is the case-sensitive form.
COMPARISONS = {
    "is": "is", "IS": "IS", "contains": "contains", "contain": "contains",
    "CONTAINS": "CONTAINS", "CONTAIN": "CONTAINS", "begins": "begins",
    "begin": "begins", "BEGINS": "BEGINS", "BEGIN": "BEGINS", "ends": "ends",
    "end": "ends", "ENDS": "ENDS", "END": "ENDS", "matches": "matches",
    "match": "matches", "MATCHES": "MATCHES", "MATCH": "MATCHES",
    "above": "above", "below": "below",
}
# Conditions that are a single word.
KEYWORD_CONDITIONS = ("delivered", "error_message", "first_delivery", "manually_thawed")


class FilterSyntaxError(Exception):
    """A filter file that cannot be read; str() is Exim's error text."""


class Command:
    """One filter command: ``name``, ``args`` (by position or keyword),
    ``seen`` (counts as a significant delivery), ``noerror``."""

    def __init__(self, name, seen=False, noerror=False):
        self.name = name
        self.seen = seen
        self.noerror = noerror
        self.args = []
        self.mail = {}            # mail/vacation: keyword -> unexpanded text
        self.expand_file = False  # mail/vacation "expand file"
        self.return_message = False
        self.mode = None          # save/logfile: octal mode, or None
        self.branches = []        # if: [(Condition or None for else, [Command])]


class Condition:
    """A node of a condition tree.

    ``kind`` is "and", "or", "personal", "foranyaddress", one of
    KEYWORD_CONDITIONS, or a comparison test from COMPARISONS.  ``positive``
    is False when the condition was negated.
    """

    def __init__(self, kind, left=None, right=None, positive=True):
        self.kind = kind
        self.left = left
        self.right = right
        self.positive = positive
        self.aliases = []


class _Reader:
    """A cursor over the filter text that keeps the line number."""

    def __init__(self, text, system=False, allowed=()):
        self.s = text
        self.i = 0
        self.line = 1
        self.system = system
        self.allowed = frozenset(allowed)   # of "defer", "fail", "freeze"
        self.expect_endif = 0
        self.terminator = None              # "elif", "else" or "endif" just read
        self.seen_force = None              # True/False after seen/unseen
        self.noerror_force = False

    def ch(self, k=0):
        j = self.i + k
        return self.s[j] if j < len(self.s) else ""

    def skip(self):
        """Skip white space and comments."""
        s, n = self.s, len(self.s)
        while self.i < n:
            c = s[self.i]
            if c.isspace():
                if c == "\n":
                    self.line += 1
                self.i += 1
            elif c == "#":
                while self.i < n and s[self.i] != "\n":
                    self.i += 1
            else:
                break

    def word(self, bracket=False):
        """The next word (ending at white space, or at a bracket when
        ``bracket``), then skip what follows it."""
        s, n = self.s, len(self.s)
        start = self.i
        while self.i < n and not s[self.i].isspace() and \
                not (bracket and s[self.i] in "()"):
            self.i += 1
        w = s[start:self.i]
        self.skip()
        return w

    def item(self, bracket=False):
        """A word, or a quoted string with its escapes interpreted."""
        if self.ch() != '"':
            return self.word(bracket)
        s, n = self.s, len(self.s)
        self.i += 1
        out = []
        while self.i < n and s[self.i] != '"' and s[self.i] != "\n":
            c = s[self.i]
            if c != "\\":
                out.append(c)
                self.i += 1
                continue
            # A backslash before white space and a newline joins the lines,
            # dropping the leading white space of the next one.
            j = self.i + 1
            while j < n and s[j] != "\n" and s[j].isspace():
                j += 1
            if j > self.i + 1 or (j < n and s[j] == "\n"):
                if j < n and s[j] == "\n":
                    self.line += 1
                    j += 1
                    while j < n and s[j] != "\n" and s[j].isspace():
                        j += 1
                    self.i = j
                    continue
            if self.i + 1 >= n:
                self.i += 1
                break
            c, self.i = interpret_escape(s, self.i)
            out.append(c)
        if self.ch() == '"':
            self.i += 1
        else:
            raise FilterSyntaxError("quote missing at end of string in line %d" % self.line)
        self.skip()
        return "".join(out)

    def error(self, text):
        raise FilterSyntaxError(text)


def parse(text, system=False, allowed=()):
    """The commands of filter ``text``; raises FilterSyntaxError.

    ``system`` is True for a system filter (header changes allowed);
    ``allowed`` names which of defer, fail and freeze may be used.
    """
    r = _Reader(text, system, allowed)
    r.skip()
    return _command_list(r, conditional=False)


def _command_list(r, conditional):
    if conditional:
        r.expect_endif += 1
    r.terminator = None
    commands = []
    while r.i < len(r.s) and r.terminator is None:
        _command(r, commands)
        r.skip()
    if r.seen_force is not None or r.noerror_force:
        r.error('"seen" or "unseen" near line %d is not followed by a command' % r.line)
    if conditional:
        r.expect_endif -= 1
        if r.terminator is None:
            r.error('"endif" missing at end of filter file')
    return commands


def _command(r, out):
    if r.s.startswith("if(", r.i):
        name = "if"
        r.i += 2
    elif r.s.startswith("elif(", r.i):
        name = "elif"
        r.i += 4
    else:
        name = r.word()
    line = r.line
    forced = r.seen_force is not None or r.noerror_force
    if name not in COMMANDS:
        r.error('unknown filtering command "%s" near line %d of filter file' % (name, line))
    if name in ("seen", "unseen"):
        if r.seen_force is not None:
            r.error('"seen" or "unseen" repeated near line %d' % line)
        r.seen_force = name == "seen"
        return
    if name == "noerror":
        r.noerror_force = True
        return
    seen = COMMANDS[name] if r.seen_force is None else r.seen_force
    cmd = Command(name, seen, r.noerror_force)
    r.seen_force, r.noerror_force = None, False
    if name in ("add", "headers", "if") and forced:
        r.error('"seen", "unseen", or "noerror" found before an "%s" command near line %d'
                % (name, line))
    if name in ("elif", "else", "endif"):
        if forced:
            r.error('"seen", "unseen", or "noerror" near line %d is not followed by a command'
                    % r.line)
        if r.expect_endif <= 0:
            r.error('unexpected "%s" command near line %d of filter file' % (name, line))
        r.terminator = name
        return
    handler = _HANDLERS.get(name, _simple)
    handler(r, cmd)
    out.append(cmd)


def _required(r, cmd):
    arg = r.item()
    if arg == "":
        r.error('"%s" requires an argument near line %d of filter file' % (cmd.name, r.line))
    return arg


def _simple(r, cmd):
    """deliver, save, pipe, logfile, logwrite, testprint: one argument, and
    a mode (save, logfile) or "errors_to" (deliver) after it."""
    arg = _required(r, cmd)
    if cmd.name == "logwrite" and not arg.endswith("\n"):
        arg += "\n"
    cmd.args = [arg]
    if cmd.name in ("save", "logfile") and r.ch().isdigit():
        word = r.word()
        digits = ""
        for c in word:
            if c not in "01234567":
                break
            digits += c
        cmd.mode = int(digits or "0", 8)
    elif cmd.name == "deliver":
        save = r.i
        if r.word() == "errors_to":
            cmd.args.append(r.word())
        else:
            r.i = save


def _add(r, cmd):
    value = _required(r, cmd)
    if r.item() != "to":
        r.error('"to" expected in "add" command near line %d of filter file' % r.line)
    target = r.item()
    if target == "":
        r.error('value missing after "to" near line %d of filter file' % r.line)
    cmd.args = [value, target]


def _headers(r, cmd):
    what = _required(r, cmd)
    if what not in ("add", "remove", "charset"):
        r.error('"add", "remove", or "charset" expected after "headers" near line %d '
                'of filter file' % r.line)
    if what != "charset" and not r.system:
        r.error("header addition and removal is available only in system filters: "
                "near line %d of filter file" % r.line)
    value = r.item()
    if value == "":
        r.error('value missing after "add", "remove", or "charset" near line %d of '
                'filter file' % r.line)
    cmd.args = [value, what]


def _ending(r, cmd):
    """defer, fail, freeze: a message after "text", or a quoted string."""
    if cmd.name not in r.allowed:
        r.error('filtering command "%s" is disabled: near line %d of filter file'
                % (cmd.name, r.line))
    quoted = r.ch() == '"'
    save = r.i
    text = r.item()
    if not quoted:
        if text == "text":
            text = r.item()
        else:
            r.i = save
            text = ""
    cmd.args = [text]
    cmd.seen = False


def _finish(r, cmd):
    cmd.args = []


def _mail(r, cmd):
    while True:
        save = r.i
        word = r.word()
        if word == "return":
            cmd.return_message = True
            if r.word() != "message":
                r.error('"return" not followed by "message"  near line %d of filter file'
                        % r.line)
            continue
        if word == "expand":
            cmd.expand_file = True
            word = r.word()
            if word != "file":
                r.error('"expand" not followed by "file"  near line %d of filter file'
                        % r.line)
        if word not in MAIL_ARGS:
            r.i = save
            break
        cmd.mail[word] = r.item()
    if cmd.name == "vacation":
        if "file" not in cmd.mail:
            cmd.mail["file"] = ".vacation.msg"
            cmd.expand_file = True
        for key, default in (("log", ".vacation.log"), ("once", ".vacation"),
                             ("once_repeat", "7d"), ("subject", "On vacation")):
            cmd.mail.setdefault(key, default)


def _if(r, cmd):
    cond = _condition(r, toplevel=True)
    body = _command_list(r, conditional=True)
    cmd.branches.append((cond, body))
    while r.terminator == "elif":
        cond = _condition(r, toplevel=True)
        body = _command_list(r, conditional=True)
        cmd.branches.append((cond, body))
    if r.terminator == "else":
        body = _command_list(r, conditional=True)
        cmd.branches.append((None, body))
        if r.terminator != "endif":
            r.error('"endif" missing near line %d of filter file' % r.line)
    r.terminator = None


_HANDLERS = {
    "add": _add, "headers": _headers, "defer": _ending, "fail": _ending,
    "freeze": _ending, "finish": _finish, "mail": _mail, "vacation": _mail, "if": _if,
}


# -- conditions ---------------------------------------------------------------

def _condition(r, toplevel):
    """A condition up to "then" (top level) or ")" (nested).

    "and" binds more tightly than "or"; both are evaluated left to right.
    """
    ors = []        # the operands of "or", each a list of "and" operands
    ands = []
    positive = True
    while True:
        if r.i >= len(r.s):
            r.error('"then" missing at end of filter file')
        c = r.ch()
        if c == "(":
            r.i += 1
            r.skip()
            node = _condition(r, toplevel=False)
            _close(r)
            if not positive:
                node.positive = not node.positive
            positive = True
        elif c == ")":
            r.error('unexpected ")" in line %d of filter file' % r.line)
        else:
            word = r.item(bracket=True)
            if word == "then":
                r.error('unexpected "then" near line %d of filter file' % r.line)
            if word == "not":
                positive = not positive
                continue
            node = _simple_condition(r, word, positive)
            positive = True
        ands.append(node)
        if r.ch() == ")":
            if toplevel:
                r.error('unexpected ")" in line %d of filter file' % r.line)
            break
        if r.ch() == "(":
            r.error('unexpected "(" in line %d of filter file' % r.line)
        word = r.word()
        if word == "then":
            if not toplevel:
                r.error('missing ")" at end of condition near line %d of filter file' % r.line)
            break
        if word == "and":
            continue
        if word == "or":
            ors.append(ands)
            ands = []
            continue
        r.error('"and" or "or" or "%s" expected near line %d of filter file, but found "%s"'
                % ("then" if toplevel else ")", r.line, word))
    ors.append(ands)
    return _tree(ors)


def _tree(ors):
    def chain(kind, nodes):
        node = nodes[0]
        for other in nodes[1:]:
            node = Condition(kind, node, other)
        return node
    return chain("or", [chain("and", ands) for ands in ors])


def _close(r):
    if r.ch() != ")":
        r.error('expected ")" in line %d of filter file' % r.line)
    r.i += 1
    r.skip()


def _simple_condition(r, word, positive):
    if word in KEYWORD_CONDITIONS:
        return Condition(word, positive=positive)
    if word == "personal":
        node = Condition("personal", positive=positive)
        while True:
            save = r.i
            if r.word(bracket=True) != "alias":
                r.i = save
                break
            node.aliases.append(r.item(bracket=True))
        return node
    if word == "foranyaddress":
        subject = r.item(bracket=True)
        if r.ch() != "(":
            r.error('"(" expected after "foranyaddress" near line %d of filter file' % r.line)
        r.i += 1
        r.skip()
        inner = _condition(r, toplevel=False)
        _close(r)
        return Condition("foranyaddress", subject, inner, positive=positive)
    # A comparison: left operand, [is|does] [not], the word, right operand.
    left = word
    op = r.word(bracket=True)
    after_is = None
    kind = None
    if op.lower() in ("does", "is"):
        if op[0] in "iI":
            # "is" compares caselessly; "IS" (or "Is") exactly.
            kind, after_is = ("is" if op[0] == "i" else "IS"), r.i
        op = r.word(bracket=True)
        if op.lower() == "not":
            positive = not positive
            if after_is is not None:
                after_is = r.i
            op = r.word(bracket=True)
    if op in COMPARISONS:
        kind = COMPARISONS[op]
    elif after_is is not None:
        # "is" followed by something else: that is the right operand.
        r.i = after_is
    else:
        r.error('unrecognized condition word "%s" near line %d of filter file' % (op, r.line))
    right = r.item(bracket=True)
    return Condition(kind, left, right, positive=positive)
