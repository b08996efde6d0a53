"""Hints files for the ACL engine: ratelimit rates and callout results.

Like Exim's db/ directory in the spool, each kind of hint is one file
(``db/<name>.sqlite``); a record is a small JSON object under a text key.
SQLite makes each update atomic, and each thread has its own connection, so
ACLs running in the server's thread pool can share a file.  Hints are only
advice: losing them changes rates and callout decisions, never mail.
"""

import json
import os
import threading

_files = {}
_files_lock = threading.Lock()


class HintsFile:
    """One hints file of one spool directory."""

    def __init__(self, spool_directory, name):
        directory = os.path.join(spool_directory, "db")
        os.makedirs(directory, exist_ok=True)
        self.path = os.path.join(directory, name + ".sqlite")
        self._local = threading.local()
        with self._conn() as c:
            c.execute("CREATE TABLE IF NOT EXISTS hints (key TEXT PRIMARY KEY, value TEXT)")

    def _conn(self):
        conn = getattr(self._local, "conn", None)
        if conn is None:
            import sqlite3     # only when a hints database is used
            conn = sqlite3.connect(self.path, timeout=30)
            conn.execute("PRAGMA journal_mode=WAL")
            self._local.conn = conn
        return conn

    def get(self, key):
        row = self._conn().execute("SELECT value FROM hints WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row is not None else None

    def put(self, key, record):
        with self._conn() as c:
            c.execute("INSERT OR REPLACE INTO hints VALUES (?, ?)", (key, json.dumps(record)))


def hints_file(config, name):
    """The shared HintsFile ``name`` of ``config``'s spool; OSError without a spool."""
    try:
        spool = config.main["spool_directory"]
    except (KeyError, TypeError, AttributeError):
        spool = None
    if not spool:
        raise OSError("no spool directory")
    with _files_lock:
        key = (spool, name)
        if key not in _files:
            _files[key] = HintsFile(spool, name)
        return _files[key]
