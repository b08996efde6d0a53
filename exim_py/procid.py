"""This process's id, without a system call each time it is asked for.

glibc no longer caches getpid(), and the receiving path wants the pid for
every message (its id, the writer's fork check).  The value is read once
and refreshed in the child after every fork Python makes (os.fork,
multiprocessing, the daemon's workers), which is the only way it changes.
"""

import os

_pid = os.getpid()


def _forked():
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_forked)


def current():
    """os.getpid(), as of the last fork."""
    return _pid
