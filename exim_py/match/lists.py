"""Exim's list syntax: splitting a list string into its items.

Spec chapter "The Exim runtime configuration file", section "List
construction": colon separates items unless the list starts with ``<``
and a punctuation (or control) character, which becomes the separator; a
doubled separator stands for one literal character (not for a control
character separator); white space round each item is dropped; an empty
item at the very end is ignored, so ``:`` alone is one empty item.
This is Exim's string_nextinlist.
"""

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
        return
    if sep is None:
        sep, i = list_separator(text)
    else:
        i = 0
    n = len(text)
    special = ord(sep) < 32 or ord(sep) == 127
    while True:
        while i < n and text[i] in _SPACE and text[i] != sep:
            i += 1
        if i >= n:
            return
        out = []
        while i < n:
            c = text[i]
            if c == sep:
                i += 1
                if i >= n or text[i] != sep or special:
                    break
            out.append(text[i] if c == sep else c)
            i += 1
        yield "".join(out).rstrip(_SPACE)


def split_list(text, sep=None):
    """All items of Exim list ``text`` as a Python list."""
    return list(iter_list(text, sep))


def join_list(items, sep=":"):
    """An Exim list of ``items``, separators inside items doubled."""
    return (" %s " % sep).join(item.replace(sep, sep + sep) for item in items)
