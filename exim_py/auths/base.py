"""The authenticator contract: generic options, the server exchange, replies.

A driver module (plaintext.py, cram_md5.py ...) provides ``OPTIONS`` and
``class Authenticator(AuthenticatorBase)``.  ``Authenticator(dconf, config)``
is built once per configuration; per connection the server calls
``server_start(initial, ctx)``, which returns a :class:`ServerExchange`::

    exchange = auth.server_start(initial_response_or_None, ctx)
    while exchange.result is None:
        send "334 " + base64(exchange.challenge)
        exchange.server_step(line_received)
    reply = exchange.result.reply           # "235 Authentication succeeded" ...
    log = exchange.result.log_line(auth.name, host_text)   # None on success

``ctx`` is the session's ExpandContext: the exchange sets ``$auth1``..``$auth3``
(and ``$1``..``$3``) in it, expands ``server_condition`` and
``server_set_id`` against it.  Base64 decoding, ``*`` (cancel) and the reply
texts are handled here, once for every driver (Exim's auth_get_data and its
AUTH command handling in smtp_in.c).

Client sides are pure functions of the challenges, for the smtp transport:
see each driver's ``client_*`` methods.
"""

import base64
import binascii
import importlib

from exim_py.errors import ExpansionError, LookupDefer

OK = "OK"
FAIL = "FAIL"
DEFER = "DEFER"
CANCELLED = "CANCELLED"
BAD64 = "BAD64"
UNEXPECTED = "UNEXPECTED"

_REPLIES = {
    OK: "235 Authentication succeeded",
    FAIL: "535 Incorrect authentication data",
    DEFER: "435 Unable to authenticate at present",
    CANCELLED: "501 Authentication cancelled",
    BAD64: "501 Invalid base64 data",
    UNEXPECTED: "553 Initial data not expected",
}


class BadBase64(Exception):
    """Data from the client that is not valid base64."""


def decode64(text):
    """Strict base64 decoding of a client line (Exim's b64decode); BadBase64 if invalid."""
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    text = text.strip()
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise BadBase64(text)


def encode64(data):
    return base64.b64encode(data).decode("ascii")


class AuthResult:
    """How an AUTH command ended: ``code`` (OK, FAIL, DEFER, CANCELLED, BAD64,
    UNEXPECTED), ``set_id`` (expanded server_set_id or None), and for DEFER
    the reason for the log and the text the client may see."""

    def __init__(self, code, set_id=None, defer_message="", defer_user_message=""):
        self.code = code
        self.set_id = set_id
        self.defer_message = defer_message
        self.defer_user_message = defer_user_message

    @property
    def reply(self):
        """The SMTP reply line (without CRLF)."""
        if self.code == DEFER:
            return _REPLIES[DEFER] + self.defer_user_message
        return _REPLIES[self.code]

    @property
    def authenticated_id(self):
        return self.set_id if self.code == OK else None

    def log_line(self, name, host_text):
        """The rejectlog/mainlog line for a failure, or None after success.

        ``host_text`` is Exim's host_and_ident without ``H=``: ``(helo) [ip]``.
        """
        if self.code == OK:
            return None
        set_id = " (set_id=%s)" % self.set_id if self.set_id is not None else ""
        if self.code == DEFER:
            what = "%s%s: %s" % (_REPLIES[DEFER], set_id, self.defer_message)
        elif self.code == FAIL:
            what = _REPLIES[FAIL] + set_id
        else:
            what = _REPLIES[self.code]
        return "%s authenticator failed for %s: %s" % (name, host_text, what)

    def apply(self, session, name):
        """Record the outcome in the session ($authenticated_id, A= on log lines)."""
        if self.code == OK:
            session.authenticated_id = self.set_id
            session.auth_mechanism = name
        elif self.set_id is not None and self.code in (FAIL, DEFER):
            session.authenticated_fail_id = self.set_id

    def __repr__(self):
        return "AuthResult(%r, set_id=%r)" % (self.code, self.set_id)


class _Finished(Exception):
    def __init__(self, code):
        super().__init__(code)
        self.code = code


class ServerExchange:
    """One run of a server authenticator: challenges out, responses in, a result.

    The driver's ``server(initial, ctx)`` is a generator: it yields a
    challenge (bytes) and receives the client's decoded answer, and finally
    returns OK, FAIL, DEFER, BAD64 or UNEXPECTED.
    """

    def __init__(self, auth, initial, ctx):
        self.auth = auth
        self.ctx = ctx
        self.challenge = None
        self.result = None
        # Why a DEFER happened: for the log, and (after ": ") for the client.
        self.defer_message = ""
        self.defer_user_message = ""
        self._gen = auth.server(initial, ctx, self)
        self._advance(None)

    def server_step(self, line):
        """Feed the client's answer to the last challenge (a base64 line, or ``*``)."""
        if self.result is not None:
            raise RuntimeError("authentication exchange already finished")
        if isinstance(line, bytes):
            line = line.decode("ascii", "replace")
        line = line.rstrip("\r\n")
        if line.strip() == "*":
            self._finish(CANCELLED)
            return self
        if self.auth.relays_base64:
            self._advance(line.strip())
            return self
        try:
            data = decode64(line)
        except BadBase64:
            self._finish(BAD64)
            return self
        self._advance(data)
        return self

    def _advance(self, data):
        try:
            self.challenge = self._gen.send(data)
        except StopIteration as stop:
            self._finish(stop.value)

    def _finish(self, code):
        self._gen.close()
        self.challenge = None
        auth = self.auth
        set_id = None
        if code in (OK, FAIL, DEFER) and auth.server_set_id is not None:
            try:
                set_id = auth.expand(auth.server_set_id, self.ctx)
            except (ExpansionError, LookupDefer):
                set_id = None
        self.result = AuthResult(code, set_id, self.defer_message, self.defer_user_message)


class AuthenticatorBase:
    """Generic options and helpers shared by every authenticator driver."""

    #: True when the options make this instance usable as a server / client;
    #: drivers set them in __init__ from their own required options.
    server_enabled = False
    client_enabled = False
    #: True for a driver whose server exchange waits on another process
    #: (dovecot): the SMTP server runs it off the reactor.
    blocking = False
    #: True for a driver that passes the client's base64 on untouched and
    #: yields base64 challenges (dovecot): nothing is decoded or encoded here.
    relays_base64 = False

    def __init__(self, dconf, config):
        self.dconf = dconf
        self.config = config
        self.name = dconf.name
        self.driver = dconf.driver
        options = dconf.options
        self.options = options
        self.public_name = (options["public_name"] or dconf.name).upper()
        self.server_condition = options["server_condition"]
        self.server_set_id = options["server_set_id"]
        self.server_advertise_condition = options["server_advertise_condition"]
        self.server_debug_print = options["server_debug_print"]
        self.server_mail_auth_condition = options["server_mail_auth_condition"]
        self.client_condition = options["client_condition"]
        self.client_set_id = options["client_set_id"]

    # -- expansion and variables ---------------------------------------------

    @staticmethod
    def expand(string, ctx):
        return importlib.import_module("exim_py.expand").expand(string, ctx)

    def expand_for(self, string, ctx, exchange):
        """Expand for a server exchange: (value, None), or (None, FAIL) after a
        forced failure, or (None, DEFER) with the reason recorded."""
        try:
            return self.expand(string, ctx), None
        except ExpansionError as e:
            if e.forced:
                return None, FAIL
            exchange.defer_message = str(e)
        except LookupDefer as e:
            exchange.defer_message = str(e)
        return None, DEFER

    @staticmethod
    def set_auth_vars(ctx, values):
        """$auth1..$auth3 (and $1..$n, for old configurations) from ``values``."""
        texts = [v.decode("utf-8", "surrogateescape") if isinstance(v, bytes) else v
                 for v in values]
        for i in range(3):
            if i < len(texts):
                ctx.set("auth%d" % (i + 1), texts[i])
            else:
                ctx.unset("auth%d" % (i + 1))
        ctx.numeric = [""] + texts

    def check_server_condition(self, ctx, exchange, default=OK):
        """Exim's auth_check_serv_cond: the expanded server_condition decides.

        Unset: ``default``.  Forced failure, empty, 0, no, false: FAIL; 1,
        yes, true: OK; an expansion error or any other text: DEFER (the text
        becomes the reason, and is shown to the client after a colon).
        """
        if self.server_condition is None:
            return default
        value, failed = self.expand_for(self.server_condition, ctx, exchange)
        if failed:
            return failed
        low = value.lower()
        if value in ("", "0") or low in ("no", "false"):
            return FAIL
        if value == "1" or low in ("yes", "true"):
            return OK
        exchange.defer_message = value
        exchange.defer_user_message = ": %s" % value
        return DEFER

    # -- the server --------------------------------------------------------

    def server_start(self, initial, ctx):
        """Begin an exchange; ``initial`` is the text after the mechanism name, or None."""
        return ServerExchange(self, initial, ctx)

    def server(self, initial, ctx, exchange):
        """The driver's server dialogue: a generator (see ServerExchange)."""
        raise NotImplementedError("%s has no server side" % self.driver)

    def advertise(self, ctx):
        """Whether to list this mechanism after EHLO (server_advertise_condition)."""
        return self.server_enabled and self._condition(self.server_advertise_condition, ctx)

    def mail_auth_allowed(self, ctx):
        """Whether MAIL's AUTH= may be trusted after this authenticator succeeded
        (server_mail_auth_condition; unset: yes)."""
        return self._condition(self.server_mail_auth_condition, ctx)

    def _condition(self, option, ctx):
        """An optional yes/no option: unset is yes; empty, 0, no, false or a
        failed expansion is no."""
        if option is None:
            return True
        try:
            value = self.expand(option, ctx)
        except (ExpansionError, LookupDefer):
            return False
        return not (value in ("", "0") or value.lower() in ("no", "false"))


def load_authenticators(config):
    """Authenticator instances for ``config.authenticators``, in configuration order."""
    from exim_py import registry
    out = []
    for dconf in getattr(config, "authenticators", None) or []:
        module = registry.load("authenticator", dconf.driver)
        if module is not None:
            out.append(module.Authenticator(dconf, config))
    return out


def advertised(authenticators, host_allowed, ctx):
    """Public names to list in ``250-AUTH`` (spec "Advertising AUTH").

    Exim's rule, which exim_py follows exactly: nothing unless the client
    matches ``auth_advertise_hosts`` (default ``*``; the caller passes the
    outcome as ``host_allowed``); then every authenticator with a server side
    whose ``server_advertise_condition`` (if set) does not expand to empty,
    0, no or false, in configuration order, each name once.  There is no
    implicit rule against password mechanisms on cleartext connections:
    that is what a ``server_advertise_condition = ${if def:tls_in_cipher}``
    setting (as in Exim's default configuration) is for.
    """
    if not host_allowed:
        return []
    names = []
    for auth in authenticators:
        if auth.public_name not in names and auth.advertise(ctx):
            names.append(auth.public_name)
    return names


def find_server(authenticators, mechanism, advertised_names):
    """The server authenticator for an AUTH command's mechanism, or None (504)."""
    mechanism = mechanism.upper()
    if mechanism not in (n.upper() for n in advertised_names):
        return None
    for auth in authenticators:
        if auth.server_enabled and auth.public_name.upper() == mechanism:
            return auth
    return None


def unsupported_reply(mechanism):
    return "504 %s authentication mechanism not supported" % mechanism
