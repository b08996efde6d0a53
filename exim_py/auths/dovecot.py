"""The dovecot authenticator: Dovecot checks the credentials (spec "The dovecot
authenticator").

A server-only driver.  For each AUTH command it connects to Dovecot's
auth-client socket and speaks Dovecot's authentication protocol (version 1):
it reads Dovecot's handshake (VERSION, the MECH lines, DONE), checks that
``public_name`` is one of the mechanisms offered, and sends VERSION, CPID and
one AUTH request carrying the client's initial response.  Dovecot then leads:
each ``CONT`` becomes a 334 challenge to the SMTP client and the client's
answer goes back as ``CONT``, until Dovecot says ``OK`` (its ``user=`` field
becomes ``$auth1``) or ``FAIL``.  The base64 on both sides is relayed as it
is, never decoded.  The request is flagged ``secured`` on a TLS session or a
connection from the local host, and ``valid-client-cert`` when the client's
certificate was verified, as Exim flags it.

``server_socket`` is a Unix socket path or, as Exim also accepts, a host and
a port ("127.0.0.1 12345").  The exchange does blocking socket I/O, so the
SMTP server runs it in a thread (``blocking``).
"""

import os
import socket

from exim_py.auths.base import DEFER, FAIL, OK, AuthenticatorBase
from exim_py.config.options import STRING, Option, OptionTable

OPTIONS = OptionTable([
    Option("server_socket", STRING, None,
           "Dovecot's auth-client socket: a path, or a host and a port"),
])

VERSION_MAJOR = 1
VERSION_MINOR = 0
# Exim numbers its one request per connection 1.
REQUEST_ID = 1
# Exim allows five seconds to connect; it reads without a limit, exim_py
# gives up on a silent Dovecot after a minute.
CONNECT_TIMEOUT = 5
READ_TIMEOUT = 60
# Dovecot's protocol description expects lines to fit in 8192 bytes.
MAX_LINE = 8192

PROTOCOL_ERROR = "authentication socket protocol error"


class DovecotError(Exception):
    """The exchange with Dovecot broke off; the text is the reason logged with the 435."""


class _Socket:
    """A line-oriented connection to Dovecot's auth-client socket."""

    def __init__(self, spec):
        self.buffer = b""
        self.sock = _connect(spec.strip())
        self.sock.settimeout(READ_TIMEOUT)

    def readline(self):
        """One line without its newline; DovecotError at EOF or on a line too long."""
        while b"\n" not in self.buffer:
            if len(self.buffer) >= MAX_LINE:
                raise DovecotError("authentication socket protocol line too long")
            try:
                data = self.sock.recv(4096)
            except OSError:
                data = b""
            if not data:
                if self.buffer:
                    raise DovecotError("authentication socket protocol line too long")
                raise DovecotError("authentication socket read error or premature eof")
            self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode("utf-8", "surrogateescape")

    def fields(self):
        """The TAB-separated fields of the next line."""
        return self.readline().split("\t")

    def send(self, text):
        try:
            self.sock.sendall(text.encode("utf-8", "surrogateescape"))
        except OSError:
            raise DovecotError("authentication socket write error")

    def close(self):
        self.sock.close()


def _connect(spec):
    """Exim's ip_streamsocket: a path is a Unix socket, otherwise "host port"."""
    if spec.startswith("/"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(CONNECT_TIMEOUT)
        try:
            sock.connect(spec)
        except OSError as e:
            sock.close()
            raise DovecotError("unable to connect to UNIX socket (%s): %s" % (spec, e.strerror or e))
        return sock
    host, _, port = spec.partition(" ")
    host = host.strip("[]")
    try:
        addresses = socket.getaddrinfo(host, int(port.strip()), type=socket.SOCK_STREAM)
    except (ValueError, socket.gaierror):
        raise DovecotError("failed to find host name or port in server_socket %s" % spec)
    error = "no address"
    for family, kind, proto, _, address in addresses:
        sock = socket.socket(family, kind, proto)
        sock.settimeout(CONNECT_TIMEOUT)
        try:
            sock.connect(address)
            return sock
        except OSError as e:
            sock.close()
            error = e.strerror or str(e)
    raise DovecotError("failed to connect to any address for %s: %s" % (host, error))


def _check(fields, command, least, most=None):
    """Exim's CHECK_COMMAND: the command and its argument count, or a protocol error."""
    count = len(fields) - 1
    if fields[0].upper() != command or count < least or (most is not None and count > most):
        raise DovecotError(PROTOCOL_ERROR)


def _user(fields):
    """The value of the first ``user=`` field after the request id, or None."""
    for field in fields[2:]:
        if field.startswith("user="):
            return field[5:]
    return None


class Authenticator(AuthenticatorBase):
    """A dovecot authenticator instance (server side only)."""

    blocking = True
    relays_base64 = True

    def __init__(self, dconf, config):
        super().__init__(dconf, config)
        self.server_socket = self.options["server_socket"]
        self.server_enabled = self.server_socket is not None

    def server(self, initial, ctx, exchange):
        data = initial or ""
        conn = None
        try:
            conn = _Socket(self.server_socket)
            self._handshake(conn)
            if "\t" in data:
                return FAIL
            conn.send(self._request(data, ctx))
            while True:
                fields = conn.fields()
                if len(fields) < 2 or _atoi(fields[1]) != REQUEST_ID:
                    raise DovecotError("authentication socket connection id mismatch")
                first = fields[0][:1].upper()
                if first == "C":
                    _check(fields, "CONT", 1, 2)
                    answer = yield fields[2] if len(fields) > 2 else ""
                    if "\t" in answer:
                        return FAIL
                    conn.send("CONT\t%d\t%s\n" % (REQUEST_ID, answer))
                elif first == "F":
                    _check(fields, "FAIL", 1)
                    user = _user(fields)
                    if user is not None:
                        self.set_auth_vars(ctx, [user])
                    return FAIL
                elif first == "O":
                    _check(fields, "OK", 2)
                    user = _user(fields)
                    if user is None:
                        raise DovecotError("authentication socket protocol error, "
                                           "username missing")
                    self.set_auth_vars(ctx, [user])
                    break
                else:
                    raise DovecotError(PROTOCOL_ERROR)
        except DovecotError as e:
            exchange.defer_message = str(e)
            return DEFER
        finally:
            if conn is not None:
                conn.close()
        return self.check_server_condition(ctx, exchange, default=OK)

    def _handshake(self, conn):
        """Read Dovecot's greeting up to DONE; our mechanism must be among the MECH lines."""
        found = have_mech = False
        while True:
            fields = conn.fields()
            command = fields[0]
            if command == "VERSION":
                _check(fields, "VERSION", 2, 2)
                if _atoi(fields[1]) != VERSION_MAJOR:
                    raise DovecotError("authentication socket protocol version mismatch")
            elif command == "MECH":
                _check(fields, "MECH", 1)
                have_mech = True
                found = found or fields[1].upper() == self.public_name.upper()
            elif command == "SPID":
                # auth-master and auth-userdb sockets send VERSION and SPID
                # but no MECH: the wrong socket.
                if not have_mech:
                    raise DovecotError("authentication socket type mismatch (connected to "
                                       "auth-master instead of auth-client)")
            elif command == "DONE":
                _check(fields, "DONE", 0, 0)
                break
        if not found:
            raise DovecotError('Dovecot did not advertise mechanism "%s" to us'
                               % (self.public_name,))

    def _request(self, data, ctx):
        """VERSION, CPID and the AUTH request, with Exim's fields in Exim's order."""
        flags = ""
        sender = ctx.get("sender_host_address") or ""
        interface = ctx.get("received_ip_address") or ""
        if ctx.get("tls_in_cipher"):
            flags = "secured\t"
            if ctx.get("tls_in_certificate_verified") == "1":
                flags += "valid-client-cert\t"
        elif interface and sender == interface:
            flags = "secured\t"
        return ("VERSION\t%d\t%d\nCPID\t%d\n"
                "AUTH\t%d\t%s\tservice=smtp\t%srip=%s\tlip=%s\tnologin\tresp=%s\n"
                % (VERSION_MAJOR, VERSION_MINOR, os.getpid(), REQUEST_ID, self.public_name,
                   flags, sender, interface, data))


def _atoi(text):
    """C's atoi: the leading digits (with a sign) of ``text``, 0 when there are none."""
    text = text.strip()
    end = 1 if text[:1] in "+-" else 0
    while end < len(text) and text[end].isdigit():
        end += 1
    try:
        return int(text[:end])
    except ValueError:
        return 0
