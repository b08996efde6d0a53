"""Reading ACL text: the checks Exim makes when it reads an ACL, and inline ACLs.

The configuration loader reads the ``begin acl`` section into statements and
items; :func:`check_item` applies Exim's read-time checks to each item (known
condition or modifier, no negated modifier, ``endpass`` only with accept or
discard, a ``=`` after the name, a valid ``set`` variable name) and turns it
into the :class:`Item` the engine runs.  An ACL given inline in an option or
an ``acl =`` condition, or read from a file, is parsed here at run time by
:func:`parse_acl_text`, with the same checks and texts.
"""

import re

from exim_py.acl.phases import CONDITIONS, VERBS


class AclError(Exception):
    """A malformed ACL; ``str()`` is Exim's text (without a file and line)."""


class Statement:
    """One verb with its ordered items, as the engine runs it."""

    __slots__ = ("verb", "items", "filename", "line")

    def __init__(self, verb, items, filename=None, line=None):
        self.verb = verb
        self.items = items
        self.filename = filename
        self.line = line


class Item:
    """One condition or modifier: ``name``, raw ``value``, ``negated``; ``var`` for ``set``."""

    __slots__ = ("name", "value", "negated", "var", "is_modifier", "expand_at_top")

    def __init__(self, name, value, negated=False, var=None):
        self.name = name
        self.value = value
        self.negated = negated
        self.var = var
        self.is_modifier, self.expand_at_top, _ = CONDITIONS[name]

    def __repr__(self):
        return "Item(%r, %r, negated=%r)" % (self.name, self.value, self.negated)


_SET_NAME = re.compile(r"[A-Za-z0-9_]*")


def split_set(value):
    """Split the text after ``set`` into (variable, value) as Exim reads it."""
    if value.startswith(("dkim_verify_status", "dkim_verify_reason")):
        var = value[:18]
    else:
        if not value.startswith(("acl_c", "acl_m")):
            raise AclError('invalid variable name after "set" in ACL modifier "set %s" '
                           '(must start "acl_c" or "acl_m")' % value)
        if value[5:6] not in tuple("0123456789_"):
            raise AclError('invalid variable name after "set" in ACL modifier "set %s" '
                           '(digit or underscore must follow acl_c or acl_m)' % value)
        var = value[:5] + _SET_NAME.match(value, 5).group(0)
    rest = value[len(var):]
    if rest and not rest[0].isspace() and rest[0] != "=":
        raise AclError('invalid character "%s" in variable name in ACL modifier "set %s"'
                       % (rest[0], value))
    rest = rest.lstrip()
    if not rest.startswith("="):
        raise AclError('"=" missing after ACL "set" modifier')
    return var, rest[1:].lstrip()


def check_item(verb, name, value, negated=False, text=None):
    """Exim's read-time checks on one item; returns the :class:`Item` or raises AclError.

    ``value`` is the text after ``=`` (None when there was no ``=``); for
    ``set`` it may instead be the whole ``acl_xxx = value`` text, as written.
    ``text`` is the configuration line, for the "unknown" message.
    """
    var = None
    if name.startswith("set ") or name.startswith("set\t"):
        var, name = name[4:].strip(), "set"
    if name not in CONDITIONS:
        raise AclError('unknown ACL condition/modifier in "%s"' % (
            text if text is not None else name))
    is_modifier = CONDITIONS[name][0]
    if negated and is_modifier:
        raise AclError('ACL error: negation is not allowed with "%s"' % name)
    if name == "endpass":
        if verb not in ("accept", "discard"):
            raise AclError('ACL error: "endpass" is not allowed with "%s"' % verb)
        return Item(name, None)
    if name == "set":
        if var is None:
            var, value = split_set(value or "")
        elif value is None:
            raise AclError('"=" missing after ACL "set" modifier')
        else:
            split_set(var + " = ")
        return Item(name, value, var=var)
    if value is None:
        raise AclError('"=" missing after ACL "%s" %s' % (
            name, "modifier" if is_modifier else "condition"))
    return Item(name, value, negated)


def logical_lines(text):
    """Lines of an inline ACL as Exim reads them: comments, blanks and ``\\`` continuations."""
    out = []
    pending = None
    for raw in text.split("\n"):
        line = raw.strip()
        if pending is not None:
            if line.startswith("#"):
                continue
            line = pending + line
            pending = None
        elif not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending = line[:-1]
            continue
        out.append(line)
    if pending:
        out.append(pending)
    return out


_WORD = re.compile(r"[A-Za-z0-9_]*")


def _take_word(s):
    """(negated, word, rest) from text that may start with ``!``."""
    negated = s.startswith("!")
    if negated:
        s = s[1:].lstrip()
    word = _WORD.match(s).group(0)
    return negated, word, s[len(word):].lstrip()


def parse_line(line, current_verb):
    """Split one logical line into (verb or None, negated, name, rest)."""
    negated, word, rest = _take_word(line)
    verb = None
    if word in VERBS and not negated:
        verb = word
        negated, word, rest = _take_word(rest)
    elif current_verb is None:
        raise AclError('unknown ACL verb "%s" in "%s"' % (word, line))
    return verb, negated, word, rest


def parse_acl_text(text, filename=None):
    """Parse ACL text (inline or from a file) into a list of :class:`Statement`."""
    statements = []
    for n, line in enumerate(logical_lines(text), 1):
        verb, negated, name, rest = parse_line(line, statements[-1].verb if statements else None)
        if verb is not None:
            statements.append(Statement(verb, [], filename, n))
            if not name:
                continue
        current = statements[-1]
        if name == "set":
            item = check_item(current.verb, "set", rest, text=line)
        elif name == "endpass":
            item = check_item(current.verb, name, None, negated, text=line)
        else:
            value = rest[1:].lstrip() if rest.startswith("=") else None
            item = check_item(current.verb, name, value, negated, text=line)
        current.items.append(item)
    return statements
