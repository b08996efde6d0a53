"""Lists inside expansions: ${map}, ${filter}, ${reduce}, inlist, forall...

Splitting is exim_py.match.lists (Exim's string_nextinlist), shared with
list matching; this module adds how ${map} and ${filter} build their output
list (spec chapter "String expansions", ``${map``).
"""

from exim_py.match.lists import iter_list, list_separator, split_list

__all__ = ["iter_list", "list_separator", "split_list", "append_item"]


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
