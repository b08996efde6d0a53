"""${listnamed:name} and ${listnamed_<type>:name}: a named list as a colon list.

Items of a list that uses another separator are re-quoted for colons, and
``+name`` items that name other lists are expanded in place, as Exim does.
"""

from exim_py.errors import ExpansionError
from exim_py.expand.lists import iter_list, list_separator
from exim_py.expand.strings import to_latin

_KINDS = {"a": "address", "d": "domain", "h": "host", "l": "localpart"}


def _find(ctx, name, kind):
    lists = getattr(ctx.config, "named_lists", None) or {}
    kinds = [kind] if kind else ["address", "domain", "host", "localpart"]
    for k in kinds:
        found = lists.get(k, {}).get(name)
        if found is not None:
            return getattr(found, "value", found)
    return None


def list_named(ctx, name, suffix):
    kind = None
    if suffix is not None:
        kind = _KINDS.get(suffix[:1])
        if kind is None:
            raise ExpansionError('bad suffix on "list" operator')
    if name.startswith("+"):
        name = name[1:]
    value = _find(ctx, name, kind)
    if value is None:
        raise ExpansionError('"%s" is not a %snamed list'
                             % (name, (kind + " ") if kind else ""))
    value = to_latin(value)        # configuration text, as the engine holds it
    sep = list_separator(value)[0]
    out = []
    for item in iter_list(value):
        if item.startswith("+"):
            out.append(list_named(ctx, item, suffix))
        elif sep != ":":
            out.append(item.replace(":", "::"))
        else:
            out.append(item)
    return " : ".join(out)
