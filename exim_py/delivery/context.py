"""What routers and transports are given: the message and the delivery context.

``Message`` is a spooled message as delivery sees it (the envelope read back
from -H, and a way to read the -D body).  ``DeliveryContext`` carries the
configuration, the spool, the logger, the retry hints and the mode (normal
delivery, verification, -bt address testing), and builds the expansion
context for an address, a transport and a host.
"""

import io
import os
import time

from exim_py.envelope import connection_variables

# A body up to this size is read in one pread through the delivery's lock
# descriptor (Message.lock) rather than opened again by name.
SMALL_BODY = 1 << 20


class Message:
    """A queued message being delivered.

    ``body_path`` may be given as ``find_body``, a callable that finds the
    -D file when its name is first needed.  ``lock``, the delivery's
    MessageLock, holds the -D file open: a small body is read through it
    (one fstat and one pread, no open, no close) while it is held."""

    def __init__(self, message_id, envelope, body_path=None, find_body=None, lock=None):
        self.id = message_id
        self.envelope = envelope
        self._body_path = body_path
        self._find_body = find_body
        self.lock = lock
        self._body_size = None

    @property
    def body_path(self):
        if self._body_path is None and self._find_body is not None:
            self._body_path, self._find_body = self._find_body(), None
        return self._body_path

    @property
    def sender(self):
        return self.envelope.sender

    @property
    def headers(self):
        return self.envelope.headers

    def open_body(self):
        """The -D file opened in binary, positioned after its first line (``<id>-D``)."""
        fd = self.lock.fd if self.lock is not None else None
        if fd is not None:
            size = os.fstat(fd).st_size
            if size <= SMALL_BODY:
                data = os.pread(fd, size, 0)
                first = data.find(b"\n") + 1
                self._body_size = len(data) - first
                f = io.BytesIO(data)
                f.seek(first)
                return f
        f = open(self.body_path, "rb")
        first = f.readline()
        if self._body_size is None:
            # The size is known now at the cost of one fstat (body_size
            # would open the file again).
            self._body_size = os.fstat(f.fileno()).st_size - len(first)
        return f

    def body_size(self):
        """Bytes of body (the -D file without its identifying first line).

        Worked out once: the body does not change while the message is
        being delivered, and $message_size, SIZE= and the size checks all
        ask for it."""
        if self._body_size is None:
            if self.lock is None and self.body_path is None:
                return 0
            self.open_body().close()
        return self._body_size

    def header_size(self):
        return sum(len(h.text) for h in self.envelope.headers if h.flag != "*")

    def size(self):
        return self.header_size() + self.body_size()


def message_variables(message):
    """The $message_* family and friends for ``message`` (spec "Expansion variables").

    A delivery expands many strings about one message, so a DeliveryContext
    makes this once per message: what can change while it is delivered (the
    age, the recipients, the headers) is computed when it is used."""
    env = message.envelope
    sess = env.session
    variables = connection_variables(sess)
    variables.update({
        "message_id": message.id,
        "message_exim_id": message.id,
        "sender_address": env.sender or "",
        "return_path": env.sender or "",
        "message_size": lambda: str(message.size()),
        "message_body_size": lambda: str(message.body_size()),
        "message_linecount": lambda: str(env.body_linecount
                                         + sum(h.text.count("\n") for h in env.headers)),
        "body_linecount": str(env.body_linecount),
        "body_zerocount": str(env.body_zerocount),
        "message_age": lambda: str(int(time.time() - env.received_time)),
        "received_time": str(int(env.received_time)),
        "authenticated_sender": env.auth_sender or "",
        "recipients_count": lambda: str(len(env.recipients)),
        "recipients": lambda: ", ".join(r.address for r in env.recipients),
        "dsn_envid": env.dsn_envid or "",
        "dsn_ret": env.dsn_ret or "",
    })
    return variables


def address_variables(addr):
    """$local_part, $domain and the rest of the per-address variables."""
    top = addr.top
    variables = {
        "local_part": addr.local_part,
        "domain": addr.domain,
        "local_part_prefix": addr.prefix,
        "local_part_suffix": addr.suffix,
        "local_part_prefix_v": addr.prefix_v,
        "local_part_suffix_v": addr.suffix_v,
        "original_local_part": top.cc_local_part,
        "original_domain": top.domain,
        "address_data": addr.address_data or "",
        "domain_data": addr.domain_data or "",
        "local_part_data": addr.local_part_data or "",
        "router_name": addr.router or "",
        "self_hostname": addr.self_hostname or "",
        "home": addr.home_dir or "",
    }
    if addr.parent is not None:
        variables["parent_local_part"] = addr.parent.local_part
        variables["parent_domain"] = addr.parent.domain
    if addr.local_user is not None:
        variables["local_user_uid"] = str(addr.local_user.pw_uid)
        variables["local_user_gid"] = str(addr.local_user.pw_gid)
    if addr.is_pipe:
        variables["address_pipe"] = addr.address
    if addr.is_file:
        variables["address_file"] = addr.address
    return variables


class DeliveryContext:
    """Everything routing and transports need besides the address itself.

    ``mode`` is "deliver", "verify" (ACL verify / -bv) or "test" (-bt);
    ``verify_kind`` is "recipient" or "sender" when verifying.
    ``hints`` is a delivery.hints.HintsDB (or None when there is no spool),
    ``logger`` an exim_py.log.Logger (or None), ``clock`` provides
    ``seconds()`` (the reactor or a task.Clock).
    """

    def __init__(self, config, spool=None, logger=None, message=None, hints=None,
                 mode="deliver", verify_kind=None, clock=None, debug=None, base=None):
        self.config = config
        self.base = base                     # an ExpandContext to inherit (ACL verify)
        self.spool = spool
        self.logger = logger
        self.message = message
        self.hints = hints
        self.mode = mode
        self.verify_kind = verify_kind
        self.clock = clock
        self.debug = debug                   # a callable taking one line, or None
        self.first_delivery = True
        self.queue_running = False
        self.force = False                   # -M / -qf: ignore retry times
        self.created = []                    # ids of messages transports queued (autoreply)
        self.overrides = {}                  # variables forced for this routing (verify)

    def sender(self):
        """The envelope sender routers see: the message's, else $sender_address
        of the context this one inherits (-bt -f, ACL verification); None
        when there is none."""
        if self.message is not None:
            return self.message.sender or ""
        if "sender_address" in self.overrides:
            return self.overrides["sender_address"]
        if self.base is not None:
            return self.base.get("sender_address")
        return None

    def now(self):
        return self.clock.seconds() if self.clock is not None else time.time()

    @property
    def verifying(self):
        return self.mode == "verify"

    def variables(self, addr=None, transport=None, host=None, extra=None):
        """The variables for expanding a string about ``addr`` (any may be None)."""
        variables = {}
        if self.base is not None:
            variables.update(self.base.variables)
        if self.message is not None:
            cached = self.__dict__.get("_message_variables")
            if cached is None or cached[0] is not self.message:
                cached = self._message_variables = (self.message, message_variables(self.message))
            variables.update(cached[1])
        if addr is not None:
            variables.update(address_variables(addr))
        if transport is not None:
            variables["transport_name"] = transport.name
        if host is not None:
            variables["host"] = host.name or ""
            variables["host_address"] = host.address or ""
            variables["host_port"] = str(host.port or 25)
        if self.verify_kind is not None:
            variables["verify_mode"] = "R" if self.verify_kind == "recipient" else "S"
        variables.update(self.overrides)
        if extra:
            variables.update(extra)
        return variables

    def expand_context(self, addr=None, transport=None, host=None, extra=None):
        """An exim_py.expand.ExpandContext for ``addr`` (and transport, host).

        ``extra`` may hold "numeric" ($0, $1 ... as a list) and "value"
        ($value), which manualroute sets from its domain match.
        """
        from exim_py.acl.engine import install_acl_runner
        from exim_py.expand import ExpandContext
        extra = dict(extra or {})
        numeric = extra.pop("numeric", None)
        value = extra.pop("value", None)
        if self.message is not None:
            headers = self.message.headers
        elif self.base is not None:
            headers = self.base.headers
        else:
            headers = None
        ctx = ExpandContext(config=self.config,
                            variables=self.variables(addr, transport, host, extra),
                            headers=headers, first_delivery=self.first_delivery,
                            queue_running=self.queue_running)
        install_acl_runner(ctx, self.config)      # ${acl} in routers and transports
        if numeric is not None:
            ctx.numeric = list(numeric)
        if value is not None:
            ctx.lookup_value = value
        return ctx

    def lazy_expand_context(self, addr):
        """A stand-in for ``expand_context(addr)`` that builds it only when
        something asks more of it than to set and read back a variable
        (a router's ``domains`` list that is one fixed domain needs no
        context: the match answers from memory)."""
        return _LazyExpandContext(lambda: self.expand_context(addr))

    def expand(self, string, addr=None, transport=None, host=None, extra=None):
        """Expand ``string`` for ``addr``; None stays None.  Raises ExpansionError."""
        if string is None:
            return None
        if "$" not in string and "\\" not in string:
            return string      # as expand() would, without building a context
        from exim_py.expand import expand
        return expand(string, self.expand_context(addr, transport, host, extra))

    def expand_condition(self, string, addr=None, transport=None):
        from exim_py.expand import expand_condition
        return expand_condition(string, self.expand_context(addr, transport))

    def debug_print(self, line):
        if self.debug is not None:
            self.debug(line)

    # -- drivers ---------------------------------------------------------

    def transport(self, name):
        """The transport instance called ``name`` (one per name per context).

        Raises KeyError when the configuration has no such transport.
        """
        cache = self.__dict__.setdefault("_transports", {})
        if name not in cache:
            from exim_py.delivery.drivers import make_transport
            cache[name] = make_transport(self.config, name)
        return cache[name]


class _LazyExpandContext:
    """An ExpandContext made on first real use (DeliveryContext.lazy_expand_context).

    ``set`` before then is remembered and applied to the context when it is
    made; ``value(name)`` reads a variable back without making it."""

    def __init__(self, make):
        self._make = make
        self._real = None
        self._set = {}

    def _context(self):
        if self._real is None:
            self._real = self._make()
            for name, value in self._set.items():
                self._real.set(name, value)
        return self._real

    def set(self, name, value):
        if self._real is None:
            self._set[name] = value
        else:
            self._real.set(name, value)

    def value(self, name):
        """What ``name`` was set to (None if it was not), or, once the
        context exists, its value there."""
        if self._real is None:
            return self._set.get(name)
        return self._real.get(name)

    def __getattr__(self, name):
        return getattr(self._context(), name)
