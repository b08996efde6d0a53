"""Who owns what exim_py creates in a spool or log directory.

Real Exim runs as its own user and makes its spool and log files belong to
that user.  When exim_py runs as root and writes into directories that
belong to someone else (an Exim spool owned by the Exim user), it gives
what it creates to that owner, so that Exim can still read and append.

By default that is a chown after each create.  A thread of exim_py's own
(the spool writer's) can instead take the owner's file-system identity
once (``create_as``): Linux keeps the file-system uid and gid per thread
(setfsuid(2); glibc does not spread them to other threads as it does for
setuid), so every file that thread creates is born with the right owner
and the chown goes away.
"""

import ctypes
import ctypes.util
import os
import threading

_thread = threading.local()   # .owner: the (uid, gid) this thread creates files as


def libc_functions(*names):
    """The C library's functions ``names`` (errno kept for ctypes.get_errno),
    all of them, or a None for each where one does not exist."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return tuple(getattr(libc, name) for name in names)
    except (OSError, AttributeError):
        return (None,) * len(names)


_setfsuid, _setfsgid = libc_functions("setfsuid", "setfsgid")


def inherited_owner(path):
    """(uid, gid) of the nearest existing directory at or above ``path``, when
    root must hand new files there to another user; otherwise None."""
    if os.geteuid() != 0:
        return None
    while path and not os.path.isdir(path):
        parent = os.path.dirname(path)
        if parent == path:
            return None
        path = parent
    try:
        st = os.stat(path or ".")
    except OSError:
        return None
    return (st.st_uid, st.st_gid) if st.st_uid != 0 else None


def create_as(owner, directory):
    """Make the calling thread create files and directories as ``owner`` from now on.

    Only for a thread of the caller's own that does nothing but write under
    ``directory``: the identity also decides what the thread may open.  It
    is taken only if ``owner`` can reach ``directory`` (or the nearest
    directory above it that exists), so that the thread sees the spool as
    root does.  Returns True when the thread now creates as ``owner``;
    False (and chown as before) where the system cannot, when not running
    as root, or when the owner cannot reach the spool.
    """
    if owner is None or _setfsuid is None or os.geteuid() != 0:
        return False
    uid, gid = owner
    _setfsgid(gid)
    _setfsuid(uid)
    # Both calls answer the previous value, never an error; asking with an
    # invalid id (-1) reads the current one back without changing it.
    if _setfsuid(-1) != uid or _setfsgid(-1) != gid or not _reachable(directory, uid):
        _back_to_root()
        return False
    _thread.owner = owner
    return True


def _reachable(directory, uid):
    """Whether the calling thread can open ``directory`` (or its nearest existing parent) as its owner."""
    path = directory
    while True:
        try:
            st = os.stat(path)
            break
        except FileNotFoundError:
            parent = os.path.dirname(path)
            if parent == path:
                return False
            path = parent
        except OSError:   # not allowed in, or not a directory: no identity to take
            return False
    return st.st_uid == uid and st.st_mode & 0o700 == 0o700


def _back_to_root():
    """The calling thread creates as root again (and has root's file access back)."""
    _setfsuid(0)
    _setfsgid(0)
    _thread.owner = None


def _creating_as(owner):
    return owner is not None and getattr(_thread, "owner", None) == owner


def open_new(path, flags, mode, owner=None):
    """os.open for a file that may be created, making sure it belongs to ``owner``.

    In a thread that creates as ``owner`` this is the open alone.  If that
    identity may not write where it is asked to (a directory still owned by
    root), the thread gives it up for good and falls back to a chown.
    """
    if owner is None:
        return os.open(path, flags, mode)
    if _creating_as(owner):
        try:
            return os.open(path, flags, mode)
        except PermissionError:
            _back_to_root()
    fd = os.open(path, flags, mode)
    try:
        os.fchown(fd, *owner)
    except BaseException:
        os.close(fd)
        raise
    return fd


def make_dirs(path, mode, owner=None):
    """os.makedirs, giving each directory it creates to ``owner`` (or the inherited owner)."""
    if owner is None:
        owner = inherited_owner(path)
    if _creating_as(owner):
        try:
            os.makedirs(path, mode=mode, exist_ok=True)
            return owner
        except PermissionError:
            _back_to_root()
    missing = []
    parent = path
    while parent and not os.path.isdir(parent):
        missing.append(parent)
        parent = os.path.dirname(parent)
    os.makedirs(path, mode=mode, exist_ok=True)
    if owner is not None:
        for made in missing:
            os.chown(made, *owner)
    return owner
