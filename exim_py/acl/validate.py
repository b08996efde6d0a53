"""Load-time checks of the ACLs in the configuration, as Exim makes them.

The configuration loader calls :func:`validate_acl` for every ACL in
``begin acl``.  Exim checks, when it reads an ACL, that every verb, condition
and modifier is known, that modifiers are not negated, that ``endpass`` goes
with accept or discard, that a ``=`` follows each name, and that ``set``
names an ``acl_c``/``acl_m`` variable; each failure is a configuration error
naming the file and line, prefixed "error in ACL:".

Exim does not check here whether a condition is allowed in the place the ACL
is used: an ACL does not know where it will be called from (the same ACL may
be named by several options, by ``acl =`` conditions and by ``${acl``
expansions), so that check happens when the ACL runs (see phases.py).  The
configuration is not rejected for it, and neither is it here.
"""

from exim_py.acl.parse import AclError, Statement, check_item
from exim_py.acl.phases import VERBS
from exim_py.errors import ConfigError


def _line_text(statement, item):
    """The configuration line an item came from, as near as the parsed form allows."""
    text = "%s%s" % ("!" if item.negated else "", item.name)
    if item.value is not None:
        text += " = %s" % item.value
    if item.line == statement.line:
        text = "%s %s" % (statement.verb, text)
    return text


def compile_statement(statement):
    """Check one configured statement and return the list of engine items."""
    if statement.verb not in VERBS:
        raise ConfigError('error in ACL: unknown ACL verb "%s"' % statement.verb,
                          statement.filename, statement.line)
    items = []
    for item in statement.items:
        try:
            items.append(check_item(statement.verb, item.name, item.value, item.negated,
                                    text=_line_text(statement, item)))
        except AclError as e:
            raise ConfigError("error in ACL: %s" % e, item.filename, item.line)
    return items


# Checked ACLs by identity: a configuration is immutable, so an ACL is
# compiled once, at load time, and run many times.  The ACL object is kept
# with its statements so that its id stays valid.
_compiled = {}


def compiled_statements(acl):
    """The engine's statements for a configured ``acl``, checked and cached."""
    entry = _compiled.get(id(acl))
    if entry is None or entry[0] is not acl:
        statements = [Statement(st.verb, compile_statement(st), st.filename, st.line)
                      for st in acl.statements]
        entry = _compiled[id(acl)] = (acl, statements)
    return entry[1]


def validate_acl(acl, config=None):
    """Raise ConfigError (file and line) for anything Exim refuses when reading ``acl``."""
    compiled_statements(acl)
