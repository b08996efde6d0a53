"""More reactor processes on the daemon's listening sockets (an exim_py extension).

One Python process uses one core.  With ``EXIM_PY_DAEMON_PROCESSES=N`` in
its environment, ``exim_py -bd`` binds its sockets, then starts N-1 worker
processes (``exim_py -bdf`` again, fresh interpreters) that inherit the
listening sockets and accept from the same queues; the kernel spreads the
connections.  Each worker has its own reactor, spool writer and thread pool
and writes the same spool and logs (message ids carry the process id, so
they stay unique).  The first process alone writes the pid file and runs the
queue; it passes SIGTERM and SIGHUP on to the workers, and a worker whose
parent dies is sent SIGTERM by the kernel.
"""

import ctypes
import os
import signal
import socket
import subprocess
import sys

from twisted.application import service

from exim_py.cli import config_path

ENV_PROCESSES = "EXIM_PY_DAEMON_PROCESSES"
ENV_FDS = "EXIM_PY_LISTEN_FDS"
_PR_SET_PDEATHSIG = 1


def wanted_processes():
    """How many daemon processes the environment asks for (at least one)."""
    try:
        return max(1, int(os.environ.get(ENV_PROCESSES, "1") or "1"))
    except ValueError:
        return 1


def inherited_sockets():
    """[(fd, tls_on_connect)] when this process is a worker, else None."""
    text = os.environ.get(ENV_FDS)
    if not text:
        return None
    out = []
    for item in text.split(";"):
        fd, tls = item.split(",")
        out.append((int(fd), tls == "1"))
    return out


def listening_sockets(listeners):
    """[(fd, tls_on_connect)] of a started SMTPListeners' bound ports."""
    out = []
    for child in listeners:
        port = getattr(child, "_port", None)
        if port is not None:
            out.append((port.fileno(), child.args[1].tls_on_connect))
    return out


def spawn(inv, sockets, count):
    """Start ``count`` workers sharing ``sockets``; returns their Popen objects."""
    env = dict(os.environ)
    env[ENV_FDS] = ";".join("%d,%d" % (fd, 1 if tls else 0) for fd, tls in sockets)
    env[ENV_PROCESSES] = "1"
    argv = [sys.executable, "-m", "exim_py", "-C", config_path(inv)]
    argv += ["-D%s=%s" % (name, value) for name, value in inv.macros.items()]
    if inv.delivery_mode:
        argv.append("-od" + inv.delivery_mode)
    argv += ["-bdf"]
    if getattr(inv, "tls_on_connect", False):
        argv.append("-tls-on-connect")
    fds = [fd for fd, _ in sockets]
    return [subprocess.Popen(argv, env=env, pass_fds=fds, stdin=subprocess.DEVNULL)
            for _ in range(count)]


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


class AdoptedPort(service.Service):
    """A listening socket inherited from the first daemon process."""

    def __init__(self, fd, factory, reactor=None):
        self.fd = fd
        self.factory = factory
        self.reactor = reactor
        self._port = None

    def startService(self):
        super().startService()
        if self.reactor is None:
            from twisted.internet import reactor
        else:
            reactor = self.reactor
        family = socket.socket(fileno=os.dup(self.fd))
        try:
            address_family = family.family
        finally:
            family.close()
        self._port = reactor.adoptStreamPort(self.fd, address_family, self.factory)

    def stopService(self):
        super().stopService()
        if self._port is not None:
            port, self._port = self._port, None
            return port.stopListening()
