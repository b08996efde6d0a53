"""The lsearch lookup: a text file of keys and data, searched linearly.

The file format (spec "File and database lookups", lsearch) is shared with
wildlsearch, nwildlsearch and iplsearch, which subclass ``Lookup`` and
change only how a key in the file is compared with the key sought:

- a key starts a line and ends at a colon, white space or the end of the
  line; a key starting with a double quote ends at the matching quote, and
  backslash escapes inside it are interpreted;
- the data is the rest of the line, after optional white space and one
  optional colon, trailing white space removed;
- a following line that starts with white space continues the data, joined
  by a single space.  Exim 4.96 ends an entry at the first empty line or
  comment line (whatever the spec says), and so do we;
- lines starting with ``#`` are comments.

Files are parsed once and re-read only when their size or mtime changes.
"""

import os
import stat
import threading

from exim_py.config.options import dequote
from exim_py.errors import ExpansionError
from exim_py.lookups import open_error

_SPACE = " \t\n\r\f\v"


class Entry:
    """One key of a file, with its data and the text that followed the key."""

    __slots__ = ("key", "data", "tail")

    def __init__(self, key, data, tail):
        self.key = key
        self.data = data
        self.tail = tail


def _split_key(line):
    """(key, text after the key) for the first line of an entry."""
    if line.startswith('"'):
        key, rest, _ = dequote(line)
        return key, rest
    i = 0
    while i < len(line) and line[i] != ":" and line[i] not in _SPACE:
        i += 1
    return line[:i], line[i:]


def parse(text):
    """The entries of an lsearch-format file, in file order."""
    entries = []
    current = None
    for raw in text.split("\n"):
        line = raw.rstrip(_SPACE)
        if current is not None:
            if line and line[0] in _SPACE:
                extra = " " + line.lstrip(_SPACE)
                current.data += extra
                current.tail += extra
                continue
            current = None
        if not line or line[0] == "#" or line[0] in _SPACE:
            continue
        key, tail = _split_key(line)
        data = tail.lstrip(_SPACE)
        if data.startswith(":"):
            data = data[1:].lstrip(_SPACE)
        current = Entry(key, data, tail)
        entries.append(current)
    return entries


class _FileCache:
    """Parsed files, re-read when they change on disk; safe from threads."""

    def __init__(self):
        self._lock = threading.Lock()
        self._files = {}

    def get(self, path, build):
        """``build(entries)`` for file ``path``, from the cache when unchanged."""
        try:
            st = os.stat(path)
        except OSError as e:
            raise open_error(path, "linear search", e)
        if not stat.S_ISREG(st.st_mode):
            # Exim's lsearch module opens the files of the whole family, so
            # its message says "lsearch" for iplsearch and wildlsearch too.
            raise ExpansionError("%s is not a regular file (lsearch lookup)" % (path,))
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        with self._lock:
            hit = self._files.get((path, build))
        if hit is not None and hit[0] == stamp:
            return hit[1]
        try:
            with open(path, "rb") as f:
                text = f.read().decode("utf-8", "surrogateescape")
        except OSError as e:
            raise open_error(path, "linear search", e)
        value = build(parse(text))
        with self._lock:
            self._files[(path, build)] = (stamp, value)
        return value


FILES = _FileCache()


class Lookup:
    """lsearch: literal keys, compared without regard to case."""

    single_key = True

    def find(self, path, key, options, ctx):
        entry = self.find_entry(path, key, ctx)
        if entry is None:
            return None
        if options.get("ret") == "full":
            return entry.key + entry.tail
        return entry.data

    def find_entry(self, path, key, ctx):
        """The first entry of file ``path`` whose key matches ``key``, or None."""
        return FILES.get(path, _as_index).get(key.lower())

    def open_check(self, path):
        """Fail as opening ``path`` fails (a missing file, not a regular file)."""
        FILES.get(path, _as_index)


def as_list(entries):
    """The entries as they are, for lookups that try every key in order."""
    return entries


def _as_index(entries):
    index = {}
    for entry in entries:
        index.setdefault(entry.key.lower(), entry)
    return index
