"""Who owns what exim_py creates in a spool or log directory.

Real Exim runs as its own user and makes its spool and log files belong to
that user.  When exim_py runs as root and writes into directories that
belong to someone else (an Exim spool owned by the Exim user), it gives
what it creates to that owner, so that Exim can still read and append.
"""

import os


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


def make_dirs(path, mode, owner=None):
    """os.makedirs, giving each directory it creates to ``owner`` (or the inherited owner)."""
    if owner is None:
        owner = inherited_owner(path)
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
