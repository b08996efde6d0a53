"""Exim's string expansion language: ``expand()``, ``expand_condition()``.

A string is parsed once into a tree (parser.py) and the tree is cached by
the string, so configuration strings expanded for every message or every
recipient cost only the walk.  See HACKING.rst for the contract.
"""

from exim_py.errors import ExpansionError, ForcedFail
from exim_py.expand.context import ExpandContext
from exim_py.expand.nodes import Tainted, taint_like
from exim_py.expand.parser import NESTED_TOO_DEEPLY, parse
from exim_py.expand.strings import from_latin, to_latin
from exim_py.expand.variables import unknown_message

__all__ = ["expand", "expand_condition", "expand_integer", "expand_latin", "ExpandContext",
           "ExpansionError", "ForcedFail", "parsed"]

_trees = {}
_acl_refs = {}
_MAX_TREES = 20000


def parsed(string):
    """The cached node tree for ``string``."""
    tree = _trees.get(string)
    if tree is None:
        if len(_trees) >= _MAX_TREES:
            _trees.clear()
            _acl_refs.clear()
        tree, acl_vars = parse(string)
        _trees[string] = tree
        if acl_vars:
            _acl_refs[string] = acl_vars
    return tree


def _check_acl_vars(string, ctx):
    """strict_acl_vars: an unset ACL variable anywhere in the string is an
    error, even in a branch that is not taken (Exim finds it while scanning)."""
    for name in _acl_refs[string]:
        if ctx.get(name) is None and ctx.main_option("strict_acl_vars", False):
            raise ExpansionError(unknown_message('unknown variable name "%s"' % name, name))


def expand(string, ctx=None):
    """Expand ``string`` in ``ctx``; raises ExpansionError (ForcedFail when forced).

    ``string`` and the result are exim_py's usual text (UTF-8, other bytes
    as surrogate escapes); inside, the engine works on bytes (strings.to_latin).
    """
    if "$" not in string and "\\" not in string:
        return string
    if string.__class__ is Tainted:
        raise ExpansionError("attempt to expand tainted string '%s'" % string)
    try:
        result = _evaluate(string if string.isascii() else to_latin(string), ctx)
    except ExpansionError as e:
        message = str(e)
        if not message.isascii():
            e.args = (from_latin(message),)
        raise
    return result if result.isascii() else from_latin(result)


def expand_latin(string, ctx=None):
    """expand() for a string already in the engine's byte form (one character
    per byte), with the result in that form: ${expand:} and friends."""
    if "$" not in string and "\\" not in string:
        return string
    if string.__class__ is Tainted:
        raise ExpansionError("attempt to expand tainted string '%s'" % string)
    return _evaluate(string, ctx)


def _evaluate(string, ctx):
    """Walk the tree for engine-form ``string`` (which has a '$' or a '\\')."""
    if ctx is None:
        ctx = ExpandContext()
    tree = _trees.get(string)
    if tree is None:
        tree = parsed(string)
    if string in _acl_refs:
        _check_acl_vars(string, ctx)
    ctx.malformed_header = False
    ctx.nested_expansion = ctx.expansion_depth > 0
    ctx.expansion_depth += 1
    try:
        result = tree.ev(ctx)
        if "\0" in result:
            # Exim's result is a C string: it ends at a NUL.
            result = taint_like(result[:result.index("\0")], result)
        return result
    except RecursionError:
        raise ExpansionError(NESTED_TOO_DEEPLY)
    finally:
        ctx.expansion_depth -= 1


def expand_integer(string, ctx=None, isplus=False):
    """Expand ``string`` and read it as Exim's expand_string_integer() does:
    a decimal with an optional K/M/G suffix, surrounding white space allowed;
    ExpansionError with Exim's text otherwise ("integer expected but ...")."""
    from exim_py.expand.arith import string_integer
    return string_integer(expand(string, ctx), isplus)


def expand_condition(string, ctx=None):
    """A ``condition =`` option: false when the expansion is empty, "0", "no" or
    "false" (any case), else true.  Expansion errors propagate."""
    value = expand(string, ctx)
    return not (value == "" or value == "0" or value.lower() in ("no", "false"))
