"""The message queue on disk, laid out and locked as Exim lays it out and locks it.

``<spool>/input/`` holds ``<id>-D`` (the body, first line its own name) and
``<id>-H`` (envelope and headers); with split_spool_directory they live in
``input/<c>/`` where ``c`` is the id's sixth character.  ``msglog/`` holds a
per-message log and ``db/`` the hints databases.

Durability follows Exim's spool_write_header: the -D file is written
under its own name (a -D without a -H is not a message: nothing lists or
delivers it), then the -H file is written to ``hdr.<id>``; both are made
durable (one syncfs, or an fsync each where syncfs does not exist), then
``hdr.<id>`` is renamed and the directory is fsync'ed before the caller
may acknowledge the message.  The message exists from the instant of that
rename.

Locking follows Exim too: a write lock on the first bytes of the -D file
(spec chapter "Format of spool files").  exim_py takes it as an
open-file-description lock, which conflicts with Exim's fcntl() locks and
also between threads of one process.
"""

import ctypes
import errno
import fcntl
import os
import struct
import threading

from exim_py.errors import EximError
from exim_py.spool import format as spoolformat
from exim_py.spool.ids import ID_LENGTH, IdGenerator, is_message_id, split_subdir
from exim_py.spool.owner import inherited_owner, libc_functions, make_dirs, open_new

SPOOL_MODE = 0o640
DIR_MODE = 0o750
# Exim locks the -D file's first line (the id, "-D" and the newline).
DATA_START_OFFSET = ID_LENGTH + 3
_F_OFD_SETLK = getattr(fcntl, "F_OFD_SETLK", 37)


class MessageLocked(EximError):
    """Another process or thread holds the message (Exim: "spool file is locked")."""


class MessageMissing(EximError):
    """No such message on the queue (its -H or -D file does not exist)."""


class MessageLock:
    """A held lock on one message; release() (or leaving a with block) frees it."""

    def __init__(self, fd, message_id):
        self.fd = fd
        self.message_id = message_id

    def release(self):
        if self.fd is not None:
            os.close(self.fd)   # closing the description drops its OFD lock
            self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def _fsync_open_directory(fd):
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno != errno.EINVAL:   # some file systems cannot sync directories
            raise


def _fsync_directory(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        _fsync_open_directory(fd)
    finally:
        os.close(fd)


# Linux syncfs(2): flushes one file system in one call (None where unavailable)
(_syncfs,) = libc_functions("syncfs")


def _syncfs_open(fd, name):
    if _syncfs(fd) != 0:
        raise OSError(ctypes.get_errno(), "syncfs failed", name)


def _sync_file_system(directory):
    """Make everything written under ``directory`` durable; False when syncfs is not available."""
    if _syncfs is None:
        return False
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        _syncfs_open(fd, directory)
    finally:
        os.close(fd)
    return True


def _write_new(path, chunks, exclusive=True, sync=True, owner=None):
    """Create ``path`` with ``chunks`` and (unless ``sync`` is false) fsync it; it belongs to ``owner``."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    try:
        fd = open_new(path, flags, SPOOL_MODE, owner)
    except FileExistsError:
        # A leftover of a crash (Exim's spool_open_temp unlinks it once).
        os.unlink(path)
        fd = open_new(path, flags, SPOOL_MODE, owner)
    try:
        # One writev for the usual case; a short write goes on from where it stopped.
        done = os.writev(fd, chunks)
        rest = memoryview(b"".join(chunks))[done:] if done < sum(map(len, chunks)) else b""
        while rest:
            rest = rest[os.write(fd, rest):]
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def _read_all(path):
    """A whole file's bytes, with fewer system calls than open().read()."""
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = []
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    finally:
        os.close(fd)


class SpoolBatch:
    """Messages whose files are written (Spool.write_batch), on their way onto the queue."""

    def __init__(self, spool, envelopes, msglog_lines):
        self.spool = spool
        self.envelopes = envelopes
        self.msglog_lines = msglog_lines
        self.renames = []        # (hdr.<id>, <id>-H)
        self.directories = {}    # input directory -> open descriptor (for its fsync)

    def rename(self):
        """Make each message exist: hdr.<id> becomes <id>-H (its files must be durable first)."""
        for temp, final in self.renames:
            os.rename(temp, final)

    def close(self):
        """Close the directory descriptors (never raises: the writer's thread must go on)."""
        for fd in self.directories.values():
            try:
                os.close(fd)
            except OSError:
                pass
        self.directories = {}

    def finish(self):
        """After the renames are durable: start each message log; returns the ids."""
        spool = self.spool
        for env, line in zip(self.envelopes, self.msglog_lines):
            spool._write_msglog(env.message_id, line if line is not None else spool._received_line(env))
        return [env.message_id for env in self.envelopes]


class Spool:
    """One spool directory.  Methods that touch the disk block: call them in a thread."""

    def __init__(self, directory, split=False, localhost_number=None):
        self.directory = directory
        self.split = split
        # joined once: every stored message names files in these
        self._input = os.path.join(directory, "input")
        self._msglog = os.path.join(directory, "msglog")
        self.ids = IdGenerator.shared(localhost_number)
        self._made = set()
        self._made_lock = threading.Lock()
        self._owner = False   # not looked at yet
        # With a Logger here, each stored message's msglog starts with its
        # "Received from" line (message_logs; set by from_config).
        self.msglog_logger = None

    @classmethod
    def from_config(cls, config):
        """The spool a configuration names (spool_directory, split_spool_directory, localhost_number)."""
        main = config.main
        number = main.localhost_number
        number = int(number) if isinstance(number, str) and number.strip().isdigit() else number
        spool = cls(main.spool_directory, split=bool(main.split_spool_directory), localhost_number=number)
        if main.message_logs:
            from exim_py.log import Logger
            spool.msglog_logger = Logger(config)
        return spool

    # -- paths ------------------------------------------------------------

    def _subdir(self, message_id):
        return split_subdir(message_id) if self.split else ""

    def input_dir(self, message_id=None):
        sub = self._subdir(message_id) if message_id else ""
        return self._input + "/" + sub if sub else self._input

    def msglog_dir(self, message_id):
        sub = self._subdir(message_id)
        return self._msglog + "/" + sub if sub else self._msglog

    def msglog_path(self, message_id):
        return self.msglog_dir(message_id) + "/" + message_id

    def _places(self, message_id, suffix):
        """Where ``<id><suffix>`` may be: in this spool's layout, then in the other one."""
        name = message_id + suffix
        flat = self._input + "/" + name
        split = self._input + "/" + split_subdir(message_id) + "/" + name
        return (split, flat) if self.split else (flat, split)

    def _find(self, message_id, suffix):
        """The path of ``<id><suffix>``, looking in the other layout when it is not where expected."""
        path, other = self._places(message_id, suffix)
        if os.path.exists(path):
            return path
        return other if os.path.exists(other) else path

    def _first(self, message_id, suffix, call):
        """``call(path)`` on the first place of ``<id><suffix>`` where it does
        not raise FileNotFoundError (no stat first: the usual place is tried
        directly); re-raises the last one when the file is in neither."""
        path, other = self._places(message_id, suffix)
        try:
            return call(path), path
        except FileNotFoundError:
            return call(other), other

    def body_path(self, message_id):
        return self._find(message_id, "-D")

    def header_path(self, message_id):
        return self._find(message_id, "-H")

    @property
    def owner(self):
        """(uid, gid) for new spool files when root writes into a spool owned by
        another user (see spool/owner.py); else None."""
        if self._owner is False:
            if not os.path.isdir(self.directory):
                return inherited_owner(self.directory)   # decide once it exists
            self._owner = inherited_owner(self.directory)
        return self._owner

    def ensure_dir(self, path):
        if path in self._made:
            return
        with self._made_lock:
            make_dirs(path, DIR_MODE, self.owner)
            self._made.add(path)

    def make_directories(self):
        """Create input/, msglog/ and db/ as Exim does on first use."""
        for name in ("input", "msglog", "db"):
            self.ensure_dir(os.path.join(self.directory, name))

    # -- writing ------------------------------------------------------------

    def new_message_id(self):
        return self.ids.new_id()[0]

    def _prepare(self, envelope, body, sync=True):
        """Write -D and hdr.<id> (fsync'ed when ``sync``); return (temp, final, directory)."""
        if envelope.message_id is None:
            envelope.message_id = self.new_message_id()
        message_id = envelope.message_id
        directory = self.input_dir(message_id)
        self.ensure_dir(directory)
        owner = self.owner
        _write_new(directory + "/" + message_id + "-D", [b"%s-D\n" % message_id.encode("ascii"), body],
                   sync=sync, owner=owner)
        temp = directory + "/hdr." + message_id
        _write_new(temp, [spoolformat.format_header_file(envelope)], sync=sync, owner=owner)
        return temp, directory + "/" + message_id + "-H", directory

    def _received_line(self, envelope):
        if self.msglog_logger is None:
            return None
        from exim_py.log import msglog_received_line
        return msglog_received_line(envelope, self.msglog_logger)

    def _write_msglog(self, message_id, line):
        if line is None:
            return
        directory = self.msglog_dir(message_id)
        self.ensure_dir(directory)
        path = directory + "/" + message_id
        # os.open rather than open(): no buffering, seeks or tty checks per message
        fd = open_new(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, SPOOL_MODE, self.owner)
        try:
            os.write(fd, spoolformat.encode(line if line.endswith("\n") else line + "\n"))
        finally:
            os.close(fd)

    def store(self, envelope, body, msglog_line=None):
        """Put one message on the queue durably; returns its id.

        ``msglog_line`` is the message log's first line; without it, and with
        ``msglog_logger`` set, Exim's "Received from ..." record is written.
        """
        return self.store_batch([(envelope, body)], [msglog_line])[0]

    def store_batch(self, messages, msglog_lines=None):
        """Store messages (one or many) durably; returns their ids.

        The -D and hdr.<id> files are not fsync'ed one by one: a single
        syncfs() makes all of them durable before any -H is renamed into
        place, which keeps Exim's order (data first, then the name that
        makes it a message) with two flushes per batch instead of two per
        message plus one.  It also flushes whatever else is waiting on
        that file system, which is little on a mail server's spool and is
        still less than Exim's three flushes per message; where syncfs()
        does not exist each file is fsync'ed as Exim does.
        """
        batch = self.write_batch(messages, msglog_lines)
        try:
            self.make_durable(written=batch)
            batch.rename()
            self.make_durable(renamed=batch)
        finally:
            batch.close()
        return batch.finish()

    def write_batch(self, messages, msglog_lines=None):
        """Write the -D and hdr.<id> files of ``messages``: a SpoolBatch, not yet on the queue.

        The steps after this, for a caller that overlaps batches (the spool
        writer): ``make_durable(written=batch)``, ``batch.rename()``,
        ``make_durable(renamed=batch)`` (or the next batch's
        ``make_durable(written=next, renamed=batch)``: one flush serves
        both), ``batch.close()`` and ``batch.finish()``.
        """
        if msglog_lines is None:
            msglog_lines = [None] * len(messages)   # None: the "Received from" line, when message_logs
        batch = SpoolBatch(self, [env for env, _ in messages], msglog_lines)
        try:
            for env, body in messages:
                temp, final, directory = self._prepare(env, body, sync=_syncfs is None)
                batch.renames.append((temp, final))
                if directory not in batch.directories:
                    batch.directories[directory] = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        except BaseException:
            batch.close()
            raise
        return batch

    @staticmethod
    def make_durable(written=None, renamed=None):
        """One flush: the files of the batch ``written`` and the renames of the batch ``renamed``.

        With syncfs both take one call (everything written to the file
        system before it is durable after it); a rename alone takes an
        fsync of its directories, which writes less.  Without syncfs the
        files were fsync'ed as they were written.
        """
        if written is not None and written.directories and _syncfs is not None:
            directory, fd = next(iter(written.directories.items()))
            _syncfs_open(fd, directory)
        elif renamed is not None:
            for fd in renamed.directories.values():
                _fsync_open_directory(fd)

    def write_header(self, envelope):
        """Rewrite a queued message's -H atomically (temporary name, fsync, rename, directory fsync)."""
        message_id = envelope.message_id
        final = self.header_path(message_id)
        directory = os.path.dirname(final)
        temp = os.path.join(directory, "hdr." + message_id)
        _write_new(temp, [spoolformat.format_header_file(envelope)], owner=self.owner)
        os.rename(temp, final)
        _fsync_directory(directory)
        journal = os.path.join(directory, message_id + "-J")
        if os.path.exists(journal):
            os.unlink(journal)   # folded into the -H just written

    def mark_delivered(self, message_id, addresses, durable=None):
        """Record ``addresses`` (one or a list) as delivered, durably, in the -J journal.

        As Exim during a delivery: the lines are appended and fsync'ed (the
        directory too when the journal is new); read() applies them and
        write_header() folds them into -H and deletes the journal.  A
        ``durable(directory, paths)`` callable (the delivery engine's group
        commit) replaces those fsyncs.
        """
        if isinstance(addresses, str):
            addresses = [addresses]
        path = os.path.join(os.path.dirname(self.header_path(message_id)), message_id + "-J")
        new = not os.path.exists(path)
        fd = open_new(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, SPOOL_MODE, self.owner if new else None)
        try:
            os.write(fd, b"".join(spoolformat.encode(a) + b"\n" for a in addresses))
            if durable is None:
                os.fsync(fd)
        finally:
            os.close(fd)
        if durable is not None:
            directory = os.path.dirname(path)
            durable(directory, [path, directory] if new else [path])
        elif new:
            _fsync_directory(os.path.dirname(path))

    def remove(self, message_id, sync=True, journal=True):
        """Take a message off the queue: -H first (then it no longer exists), then the rest.

        ``sync=False`` skips the directory fsync, for a delivery whose -J
        journal already records every recipient durably (as Exim, which
        does not sync the unlinks: a message that comes back after a crash
        has nothing left to deliver).  ``journal=False`` is for a caller
        that knows the message has no -J file (two failed unlinks saved).
        """
        for suffix in ("-H", "-D", "-J") if journal else ("-H", "-D"):
            try:
                self._first(message_id, suffix, os.unlink)
            except FileNotFoundError:
                pass
        try:
            os.unlink(self.msglog_path(message_id))
        except FileNotFoundError:
            pass
        if sync:
            _fsync_directory(self.input_dir(message_id))

    # -- reading ------------------------------------------------------------

    def read(self, message_id):
        """The Envelope of a queued message, with delivered addresses from any -J journal."""
        try:
            data, header = self._first(message_id, "-H", _read_all)
        except FileNotFoundError:
            raise MessageMissing("spool file %s-H not found" % message_id)
        envelope = spoolformat.parse_header_file(data, message_id)
        # The journal lives next to the -H (mark_delivered puts it there).
        try:
            journal = _read_all(os.path.join(os.path.dirname(header), message_id + "-J"))
        except FileNotFoundError:
            journal = b""
        for raw in journal.split(b"\n"):
            if raw:
                envelope.non_recipients.add(spoolformat.decode(raw))
        return envelope

    def read_body(self, message_id):
        """The body bytes (the -D file without its first line)."""
        with open(self.body_path(message_id), "rb") as f:
            f.seek(DATA_START_OFFSET)
            return f.read()

    def message_ids(self):
        """Ids of queued messages (those with a -H file), yielded as the directory is read."""
        top = self._input
        yield from self._scan(top)
        try:
            entries = os.scandir(top)
        except FileNotFoundError:
            return
        with entries:
            subdirs = [e.path for e in entries if len(e.name) == 1 and e.is_dir()]
        for sub in sorted(subdirs):
            yield from self._scan(sub)

    @staticmethod
    def _scan(directory):
        try:
            entries = os.scandir(directory)
        except FileNotFoundError:
            return
        with entries:
            for entry in entries:
                name = entry.name
                if len(name) == ID_LENGTH + 2 and name.endswith("-H") and is_message_id(name[:-2]):
                    yield name[:-2]

    # -- locking ------------------------------------------------------------

    def lock(self, message_id):
        """Lock a message for delivery or change; raises MessageLocked or MessageMissing."""
        try:
            fd, _ = self._first(message_id, "-D", lambda path: os.open(path, os.O_RDWR))
        except FileNotFoundError:
            raise MessageMissing("spool file %s-D not found" % message_id)
        flock = struct.pack("hhqqixxxx", fcntl.F_WRLCK, os.SEEK_SET, 0, DATA_START_OFFSET, 0)
        try:
            fcntl.fcntl(fd, _F_OFD_SETLK, flock)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EAGAIN, errno.EACCES):
                raise MessageLocked("spool file is locked (another process is handling this message)")
            raise
        return MessageLock(fd, message_id)

    def is_locked(self, message_id):
        try:
            self.lock(message_id).release()
        except MessageLocked:
            return True
        return False
