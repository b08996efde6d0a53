"""The ``begin acl`` section: named ACLs made of statements (spec chapter
"Access control lists").

Each ACL starts with ``name:``; each statement starts with a verb, and its
conditions and modifiers (``name = value``, ``!name = value``, ``endpass``)
follow, on the verb's line or on the lines after it, until the next verb.
This module keeps the items exactly as written; which names exist and where
they may be used is the ACL engine's business (``exim_py.acl.validate``,
called by the loader once the whole file is read).
"""

import collections
import re

from exim_py.config.reader import Section
from exim_py.errors import ConfigError

Acl = collections.namedtuple("Acl", "name statements filename line")
AclStatement = collections.namedtuple("AclStatement", "verb items filename line")
AclItem = collections.namedtuple("AclItem", "name value negated filename line")

VERBS = ("accept", "defer", "deny", "discard", "drop", "require", "warn")

_NAME = re.compile(r"\s*([A-Za-z][A-Za-z0-9_]*)?\s*")


def _read_name(text):
    """Exim's readconf_readname: (name, rest), both with white space skipped."""
    m = _NAME.match(text)
    return m.group(1) or "", text[m.end():]


class AclParser:
    """Reads ACLs into ``acls`` ({name: Acl}).

    ``fail`` records an error or raises it; when it records (the loader's
    collecting mode), the lines after a broken ACL header are skipped up to
    the next header.
    """

    def __init__(self, reader, acls, fail):
        self.reader = reader
        self.acls = acls
        self.fail = fail

    def read(self, lines):
        """Read up to the next section; return its Section, or None at the end of the file."""
        statements = None
        complained = False
        for item in lines:
            if isinstance(item, Section):
                return item
            stripped = item.text.lstrip()
            word, rest = _read_name(stripped[1:] if stripped.startswith("!") else stripped)
            if word[:1].isupper() and rest.startswith("="):
                self.reader.define_macro(item)
                statements, complained = None, False
                continue
            if rest.startswith(":"):
                statements = self._start(word, item)
                complained = statements is None
                continue
            if statements is None:
                if not complained:
                    complained = True
                    self.fail(ConfigError("missing or malformed ACL name",
                                          item.filename, item.line))
                continue
            try:
                self._statement_line(statements, item)
            except ConfigError as e:
                self.fail(e)
        return None

    def _start(self, word, item):
        """A ``name:`` line: the statements list of a new ACL, or None if it is malformed."""
        if not word:
            self.fail(ConfigError("missing or malformed ACL name", item.filename, item.line))
            return None
        if word in self.acls:
            self.fail(ConfigError('there are two ACLs called "%s"' % word,
                                  item.filename, item.line))
            return None
        statements = []
        self.acls[word] = Acl(word, statements, item.filename, item.line)
        return statements

    def _statement_line(self, statements, item):
        """One line inside an ACL: a verb (maybe with a first item), or one more item."""
        text = item.text
        s = text.lstrip()
        negated = s.startswith("!")
        if negated:
            s = s[1:]
        word, rest = _read_name(s)
        if word in VERBS:
            if negated:
                raise ConfigError('error in ACL: malformed ACL line "%s"' % text,
                                  item.filename, item.line)
            statements.append(AclStatement(word, [], item.filename, item.line))
            if not rest:
                return
            negated = rest.startswith("!")
            if negated:
                rest = rest[1:]
            word, rest = _read_name(rest)
        elif not statements:
            raise ConfigError('error in ACL: unknown ACL verb "%s" in "%s"' % (word, text),
                              item.filename, item.line)
        statements[-1].items.append(self._item(word, rest, negated, text, item))

    @staticmethod
    def _item(name, rest, negated, text, item):
        if not name:
            raise ConfigError('error in ACL: unknown ACL condition/modifier in "%s"' % text,
                              item.filename, item.line)
        if name == "set":
            # The value of "set" is "acl_xxx = value" as written; the ACL
            # engine splits and checks it.
            return AclItem(name, rest, negated, item.filename, item.line)
        if rest.startswith("="):
            return AclItem(name, rest[1:].lstrip(), negated, item.filename, item.line)
        if name == "endpass":
            return AclItem(name, None, negated, item.filename, item.line)
        raise ConfigError('error in ACL: "=" missing after ACL "%s" %s'
                          % (name, "modifier" if name in _MODIFIERS else "condition"),
                          item.filename, item.line)


# Exim's ACL modifiers: only needed here for the wording of the "=" error.
_MODIFIERS = frozenset({
    "add_header", "continue", "control", "debug", "delay", "log_message", "log_reject_target",
    "logwrite", "message", "queue", "remove_header", "set", "udpsend",
})
