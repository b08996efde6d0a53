"""Exim's list syntax, as every list-taking item and option reads it.

A list is separated by colons unless it starts with ``<`` followed by a
punctuation character, which then becomes the separator (spec chapter
"Domain, host, address, and local part lists", section "Changing list
separators").  A doubled separator stands for one literal separator
character; leading and trailing white space round each item is dropped.
"""

_SPACE = " \t\n\r\f\v"


def list_separator(text):
    """(separator, offset of the first item) for list ``text``."""
    i = 0
    n = len(text)
    while i < n and text[i] in _SPACE:
        i += 1
    if i < n and text[i] == "<" and i + 1 < n and _ispunct_or_cntrl(text[i + 1]):
        sep = text[i + 1]
        i += 2
        while i < n and text[i] in _SPACE and text[i] != sep:
            i += 1
        return sep, i
    return ":", 0


def _ispunct_or_cntrl(c):
    return ("!" <= c <= "~" and not c.isalnum()) or ord(c) < 32 or ord(c) == 127


def iter_list(text, sep=None):
    """Yield the items of Exim list ``text`` (``sep`` forces the separator).

    The separator in use is available afterwards through ``list_separator``;
    callers that need it (``${map}``, ``${filter}``) ask for it separately.
    """
    if sep is None:
        sep, i = list_separator(text)
    else:
        i = 0
    n = len(text)
    # A control character as separator cannot be doubled to escape it.
    special = ord(sep) < 32 or ord(sep) == 127
    while True:
        while i < n and text[i] in _SPACE and text[i] != sep:
            i += 1
        if i >= n:
            return
        if text[i] == sep:
            # A separator first: an empty item, unless doubled (then data).
            i += 1
            if i >= n or text[i] != sep or special:
                yield ""
                continue
        parts = []
        while True:
            j = text.find(sep, i + 1)
            if j < 0:
                j = n
            parts.append(text[i:j])
            i = j
            if i >= n:
                break
            i += 1
            if i >= n or text[i] != sep or special:
                break
        yield "".join(parts).rstrip(_SPACE)


def split_list(text, sep=None):
    """All the items of Exim list ``text`` as a Python list."""
    return list(iter_list(text, sep))


def append_item(out, item, sep):
    """Add ``item`` to the list being built in ``out`` (a list of strings),
    doubling separators inside it, as ${map} and ${filter} build their output.

    A space is put before an item that is empty or starts with the separator,
    so that it does not merge with the separator before it.
    """
    text = item.replace(sep, sep + sep)
    if out and (not item or item[0] == sep):
        text = " " + text
    out.append(text)
