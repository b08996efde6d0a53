"""The appendfile transport: mbox files, maildirs and one-file-per-message
directories (spec chapter "The appendfile transport").

An mbox file is locked as Exim locks it: a ``<file>.lock`` lock file made
by linking a unique "hitching post" file (safe over NFS), plus an fcntl
lock on the open file.  Each message gets the ``message_prefix`` ("From "
line) and ``message_suffix`` (a blank line), and body lines starting with
``check_string`` ("From ") are escaped with ``escape_string`` (">From ").
A maildir delivery writes the message into ``tmp/`` and renames it into
``new/``, so a reader never sees a partial message.  All file work runs in a
thread; when exim_py runs as root, files it creates are given to the
delivery's user and group.
"""

import errno
import fcntl
import os
import re
import socket
import threading
import time

from exim_py.config.options import BOOL, INT, OCTINT, STRING, TIME, Option, OptionTable
from exim_py.delivery.address import OK, DEFER
from exim_py.delivery.durable import GROUP
from exim_py.errors import ExpansionError, ForcedFail
from exim_py.transports import local
from exim_py.transports.base import TransportBase

OPTIONS = OptionTable([
    Option("allow_fifo", BOOL, False, "allow delivery to a named pipe"),
    Option("allow_symlink", BOOL, False, "allow the file to be a symbolic link"),
    Option("batch_id", STRING, None, "batch identifier", expand=True),
    Option("batch_max", INT, 1, "maximum addresses per delivery"),
    Option("check_group", BOOL, False, "check the file's group"),
    Option("check_owner", BOOL, True, "check the file's owner"),
    Option("check_string", STRING, None, "body lines starting with this are escaped"),
    Option("create_directory", BOOL, True, "create missing directories"),
    Option("create_file", STRING, "anywhere", "where the file may be created"),
    Option("directory", STRING, None, "deliver into this directory", expand=True),
    Option("directory_file", STRING, "q${base62:$tod_epoch}-$inode",
           "file name in a directory delivery", expand=True),
    Option("directory_mode", OCTINT, 0o700, "mode of created directories"),
    Option("escape_string", STRING, None, "replacement for check_string"),
    Option("file", STRING, None, "deliver into this file", expand=True),
    Option("file_format", STRING, None, "file formats and their transports"),
    Option("file_must_exist", BOOL, False, "the file must already exist"),
    Option("lock_fcntl_timeout", TIME, 0, "wait this long for an fcntl lock"),
    Option("lock_flock_timeout", TIME, 0, "wait this long for an flock lock"),
    Option("lock_interval", TIME, 3, "time between lock attempts"),
    Option("lock_retries", INT, 10, "attempts to get a lock"),
    Option("lockfile_mode", OCTINT, 0o600, "mode of the lock file"),
    Option("lockfile_timeout", TIME, 1800, "age after which a lock file is broken"),
    Option("mailbox_filecount", STRING, None, "current file count of the mailbox", expand=True),
    Option("mailbox_size", STRING, None, "current size of the mailbox", expand=True),
    Option("maildir_format", BOOL, False, "deliver in maildir format"),
    Option("maildir_quota_directory_regex", STRING, None, "directories counted for quota"),
    Option("maildir_retries", INT, 10, "attempts to find a unique maildir name"),
    Option("maildir_tag", STRING, None, "tag appended to maildir file names", expand=True),
    Option("maildir_use_size_file", BOOL, False, "keep a maildirsize file"),
    Option("maildirfolder_create_regex", STRING, None, "when to create maildirfolder"),
    Option("mailstore_format", BOOL, False, "deliver in mailstore format"),
    Option("mailstore_prefix", STRING, None, "mailstore prefix", expand=True),
    Option("mailstore_suffix", STRING, None, "mailstore suffix", expand=True),
    Option("mbx_format", BOOL, False, "deliver in MBX format"),
    Option("message_prefix", STRING, None, "text written before each message", expand=True),
    Option("message_suffix", STRING, None, "text written after each message", expand=True),
    Option("mode", OCTINT, 0o600, "mode of created files"),
    Option("mode_fail_narrower", BOOL, True, "fail when an existing file's mode is narrower"),
    Option("notify_comsat", BOOL, False, "notify comsat"),
    Option("quota", STRING, None, "maximum mailbox size", expand=True),
    Option("quota_directory", STRING, None, "directory whose size is checked", expand=True),
    Option("quota_filecount", STRING, None, "maximum number of files", expand=True),
    Option("quota_is_inclusive", BOOL, True, "the quota includes the new message"),
    Option("quota_size_regex", STRING, None, "regex finding a file's size in its name"),
    Option("quota_warn_message", STRING, None, "warning message text", expand=True),
    Option("quota_warn_threshold", STRING, "0", "when to send a quota warning", expand=True),
    Option("use_bsmtp", BOOL, False, "write batched SMTP"),
    Option("use_crlf", BOOL, False, "end lines with CRLF"),
    Option("use_fcntl_lock", BOOL, True, "lock mbox files with fcntl"),
    Option("use_flock_lock", BOOL, False, "lock mbox files with flock"),
    Option("use_lockfile", BOOL, True, "lock mbox files with a .lock file"),
    Option("use_mbx_lock", BOOL, False, "MBX locking"),
])

GENERIC_DEFAULTS = {"retry_use_local_part": True}

DEFAULT_PREFIX = "From ${if def:return_path{$return_path}{MAILER-DAEMON}} ${tod_bsdinbox}\n"


def validate(dconf):
    """Exim's appendfile init checks (file and directory are exclusive)."""
    from exim_py.errors import ConfigError
    opts = dconf.options
    if opts["file"] is not None and opts["directory"] is not None:
        raise ConfigError("only one of \"file\" or \"directory\" can be specified for the "
                          "%s transport" % dconf.name, dconf.filename, dconf.line)
    if opts["maildir_format"] and opts["mailstore_format"]:
        raise ConfigError("only one of maildir and mailstore may be specified for the "
                          "%s transport" % dconf.name, dconf.filename, dconf.line)


class _Failure(Exception):
    def __init__(self, result, message, errno_=None, retry_error=None):
        super().__init__(message)
        self.result = result
        self.message = message
        self.errno = errno_
        self.retry_error = retry_error


class Transport(TransportBase):
    """driver = appendfile"""

    def __init__(self, dconf, config):
        super().__init__(dconf, config)
        self._maildirs = set()        # maildir paths known to have tmp/, new/ and cur/

    def deliver(self, message, addresses, ctx):
        from twisted.internet import threads     # Twisted only when delivering
        return threads.deferToThread(self.deliver_blocking, message, addresses, ctx)

    def deliver_blocking(self, message, addresses, ctx):
        addr = addresses[0]
        try:
            self._deliver(message, addresses, ctx)
        except _Failure as f:
            for a in addresses:
                a.set_result(f.result, f.message, f.errno)
                if f.result is DEFER:
                    a.add_retry("T:%s" % _key(a), error=f.retry_error or "*",
                                message=f.message)
            return
        except ExpansionError as e:
            self.fail_all(addresses, DEFER, str(e))
            return
        except OSError as e:
            # The log line shows strerror from the errno, then this text.
            self.fail_all(addresses, DEFER, "while delivering to %s" % (e.filename or "mailbox"),
                          e.errno)
            for a in addresses:
                a.add_retry("T:%s" % _key(a), error="*", message=a.message)
            return
        for a in addresses:
            a.set_result(OK)
            a.add_retry("T:%s" % _key(a), delete=True)
        del addr

    # -- the delivery itself -------------------------------------------------

    def _target(self, message, addr, ctx):
        """(path, is_directory) from the file/directory options or the address."""
        opts = self.options
        if opts["file"] is not None:
            return self.expand_opt("file", addr, ctx), False
        if opts["directory"] is not None:
            return self.expand_opt("directory", addr, ctx), True
        if addr.is_file:
            return addr.address, addr.directory or addr.address.endswith("/")
        raise _Failure(DEFER, "Mandatory file or directory option missing from %s transport"
                       % self.name)

    def _deliver(self, message, addresses, ctx):
        addr = addresses[0]
        path, is_dir = self._target(message, addr, ctx)
        if not path.startswith("/"):
            raise _Failure(DEFER, '"%s" is not an absolute path' % path)
        uid, gid = local.delivery_ids(self, addr, ctx)
        opts = self.options
        maildir = is_dir and opts["maildir_format"]
        mbox_style = not is_dir and not opts["use_bsmtp"]
        check = opts["check_string"]
        escape = opts["escape_string"]
        if check is None and mbox_style:
            check, escape = "From ", ">From "
        eol = b"\r\n" if opts["use_crlf"] else b"\n"
        prefix = self._affix("message_prefix", DEFAULT_PREFIX if mbox_style else None,
                             addr, ctx, message)
        suffix = self._affix("message_suffix", "\n" if mbox_style else None, addr, ctx, message)
        chunks = [prefix] + list(self.message_chunks(
            message, addresses, ctx, eol=eol, check_string=check, escape_string=escape)) + [suffix]
        data = b"".join(c for c in chunks if c)
        for a in addresses:
            a.transport_count = len(data)
            a.return_path = self.return_path(message, a, ctx)
        self._check_quota(path, is_dir, len(data), addr, ctx)
        if maildir:
            self._maildir(path, data, addr, ctx, uid, gid)
        elif is_dir:
            self._directory_file(path, data, addr, ctx, uid, gid)
        else:
            self._mbox(path, data, uid, gid)

    def _affix(self, name, default, addr, ctx, message):
        value = self.options[name] if self.options.is_set(name) else default
        if value is None:
            return b""
        try:
            text = ctx.expand(value, addr, transport=self,
                              extra={"return_path": self.return_path(message, addr, ctx)})
        except ForcedFail:
            return b""
        return text.encode("utf-8", "surrogateescape")

    def _check_quota(self, path, is_dir, size, addr, ctx):
        quota_text = self.expand_opt("quota", addr, ctx)
        if not quota_text:
            return
        quota = _size(quota_text)
        if quota <= 0:
            return
        if is_dir:
            current = 0
            for root, _dirs, files in os.walk(path):
                for name in files:
                    try:
                        current += os.stat(os.path.join(root, name)).st_size
                    except OSError:
                        pass
        else:
            try:
                current = os.stat(path).st_size
            except FileNotFoundError:
                current = 0
        total = current + size if self.options["quota_is_inclusive"] else current
        if total > quota:
            # Exim's own errno for its quota (ERRNO_EXIMQUOTA), not EDQUOT.
            raise _Failure(DEFER, "mailbox is full (MTA-imposed quota exceeded while writing "
                           "to %s)" % path, -22, retry_error="quota")

    def _make_dirs(self, directory, uid, gid):
        if os.path.isdir(directory):
            return
        if not self.options["create_directory"]:
            raise _Failure(DEFER, "directory %s does not exist" % directory)
        mode = self.options["directory_mode"]
        missing = []
        d = directory
        while d and d != "/" and not os.path.isdir(d):
            missing.append(d)
            d = os.path.dirname(d)
        for d in reversed(missing):
            try:
                os.mkdir(d, mode)
            except FileExistsError:
                continue
            local.give(d, uid, gid)

    def _mbox(self, path, data, uid, gid):
        # fcntl locks do not exclude other threads of this process, and a
        # lock file may be turned off: one process-wide lock per mailbox.
        with _path_lock(path):
            self._mbox_locked(path, data, uid, gid)

    def _mbox_locked(self, path, data, uid, gid):
        opts = self.options
        self._make_dirs(os.path.dirname(path), uid, gid)
        if os.path.islink(path) and not opts["allow_symlink"]:
            raise _Failure(DEFER, "mailbox %s is a symbolic link" % path)
        if opts["file_must_exist"] and not os.path.exists(path):
            raise _Failure(DEFER, "file %s does not exist" % path, errno.ENOENT)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            st = None
        if st is not None and st.st_nlink != 1:
            # Exim's check on an existing mailbox (a directory counts too).
            raise _Failure(DEFER, "mailbox %s has too many links (%d)" % (path, st.st_nlink),
                           -4)
        lockfile = None
        if opts["use_lockfile"]:
            lockfile = self._dotlock(path)
        try:
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) \
                if not opts["allow_symlink"] else os.O_WRONLY | os.O_APPEND | os.O_CREAT
            existed = os.path.exists(path)
            fd = os.open(path, flags, opts["mode"])
            try:
                if not existed:
                    os.fchmod(fd, opts["mode"])
                    local.give_fd(fd, uid, gid)
                if opts["use_fcntl_lock"]:
                    self._fcntl_lock(fd, path)
                start = os.lseek(fd, 0, os.SEEK_END)
                try:
                    _write_all(fd, data)
                    os.fsync(fd)
                except OSError:
                    # Leave the mailbox as it was: no partial message.
                    os.ftruncate(fd, start)
                    raise
            finally:
                os.close(fd)
        finally:
            if lockfile is not None:
                try:
                    os.unlink(lockfile)
                except FileNotFoundError:
                    pass

    def _dotlock(self, path):
        """Take ``path.lock`` the NFS-safe way: link a unique file to the lock name."""
        opts = self.options
        lockname = path + ".lock"
        hitch = "%s.%s.%x.%d.%d" % (lockname, socket.gethostname(), int(time.time()),
                                    os.getpid(), threading.get_ident())
        for _attempt in range(max(opts["lock_retries"], 1)):
            fd = os.open(hitch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, opts["lockfile_mode"])
            os.close(fd)
            try:
                os.link(hitch, lockname)
                ok = os.stat(hitch).st_nlink == 2
            except FileExistsError:
                ok = False
            finally:
                os.unlink(hitch)
            if ok:
                return lockname
            try:
                age = time.time() - os.stat(lockname).st_mtime
                if age > opts["lockfile_timeout"]:
                    os.unlink(lockname)
                    continue
            except FileNotFoundError:
                continue
            time.sleep(min(opts["lock_interval"], 1))
        raise _Failure(DEFER, "failed to lock mailbox %s (lock file)" % path,
                       retry_error="lock")

    def _fcntl_lock(self, fd, path):
        opts = self.options
        for _attempt in range(max(opts["lock_retries"], 1)):
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            time.sleep(min(opts["lock_interval"], 1))
        raise _Failure(DEFER, "failed to lock mailbox %s (fcntl)" % path, retry_error="lock")

    def _maildir(self, path, data, addr, ctx, uid, gid):
        """tmp/ then rename into new/ (the maildir protocol)."""
        path = path.rstrip("/")
        # Maildirs seen complete are not looked at again (four stats per
        # delivery); one that has gone since is made again on the retry.
        known = path in self._maildirs
        if not known:
            self._make_maildir(path, uid, gid)
        try:
            self._maildir_write(path, data, addr, ctx, uid, gid)
        except FileNotFoundError:
            self._maildirs.discard(path)
            if not known:
                raise
            self._make_maildir(path, uid, gid)
            self._maildir_write(path, data, addr, ctx, uid, gid)

    def _make_maildir(self, path, uid, gid):
        for sub in ("", "tmp", "new", "cur"):
            self._make_dirs(os.path.join(path, sub) if sub else path, uid, gid)
        if len(self._maildirs) > 10000:
            self._maildirs.clear()
        self._maildirs.add(path)

    def _maildir_write(self, path, data, addr, ctx, uid, gid):
        tag = self.expand_opt("maildir_tag", addr, ctx) or ""
        # Exim's name: <seconds>.M<microseconds>P<pid>.<primary_hostname>
        host = (ctx.config.main.get("primary_hostname") or socket.gethostname())
        host = host.replace("/", "\\057").replace(":", "\\072")
        for attempt in range(max(self.options["maildir_retries"], 1)):
            now = time.time()
            name = "%d.M%dP%d.%s" % (int(now), int((now % 1) * 1e6) + attempt, os.getpid(), host)
            tmp = os.path.join(path, "tmp", name)
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, self.options["mode"])
            except FileExistsError:
                continue
            try:
                local.give_fd(fd, uid, gid)
                _write_all(fd, data)
            except OSError:
                os.close(fd)
                os.unlink(tmp)
                raise
            os.close(fd)
            # The copy is durable before it appears in new/, and its name in
            # new/ before the delivery is recorded; concurrent deliveries
            # share these flushes (delivery/durable.py).
            GROUP.sync(path, [tmp])
            new = os.path.join(path, "new")
            os.rename(tmp, os.path.join(new, name + tag))
            GROUP.sync(path, [new])
            return
        raise _Failure(DEFER, "failed to create a unique file in %s/tmp" % path)

    def _directory_file(self, path, data, addr, ctx, uid, gid):
        """One file per message in a directory: write under a temporary name,
        then rename to directory_file (which may use $inode)."""
        self._make_dirs(path, uid, gid)
        tmp = os.path.join(path, "temp.%d.%s" % (os.getpid(), socket.gethostname()))
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, self.options["mode"])
        try:
            local.give_fd(fd, uid, gid)
            _write_all(fd, data)
            inode = os.fstat(fd).st_ino
        finally:
            os.close(fd)
        GROUP.sync(path, [tmp])
        name = ctx.expand(self.options["directory_file"], addr, transport=self,
                          extra={"inode": str(inode)})
        os.rename(tmp, os.path.join(path, name))
        GROUP.sync(path, [path])


# A fixed set of locks, chosen by the mailbox's path: bounded memory, and two
# deliveries to one mailbox always meet on the same lock.
_PATH_LOCKS = [threading.Lock() for _ in range(64)]


def _path_lock(path):
    return _PATH_LOCKS[hash(path) % len(_PATH_LOCKS)]


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _size(text):
    m = re.match(r"^\s*(\d+(?:\.\d+)?)\s*([KMG]?)\s*$", text, re.I)
    if not m:
        raise ExpansionError('Invalid quota value "%s"' % text)
    mult = {"": 1, "K": 1024, "M": 1024 ** 2, "G": 1024 ** 3}[m.group(2).upper()]
    return int(float(m.group(1)) * mult)


def _key(addr):
    return "%s@%s" % (addr.local_part, addr.domain)


__all__ = ["Transport", "OPTIONS"]
