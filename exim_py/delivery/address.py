"""Addresses and hosts as the delivery engine, routers and transports share them.

One ``Address`` follows one recipient (or one address generated from it by
redirection) through routing and transport: routers fill in where it goes
(``transport``, ``host_list``), transports fill in what happened (``result``,
``message``, ``basic_errno``, ``host_used``).  This mirrors Exim's
``address_item`` (spec chapter "How Exim receives and delivers mail").

Every address starts with ``result = DEFER``: a transport that crashes or
forgets an address leaves it to be retried, never lost.
"""

import enum


class Result(str, enum.Enum):
    """The closed set of router and transport outcomes (Exim's OK, DEFER ...)."""

    OK = "OK"
    DEFER = "DEFER"
    FAIL = "FAIL"
    DECLINE = "DECLINE"
    PASS = "PASS"
    DISCARD = "DISCARD"
    REROUTED = "REROUTED"

    def __str__(self):
        return self.value


OK = Result.OK
DEFER = Result.DEFER
FAIL = Result.FAIL
DECLINE = Result.DECLINE
PASS = Result.PASS
DISCARD = Result.DISCARD
REROUTED = Result.REROUTED


class Host:
    """One host a remote address may be sent to (Exim's host_item).

    ``mx`` is the MX preference, or None when the host did not come from an
    MX record.  ``status`` is "unknown", "usable", "unusable" or "expired"
    once retry hints have been consulted; ``why`` says why it is unusable
    ("retry", "failed", "ignored").
    """

    __slots__ = ("name", "address", "port", "mx", "sort_key", "status", "why",
                 "dnssec", "last_try", "addresses")

    def __init__(self, name, address=None, port=None, mx=None):
        self.name = name
        self.address = address
        self.port = port
        self.mx = mx
        self.sort_key = 0
        self.status = "unknown"
        self.why = None
        self.dnssec = False
        self.last_try = None
        self.addresses = None

    def copy(self, **changes):
        # Every slot is set by __init__ and copied here, so __init__ is not run.
        other = object.__new__(type(self))
        for name in Host.__slots__:
            setattr(other, name, getattr(self, name))
        for name, value in changes.items():
            setattr(other, name, value)
        return other

    def __repr__(self):
        return "Host(%r, %r, port=%r, mx=%r)" % (self.name, self.address, self.port, self.mx)

    def __eq__(self, other):
        return (isinstance(other, Host) and self.name == other.name
                and self.address == other.address and self.port == other.port)

    def __hash__(self):
        return hash((self.name, self.address, self.port))


class RetryItem:
    """A retry hint a transport (or router) asks the engine to record.

    ``key`` is Exim's hints key: ``T:host:ip`` (or ``T:host:ip:port``) for a
    host problem, ``R:local@domain`` or ``R:domain`` for an address or domain
    problem.  ``error`` names the error as a retry rule's error field does
    ("timeout_connect", "refused", "rcpt_4xx", "mail_4xx", "data_4xx",
    "lost_connection", "tls_required", "auth_failed", "quota", "timeout" ...);
    ``delete`` asks for the key's record to be removed (the host worked).
    """

    __slots__ = ("key", "error", "more_errno", "message", "delete")

    def __init__(self, key, error=None, more_errno=None, message=None, delete=False):
        self.key = key
        self.error = error
        self.more_errno = more_errno
        self.message = message
        self.delete = delete

    def __repr__(self):
        return "RetryItem(%r, %r, delete=%r)" % (self.key, self.error, self.delete)


class Address:
    """One address being delivered (Exim's address_item).

    Routing fields: ``router`` (name), ``transport`` (a transport instance),
    ``host_list`` (list of Host), ``errors_to`` (bounce address or None),
    ``extra_headers`` (list of header text lines, each ending in newline),
    ``remove_headers`` (list of names), ``address_data``, ``prefix``,
    ``suffix``, ``parent`` (the Address this came from by redirection).

    Result fields, set by the transport: ``result`` (Result), ``message``
    (the reason for the log and the bounce), ``user_message``,
    ``basic_errno`` (an errno or None), ``more_errno``, ``host_used`` (Host),
    ``retries`` (list of RetryItem, via ``add_retry``), ``special`` ("freeze"
    or None).
    """

    def __init__(self, address, parent=None, errors_to=None):
        self.address = address
        local_part, domain = split_address(address)
        self.cc_local_part = local_part      # as written (caseful)
        self.local_part = local_part         # what routers and transports see
        self.domain = domain.lower()
        self.parent = parent
        self.children = 0
        self.unique = address                # key for duplicate detection
        self.prefix = ""
        self.suffix = ""
        self.prefix_v = ""
        self.suffix_v = ""
        self.router = None
        self.start_router = 0                # index for pass_router / redirect
        self.skip_routers = set()            # router names not to use ("\\local" items)
        self.setup_error = None              # why a generated pipe/file has no transport
        self.forbidden = False               # a pipe/file its router may not generate
        self.transport = None
        self.host_list = []
        self.fallback_hosts = []
        self.errors_to = errors_to
        self.extra_headers = []
        self.remove_headers = []
        self.address_data = parent.address_data if parent else None
        self.domain_data = None
        self.local_part_data = None
        self.self_hostname = None
        self.uid = None
        self.gid = None
        self.home_dir = None
        self.current_dir = None
        self.local_user = None               # pwd.struct_passwd when check_local_user matched
        self.is_pipe = False                 # "|command" from a redirect
        self.is_file = False                 # "/path" from a redirect
        self.is_reply = False                # autoreply from a filter
        self.directory = False               # a "/path/" delivery (maildir-style)
        self.hide_child = False
        self.ignore_error = parent.ignore_error if parent else False
        self.unseen = False
        self.dsn_notify = None
        self.dsn_orcpt = None
        self.dsn_orig = None                 # original envelope recipient (for DSN)
        self.dsn_lasthop = False             # routed by a dsn_lasthop router
        self.retry_use_local_part = True
        self.log_as_local = False
        self.verify_only = False
        # results
        self.result = DEFER
        self.message = None
        self.user_message = None
        self.basic_errno = None
        self.more_errno = None
        self.host_used = None
        self.log_fields = []                 # what the transport adds after T=name on log lines
        self.retries = []
        self.special = None
        self.delivery_started = None         # when the transport was called
        self.delivery_time = None            # when it finished
        self.transport_count = None          # bytes the transport wrote (S=)
        self.return_path = None              # the envelope sender it used (P=)
        self.timed_out_defer = None          # (message, errno) of a deferral past its retry time
        self.return_output = None            # a pipe's output to return in the bounce
        self.retry_skipped = False           # deferred without an attempt (retry time not reached)
        self.routing_skipped = False         # not routed: its routing retry time has not come
        self.suppressed = False              # -N: delivery suppressed
        # engine bookkeeping: "rerouted", "discarded", "duplicate", "already" or None
        self.state = None
        self.child_list = []                 # addresses generated from this one
        self.duplicate_of = None
        self.finished = False                # a final outcome the spool will record
        self.routed = False                  # routing already done (unseen's delivered copy)
        self.onetime_parent = None           # the original recipient of a one_time address

    # -- convenience ---------------------------------------------------

    @property
    def is_pfr(self):
        """A pipe, file or autoreply generated by redirection (Exim's af_pfr)."""
        return self.is_pipe or self.is_file or self.is_reply

    @property
    def local_part_for_log(self):
        return self.local_part

    @property
    def top(self):
        """The original envelope recipient this address descends from."""
        a = self
        while a.parent is not None:
            a = a.parent
        return a

    def ancestors(self):
        """The parents of this address, nearest first."""
        a = self.parent
        while a is not None:
            yield a
            a = a.parent

    _ROUTING_FIELDS = ("cc_local_part", "local_part", "prefix", "suffix", "prefix_v", "suffix_v",
                       "router", "transport", "host_list", "fallback_hosts", "errors_to",
                       "extra_headers", "remove_headers", "address_data", "domain_data",
                       "local_part_data", "self_hostname", "uid", "gid", "home_dir",
                       "current_dir", "local_user", "retry_use_local_part", "log_as_local")

    def routed_child(self):
        """A child carrying this address's routing (unseen's delivered copy).

        Its unique key differs from the address's own, so it never counts as
        a duplicate of the clone that is routed further.
        """
        child = Address(self.address, parent=self)
        for name in self._ROUTING_FIELDS:
            if hasattr(self, name):
                setattr(child, name, getattr(self, name))
        child.routed = True
        child.unique = "\\" + self.address
        return child

    def add_retry(self, key, error=None, more_errno=None, message=None, delete=False):
        """Ask the engine to update (or delete) retry hint ``key`` after this delivery."""
        self.retries.append(RetryItem(key, error, more_errno, message, delete))

    def set_result(self, result, message=None, errno=None, user_message=None, more_errno=None):
        """Record the outcome of a delivery attempt for this address."""
        self.result = Result(result)
        self.message = message
        self.basic_errno = errno
        self.more_errno = more_errno
        if user_message is not None:
            self.user_message = user_message

    @property
    def address_retry_key(self):
        """Exim's key for an address-specific retry record."""
        if self.retry_use_local_part:
            return "R:%s@%s" % (self.local_part, self.domain)
        return "R:%s" % (self.domain,)

    def __repr__(self):
        return "Address(%r, result=%s)" % (self.address, self.result)


def find_at(address):
    """Index of the '@' that separates local part and domain (the last one
    outside a quoted local part), or -1."""
    in_quote = False
    at = -1
    i = 0
    while i < len(address):
        c = address[i]
        if c == "\\" and in_quote:
            i += 2
            continue
        if c == '"':
            in_quote = not in_quote
        elif c == "@" and not in_quote:
            at = i
        i += 1
    return at


def split_address(address):
    """(local_part, domain) of an address; the domain is "" when there is none."""
    if address.startswith(("|", "/")):
        return address, ""
    at = find_at(address)
    if at < 0:
        return address, ""
    return address[:at], address[at + 1:]


class RouterResult:
    """What a router's ``route()`` says about one address.

    ``code`` is a Result: OK (the router set ``addr.transport`` and, for a
    remote transport, ``addr.host_list``), DECLINE (try the next router),
    PASS (try the router named by pass_router, else the next), DEFER, FAIL,
    DISCARD (redirected to nothing, e.g. :blackhole:) or REROUTED (``new``
    holds the child addresses that replace this one, e.g. from redirect, or
    the same address with a changed domain from widen_domains).
    ``message`` is the reason for the log and the bounce; ``user_message``
    what an SMTP client may see.
    """

    __slots__ = ("code", "message", "user_message", "new")

    def __init__(self, code, message=None, user_message=None, new=()):
        self.code = Result(code)
        self.message = message
        self.user_message = user_message
        self.new = list(new)

    def __repr__(self):
        return "RouterResult(%s, %r)" % (self.code, self.message)
