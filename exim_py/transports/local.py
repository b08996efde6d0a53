"""What local transports share: whose identity a delivery runs as, and
handing created files to that user (spec chapter "Environment for running
local transports").

The uid and gid come from the transport's ``user``/``group`` options, else
from the router (its ``user``/``group``, or the local user found by
check_local_user).  exim_py delivers in-process, so instead of changing its
own identity it creates files and then gives them to that user (when it
runs as root), and runs pipe commands as that user.  With no uid set
anywhere, the delivery runs as exim_py's own user.
"""

import grp
import os
import pwd

from exim_py.errors import ExpansionError


def user_ids(value):
    """(uid, gid) for a user option's value: a uid, a name or a number as text."""
    if isinstance(value, int):
        return value, pwd.getpwuid(value).pw_gid
    value = str(value).strip()
    try:
        pw = pwd.getpwuid(int(value)) if value.isdigit() else pwd.getpwnam(value)
    except KeyError:
        raise ExpansionError("user %s was not found" % value)
    return pw.pw_uid, pw.pw_gid


def group_id(value):
    """The gid for a group option's value: a gid, a name or a number as text."""
    if isinstance(value, int):
        return value
    value = str(value).strip()
    if value.isdigit():
        return int(value)
    try:
        return grp.getgrnam(value).gr_gid
    except KeyError:
        raise ExpansionError("group %s was not found" % value)


def delivery_ids(transport, addr, ctx):
    """(uid, gid) for a local delivery of ``addr``; (None, None) for "as we are"."""
    opts = transport.options
    uid = gid = None
    if opts["user"] is not None:
        value = opts["user"]
        if isinstance(value, str) and "$" in value:
            value = ctx.expand(value, addr, transport=transport)
        uid, gid = user_ids(value)
    elif addr.uid is not None:
        uid, gid = addr.uid, addr.gid
    if opts["group"] is not None:
        value = opts["group"]
        if isinstance(value, str) and "$" in value:
            value = ctx.expand(value, addr, transport=transport)
        gid = group_id(value)
    if uid is not None and gid is None:
        gid = pwd.getpwuid(uid).pw_gid
    return uid, gid


def give(path, uid, gid):
    """Give a file or directory we created to the delivery's user (as root only)."""
    if uid is not None and os.geteuid() == 0:
        os.chown(path, uid, gid if gid is not None else -1)


def give_fd(fd, uid, gid):
    if uid is not None and os.geteuid() == 0:
        os.fchown(fd, uid, gid if gid is not None else -1)


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
