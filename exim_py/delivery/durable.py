"""Group commit for delivery: many deliveries made durable by one flush.

A delivery must not be recorded as done before the delivered copy is on
disk (a crash would lose it), and a message must not leave the spool before
that record is on disk.  Exim forks a process per delivery and each one
fsyncs its own files; exim_py delivers many messages at once in one
process, so concurrent deliveries share the flush instead.  A thread that
needs its writes durable calls ``GroupSync.sync(directory, paths)`` naming the files
and directories it changed.  A caller alone fsyncs just those; callers that
wait while another flush runs are served together by one syncfs(2) of the
file system, which covers everything written before it started (the group
commit of databases).
"""

import os
import threading

# The spool's own syncfs(2) wrapper (store_batch makes received messages
# durable with it); None where the system has no syncfs.
from exim_py.spool import spool as _spool


class _FileSystem:
    """Group commit state of one file system (one st_dev)."""

    def __init__(self):
        self.cond = threading.Condition()
        self.asked = 0        # tickets handed out
        self.done = 0         # every ticket up to this one is durable
        self.running = False
        self.waiting = []     # (ticket, paths) not yet covered by a flush


class GroupSync:
    """Makes writes durable, sharing one flush among the threads that wait."""

    def __init__(self):
        self._lock = threading.Lock()
        self._systems = {}        # st_dev -> _FileSystem
        self._devices = {}        # directory -> st_dev (saves a stat per call)

    def _system(self, directory):
        dev = self._devices.get(directory)
        if dev is None:
            dev = os.stat(directory).st_dev
        with self._lock:
            if len(self._devices) > 4096:
                self._devices.clear()
            self._devices[directory] = dev
            fs = self._systems.get(dev)
            if fs is None:
                fs = self._systems[dev] = _FileSystem()
            return fs

    def sync(self, directory, paths):
        """Return once the changes to ``paths`` are durable: a file's data,
        or a directory's entries (a file created, renamed or unlinked in
        it).  ``directory`` is one on the same file system (where the
        changes were made).  Raises OSError if they cannot be made durable."""
        fs = self._system(directory)
        with fs.cond:
            fs.asked += 1
            ticket = fs.asked
            fs.waiting.append((ticket, paths))
            while fs.done < ticket:
                if fs.running:
                    fs.cond.wait()
                    continue
                # Everything written before this moment is covered by this flush.
                covered, group = fs.asked, fs.waiting
                fs.waiting = []
                fs.running = True
                fs.cond.release()
                try:
                    if len(group) == 1 or _spool._syncfs is None:
                        for _, wanted in group:
                            _fsync_all(wanted)
                    else:
                        _spool._sync_file_system(directory)
                except BaseException:
                    # A failed flush marks nothing durable: this thread raises,
                    # and each other waiter tries again for itself.
                    fs.cond.acquire()
                    fs.waiting = [w for w in group if w[0] != ticket] + fs.waiting
                    fs.running = False
                    fs.cond.notify_all()
                    raise
                fs.cond.acquire()
                fs.running = False
                fs.done = max(fs.done, covered)
                fs.cond.notify_all()


def _fsync_all(paths):
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


#: The process's one group commit (deliveries on every spool share it).
GROUP = GroupSync()
