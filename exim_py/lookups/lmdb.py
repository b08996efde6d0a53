"""The lmdb lookup: read-only access to one key of an LMDB database file.

As Exim does, the file named is the data file itself (MDB_NOSUBDIR), opened
read-only; keys carry no terminating zero.  Environments stay open between
lookups and are reopened when the file is replaced.
"""

import os
import threading

import lmdb

from exim_py.errors import ExpansionError
from exim_py.lookups import defer

_lock = threading.Lock()
_envs = {}


def _reason(exc):
    """The library's reason text, without the file name py-lmdb puts first."""
    return str(exc).rsplit(": ", 1)[-1]


def _environment(path):
    try:
        st = os.stat(path)
        stamp = (st.st_ino, st.st_mtime_ns)
    except OSError as e:
        raise ExpansionError("LMDB: Unable to open environment with %s: %s" % (path, e.strerror))
    with _lock:
        hit = _envs.get(path)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        try:
            env = lmdb.open(path, subdir=False, readonly=True, lock=False, max_dbs=0)
        except lmdb.Error as e:
            raise ExpansionError("LMDB: Unable to open environment with %s: %s"
                                 % (path, _reason(e)))
        if hit is not None:
            hit[1].close()
        _envs[path] = (stamp, env)
        return env


class Lookup:
    single_key = True

    def find(self, path, key, options, ctx):
        env = _environment(path)
        try:
            with env.begin(buffers=False) as txn:
                value = txn.get(key.encode("utf-8", "surrogateescape"))
        except lmdb.Error as e:
            raise defer("LMDB: lookup (%s) error: %s" % (key, _reason(e)))
        if value is None:
            return None
        return value.decode("utf-8", "surrogateescape")
