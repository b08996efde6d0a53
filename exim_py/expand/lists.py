"""Lists inside expansions: ${map}, ${filter}, ${reduce}, inlist, forall...

Splitting is exim_py.match.lists (Exim's string_nextinlist), shared with
list matching; this module adds how ${map} and ${filter} build their output
list (spec chapter "String expansions", ``${map``).
"""

from exim_py.match import lists as _lists
from exim_py.match.lists import list_separator, split_list

__all__ = ["iter_list", "list_separator", "split_list", "append_item"]

_SPACE = " \t\n\r\f\v"


def iter_list(text, sep=None):
    """The items of Exim list ``text``.  A plain colon list with no doubled
    colons (the usual case) is split directly; anything else goes through
    exim_py.match.lists, which knows every rule."""
    if sep is None:
        stripped = text.lstrip(_SPACE)
        if stripped == "<":
            return []       # '<' then the end: the NUL is taken as the separator
        if "::" not in text and not stripped.startswith("<"):
            parts = text.split(":")
            if not parts[-1].strip(_SPACE):
                parts.pop()
            return [_trim(p.lstrip(_SPACE)) for p in parts]
    return _lists.iter_list(text, sep)


def _trim(item):
    """Trailing white space goes, except one escaped by a backslash."""
    end = len(item)
    while end and item[end - 1] in _SPACE and not (end > 1 and item[end - 2] == "\\"):
        end -= 1
    return item[:end]


def append_item(out, item, sep):
    """Add ``item`` to the list being built in ``out`` (a list of strings),
    doubling separators inside it.

    A space is put before an item that is empty or starts with the separator,
    so that it does not merge with the separator before it.
    """
    text = item.replace(sep, sep + sep)
    if out and (not item or item[0] == sep):
        text = " " + text
    out.append(text)
