"""Hints databases: what delivery remembers between attempts (retry records).

Exim keeps DBM files in the spool's db/ directory; exim_py keeps one SQLite
database per hints kind there (``db/retry.sqlite``).  SQLite's journal makes
every update atomic across a crash, and each thread gets its own connection,
so the engine's worker threads and the reactor thread can share one HintsDB.
A hints database is only ever a cache of advice: losing it costs retries
being attempted early, never mail.
"""

import os
import sqlite3
import threading
import time

# How long this process trusts its last look at PRAGMA data_version (by
# any of its threads).  Asking costs a round trip through SQLite's shared
# memory and its file locks (the reactor thread looks up each host the smtp
# transport tries, each delivery thread the keys it clears); a record
# another process wrote is advice that may arrive this much later.  Writes
# made in this process are seen at once (``_changed``).
RECHECK_SECONDS = 0.02


class RetryRecord:
    """One retry hint (Exim's dbdata_retry): how long a key has been failing."""

    __slots__ = ("key", "first_failed", "last_try", "next_try", "expired",
                 "basic_errno", "more_errno", "text")

    def __init__(self, key, first_failed, last_try, next_try, expired=False,
                 basic_errno=0, more_errno=0, text=""):
        self.key = key
        self.first_failed = first_failed
        self.last_try = last_try
        self.next_try = next_try
        self.expired = expired
        self.basic_errno = basic_errno
        self.more_errno = more_errno
        self.text = text

    def __repr__(self):
        return "RetryRecord(%r, first=%d, next=%d, expired=%r)" % (
            self.key, self.first_failed, self.next_try, self.expired)


_shared = {}
_shared_lock = threading.Lock()


def for_spool(spool_directory):
    """The one HintsDB of a spool directory in this process (created on first use)."""
    with _shared_lock:
        db = _shared.get(spool_directory)
        if db is None:
            db = _shared[spool_directory] = HintsDB(spool_directory)
        return db


def _set_wal(conn, attempts=300):
    """Put the database in WAL mode.  Switching the journal mode needs an
    exclusive lock, and SQLite answers "database is locked" at once, without
    its busy handler, while another process (a daemon's other worker) opens
    the same new database; so wait and try again."""
    for attempt in range(attempts):
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or attempt == attempts - 1:
                raise
            time.sleep(0.01)


class HintsDB:
    """The hints databases of one spool directory, safe to share across threads.

    Most keys have no record (a delivery that works deletes its key), so the
    keys known to be absent are remembered: a successful delivery then costs
    no database write.  That knowledge is dropped whenever another
    connection, in this process or another, has committed a change (SQLite's
    ``PRAGMA data_version``), and whenever this object writes.
    """

    def __init__(self, spool_directory):
        self.directory = os.path.join(spool_directory, "db")
        os.makedirs(self.directory, exist_ok=True)
        self.path = os.path.join(self.directory, "retry.sqlite")
        self._local = threading.local()
        self._absent = set()
        self._generation = 0      # bumped by every change the absent set may have missed
        self._absent_lock = threading.Lock()
        self._checked = None      # when a thread last asked for data_version
        with self._conn() as c:
            c.execute("CREATE TABLE IF NOT EXISTS retry (key TEXT PRIMARY KEY,"
                      " first_failed INTEGER, last_try INTEGER, next_try INTEGER,"
                      " expired INTEGER, basic_errno INTEGER, more_errno INTEGER, text TEXT)")

    def _conn(self):
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30)
            _set_wal(conn)
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
            self._local.version = None
        return conn

    def _fresh_conn(self):
        """This thread's connection, after forgetting absences if anything
        was committed by another connection since one of this process's
        threads last looked (at most RECHECK_SECONDS ago).

        One look serves every thread: each connection compares the version
        with what it saw itself last time, so the first look after another
        connection's commit, by whichever thread, sees it."""
        conn = self._conn()
        now = time.monotonic()
        checked = self._checked
        if checked is not None and now - checked < RECHECK_SECONDS:
            return conn
        self._checked = now
        version = conn.execute("PRAGMA data_version").fetchone()[0]
        if version != self._local.version:
            self._local.version = version
            self._changed()
        return conn

    def _changed(self, key=None):
        with self._absent_lock:
            if key is None:
                self._absent.clear()
            else:
                self._absent.discard(key)
            self._generation += 1

    def get_retry(self, key):
        """The RetryRecord for ``key``, or None."""
        conn = self._fresh_conn()
        if key in self._absent:
            return None
        generation = self._generation
        row = conn.execute(
            "SELECT key, first_failed, last_try, next_try, expired, basic_errno,"
            " more_errno, text FROM retry WHERE key = ?", (key,)).fetchone()
        if row is None:
            with self._absent_lock:
                # not if a write (ours or another's) may have come in between
                if generation == self._generation:
                    self._absent.add(key)
            return None
        return RetryRecord(row[0], row[1], row[2], row[3], bool(row[4]), row[5], row[6], row[7])

    def put_retry(self, record):
        with self._conn() as c:
            c.execute("INSERT OR REPLACE INTO retry VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                      (record.key, int(record.first_failed), int(record.last_try),
                       int(record.next_try), int(record.expired), record.basic_errno or 0,
                       record.more_errno or 0, record.text or ""))
        self._changed(record.key)

    def delete_retry(self, key):
        if self.get_retry(key) is None:
            return
        with self._conn() as c:
            c.execute("DELETE FROM retry WHERE key = ?", (key,))
        self._changed(key)

    def retry_records(self):
        """Every retry record (for exinext-style listing and tests)."""
        rows = self._conn().execute(
            "SELECT key, first_failed, last_try, next_try, expired, basic_errno,"
            " more_errno, text FROM retry ORDER BY key").fetchall()
        return [RetryRecord(r[0], r[1], r[2], r[3], bool(r[4]), r[5], r[6], r[7]) for r in rows]

    def close(self):
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
