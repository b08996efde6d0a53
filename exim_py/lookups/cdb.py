"""The cdb lookup: a constant database file (D. J. Bernstein's format).

The file starts with 256 (position, slot count) pairs; a key's hash picks
a table and a starting slot, and slots are probed in turn until an empty
one.  Keys are compared exactly (no case folding) and carry no terminating
zero, as in Exim.  Files are memory-mapped and remapped when replaced.
"""

import mmap
import os
import struct
import threading

from exim_py.errors import ExpansionError
from exim_py.lookups import open_error

_lock = threading.Lock()
_maps = {}
_PAIR = struct.Struct("<II")


def cdb_hash(key):
    h = 5381
    for c in key:
        h = (((h << 5) + h) ^ c) & 0xFFFFFFFF
    return h


def _mapping(path):
    try:
        st = os.stat(path)
    except OSError as e:
        raise open_error(path, "cdb lookup", e)
    stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
    with _lock:
        hit = _maps.get(path)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        if st.st_size < 2048:
            raise ExpansionError("failed to open %s too short for cdb lookup" % path)
        try:
            with open(path, "rb") as f:
                data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except OSError as e:
            raise open_error(path, "cdb lookup", e)
        _maps[path] = (stamp, data)
        return data


def cdb_get(data, key):
    """The data stored under ``key`` (bytes) in cdb image ``data``, or None."""
    h = cdb_hash(key)
    table, slots = _PAIR.unpack_from(data, (h & 255) * 8)
    if slots == 0:
        return None
    slot = (h >> 8) % slots
    for _ in range(slots):
        slot_hash, record = _PAIR.unpack_from(data, table + slot * 8)
        if record == 0:
            return None
        if slot_hash == h:
            klen, dlen = _PAIR.unpack_from(data, record)
            if data[record + 8:record + 8 + klen] == key:
                return data[record + 8 + klen:record + 8 + klen + dlen]
        slot = (slot + 1) % slots
    return None


class Lookup:
    single_key = True

    def find(self, path, key, options, ctx):
        value = cdb_get(_mapping(path), key.encode("utf-8", "surrogateescape"))
        return None if value is None else value.decode("utf-8", "surrogateescape")
