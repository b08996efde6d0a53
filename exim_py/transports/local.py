"""What local transports share: whose identity a delivery runs as, and
handing created files to that user (spec chapter "Environment for running
local transports").

The uid and gid come from the transport's ``user``/``group`` options, else
from the router (its ``user``/``group``, or the local user found by
check_local_user).  exim_py delivers in-process, so instead of changing its
own identity it creates files and then gives them to that user (when it
runs as root), and runs pipe commands as that user.  With no uid set
anywhere, the delivery runs as exim_py's own user.  As in Exim, a delivery
that would run as root (FIXED_NEVER_USERS) or as a user on ``never_users``
is deferred instead (``refused_user``).
"""

import grp
import os
import pwd

from exim_py.errors import ExpansionError, LookupDefer


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


#: Exim's FIXED_NEVER_USERS as Debian builds it: never deliver as root.
FIXED_NEVER_USERS = (0,)


def never_users_list(uid, config, ctx):
    """Which list forbids a delivery as ``uid``: "fixed_never_users" (root),
    "never_users" (the main option), or None (spec, option never_users)."""
    if uid in FIXED_NEVER_USERS:
        return "fixed_never_users"
    value = config.main.get("never_users")
    if not value:
        return None
    if "$" in value:
        value = ctx.expand(value)
    for item in value.split(":"):
        item = item.strip()
        if not item:
            continue
        try:
            listed = int(item) if item.isdigit() else pwd.getpwnam(item).pw_uid
        except KeyError:
            continue
        if listed == uid:
            return "never_users"
    return None


def refused_user(transport, addr, ctx):
    """Exim's refusal text when the delivery of ``addr`` would run as a user
    on the never_users lists, else None.  With no user set anywhere exim_py
    delivers as itself (Exim's "exim uid" default), so that uid is checked."""
    try:
        uid, _ = delivery_ids(transport, addr, ctx)
    except (ExpansionError, LookupDefer, KeyError):
        return None      # the transport meets and reports the same error
    if uid is None:
        return None
    which = never_users_list(uid, ctx.config, ctx)
    if which is None:
        return None
    return "User %d set for %s transport is on the %s list" % (uid, transport.name, which)


def give(path, uid, gid):
    """Give a file or directory we created to the delivery's user (as root only)."""
    if uid is not None and os.geteuid() == 0:
        os.chown(path, uid, gid if gid is not None else -1)


def give_fd(fd, uid, gid):
    if uid is not None and os.geteuid() == 0:
        os.fchown(fd, uid, gid if gid is not None else -1)
