"""Exim's list syntax: splitting a list string into its items.

Spec chapter "The Exim runtime configuration file", section "List
construction": colon separates items unless the list starts with ``<``
and a punctuation (or control) character, which becomes the separator; a
doubled separator stands for one literal character (not for a control
character separator); white space round each item is dropped; an empty
item at the very end is ignored, so ``:`` alone is one empty item.
This is Exim's string_nextinlist.
"""

import functools

_SPACE = " \t\n\r\f\v"


def _is_sep_char(c):
    """Characters allowed after ``<``: punctuation and control characters."""
    o = ord(c)
    return o < 32 or o == 127 or ("!" <= c <= "~" and not c.isalnum())


def list_separator(text):
    """(separator, index of the first item) of list ``text``."""
    i = 0
    n = len(text)
    while i < n and text[i] in _SPACE:
        i += 1
    if i + 1 < n and text[i] == "<" and _is_sep_char(text[i + 1]):
        sep = text[i + 1]
        i += 2
        while i < n and text[i] in _SPACE and text[i] != sep:
            i += 1
        return sep, i
    return ":", 0


def iter_list(text, sep=None):
    """Yield the items of Exim list ``text``; ``sep`` fixes the separator
    (no ``<`` change is then recognised)."""
    if not text:
        return iter(())
    return iter(_split(text, sep))


@functools.lru_cache(maxsize=4096)
def _split(text, sep):
    """The items of ``text`` as a tuple; lists are re-read often, so cached."""
    if sep is None:
        sep, i = list_separator(text)
    else:
        i = 0
    n = len(text)
    special = ord(sep) < 32 or ord(sep) == 127
    items = []
    while True:
        while i < n and text[i] in _SPACE and text[i] != sep:
            i += 1
        if i >= n:
            return tuple(items)
        out = []
        while True:
            j = text.find(sep, i)
            if j < 0:
                out.append(text[i:])
                i = n
                break
            out.append(text[i:j])
            i = j + 1
            if i < n and text[i] == sep and not special:
                # A doubled separator is one literal separator character.
                out.append(sep)
                i += 1
                continue
            break
        items.append("".join(out).rstrip(_SPACE))


def split_list(text, sep=None):
    """All items of Exim list ``text`` as a Python list."""
    return list(iter_list(text, sep))


def join_list(items, sep=":"):
    """An Exim list of ``items``, separators inside items doubled."""
    return (" %s " % sep).join(item.replace(sep, sep + sep) for item in items)
