"""SMTP on standard input and output: ``-bs`` (a real session from a local
program, as inetd or a pipe uses it) and ``-bh IP`` / ``-bhc IP`` (a test
session as if from host IP: the ACLs run and the replies are printed, but
nothing is delivered).  Spec sections on -bs and -bh in "The Exim command
line".
"""

import getpass
import os
import socket
import subprocess
import sys

from twisted.internet import defer, stdio

from exim_py.errors import ConfigError
from exim_py.hostport import NotAnIPAddress, command_line_address
from exim_py.smtp.policy import NO_GREETING
from exim_py.smtp.server import SMTPServerProtocol

HOST_CHECK_INTRO = (
    "\n"
    "**** SMTP testing session as if from host %s\n"
    "**** but without any ident (RFC 1413) callback.\n"
    "**** This is not for real!\n"
    "\n")
NOT_REAL_ID = "\n**** SMTP testing: that is not a real message id!\n\n"
# What Exim's die() says to an SMTP caller after a panic that ends the process
DIE_TEXT = "Unexpected failure, please try later"


class _StdioAddress:
    """What getPeer/getHost give for a session on a pipe: no address."""

    host = None
    port = None


class StdioSMTPProtocol(SMTPServerProtocol):
    """The server protocol on standard input and output (-bs, -bh): the
    addresses come from the command line or, under inetd, from the socket;
    the exit status is the one Exim would end with."""

    # A local caller's bare-LF lines are lines, so LF.LF ends DATA (smtp/data.py);
    # an inetd session sets this back to False.
    lf_line_ends = True

    def __init__(self, policy, caller=None, host_address=None, host_checking=False):
        super().__init__(policy)
        self.caller = caller
        self.host_address = host_address
        self.host_checking = host_checking
        self.exit_status = 0

    def connectionMade(self):
        self.transport.getPeer = _StdioAddress
        self.transport.getHost = _StdioAddress
        super().connectionMade()

    # -- Exim's die(): a start-up failure that ends the process ---------------

    def _after_connect(self, reply):
        if reply is NO_GREETING:
            # smtp_active_hostname would not expand: Exim's panic-and-die
            # comes before the session has any input or output.
            self.exit_status = 1
        super()._after_connect(reply)

    def _greet(self, greeting):
        if greeting is None:
            # smtp_banner would not expand (logged by the policy): Exim dies,
            # under -bs with smtp_closedown's text, under -bh without a word.
            if self.host_checking:
                self.exit_status = 1
                return self._drop()
            return self._closedown(DIE_TEXT)
        super()._greet(greeting)

    def _closedown(self, text):
        """Exim's smtp_closedown before it exits with status 1: ``421 text``,
        then every command read until QUIT or the end of the input gets
        ``421 text`` again, except RSET (250) and QUIT (221)."""
        self.exit_status = 1
        self._closedown_text = text
        self._mode = "closedown"
        self._send(421, text)
        self._process_buffer()

    def _process_buffer(self):
        if self._mode != "closedown":
            return super()._process_buffer()
        while not self._closing:
            eol = self._buffer.find(b"\n")
            if eol < 0:
                return
            line, self._buffer = self._buffer[:eol], self._buffer[eol + 1:]
            verb = line.strip().split(b" ", 1)[0].upper()
            if verb == b"QUIT":
                self._send(221, "%s closing connection" % self.policy.hostname(self.session))
                self._drop()
            elif verb == b"RSET":
                self._send(250, "Reset OK")
            else:
                self._send(421, self._closedown_text)

    def input_ended(self):
        if self._mode == "closedown":
            # the end of the input ends smtp_closedown's loop without a word
            return self._drop()
        if not self.host_checking:
            # -bs input that ends without QUIT is a lost connection, which
            # Exim answers by exiting with status 1 (-bh exits 0)
            self.exit_status = 1
        super().input_ended()

    def _timed_out(self):
        # a command or data timeout ends Exim with status 1, -bs or -bh
        self.exit_status = 1
        super()._timed_out()

    def _message_accepted(self):
        # Exim's receive.c notes this after any reply accepting the message
        if self.host_checking:
            self.transport.write(NOT_REAL_ID.encode("ascii"))
        elif self._wrapped_delivery_failed:
            # mua_wrapper: Exim exits once the reply is out, reading no more
            self.exit_status = 1
            self._drop()

    _wrapped_delivery_failed = False

    def wrapped_delivery_done(self, outcome):
        """mua_wrapper: a message not delivered to every recipient (a
        deferral counts as a failure) is reported on standard error as
        Exim's deliver_message reports it, and ends the session."""
        undelivered = list(getattr(outcome, "failed", ())) + list(getattr(outcome, "deferred", ()))
        if undelivered:
            self._wrapped_delivery_failed = True
            sys.stderr.write("Delivery failed: %s\n" % _failure_text(undelivered[0]))
            sys.stderr.flush()
        return outcome


def _failure_text(address):
    """Why ``address`` failed, as Exim's mua_wrapper tells the MUA: the
    error number's text, the host used, the message."""
    text = address.user_message or address.message
    errno = address.basic_errno
    parts = []
    if isinstance(errno, int) and errno > 0:
        parts.append(os.strerror(errno) + (": " if text else ""))
    host = address.host_used
    if host is not None:
        parts.append("H=%s [%s]: " % (host.name, host.address))
    if text:
        parts.append(text)
    elif not (isinstance(errno, int) and errno > 0):
        parts.append("unknown error")
    return "".join(parts)


def host_check_logger(config, stream=None):
    """The logger of a -bh session: nothing reaches the log files; each line
    that would have been written is shown on standard error as ``LOG: text``
    (without the timestamp), as Exim does when it only checks a host."""
    from exim_py.log import Logger

    class HostCheckLogger(Logger):
        def format(self, text, message_id=None, now=None):
            return "%s %s" % (message_id, text) if message_id else text

        def _emit(self, which, lines, now):
            text = "".join("LOG: %s\n" % line for line in lines)
            if stream is not None:
                stream.write(text)
                stream.flush()
                return
            # Bytes that are no UTF-8 (surrogate escapes) go out as themselves,
            # as they would to a log file.
            sys.stderr.flush()
            sys.stderr.buffer.write(text.encode("utf-8", "surrogateescape"))
            sys.stderr.buffer.flush()

        # Whatever logs a line is for, it is shown once: as the main copy
        # (which _main_copy leaves out when main() has just shown it).
        def reject(self, text, message_id=None, headers=None, sender=None, recipients=None,
                   main=True):
            super().reject(text, message_id, main=True)

        def panic(self, text, message_id=None, main=True):
            super().panic(text, message_id, main=True)

    logger = HostCheckLogger(config)
    # With no files, Logger writes the reject and panic lines nowhere but
    # their main copy.
    logger.templates, logger.use_syslog = [], False
    return logger


def _panics_to_stderr(logger):
    """A -bs caller sees each panic log line on standard error as well, with
    its timestamp, as Exim's log_write shows panics to a process whose
    standard error is still open.  The logger is the one the deliveries of
    the session use too, so their panics are shown in the same way."""
    panic = logger.panic

    def panic_and_show(text, message_id=None, main=True):
        panic(text, message_id, main)
        sys.stderr.flush()
        sys.stderr.buffer.write((logger.format(text, message_id) + "\n")
                                .encode("utf-8", "surrogateescape"))
        sys.stderr.buffer.flush()
    logger.panic = panic_and_show


def inetd_addresses():
    """When standard input is a TCP connection (-bs started by inetd):
    ((client address, port), (local address, port)); else None."""
    try:
        sock = socket.socket(fileno=os.dup(0))
    except OSError:
        return None                     # not a socket at all
    try:
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return None
        return _unmapped(sock.getpeername()), _unmapped(sock.getsockname())
    except OSError:
        return None
    finally:
        sock.close()                    # the duplicate only


def _unmapped(address):
    """(address, port) of a socket name, an IPv4-mapped IPv6 address as IPv4."""
    host, port = address[0], address[1]
    if host.lower().startswith("::ffff:") and "." in host:
        host = host[7:]
    return host, port


def _session_filler(policy, inv, host_address, caller, remote=(None, None), interface=None,
                    inetd=False):
    """Wrap policy.fill_session with what the command line says about the
    caller: ``host_address`` is the -bh address, ``remote`` the (address,
    port) the session is from (-bh, -oMa or the ``inetd`` connection),
    ``interface`` the local end (-oMi or the inetd connection)."""
    original = policy.fill_session
    login, uid, gid = caller, os.getuid(), os.getgid()

    def fill(session, transport):
        original(session, transport)
        if host_address is None and inv.sender_ident is None:
            # the process's owner, on the first line of each -H file (left
            # out under -oMt: the ACLs' U= would name the caller, not the ident)
            session.caller_name, session.caller_uid, session.caller_gid = login, uid, gid
        if interface is not None:
            session.interface_address, session.interface_port = interface
        if inetd:
            # -bs from inetd: a remote client on a real socket, with no
            # caller's ident (Exim's is_inetd)
            session.sender_host_address, session.sender_host_port = remote
            session.is_inetd = True
            if inv.received_protocol:
                session.received_protocol = inv.received_protocol
            return
        session.not_socket = True
        # -oMai and -oMaa (a trusted caller's word that the client
        # authenticated) stay in force for -bs and -bh, as in Exim; the
        # authenticator (A= on the <= line) only for a session from a host
        session.authenticated_id = inv.oM.get("ai")
        if remote[0] is not None:
            session.auth_mechanism = inv.oM.get("aa")
            session.sender_host_address, session.sender_host_port = remote
            # addresses given on the command line are tainted in -H, as Exim's
            session.origin_tainted = host_address is None
        session.sender_host_name = inv.sender_host_name
        if host_address is None:
            session.sender_ident = inv.sender_ident or caller
            session.local = True
        if inv.received_protocol:
            session.received_protocol = inv.received_protocol
        elif host_address is None and inv.sender_host_address is None:
            session.received_protocol = "local-smtp"
    policy.fill_session = fill


def _unqualified_allowed(policy):
    """Messages from a local -bs caller (no host address) may carry
    unqualified addresses, and their -H files say so: Exim's
    allow_unqualified_sender and _recipient start true, and only the host
    lists of a session from a host turn them off."""
    receive = policy.receive

    def receive_local(session, envelope, *args, **kwargs):
        if session.sender_host_address is None:
            envelope.flags.update(("allow_unqualified_recipient", "allow_unqualified_sender"))
        return receive(session, envelope, *args, **kwargs)
    policy.receive = receive_local


def _run(inv, host_checking):
    from twisted.internet import reactor
    from exim_py.daemon import build_policy, load_config

    config = load_config(inv)
    host, remote, interface = None, (None, None), None
    try:
        if host_checking:
            remote = command_line_address(inv.host_check_address, canonical=True)
            host = remote[0]
        elif inv.sender_host_address is not None:
            remote = command_line_address(inv.sender_host_address)
        if "i" in inv.oM:
            interface = command_line_address(inv.oM["i"])
    except NotAnIPAddress as e:
        sys.stderr.write("exim abandoned: %s\n" % e)
        return 1
    inetd = None if host_checking or inv.sender_host_address is not None else inetd_addresses()
    if inetd is not None:
        remote, interface = inetd
        # inetd hands the connection over as standard error too: nothing
        # meant for a local caller may reach the client (Exim reopens its
        # standard error on /dev/null)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
    policy = build_policy(config, inv, host_checking=host_checking)
    if host_checking:
        policy.logger = host_check_logger(config)
        policy.host_checking_callout = inv.mode_flag == "-bhc"
    elif policy.logger is not None and inetd is None:
        _panics_to_stderr(policy.logger)
    caller = _caller_name()
    _unqualified_allowed(policy)
    _session_filler(policy, inv, host, caller, remote, interface, inetd is not None)
    if host_checking:
        sys.stdout.write(HOST_CHECK_INTRO % host)
        sys.stdout.flush()
    proto = StdioSMTPProtocol(policy, caller=caller, host_address=host, host_checking=host_checking)
    deliveries = _deliveries(policy, inv, proto)
    if inetd is not None:
        # a network client: only CRLF.CRLF ends its DATA, as on the daemon's sockets
        proto.lf_line_ends = False
    proto.finished.addBoth(lambda _: defer.DeferredList(deliveries))
    proto.finished.addBoth(_release_held_callouts)
    proto.finished.addBoth(lambda _: reactor.callLater(0, reactor.stop))
    stdio.StandardIO(proto)
    reactor.run()
    return proto.exit_status


def _release_held_callouts(_):
    """The deliveries are done: connections kept by callout=...,hold that no
    delivery took get their QUIT now, as Exim's end of delivery does."""
    from exim_py.smtp import callout
    callout.release_all()


def _deliveries(policy, inv, proto):
    """Deliver each message received, as Exim does after -bs (unless -odq).

    With -odi/-odf the deliveries run here and their Deferreds are returned,
    for the process to wait for before it exits.  Otherwise (-odb, the
    default) each message gets a delivery process of its own, detached from
    this one, and the session ends at QUIT whatever they are doing."""
    started = []
    deliver = policy.deliver
    if deliver is None:
        return started
    # mua_wrapper: every message is delivered at once, in this process,
    # whatever -od says (spec chapter "Using Exim as a non-queueing client").
    wrapper = policy.config.main.get("mua_wrapper")
    mode = "i" if wrapper else inv.delivery_mode
    if (mode or "").startswith("q"):
        policy.deliver = None
        return started
    if mode not in ("i", "f"):
        policy.deliver = _background_delivery(inv)
        return started

    def deliver_and_keep(message_id, envelope=None):
        d = deliver(message_id, envelope)
        if d is not None:
            if wrapper:
                d.addCallback(proto.wrapped_delivery_done)
            started.append(d)
        return d
    policy.deliver = deliver_and_keep
    # -odi: as exim4, the reply to the final dot waits for the delivery, and
    # the next command is read only then
    policy.reply_after_delivery = True
    return started


def _background_delivery(inv):
    """A deliver(message_id) that starts ``exim_py -Mc ID`` in a new session,
    with the same configuration file and -D macros (Exim forks a delivery
    process for each message a -bs session accepts)."""
    from exim_py.cli import config_path
    argv = [sys.executable, "-m", "exim_py", "-C", config_path(inv)]
    argv += ["-D%s=%s" % item for item in inv.macros.items()]
    children = []

    def deliver(message_id, envelope=None):
        # reap the ones that have finished, so a long session leaves no zombies
        children[:] = [c for c in children if c.poll() is None]
        children.append(subprocess.Popen(argv + ["-Mc", message_id], stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                         start_new_session=True))
        return None
    return deliver


def _caller_name():
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def _configuration_error(inv, error):
    """A -bs run whose configuration is broken: Exim reports it as a panic
    that ends the process, with nothing on standard output; the panic log
    is the one named by the options read before the error (else the
    default), standard error gets the line with its timestamp; status 1."""
    from exim_py.cli import config_path
    from exim_py.config.loader import Loader, computed_defaults
    from exim_py.log import Logger

    # Exim's text names itself where the error has a place in the file
    text = str(error)
    text = "Exim " + text if error.filename is not None or error.driver is not None else error.message
    loader = Loader(config_path(inv), inv.macros or None)
    try:
        loader.load()
    except ConfigError:
        pass
    main = loader.main
    defaults = computed_defaults(main)
    log_file_path = main["log_file_path"] or defaults.get("log_file_path")
    logger = Logger(None, log_file_path=log_file_path,
                    spool_directory=main["spool_directory"] or defaults.get("spool_directory"))
    if "$" not in log_file_path:
        # an unexpanded path would name a file nobody meant
        logger.panic(text, main=False)
    sys.stderr.write(logger.format(text) + "\n")
    return 1


def smtp_stdio_mode(inv):
    """``exim_py -bs``: one SMTP session on standard input and output."""
    try:
        return _run(inv, host_checking=False)
    except ConfigError as e:
        return _configuration_error(inv, e)


def host_check_mode(inv):
    """``exim_py -bh IP`` / ``-bhc IP``: a test session as if from IP; nothing is delivered."""
    return _run(inv, host_checking=True)
