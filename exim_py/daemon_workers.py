"""More daemon processes, so that ``exim_py -bd`` uses every core (an exim_py extension).

One Python process uses one core.  The first daemon process does what
Exim's daemon process does with its children: it alone accepts connections
and applies the connection limits with the count of the whole daemon
(smtp_accept_max, smtp_accept_reserve, smtp_accept_max_per_host; spec
chapter "Starting the daemon").  It then serves the connection itself or
passes the socket to the worker process with the fewest open sessions, as
an SCM_RIGHTS message on a Unix socket pair; the worker says when each
session ends.  Balancing by open sessions (ties taken in turn) keeps the
processes evenly loaded, which the kernel does not do when several
processes accept from one shared socket (the first one awake takes a whole
burst).

Workers are forked from the first process once it has read the
configuration and imported its code, before the reactor exists, so that
the pages holding Python, Twisted, exim_py and the configuration stay
shared between them (copy-on-write; ``gc.freeze`` keeps the collector
from writing to them).  Each worker then builds its own reactor, spool
writer, thread pool and policy, and writes the same spool and logs
(message ids carry the process id, so they stay unique).  The first
process alone writes the pid file and runs the queue; it passes SIGTERM and
SIGHUP on to the workers, and a worker whose parent dies is sent SIGTERM by
the kernel.  A worker that dies is not replaced: the others, and the first
process, go on serving.

How many processes: ``EXIM_PY_DAEMON_PROCESSES`` when set, else the number
of CPUs, at most ``DEFAULT_MAX``.
"""

import ctypes
import errno
import gc
import os
import signal
import socket
import sys
import time
import traceback

from twisted.application import service
from twisted.internet import error
from twisted.python import log

from exim_py.daemon_imports import release_free_memory

ENV_PROCESSES = "EXIM_PY_DAEMON_PROCESSES"
DEFAULT_MAX = 4
_PR_SET_PDEATHSIG = 1
# connections taken from one listening socket per turn of the reactor
_ACCEPTS_PER_READ = 64


def wanted_processes():
    """How many daemon processes to run: the environment's choice, else one per CPU."""
    text = os.environ.get(ENV_PROCESSES, "").strip()
    if text:
        try:
            return max(1, int(text))
        except ValueError:
            pass
    return max(1, min(os.cpu_count() or 1, DEFAULT_MAX))


def bind(address, port, backlog=1024, nodelay=True):
    """A listening, non-blocking TCP socket on ``address``, ``port`` (CannotListenError if not).

    ``nodelay``: TCP_NODELAY, which the connections accepted on it inherit
    (main option tcp_nodelay).
    """
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    skt = socket.socket(family, socket.SOCK_STREAM)
    try:
        skt.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if nodelay:
            skt.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        skt.bind((address, port))
        skt.listen(backlog)
    except OSError as e:
        skt.close()
        raise error.CannotListenError(address, port, e)
    skt.setblocking(False)
    return skt


def fork_workers(count, serve, keep_out=()):
    """Fork ``count`` workers from this process; returns [(Forked, channel socket)].

    Called once the configuration is loaded and the code imported, but
    before the reactor is installed (a forked epoll set would be shared
    with this process) and before any thread starts.  Start-up's garbage
    is collected and the free heap given back first, so that it is not
    copied into every process; then ``gc.freeze`` moves
    every object made so far out of the collector's sight, so that neither
    process's collections write to the pages they share.  In the child,
    ``serve(channel)`` runs the worker's reactor and returns its exit
    status; ``keep_out`` are sockets (the listening ones) the child closes.
    """
    if "twisted.internet.reactor" in sys.modules:
        sys.stderr.write("exim_py: the reactor was installed before the daemon's workers "
                         "could be forked; running one process\n")
        return []
    gc.collect()
    release_free_memory()
    gc.freeze()
    sys.stdout.flush()
    sys.stderr.flush()
    parent = os.getpid()
    started = []
    for _ in range(count):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            status = 70             # EX_SOFTWARE, should serve raise
            try:
                ours.close()
                for skt in list(keep_out) + [c for _, c in started]:
                    skt.close()
                die_with_parent()
                if os.getppid() == parent:
                    theirs.setblocking(False)
                    status = serve(theirs)
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(status)
        theirs.close()
        ours.setblocking(False)
        started.append((Forked(pid), ours))
    return started


class Forked:
    """A forked worker, as the first process signals and waits for it."""

    def __init__(self, pid):
        self.pid = pid
        self.returncode = None

    def poll(self):
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                pid, status = self.pid, 0
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def send_signal(self, signum):
        os.kill(self.pid, signum)

    def wait(self, timeout):
        deadline = time.monotonic() + timeout
        while self.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.returncode


def signal_all(children, signum):
    for child in children:
        if child.poll() is None:
            try:
                child.send_signal(signum)
            except ProcessLookupError:
                pass


def die_with_parent():
    """Linux: the kernel sends this worker SIGTERM when its parent exits."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _reactor(reactor):
    if reactor is None:
        from twisted.internet import reactor
    return reactor


class _Remote:
    """A session served by a worker, as the connection limits see it."""

    __slots__ = ("peer_address", "worker")

    def __init__(self, peer_address, worker):
        self.peer_address = peer_address
        self.worker = worker


class _Peer:
    """What ``ServerPolicy.refuse_connection`` reads of a new connection."""

    __slots__ = ("host",)

    def __init__(self, host):
        self.host = host


class Census:
    """Every open session of the daemon: this process's and the workers'.

    It is what ``refuse_connection`` counts (``len`` and iteration over
    objects with ``peer_address``).
    """

    def __init__(self, local, remote):
        self.local = local
        self.remote = remote

    def __len__(self):
        return len(self.local) + len(self.remote)

    def __iter__(self):
        yield from self.local
        yield from self.remote.values()


class _Worker:
    """The first process's end of one worker: its channel and its open sessions."""

    def __init__(self, dispatcher, child, channel):
        self.dispatcher = dispatcher
        self.child = child
        self.channel = channel
        self.ready = False
        self.sessions = 0
        self.turn = 0

    def fileno(self):
        return self.channel.fileno()

    def logPrefix(self):
        return "exim_py worker %d" % self.child.pid

    def doRead(self):
        while True:
            try:
                message = self.channel.recv(64)
            except BlockingIOError:
                return
            except OSError:
                message = b""
            if not message:
                return self.dispatcher.worker_gone(self)
            if message == b"r":
                self.ready = True
            elif message.startswith(b"e"):
                self.dispatcher.session_ended(int(message[1:]))

    def connectionLost(self, reason):
        pass


class Dispatcher:
    """The first process's choice, per accepted connection: serve it here or
    hand it to the least busy worker."""

    def __init__(self, local_sessions, reactor=None):
        self.local = local_sessions
        self.remote = {}            # session number -> _Remote
        self.census = Census(local_sessions, self.remote)
        self.workers = []
        self.reactor = reactor
        self._numbers = 0
        self._turns = 0
        self.local_turn = 0

    def add_workers(self, started):
        reactor = _reactor(self.reactor)
        for child, channel in started:
            worker = _Worker(self, child, channel)
            self.workers.append(worker)
            reactor.addReader(worker)

    def children(self):
        return [w.child for w in self.workers]

    def worker_gone(self, worker):
        worker.child.poll()         # reaped, if it has exited
        _reactor(self.reactor).removeReader(worker)
        if worker in self.workers:
            self.workers.remove(worker)
        for number in [n for n, r in self.remote.items() if r.worker is worker]:
            del self.remote[number]
        worker.channel.close()

    def refresh(self):
        """Read what the workers have said, so the counts are current before accepting."""
        for worker in list(self.workers):
            worker.doRead()

    def session_ended(self, number):
        remote = self.remote.pop(number, None)
        if remote is not None:
            remote.worker.sessions -= 1

    def place(self, conn, host, factory, tls):
        """Serve the accepted socket ``conn`` here or in a worker."""
        conn.setblocking(False)
        target = self._choose()
        if target is not None and factory.policy.refuse_connection(_Peer(host), self.census) is None:
            self._numbers += 1
            try:
                socket.send_fds(target.channel, [b"%d %d" % (self._numbers, tls)], [conn.fileno()])
            except BlockingIOError:
                pass                # that worker is far behind: serve this one here
            except OSError:
                self.worker_gone(target)
            else:
                target.sessions += 1
                self.remote[self._numbers] = _Remote(host, target)
                conn.close()
                return
        self._turns += 1
        self.local_turn = self._turns
        try:
            _reactor(self.reactor).adoptStreamConnection(conn.fileno(), conn.family, factory)
        finally:
            conn.close()

    def _choose(self):
        """The worker to use, or None for this process: fewest open sessions,
        and on a tie the one whose turn came longest ago."""
        best, key = None, (len(self.local), self.local_turn)
        for worker in self.workers:
            if worker.ready and (worker.sessions, worker.turn) < key:
                best, key = worker, (worker.sessions, worker.turn)
        if best is not None:
            self._turns += 1
            best.turn = self._turns
        return best


class DispatchingPort(service.Service):
    """A listening socket of the first process: every connection goes to the Dispatcher."""

    def __init__(self, address, port, factory, dispatcher, tls, backlog=1024, reactor=None,
                 bound=None, nodelay=True):
        self.address = address
        self.port = port
        self.factory = factory
        self.dispatcher = dispatcher
        self.tls = tls
        self.backlog = backlog
        self.reactor = reactor
        self.socket = bound         # already listening (bound before the workers forked)
        self.nodelay = nodelay

    def privilegedStartService(self):
        super().privilegedStartService()
        if self.socket is None:
            self.socket = bind(self.address, self.port, self.backlog, self.nodelay)

    def startService(self):
        super().startService()
        if self.socket is None:
            self.privilegedStartService()
        self.factory.doStart()
        _reactor(self.reactor).addReader(self)

    def stopService(self):
        super().stopService()
        if self.socket is not None:
            _reactor(self.reactor).removeReader(self)
            self.socket.close()
            self.socket = None
            self.factory.doStop()

    def fileno(self):
        return self.socket.fileno() if self.socket is not None else -1

    def logPrefix(self):
        return "exim_py listener %s.%d" % (self.address, self.port)

    def getHost(self):
        return self.socket.getsockname()

    def doRead(self):
        self.dispatcher.refresh()
        for _ in range(_ACCEPTS_PER_READ):
            if self.socket is None:
                return
            try:
                conn, addr = self.socket.accept()
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno not in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM,
                                   errno.ECONNABORTED, errno.EINTR):
                    log.err(None, "exim_py: accept failed")
                return
            self.dispatcher.place(conn, addr[0], self.factory, self.tls)

    def connectionLost(self, reason):
        pass


class ChannelListener(service.Service):
    """A worker's end of the channel: adopts the connections the first process sends."""

    def __init__(self, channel, factories, reactor=None):
        self.channel = channel
        self.factories = factories          # {tls_on_connect: factory}
        self.reactor = reactor
        self._unsent = []                   # messages the channel had no room for

    def startService(self):
        super().startService()
        for factory in self.factories.values():
            factory.doStart()
        _reactor(self.reactor).addReader(self)
        self._say(b"r")

    def stopService(self):
        super().stopService()
        _reactor(self.reactor).removeReader(self)

    def fileno(self):
        return self.channel.fileno()

    def logPrefix(self):
        return "exim_py channel"

    def doRead(self):
        reactor = _reactor(self.reactor)
        while True:
            try:
                message, fds, _, _ = socket.recv_fds(self.channel, 64, 4)
            except BlockingIOError:
                return
            except OSError:
                message, fds = b"", []
            if not message:
                # the first process is gone: the kernel's SIGTERM ends this one
                reactor.removeReader(self)
                return
            number, tls = message.split()
            for extra in fds[1:]:
                os.close(extra)
            if not fds:
                continue
            conn = socket.socket(fileno=fds[0])
            try:
                conn.set_inheritable(False)
                transport = reactor.adoptStreamConnection(conn.fileno(), conn.family,
                                                          self.factories[tls == b"1"])
            finally:
                conn.close()
            finished = getattr(getattr(transport, "protocol", None), "finished", None)
            if finished is None:
                self._say(b"e" + number)
            else:
                finished.addBoth(lambda _, n=number: self._say(b"e" + n))

    def _say(self, message):
        """Tell the first process; kept for later when the channel is full, since a
        lost session end would leave that process counting a session forever."""
        self._unsent.append(message)
        if len(self._unsent) == 1:
            self._flush()

    def _flush(self):
        while self._unsent:
            try:
                self.channel.send(self._unsent[0])
            except BlockingIOError:
                _reactor(self.reactor).callLater(0.05, self._flush)
                return
            except OSError:
                self._unsent = []       # the first process is gone
                return
            self._unsent.pop(0)

    def connectionLost(self, reason):
        pass
