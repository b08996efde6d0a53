"""The listening daemon: ``exim_py -bd`` / ``-bdf`` and the Twisted service tree.

``build_service`` makes one MultiService holding an SMTP listener per
interface and port (daemon_smtp_ports, local_interfaces,
tls_on_connect_ports, or -oX) and, with -q<time>, a periodic queue run.
``exim_py -bd`` runs it directly and ``twistd exim_py`` (exim_py/tap.py)
runs the same tree.  Spec chapter "Starting the daemon" and section
"Starting a listening daemon".

``exim_py -bd`` runs one process per CPU unless EXIM_PY_DAEMON_PROCESSES
says otherwise: this one accepts and shares the sessions out
(exim_py/daemon_workers.py); ``twistd exim_py`` runs one process.

Signals: SIGTERM stops listening, lets messages already being stored reach
the disk (an acknowledged message is never lost) and exits; SIGHUP reads the
configuration again and uses it for new connections only if it loads
without error (listening addresses stay as they were).
"""

import copy
import gc
import importlib
import importlib.util
import os
import signal
import socket
import sys

from twisted.application import internet, service
from twisted.internet import defer, error

from exim_py import EXIM_COMPAT_VERSION, daemon_imports, daemon_workers
from exim_py.cli import config_path
from exim_py.config.options import format_time
from exim_py.errors import ConfigError, UsageError

DEFAULT_INTERFACES = "<; ::0 ; 0.0.0.0"
# allocations between young-generation collections in a serving daemon (see _serve)
GC_YOUNG_THRESHOLD = 20000


def _module(name):
    return importlib.import_module(name) if importlib.util.find_spec(name) else None


def load_config(inv):
    """Load the configuration named by the command line (raises ConfigError)."""
    config_mod = _module("exim_py.config")
    load = getattr(config_mod, "load", None)
    if load is None:
        raise UsageError("the configuration reader is not available in this version of exim_py yet")
    return load(config_path(inv), macros=inv.macros or None)


def build_policy(config, inv=None, host_checking=False, reactor=None):
    """A ServerPolicy for ``config`` with the spool, the logger and delivery wired in."""
    from exim_py.smtp.policy import ServerPolicy
    from exim_py.smtp.spoolwriter import SpoolWriter
    from exim_py.spool import Spool

    spool = Spool.from_config(config)
    writer = SpoolWriter(spool, reactor=reactor)
    log_mod = _module("exim_py.log")
    logger = log_mod.Logger(config) if log_mod is not None and not host_checking else None
    # -odq: the daemon only queues, as queue_only does (spec: -odq); the
    # delivery code is then imported by a queue run, if one comes.
    queue_only = inv is not None and inv.delivery_mode == "q"
    engine = None if host_checking or queue_only else _module("exim_py.delivery.engine")
    immediate = engine is not None and hasattr(engine, "deliver_later")

    def deliver(message_id, envelope=None):
        return engine.deliver_later(config, spool, message_id, logger, envelope)

    policy = ServerPolicy(config, writer, logger, host_checking=host_checking,
                          deliver=deliver if immediate else None)
    policy.tls = daemon_imports.server_tls(config, policy, inv)
    return policy


def split_list(text):
    """An Exim list: ':' separated ('::' is a literal colon), or '<X' to choose X."""
    text = (text or "").strip()
    sep = ":"
    if text.startswith("<") and len(text) > 1 and not text[1].isalnum() and not text[1].isspace():
        sep, text = text[1], text[2:]
    if sep == ":":
        items = text.replace("::", "\0").split(":")
        items = [i.replace("\0", ":") for i in items]
    else:
        items = text.split(sep)
    return [i.strip() for i in items if i.strip()]


def _port(text):
    if text.isdigit():
        return int(text)
    try:
        return socket.getservbyname(text, "tcp")
    except OSError:
        raise ConfigError('TCP port "%s" not found' % text)


def _interface(item):
    """'1.2.3.4', '1.2.3.4.25', '[1.2.3.4]:25', '::1', '::1.25' → (address, port or None)."""
    if item.startswith("["):
        address, _, rest = item[1:].partition("]")
        return address, (int(rest[1:]) if rest.startswith(":") else None)
    parts = item.rsplit(".", 1)
    if len(parts) == 2 and parts[1].isdigit():
        base = parts[0]
        if base.count(".") == 3 or (":" in base and "." not in base):
            return base, int(parts[1])
    return item, None


def listen_addresses(config, override=None, all_tls=False):
    """[(address, port, tls_on_connect)] to listen on, from the options and -oX
    (``all_tls``: -tls-on-connect, every port starts with TLS)."""
    result = _wanted_addresses(config, override, all_tls)
    # A socket on :: also takes IPv4 connections (unless the system says
    # otherwise), so binding 0.0.0.0 on the same port would fail.
    if socket.has_ipv6:
        v6_ports = {p for a, p, _ in result if a == "::"}
        result = [r for r in result if not (r[0] == "0.0.0.0" and r[1] in v6_ports)]
    return result


def _wanted_addresses(config, override, all_tls):
    """Every (address, port, tls_on_connect) the options ask for, in Exim's order."""
    ports = split_list(config.main.daemon_smtp_ports or "smtp")
    interfaces = split_list(config.main.local_interfaces or DEFAULT_INTERFACES)
    if override:
        items = split_list(override)
        port_items = [i for i in items if "." not in i and ":" not in i]
        if port_items:
            ports = port_items
        addr_items = [i for i in items if "." in i or ":" in i]
        if addr_items:
            interfaces = addr_items
    tls_ports = {_port(p) for p in split_list(config.main.tls_on_connect_ports or "")}
    default_ports = [_port(p) for p in ports]
    result = []
    for item in interfaces:
        address, port = _interface(item)
        if address in ("0.0.0.0", "::0", "::"):
            address = "::" if ":" in address else "0.0.0.0"
        for p in [port] if port is not None else default_ports:
            if (address, p) not in [(a, q) for a, q, _ in result]:
                result.append((address, p, all_tls or p in tls_ports))
    return result


def _listening_text(addresses):
    """One pass of the start line: wildcards as ``port P (IPv6 and IPv4)``,
    runs of one address as ``[A]:P`` or ``[A]:{P1,P2}``, as Exim's daemon.c."""
    words = []
    last = None             # (address, [ports]) of the run being built
    for address, port, _ in addresses:
        if address == "0.0.0.0" and ("::", port) in [(a, p) for a, p, _ in addresses]:
            continue        # said with the IPv6 wildcard on this port
        if address in ("::", "0.0.0.0"):
            if address == "0.0.0.0":
                kind = "IPv4"
            elif ("0.0.0.0", port) in [(a, p) for a, p, _ in addresses]:
                kind = "IPv6 and IPv4"
            else:
                kind = "IPv6"
            words.append("port %d (%s)" % (port, kind))
            last = None
        elif last is not None and last[0] == address:
            last[1].append(port)
        else:
            last = (address, [port])
            words.append(last)
    return " ".join(w if isinstance(w, str) else
                    "[%s]:%s" % (w[0], w[1][0] if len(w[1]) == 1
                                 else "{%s}" % ",".join(str(p) for p in w[1]))
                    for w in words)


def started_line(config, inv, pid):
    """Exim's mainlog line for a daemon start (daemon.c), e.g. ``exim 4.96 daemon
    started: pid=N, -q30m, listening for SMTP on [127.0.0.1]:25``; SMTPS
    (tls_on_connect) ports get their own ``and for SMTPS on`` part."""
    version = getattr(config.main, "exim_version", None) or EXIM_COMPAT_VERSION
    queue = "-q%s" % format_time(inv.queue_interval) if inv.queue_interval else "no queue runs"
    wanted = _wanted_addresses(config, inv.listen, getattr(inv, "tls_on_connect", False))
    plain = [a for a in wanted if not a[2]]
    tls = [a for a in wanted if a[2]]
    text = "exim %s daemon started: pid=%d, %s, listening for" % (version, pid, queue)
    if plain:
        text += " SMTP on " + _listening_text(plain)
        if tls:
            text += " and for"
    if tls:
        text += " SMTPS on " + _listening_text(tls)
    return text


class _NoDelayTCPServer(internet.TCPServer):
    """A listening port of a one-process daemon, with TCP_NODELAY set on it
    (inherited by each connection it accepts) unless tcp_nodelay is false,
    as Exim sets it on its listening sockets (spec: main option tcp_nodelay)."""

    def __init__(self, nodelay, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.nodelay = nodelay

    def _getPort(self):
        port = super()._getPort()
        if self.nodelay:
            port.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return port


class SMTPListeners(service.MultiService):
    """All SMTP listening ports, sharing one policy and one connection count.

    ``dispatch``: this is the first of several daemon processes; it accepts
    for all of them (``daemon_workers.Dispatcher``).  ``channel``: this is
    a worker; its connections come from the first process.  ``bound``:
    {(address, port): socket} already listening (daemon_mode binds before
    forking the workers).
    """

    def __init__(self, policy, addresses, reactor=None, grace=10.0, channel=None, dispatch=False,
                 bound=None):
        super().__init__()
        from exim_py.smtp.server import SMTPServerFactory
        self.policy = policy
        self.reactor = reactor
        self.grace = grace
        self.factories = []
        self.connections = set()
        self.dispatcher = daemon_workers.Dispatcher(self.connections, reactor) if dispatch else None
        census = self.dispatcher.census if dispatch else None
        for address, port, tls in addresses:
            factory = SMTPServerFactory(policy, tls_on_connect=tls, connections=self.connections,
                                        census=census)
            self.factories.append(factory)
            if dispatch:
                daemon_workers.DispatchingPort(address, port, factory, self.dispatcher, tls,
                                               reactor=reactor,
                                               bound=(bound or {}).get((address, port)),
                                               nodelay=policy.config.main.tcp_nodelay,
                                               ).setServiceParent(self)
                continue
            kwargs = {"interface": address, "backlog": 1024}
            if reactor is not None:
                kwargs["reactor"] = reactor
            _NoDelayTCPServer(policy.config.main.tcp_nodelay, port, factory,
                              **kwargs).setServiceParent(self)
        if channel is not None:
            factories = {tls: SMTPServerFactory(policy, tls_on_connect=tls, connections=self.connections)
                         for tls in (False, True)}
            self.factories.extend(factories.values())
            daemon_workers.ChannelListener(channel, factories, reactor).setServiceParent(self)

    def set_policy(self, policy):
        self.policy = policy
        for factory in self.factories:
            factory.policy = policy

    def stopService(self):
        """Stop listening, let open sessions finish (bounded), then make queued writes durable.

        A session still open after ``grace`` seconds is told 421 and closed:
        its message, if any, was not acknowledged, so the client keeps it.
        Messages already acknowledged are on disk before their 250.
        """
        stopped = defer.maybeDeferred(super().stopService)
        stopped.addCallback(lambda _: self._drain())
        return stopped

    def _drain(self):
        from twisted.internet import reactor as default_reactor
        reactor = self.reactor or default_reactor
        # Exim's session processes end at once on SIGTERM when they wait
        # for a command; one busy with a message gets the grace to finish
        # it, and ends as soon as it waits for a command again (stop())
        for p in list(self.connections):
            p.stop()
        waits = [p.finished for p in list(self.connections)]
        if not waits:
            return self.policy.spool_writer.flush()
        done = defer.Deferred()
        gather = defer.DeferredList(waits)
        timer = reactor.callLater(self.grace, self._abandon)
        gather.addCallback(lambda _: timer.active() and timer.cancel())
        gather.addCallback(lambda _: self.policy.spool_writer.flush())
        gather.chainDeferred(done)
        return done

    def _abandon(self):
        for p in list(self.connections):
            p.shutdown()


class ReloadOnHangup(service.Service):
    """SIGHUP: read the configuration again; use it only if it loads cleanly
    (and pass the signal on to worker processes)."""

    def __init__(self, listeners, inv, reactor=None):
        self.listeners = listeners
        self.inv = inv
        self.reactor = reactor
        self.workers = []

    def startService(self):
        super().startService()
        from twisted.internet import reactor as default_reactor
        reactor = self.reactor or default_reactor
        self._previous = signal.signal(signal.SIGHUP, lambda *a: reactor.callFromThread(self.reload))

    def stopService(self):
        super().stopService()
        signal.signal(signal.SIGHUP, self._previous or signal.SIG_DFL)

    def reload(self):
        daemon_workers.signal_all(self.workers, signal.SIGHUP)
        try:
            new = load_config(self.inv)
            policy = build_policy(new, self.inv, reactor=self.reactor)
        except (ConfigError, UsageError, OSError) as e:
            sys.stderr.write("exim_py: SIGHUP: configuration not reloaded:\n%s\n" % e)
            return False
        self.listeners.set_policy(policy)
        return True


def build_service(config, inv, reactor=None, channel=None, processes=1, bound=None):
    """The daemon's MultiService: SMTP listeners and, with -q<time>, the queue runner.

    ``channel``: in a worker process, the socket on which connections
    arrive from the first process.  ``processes``: more than one makes this
    the first process, accepting for the workers (daemon_workers.py), on
    the sockets in ``bound`` when given.
    """
    top = service.MultiService()
    policy = build_policy(config, inv, reactor=reactor)
    addresses = [] if channel else listen_addresses(config, inv.listen, getattr(inv, "tls_on_connect", False))
    listeners = SMTPListeners(policy, addresses, reactor, channel=channel, dispatch=processes > 1,
                              bound=bound)
    listeners.setName("smtp")
    listeners.setServiceParent(top)
    reloader = ReloadOnHangup(listeners, inv, reactor)
    reloader.setName("reload")
    reloader.setServiceParent(top)
    if inv.queue_interval:
        runner = _module("exim_py.delivery.queuerun")
        if runner is not None and hasattr(runner, "run_queue"):
            timer = internet.TimerService(inv.queue_interval, runner.run_queue, config, inv)
            timer.setName("queue")
            timer.setServiceParent(top)
    return top


def pid_file_path(config, inv):
    """-oP, else (without -oX) Exim's default in the spool directory."""
    if inv.pid_file:
        return inv.pid_file
    if inv.listen:
        return None
    path = getattr(config.main, "pid_file_path", None)
    return path or os.path.join(config.main.spool_directory, "exim-daemon.pid")


def _daemonize():
    """The classic double fork: the daemon leaves the caller's session and terminal."""
    if os.fork():
        os._exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)


def _bind_failed(config, e):
    """Exim's words for a port it cannot listen on (daemon.c, after its
    daemon_startup_retries, which exim_py does not make): panic log, main
    log and standard error; the exit status."""
    reason = e.socketError.strerror if isinstance(e.socketError, OSError) else e.socketError
    text = "socket bind() to port %d for address %s failed: %s: daemon abandoned" % (
        e.port, e.interface, reason)
    logger = _module("exim_py.log").Logger(config)
    logger.panic(text)
    sys.stderr.write(logger.format(text) + "\n")
    return 1


def daemon_mode(inv):
    """``exim_py -bd`` / ``-bdf``: listen for SMTP until SIGTERM.

    With several processes, this one binds the listening sockets, leaves
    the terminal (-bd), and forks the workers before the reactor is
    installed (daemon_workers.fork_workers); each worker then builds its
    own service tree, without listeners, pid file or queue runner.
    """
    config = load_config(inv)
    tls = daemon_imports.server_tls_wanted(config, inv)
    if not tls:
        daemon_imports.defer_twisted_tls()
    count = daemon_workers.wanted_processes()
    bound = None
    workers = []
    if count > 1:
        wanted = listen_addresses(config, inv.listen, getattr(inv, "tls_on_connect", False))
        bound = {}
        try:
            for address, port, _ in wanted:
                bound[(address, port)] = daemon_workers.bind(address, port,
                                                             nodelay=config.main.tcp_nodelay)
        except error.CannotListenError as e:
            return _bind_failed(config, e)
        if not inv.daemon_foreground:
            _daemonize()
        daemon_imports.preload(config, tls, deliver=inv.delivery_mode != "q")
        worker_inv = copy.copy(inv)
        worker_inv.queue_interval = None
        workers = daemon_workers.fork_workers(
            count - 1, lambda channel: _serve(_service_in_worker(config, worker_inv, channel), [], None),
            keep_out=bound.values())
    # after the fork: each process has a reactor (epoll set, waker) of its own
    _install_reactor()
    top = build_service(config, inv, processes=count, bound=bound)
    try:
        top.privilegedStartService()
    except error.CannotListenError as e:
        return _bind_failed(config, e)
    if count == 1 and not inv.daemon_foreground:
        _daemonize()
    if workers:
        dispatcher = top.getServiceNamed("smtp").dispatcher
        dispatcher.add_workers(workers)
        top.getServiceNamed("reload").workers = dispatcher.children()
    log_mod = _module("exim_py.log")
    if log_mod is not None:
        log_mod.Logger(config).main(started_line(config, inv, os.getpid()))
    pid_path = pid_file_path(config, inv)
    if pid_path:
        tmp = pid_path + ".tmp%d" % os.getpid()
        with open(tmp, "w") as f:
            f.write("%d\n" % os.getpid())
        os.rename(tmp, pid_path)
    return _serve(top, [child for child, _ in workers], pid_path)


def _install_reactor():
    # imported here, not at the top: the reactor's modules must load after
    # daemon_imports.defer_twisted_tls has decided whether TLS comes along
    from exim_py import reactor
    reactor.install()


def _service_in_worker(config, inv, channel):
    _install_reactor()
    return build_service(config, inv, channel=channel)


def _serve(top, workers, pid_path):
    """Run the reactor for ``top`` until SIGTERM or SIGINT; then wait for the
    ``workers`` (daemon_workers.Forked) and remove the pid file."""
    from twisted.internet import reactor

    def shutdown():
        daemon_workers.signal_all(workers, signal.SIGTERM)
        d = defer.maybeDeferred(top.stopService)
        d.addBoth(lambda _: reactor.stop())

    signal.signal(signal.SIGTERM, lambda *a: reactor.callFromThread(shutdown))
    signal.signal(signal.SIGINT, lambda *a: reactor.callFromThread(shutdown))
    # A message's objects are short-lived and nearly all freed by reference
    # counting, so the default threshold (a young collection every 700 net
    # container allocations) mostly scans live objects for nothing: with
    # 20000, CPU per accepted message at 50 connections fell by about a fifth.
    gc.set_threshold(GC_YOUNG_THRESHOLD, 50, 50)
    reactor.callWhenRunning(top.startService)
    # start-up's garbage is gone once the listeners run
    reactor.callLater(1.0, daemon_imports.release_free_memory)
    reactor.run(installSignalHandlers=False)
    for worker in workers:
        worker.wait(timeout=30)
    if pid_path:
        try:
            os.unlink(pid_path)
        except OSError:
            pass
    return 0
