"""Queue listing: ``-bp``, ``-bpc``, ``-bpr``, ``-bpu``, ``-bpa`` (and ``mailq``).

The output is byte for byte what Exim prints, so that exiqgrep and other
tools that parse it work on exim_py's queue (spec "Listing the messages in
the queue").  For each message: its age, its size, its id, ``<sender>``,
`` *** frozen ***`` when frozen; then one line per recipient, ``D`` marking
the delivered ones; with ``-bpa`` the addresses generated from them that
were delivered follow as ``+D`` lines; a blank line ends the entry.
"""

import os
import sys
import time

from exim_py.spool.format import SpoolFormatError, headers_size
from exim_py.spool.ids import ID_LENGTH, sort_key
from exim_py.spool.spool import DATA_START_OFFSET, MessageMissing, Spool

_LIST_ALL, _LIST_UNDELIVERED, _LIST_GENERATED = 0, 1, 2
_HEADER_NAME_LENGTH = ID_LENGTH + 2     # <id>-H


def format_age(seconds):
    """Age as Exim's queue listing shows it: minutes, hours past 90m, days past 72h."""
    minutes = int(seconds) // 60
    if minutes > 90:
        hours = (minutes + 30) // 60
        if hours > 72:
            return "%2dd" % ((hours + 12) // 24)
        return "%2dh" % hours
    return "%2dm" % minutes


def format_size(size):
    """Exim's string_format_size: five columns, K and M for larger sizes."""
    if size == 0:
        return "     "
    if size < 1024:
        return "%5d" % size
    if size < 10 * 1024:
        return "%4.1fK" % (size / 1024.0)
    if size < 1024 * 1024:
        return "%4dK" % ((size + 512) // 1024)
    if size < 10 * 1024 * 1024:
        return "%4.1fM" % (size / (1024.0 * 1024.0))
    return "%4dM" % ((size + 512 * 1024) // (1024 * 1024))


def count_messages(spool):
    """How many messages are queued, as -bpc prints it.

    Exim's -bpc only counts the names that look like header files (the right
    length, ending in -H) in input/ and its one-letter split_spool_directory
    subdirectories, reading none of them; so does this, with os.listdir,
    which is several times quicker than parsing or even matching each id.
    """
    top = os.path.join(spool.directory, "input")
    total = 0
    directories = [top]
    while directories:
        directory = directories.pop()
        try:
            names = os.listdir(directory)
        except (FileNotFoundError, NotADirectoryError):
            continue
        total += len([n for n in names if len(n) == _HEADER_NAME_LENGTH and n.endswith("-H")])
        if directory == top:
            directories.extend(os.path.join(top, n) for n in names
                               if len(n) == 1 and os.path.isdir(os.path.join(top, n)))
    return total


def list_message(spool, message_id, option, now, out):
    """Write one message's entry."""
    try:
        env = spool.read(message_id)
    except (SpoolFormatError, ValueError, UnicodeError):
        # Exim shows no age and an empty size for a file it cannot parse.
        try:
            problem = "*** spool format error: size=%d ***" % os.stat(spool.header_path(message_id)).st_size
        except OSError:
            problem = "*** spool format error ***"
        out.write("%s %s\n    %s\n\n" % (format_size(0), message_id, problem))
        return
    except (MessageMissing, OSError) as e:
        problem = "*** spool read error: %s ***" % (getattr(e, "strerror", None) or e)
        out.write("%s %s\n    %s\n\n" % (format_size(0), message_id, problem))
        return
    size = headers_size(env)
    try:
        size += os.stat(spool.body_path(message_id)).st_size - DATA_START_OFFSET + 1
    except OSError:
        pass
    # whole seconds on both sides, as Exim (time(NULL) less the -H time's tv_sec)
    line = "%s %s %s <%s>" % (format_age(int(now) - int(env.received_time)), format_size(size), message_id,
                              env.sender or "")
    if "sender_set_untrusted" in env.flags:
        line += " (%s)" % env.session.caller_name
    if env.frozen:
        line += " *** frozen ***"
    out.write(line + "\n")
    shown = set()
    for r in env.recipients:
        delivered = r.address in env.non_recipients
        if delivered:
            shown.add(r.address)
        if not delivered or option != _LIST_UNDELIVERED:
            out.write("        %s %s\n" % ("D" if delivered else " ", r.address))
    if option == _LIST_GENERATED:
        for address in sorted(env.non_recipients - shown):
            out.write("       +D %s\n" % address)
    out.write("\n")


def queue_list(spool, flag="-bp", selected=None, out=None, now=None):
    """List the queue as the command-line flag ``flag`` asks; returns the exit status."""
    out = out or sys.stdout
    now = time.time() if now is None else now
    letters = flag[3:]
    if "c" in letters:
        out.write("%d\n" % count_messages(spool))
        return 0
    option = _LIST_UNDELIVERED if "u" in letters else _LIST_GENERATED if "a" in letters else _LIST_ALL
    ids = list(selected) if selected else list(spool.message_ids())
    if "r" not in letters:
        ids.sort(key=sort_key)
    for message_id in ids:
        list_message(spool, message_id, option, now, out)
    return 0


def is_admin(config, uid=None, groups=None):
    """Root, the Exim user and members of admin_groups are admin users (spec "Trusted and admin users")."""
    from exim_py.config.options import find_group
    from exim_py.match.lists import split_list
    uid = os.getuid() if uid is None else uid
    if uid == 0 or uid == config.main.exim_user:
        return True
    groups = set(os.getgroups()) | {os.getgid()} if groups is None else set(groups)
    return any(find_group(g) in groups for g in split_list(config.main.admin_groups or ""))


def queue_list_mode(inv):
    """``exim_py -bp...``: the mode function named in cli.MODES."""
    from exim_py import config as config_module
    from exim_py.cli import config_path
    config = config_module.load(config_path(inv), inv.macros)
    if config.main.queue_list_requires_admin and not is_admin(config):
        sys.stderr.write("exim: permission denied\n")
        return 1
    spool = Spool.from_config(config)
    return queue_list(spool, inv.mode_flag or "-bp", inv.args)
