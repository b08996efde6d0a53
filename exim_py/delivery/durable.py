"""Group commit for delivery: many deliveries made durable by one flush.

A delivery must not be recorded as done before the delivered copy is on
disk (a crash would lose it), and a message must not leave the spool before
that record is on disk.  Exim forks a process per delivery and each one
fsyncs its own files; exim_py delivers many messages at once in one
process, so concurrent deliveries share the flush instead: a thread that
needs its writes durable calls ``GroupSync.sync(path)``, and one syncfs(2)
of that file system serves every thread that asked before it started (the
group commit of databases).  Where syncfs is not available the caller's own
file and directory are fsync'ed, as before.
"""

import os
import threading

# The spool's own syncfs(2) wrapper (store_batch makes received messages
# durable with it).
from exim_py.spool import spool as _spool


class _FileSystem:
    """Group commit state of one file system (one st_dev)."""

    def __init__(self):
        self.cond = threading.Condition()
        self.asked = 0        # tickets handed out
        self.done = 0         # every ticket up to this one is durable
        self.running = False


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

    def sync(self, path):
        """Return once everything this thread wrote on the file system of
        ``path`` (a file just written, renamed or unlinked) is durable: its
        data, renames and unlinks.  Raises OSError if it cannot be."""
        directory = os.path.dirname(path)
        if _spool._syncfs is None:
            _fsync_path(path)
            return
        fs = self._system(directory)
        with fs.cond:
            fs.asked += 1
            ticket = fs.asked
            while fs.done < ticket:
                if fs.running:
                    fs.cond.wait()
                    continue
                # Everything written before this moment is covered by this flush.
                covered = fs.asked
                fs.running = True
                fs.cond.release()
                try:
                    _spool._sync_file_system(directory)
                except BaseException:
                    # A failed flush marks nothing durable: this thread raises,
                    # and each other waiter tries again for itself.
                    fs.cond.acquire()
                    fs.running = False
                    fs.cond.notify_all()
                    raise
                fs.cond.acquire()
                fs.running = False
                fs.done = max(fs.done, covered)
                fs.cond.notify_all()


def _fsync_path(path):
    """Without syncfs: the file itself, then its directory."""
    for target in (path, os.path.dirname(path)):
        fd = os.open(target, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


#: The process's one group commit (deliveries on every spool share it).
GROUP = GroupSync()
