"""The state an ACL runs with: AclContext.

An ``AclContext`` is built by the caller (the SMTP server, ``-bh``, the
non-SMTP receiver) for one ACL run.  It carries the configuration, the
session and envelope, the recipient being checked at RCPT (which sets
``$local_part`` and ``$domain``), a logger, and the expansion context that
``$variables`` are read from.  ``set acl_c...`` writes ``session.acl_c`` and
``set acl_m...`` writes ``envelope.acl_m`` (keys are the full variable names,
``acl_c0``, ``acl_m_foo``), and both are mirrored into the expansion context.
"""

import importlib
import importlib.util

from exim_py.envelope import connection_variables
from exim_py.receive import host_strings


def split_address(address):
    """(local_part, domain) of an address; the domain is lower-cased as Exim does."""
    if address is None:
        return None, None
    if "@" in address:
        lp, dom = address.rsplit("@", 1)
        return lp, dom.lower()
    return address, ""


def session_variables(session, envelope=None):
    """The ``$sender_host_*`` and ``$sender_address`` family for a session and envelope."""
    sender = envelope.sender if envelope is not None else None
    lp, dom = split_address(sender) if sender else ("", "")
    tls_cipher = session.tls_cipher or ""
    # built for every ACL run: stored one by one rather than through update()
    values = connection_variables(session)
    values["authenticated_fail_id"] = session.authenticated_fail_id or ""
    values["sender_host_authenticated"] = session.auth_mechanism or ""
    values["tls_in_cipher"] = values["tls_cipher"] = tls_cipher
    values["tls_in_peerdn"] = session.tls_peerdn or ""
    values["tls_in_sni"] = session.tls_sni or ""
    values["sender_address"] = sender or ""
    values["sender_fullhost"], values["sender_rcvhost"] = _host_strings(session)
    values["sender_helo_dnssec"] = bool(getattr(session, "sender_helo_dnssec", False))
    values["sender_host_dnssec"] = bool(getattr(session, "sender_host_dnssec", False))
    values["smtp_notquit_reason"] = getattr(session, "notquit_reason", "")
    values["sender_address_local_part"] = lp if sender else ""
    values["sender_address_domain"] = dom if sender else ""
    if envelope is not None:
        values["authenticated_sender"] = envelope.auth_sender or ""
        values["recipients_count"] = str(len(envelope.recipients))
        values["recipients"] = ", ".join([r.address for r in envelope.recipients])
        values["message_id"] = envelope.message_id or ""
        # Before DATA, $message_size is what MAIL's SIZE= declared (-1 without).
        size = envelope.size or getattr(envelope, "size_declared", None)
        values["message_size"] = str(size if size else -1)
        values.update(envelope.acl_m)
        spf = getattr(envelope, "spf", None)     # $spf_*, set by acl/spf.py
        if spf:
            values.update(spf)
    values.update(session.acl_c)
    return values


def _host_strings(session):
    """($sender_fullhost, $sender_rcvhost) for an ACL: Exim sets them as the
    connection starts and again after HELO and the host name lookup
    (receive.host_strings keeps the pair while its facts stay)."""
    fullhost, rcvhost = host_strings(session, getattr(session, "incoming_port_logged", False))
    return fullhost or "", rcvhost or ""


class HostNameLookup:
    """Exim's host_name_lookup made when the client's name is first needed.

    Without ``host_lookup`` the name is not known as a session starts; the
    first reference to ``$sender_host_name`` (spec, "Expansion variables")
    or the first host-list item that needs a name (spec, "Host lists")
    looks it up then.  The outcome stays on the session: the name and its
    aliases, or ``host_lookup_failed``, so neither a later expansion nor a
    later ACL asks again.  A deferred lookup is not kept (Exim tries again
    at the next reference), but its DNS answers are, in the session's cache.

    One is installed on an ExpandContext as ``host_name_lookup`` (the
    ``match.hosts`` lazy path uses it for the session's client) and, while
    the name is unknown, as the lazy value of ``$sender_host_name``.
    ``make_context`` gives the AclContext the lookup runs with (its
    configuration, logger and DNS cache).  It may wait on the DNS: the
    server runs ACLs that can ask for it in a thread (acl/blocking.py).
    """

    # one is made for every session ExpandContext: kept small and quick
    __slots__ = ("session", "variables", "make_context", "address")

    def __init__(self, session, variables, make_context):
        self.session = session
        self.variables = variables
        self.make_context = make_context
        self.address = session.sender_host_address

    def names(self):
        """The client's name and aliases, looked up now if need be; [] when
        the lookup failed or was deferred."""
        session = self.session
        if not session.sender_host_name and not getattr(session, "host_lookup_failed", False):
            from exim_py.acl import dnslists, helo
            try:
                helo.host_name_lookup(self.make_context())
            except dnslists.DnsDefer:
                pass
            self._publish()
        if session.sender_host_name:
            return [session.sender_host_name] + list(getattr(session, "sender_host_aliases", ()))
        return []

    def __call__(self):
        """The value of ``$sender_host_name``."""
        names = self.names()
        return names[0] if names else ""

    def _publish(self):
        """What the lookup found, for the rest of the expansion: Exim also
        rebuilds $sender_fullhost and $sender_rcvhost after a lookup."""
        session, values = self.session, self.variables
        values["sender_host_name"] = session.sender_host_name or ""
        values["sender_host_dnssec"] = bool(getattr(session, "sender_host_dnssec", False))
        if getattr(session, "host_lookup_failed", False):
            values["host_lookup_failed"] = "1"
        if getattr(session, "host_lookup_deferred", False):
            values["host_lookup_deferred"] = "1"
        values["sender_fullhost"], values["sender_rcvhost"] = _host_strings(session)


def install_host_name_lookup(expand_ctx, session, make_context):
    """Give ``expand_ctx`` the session's on-demand name lookup (see
    HostNameLookup), unless it has one or there is no client address."""
    if (expand_ctx is None or not session.sender_host_address
            or getattr(expand_ctx, "host_name_lookup", None) is not None):
        return
    lookup = HostNameLookup(session, expand_ctx.variables, make_context)
    expand_ctx.host_name_lookup = lookup
    if not session.sender_host_name and not getattr(session, "host_lookup_failed", False):
        expand_ctx.variables["sender_host_name"] = lookup


_modules = {}


def optional_module(name):
    """The module ``name``, or None while it does not exist (found modules are kept)."""
    mod = _modules.get(name)
    if mod is None and importlib.util.find_spec(name) is not None:
        mod = _modules[name] = importlib.import_module(name)
    return mod


def new_expand_context(config, variables, headers):
    """An ExpandContext from exim_py.expand, or None while that module is absent."""
    mod = optional_module("exim_py.expand")
    factory = getattr(mod, "ExpandContext", None) if mod is not None else None
    if factory is None:
        return None
    return factory(config=config, variables=variables, headers=headers)


class AclContext:
    """Everything an ACL run reads and writes, apart from the ACL itself.

    ``expand_ctx``: an ``ExpandContext`` to use (the server may share one per
    session); when omitted one is made from :func:`session_variables`.
    ``log``: a ``Logger`` (exim_py.log) or None to discard log lines.
    ``host_checking``: True under ``-bh`` (delays are reported, not applied).
    ``dns_cache``: a dict kept per connection (by default on the session), so a
    DNS list is asked once per connection (spec: "DNS list lookups are cached
    ... for the SMTP session").
    """

    def __init__(self, config, session, envelope=None, recipient=None, log=None,
                 expand_ctx=None, host_checking=False, dns_cache=None, resolver=None,
                 make_expand_ctx=None):
        self.config = config
        self.session = session
        self.envelope = envelope
        self.recipient = recipient
        self.log = log
        self.host_checking = host_checking
        if dns_cache is None:
            # One cache per connection: kept on the session unless given.
            dns_cache = getattr(session, "acl_dns_cache", None)
            if dns_cache is None:
                dns_cache = session.acl_dns_cache = {}
        self.dns_cache = dns_cache
        self.resolver = resolver
        # Set by a failed verify = sender, for the extra reply line and log
        # line replies.py adds (keys: address, result, message, user_message, told).
        self.sender_verify_failed = None
        # RCPT: $local_part starts lower-cased; control = caseful_local_part
        # restores the original (spec "control = caseful_local_part").
        self.cc_local_part, self.domain = split_address(recipient)
        self.local_part = self.cc_local_part.lower() if recipient is not None else None
        # The expansion context is made when something first needs it: an
        # ACL whose conditions are literal lists (hosts = 127.0.0.1, domains
        # = +local_domains...) expands nothing, and making the context
        # (every $sender_host_*, $tls_in_* ... variable) is most of what such
        # an ACL costs.  Until then, variables set wait in _pending.
        self._expand_ctx = expand_ctx
        self._make_expand_ctx = make_expand_ctx
        self._pending = [] if expand_ctx is None else None
        self._acl_runner = None
        if expand_ctx is not None:
            install_host_name_lookup(expand_ctx, session, lambda: self)
        if recipient is not None:
            self.set_variable("local_part", self.local_part)
            self.set_variable("domain", self.domain)

    @property
    def expand_ctx(self):
        """The ExpandContext of this run (made now if it was not yet)."""
        ctx = self._expand_ctx
        if ctx is None and self._pending is not None:
            if self._make_expand_ctx is not None:
                ctx = self._make_expand_ctx()
            else:
                envelope = self.envelope
                ctx = new_expand_context(self.config, session_variables(self.session, envelope),
                                         envelope.headers if envelope is not None else [])
            pending, self._pending = self._pending, None
            self._expand_ctx = ctx
            if ctx is not None:
                install_host_name_lookup(ctx, self.session, lambda: self)
                for name, value in pending:
                    ctx.set(name, value)
                if self._acl_runner is not None:
                    ctx.acl_runner = self._acl_runner
        return ctx

    @expand_ctx.setter
    def expand_ctx(self, ctx):
        self._expand_ctx, self._pending = ctx, None

    # -- variables ---------------------------------------------------------

    def set_variable(self, name, value):
        """Set ``$name`` for the expansions that follow (and acl_c/acl_m storage)."""
        if name.startswith("acl_c"):
            self.session.acl_c[name] = value
        elif name.startswith("acl_m") and self.envelope is not None:
            self.envelope.acl_m[name] = value
        if self._expand_ctx is not None:
            self._expand_ctx.set(name, value)
        elif self._pending is not None:
            self._pending.append((name, value))

    def get_variable(self, name):
        if self.expand_ctx is None:
            return None
        return self.expand_ctx.get(name)

    def install_acl_runner(self, runner):
        """Let ``${acl}`` in this run's expansions call ``runner``; returns
        the runner it replaces (the context gets it when it is made)."""
        ctx = self._expand_ctx
        if ctx is None:
            previous, self._acl_runner = self._acl_runner, runner
            return previous
        previous = getattr(ctx, "acl_runner", None)
        ctx.acl_runner = runner
        return previous

    # -- services from other parts ----------------------------------------

    @staticmethod
    def _module(name):
        return optional_module(name)

    def expand(self, string):
        """Expand ``string`` (ExpansionError / ForcedFail / LookupDefer propagate)."""
        if "$" not in string and "\\" not in string and string.__class__ is str:
            return string       # as expand() returns it, without making the context
        mod = self._module("exim_py.expand")
        if mod is None or self.expand_ctx is None:
            from exim_py.errors import ExpansionError
            raise ExpansionError("string expansion is not available (exim_py.expand is missing)")
        return mod.expand(string, self.expand_ctx)

    def matcher(self, name):
        """A list matcher from exim_py.match (match_domain, match_host ...)."""
        mod = self._module("exim_py.match")
        func = getattr(mod, name, None) if mod is not None else None
        if func is None:
            from exim_py.errors import ExpansionError
            raise ExpansionError("list matching is not available (exim_py.match is missing)")
        return func

    def write_log(self, line, targets=("main",)):
        """Write ``line`` to each named log (main, reject, panic), as Exim's log_write."""
        if self.log is None:
            return
        # Once a message has an id (from DATA on), Exim puts it on every line.
        message_id = self.envelope.message_id if self.envelope is not None else None
        # Only the logs named: a line for the reject or panic log alone does
        # not reach the main log (Exim's log_write flags).
        main = "main" in targets
        if main:
            self.log.main(line, message_id=message_id)
        if "reject" in targets:
            # Exim adds the envelope and headers only once there are headers
            # (after DATA); an earlier rejection is the line alone.
            env = self.envelope if self.envelope is not None and self.envelope.headers else None
            self.log.reject(line, message_id=message_id,
                            headers=env.headers if env else None,
                            sender=env.sender if env else None,
                            recipients=env.recipients if env else None, main=main)
        if "panic" in targets:
            self.log.panic(line, message_id=message_id, main=main)
