"""What the SMTP server asks: the configuration, the ACLs and the spool behind one object.

``ServerPolicy`` answers every question ``SMTPServerProtocol`` asks (the
banner, the EHLO keywords, each ACL phase, where an accepted message goes).
It reads the main options of an ``exim_py.config`` Config and runs ACLs with
``exim_py.acl.run_acl``; what becomes of a message once its data is in
(the DATA ACL, the spool through a ``SpoolWriter``) is in
smtp/policy_message.py.
Spec chapters "SMTP processing" and "Access control lists".
"""

import importlib
import importlib.util
import re
import socket
import time

from twisted.internet import defer, threads

from exim_py import EXIM_COMPAT_VERSION, receive as receiving
from exim_py.acl import helo, replies
from exim_py.acl.context import AclContext, install_host_name_lookup, session_variables as _session_variables
from exim_py.auths.dialogue import AuthDialogue
from exim_py.errors import ExpansionError, LookupDefer
from exim_py.expand.strings import printing as string_printing
from exim_py.log import printing
from exim_py.smtp import acl_phase, connlog, limits, proxy, session_hosts
from exim_py.smtp.policy_helo import HeloPolicy
from exim_py.smtp.policy_message import MessagePolicy
from exim_py.smtp.reply import Reply

_UNKNOWN = object()
# an expanded size or integer option: digits and an optional K/M/G
_NUMBER = re.compile(r"^\s*(\d+)\s*([KkMmGg]?)\s*$")


class _Host:
    """What host-list matching needs: ``address`` and ``name``."""

    def __init__(self, address, name=None):
        self.address = address
        self.name = name


def tod_full(now=None):
    """Exim's $tod_full: 'Sat, 21 Nov 2026 17:38:28 +0000'."""
    now = time.time() if now is None else now
    t = time.localtime(now)
    offset = t.tm_gmtoff // 60
    sign = "+" if offset >= 0 else "-"
    return time.strftime("%a, %d %b %Y %H:%M:%S ", t) + "%s%02d%02d" % (
        sign, abs(offset) // 60, abs(offset) % 60)


def _unmapped(address):
    """An IPv4 client on an IPv6 socket shows as ::ffff:a.b.c.d; Exim shows a.b.c.d."""
    if address and address.lower().startswith("::ffff:") and "." in address:
        return address[7:]
    return address


def _module(name):
    """An optional collaborator module, or None while it is not part of this tree."""
    if importlib.util.find_spec(name) is None:
        return None
    return importlib.import_module(name)


MAIL_PARAMS = frozenset(("SIZE", "BODY", "AUTH", "PRDR", "RET", "ENVID", "SMTPUTF8"))

# connect()'s answer when the session ends before the greeting with nothing
# said to the client (Exim's smtp_start_session giving up)
NO_GREETING = Reply(421, "", drop=True)


class ServerPolicy(HeloPolicy, MessagePolicy):
    """The server's decisions for one configuration.

    ``spool_writer`` stores accepted messages (see exim_py.smtp.spoolwriter);
    ``logger`` is an exim_py.log Logger or None; ``host_checking`` is set for
    -bh, where nothing is stored and the replies say so.
    """

    def __init__(self, config, spool_writer=None, logger=None, host_checking=False,
                 primary_hostname=None, deliver=None):
        self.config = config
        self.main = config.main
        self._options = {}                   # (option, default) -> value, see _option
        self.spool_writer = spool_writer
        self.logger = logger
        self.host_checking = host_checking
        self.host_checking_callout = False      # -bhc: callouts are made under host checking
        self.reply_after_delivery = False       # -bs -odi: reply to the dot once delivered
        self.deliver = deliver
        self.primary_hostname = primary_hostname or self._option("primary_hostname") or socket.gethostname()
        self.match = _module("exim_py.match")
        self.expand_mod = _module("exim_py.expand")
        if self.expand_mod is not None and not hasattr(self.expand_mod, "ExpandContext"):
            self.expand_mod = None
        self.tls = None                      # a tls.ServerTLS when TLS is configured
        self._may_block = {}
        self.host_list_needs = {}            # smtp/session_hosts.py: option -> dns_need, ...
        self.ehlo_dns_lists = None           # those of EHLO's lists that may use the DNS
        self._accepts = {}                   # ACL spec -> does it accept at once?
        self._numbers = {}                   # expanded size option text -> its value
        self._etrn_running = {}             # ETRN argument -> the command started for it
        auths = _module("exim_py.auths.base")
        self.auths_base = auths
        self.authenticators = auths.load_authenticators(config) if auths is not None else []
        self.smtp_max_synprot_errors = self._option("smtp_max_synprot_errors", 3)
        self.smtp_max_unknown_commands = self._option("smtp_max_unknown_commands", 3)
        self.smtp_receive_timeout = self._option("smtp_receive_timeout", 300)
        self.smtp_accept_max_nonmail = self._option("smtp_accept_max_nonmail", 10)
        self.allow_domain_literals = bool(self._option("allow_domain_literals", False))
        self.smtp_accept_max_per_connection = self._option("smtp_accept_max_per_connection", 1000)
        self.recipients_max_reject = bool(self._option("recipients_max_reject", False))
        self.smtp_accept_max = self._option("smtp_accept_max", 20)
        self.smtp_accept_reserve = self._option("smtp_accept_reserve", 0)
        self.smtp_accept_max_per_host = self._option("smtp_accept_max_per_host", 0)

    unmapped = staticmethod(_unmapped)

    # -- options and lists -------------------------------------------------

    def _option(self, name, default=None):
        # asked several times per message; the configuration never changes
        key = (name, default)
        value = self._options.get(key, _UNKNOWN)
        if value is _UNKNOWN:
            try:
                value = self.main[name]
            except (KeyError, AttributeError):
                value = default
            if value is None and default is not None:
                value = default
            self._options[key] = value
        return value

    def _expand(self, text, session, envelope=None):
        """Expand an option's string for this session; None when the expansion fails."""
        if text is None:
            return None
        if "$" not in text and "\\" not in text:
            return text     # nothing to expand: Exim returns such a string as it is
        if self.expand_mod is None:
            return None
        ctx = self.expand_context(session, envelope)
        try:
            return self.expand_mod.expand(text, ctx)
        except Exception:              # ExpansionError, ForcedFail, LookupDefer
            return None

    def expand_context(self, session, envelope=None):
        variables = self.session_variables(session, envelope)
        ctx = self.expand_mod.ExpandContext(config=self.config, variables=variables,
                                            headers=envelope.headers if envelope else [])
        # $sender_host_name and name items in host lists look the client up
        # when first needed, once per session (acl.context.HostNameLookup)
        install_host_name_lookup(ctx, session, lambda: self._lookup_context(session))
        # From the DATA ACL on, $message_body and $message_body_end read the body.
        body = getattr(envelope, "received_body", None)
        if body is not None:
            ctx.body = body.decode("utf-8", "surrogateescape")
        return ctx

    def session_variables(self, session, envelope=None):
        values = _session_variables(session, envelope)
        if "smtp_active_hostname" not in values:
            values["smtp_active_hostname"] = self.hostname(session)
        if "primary_hostname" not in values:
            values["primary_hostname"] = self.primary_hostname
        if "version_number" not in values:
            values["version_number"] = EXIM_COMPAT_VERSION
        if getattr(session, "host_lookup_failed", False):
            values["host_lookup_failed"] = "1"
        if getattr(session, "host_lookup_deferred", False):
            values["host_lookup_deferred"] = "1"
        values["tls_in_ver"] = session.tls_version or ""
        values["tls_in_certificate_verified"] = "1" if session.tls_certificate_verified else "0"
        # Exim shows -1 when there is no listening socket (-bh, -bs)
        port = str(session.interface_port) if session.interface_port is not None else "-1"
        values["received_port"] = values["interface_port"] = port
        values["received_ip_address"] = session.interface_address or ""
        if session.proxy is not None:
            values.update(proxy.variables(session))
        if getattr(session, "etrn_domain", None) is not None:
            values["domain"] = session.etrn_domain       # smtp_etrn_command sees the argument
        return values

    def host_in(self, option, session, default=None, on_defer=False):
        """Does the calling host match host-list option ``option``?  A DEFER
        (a DNS lookup that could not be done) counts as ``on_defer``: true
        where Exim asks "not FAIL" rather than "OK".  While the session
        keeps ``host_answers`` (smtp/session_hosts.py) an answer found
        there is taken, and a new one kept."""
        answers = getattr(session, "host_answers", None)
        if answers is not None and option in answers:
            return answers[option]
        value = self._option(option, default)
        if value is None or value.strip() in ("", ":"):
            return False
        if value.strip() == "*":
            return True
        if session.sender_host_address is None or self.match is None or self.expand_mod is None:
            return False
        host = _Host(session.sender_host_address, session.sender_host_name)
        try:
            found = self.match.match_host(host, value, self.expand_context(session))
        except LookupDefer:
            found = on_defer
        except Exception:              # an expansion failure: not in the list
            found = False
        if answers is not None:
            answers[option] = found
        return found

    # -- connection --------------------------------------------------------

    def fill_session(self, session, transport):
        peer, host = transport.getPeer(), transport.getHost()
        session.sender_host_address = _unmapped(getattr(peer, "host", None))
        session.sender_host_port = getattr(peer, "port", None)
        session.interface_address = _unmapped(getattr(host, "host", None))
        session.interface_port = getattr(host, "port", None)
        session.received_protocol = "smtp"
        session.smtp_command = None
        # log_selector +incoming_port puts the client's port in $sender_fullhost
        # and $sender_rcvhost as well as on log lines
        session.incoming_port_logged = self.logger is not None and self.logger.selector("incoming_port")

    def refuse_connection(self, addr, active):
        """smtp_accept_max and friends (smtp/limits.py): a Reply refusing the
        new connection, or None.  ``active``: the open sessions."""
        return limits.refuse(self, addr, active)

    def connect(self, session):
        """The session starts: the host name lookup (host_lookup), the checks
        before the connect ACL (``_admit``), then that ACL."""
        if session.sender_host_address and (
                self._option("host_lookup") or self._option("host_reject_connection")
                or "$" in (self._option("smtp_active_hostname") or "")
                or session_hosts.start_lists_dns(self, session)):
            # The lookup, and any name item in host_reject_connection or
            # $sender_host_name in smtp_active_hostname (which look the name
            # up when the session has none), may wait on the DNS: off the
            # reactor, which must go on serving the other sessions.
            d = threads.deferToThread(self._admit, session)
            d.addCallback(self._connect_acl, session)
        else:
            d = self._connect_acl(self._admit(session), session)
        # then whether the client may use PIPECONNECT, before the banner
        if d is not None and d.__class__ is not Reply:          # a Deferred
            return d.addCallback(session_hosts.pipe_connect, self, session)
        return session_hosts.pipe_connect(d, self, session)

    def _admit(self, session):
        """What Exim does as a session starts, before acl_smtp_connect: a
        Reply refusing the session, or None.  May block (see connect)."""
        if (self._option("host_lookup") and session.sender_host_address
                and not session.sender_host_name and self.host_in("host_lookup", session)):
            # the name is looked up before host_reject_connection and
            # acl_smtp_connect see it (spec, main option host_lookup)
            helo.client_name_lookup(self._lookup_context(session))
        active = self._option("smtp_active_hostname")
        if active:
            try:
                session.active_hostname = self._expand_active_hostname(active, session)
            except (ExpansionError, LookupDefer) as e:
                # Exim's smtp_start_session gives up: logged, and no greeting
                if self.logger is not None:
                    self.logger.panic('failed to expand "%s" (smtp_active_hostname): %s' % (active, e))
                return NO_GREETING
        try:
            self.message_size_limit(session)
        except OverflowError as e:
            # Exim cannot work out its limits: every command but QUIT gets 421
            self.log_main("%s for %s" % (e, self.host_text(session)))
            return Reply(421, "Temporary local problem - please try later")
        if self.host_in("host_reject_connection", session):
            self.log_reject("refused connection from %s (host_reject_connection)" % self.host_text(session))
            return Reply(554, "SMTP service not available", drop=True)
        session_hosts.check_at_start(self, session)
        return None

    def _expand_active_hostname(self, text, session):
        """smtp_active_hostname for this session; None (primary_hostname is
        used) when empty or forced to fail; other failures raise."""
        if "$" not in text and "\\" not in text or self.expand_mod is None:
            return text
        try:
            return self.expand_mod.expand(text, self.expand_context(session)) or None
        except ExpansionError as e:
            if e.forced:
                return None
            raise

    def _connect_acl(self, refusal, session):
        """The connect ACL's answer; an accepting one's message is the
        greeting in place of smtp_banner (Exim's smtp_start_session, the
        code taken as acl_phase.accepted_reply says)."""
        if refusal is not None:
            return refusal
        return self._run_acl("connect", "acl_smtp_connect", session)

    def _lookup_context(self, session):
        """An AclContext for the connection-time name lookup: its DNS answers
        stay in the session's cache for the ACLs that follow."""
        if getattr(session, "dns_cache", None) is None:
            session.dns_cache = {}
        return AclContext(self.config, session, log=self.logger, expand_ctx=self.expand_context(session),
                          host_checking=self.host_checking, dns_cache=session.dns_cache)

    def banner(self, session):
        """The text of the 220 greeting (smtp_banner), or a Deferred firing
        with it when expanding it would look the client's name up: that
        lookup waits on the DNS in a thread, not on the reactor.  None when
        the expansion fails: Exim logs that and closes the connection
        without a greeting."""
        text = self._option("smtp_banner")
        if (text and "sender_host_name" in text and session.sender_host_address
                and not session.sender_host_name and not getattr(session, "host_lookup_failed", False)):
            return threads.deferToThread(self._banner_text, text, session)
        return self._banner_text(text, session)

    def _banner_text(self, text, session):
        if text is None or self.expand_mod is None:
            return "%s ESMTP Exim %s %s" % (self.hostname(session), EXIM_COMPAT_VERSION, tod_full())
        if "$" not in text and "\\" not in text:
            return text
        try:
            return self.expand_mod.expand(text, self.expand_context(session))
        except (ExpansionError, LookupDefer) as e:
            # a forced failure goes to the main log; any other to the panic log too
            line = 'Expansion of "%s" (smtp_banner) failed: %s' % (text, e)
            if self.logger is not None:
                if getattr(e, "forced", False):
                    self.logger.main(line)
                else:
                    self.logger.panic(line)
            return None

    def hostname(self, session):
        """$smtp_active_hostname: smtp_active_hostname expanded at connection time, else
        primary_hostname (spec: smtp_active_hostname)."""
        active = getattr(session, "active_hostname", None)
        return active or self.primary_hostname

    def proxy_required(self, session):
        """hosts_proxy: does this connection start with a PROXY header?  A
        Deferred when the check may wait on the DNS."""
        if session_hosts.list_dns(self, "hosts_proxy", session):
            return threads.deferToThread(self.host_in, "hosts_proxy", session)
        return bool(self.host_in("hosts_proxy", session))

    @property
    def proxy_protocol_timeout(self):
        return self._option("proxy_protocol_timeout", 3) or 3

    def enforce_sync(self, session):
        # Exim checks synchronisation only on a real socket from a host;
        # "control = (no_)enforce_sync" in an ACL overrides the option.
        if self.host_checking or session.sender_host_address is None or getattr(session, "not_socket", False):
            return False
        override = getattr(session, "enforce_sync", None)
        if override is not None:
            return override
        return bool(self._option("smtp_enforce_sync", True))

    def pipe_connect(self, session):
        """May this client pipeline from the start (PIPECONNECT)?  Never a
        local caller without an address (-bs): Exim's smtp_in.c asks for a
        sender host address before it looks at the list.  Decided once per
        session, as Exim's pipe_connect_acceptable (see connect)."""
        acceptable = getattr(session, "pipe_connect_ok", None)
        if acceptable is None:
            acceptable = session.pipe_connect_ok = bool(session.sender_host_address) and self.host_in(
                "pipelining_connect_advertise_hosts", session, "*")
        return acceptable

    def limit_nonmail(self, session):
        """Are this client's non-mail commands counted?  Exim checks the
        list at the first such command and keeps the answer; a DEFER counts
        them.  0 is a limit too (no counted command at all), as in Exim."""
        counted = getattr(session, "count_nonmail", None)
        if counted is None:
            counted = session.count_nonmail = self.host_in("smtp_accept_max_nonmail_hosts", session, "*",
                                                           on_defer=True)
        return counted

    # -- MAIL / RCPT -------------------------------------------------------

    def mail_params(self, ext):
        """The MAIL parameters Exim knows, offered or not (smtp_in.c's
        env_mail_type_list): one that was not offered is ignored (see
        TransactionCommands._mail_params), any other name is not a parameter."""
        return MAIL_PARAMS

    def rcpt_params(self, ext):
        return {"NOTIFY", "ORCPT"} if "DSN" in ext else set()

    def message_size_limit(self, session):
        return self._expanded_number("message_size_limit", 50 * 1024 * 1024, session)

    def recipients_max(self, session):
        return self._expanded_number("recipients_max", 50000, session)

    def _expanded_number(self, option, default, session):
        """An expandable size/integer option (Exim's "integer*"), with K/M/G suffixes."""
        value = self._option(option, default)
        if not isinstance(value, str):
            return value
        text = self._expand(value, session) or ""
        number = self._numbers.get(text)
        if number is None:
            m = _NUMBER.match(text)
            if not m:
                return default
            number = int(m.group(1)) * {"": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}[m.group(2).lower()]
            # asked at every MAIL and DATA: keep what each text reads as
            if len(self._numbers) < 256:
                self._numbers[text] = number
        if number >= 2 ** 63:
            raise OverflowError("%s: absurdly large value" % option)
        return number

    def qualify_sender(self, session, address):
        if session.sender_host_address and not session_hosts.session_host(
                self, "sender_unqualified_hosts", session):
            return None
        return address + "@" + (self._option("qualify_domain") or self.primary_hostname)

    def qualify_recipient(self, session, address):
        # a bare "postmaster" is qualified whoever sends it (RFC 5321 4.5.1;
        # Exim's qualify_recipient)
        if session.sender_host_address and address.lower() != "postmaster" and \
                not session_hosts.session_host(self, "recipient_unqualified_hosts", session):
            return None
        return address + "@" + self._recipient_domain()

    def _recipient_domain(self):
        return self._option("qualify_recipient") or self._option("qualify_domain") or self.primary_hostname

    def mail(self, session, envelope):
        session.last_mail_sender = envelope.sender      # for a data timeout's F=
        return self._run_acl("mail", "acl_smtp_mail", session, envelope,
                             command_data="<%s>" % envelope.sender)

    def rcpt(self, session, envelope, recipient):
        if getattr(envelope, "discarded", None) == "MAIL":
            # Exim runs no RCPT ACL once MAIL's discarded: each recipient is
            # dropped, with the MAIL ACL's log message on its line
            envelope.rcpt_discarded = True
            ctx = AclContext(self.config, session, envelope, recipient.address, log=self.logger)
            ctx.write_log(replies.discard_line(ctx, "<%s>" % recipient.address, "mail",
                                               envelope.discard_log), ("main", "reject"))
            return None
        return self._run_acl("rcpt", "acl_smtp_rcpt", session, envelope, recipient.address,
                             command_data="<%s>" % recipient.address)

    def predata(self, session, envelope):
        return self._run_acl("predata", "acl_smtp_predata", session, envelope)

    def vrfy(self, session, arg, command_data=None):
        """VRFY: the ACL, then routing the address as verification does.
        ``command_data``: the argument as received, for the log."""
        command_data = arg if command_data is None else command_data
        reply = self._run_acl("vrfy", "acl_smtp_vrfy", session, recipient=arg, command_data=command_data)
        if reply is not None:
            return reply
        from exim_py.delivery.verify import verify_address
        from exim_py.delivery.address import DEFER, OK
        result = verify_address(arg, self.expand_context(session), kind="recipient")
        if result.code is OK:
            return Reply(250, "<%s> is deliverable" % arg)
        if result.code is DEFER:
            return Reply(451, "<%s> cannot be verified at this time" % arg)
        self.log_main("VRFY failed for %s %s" % (command_data, connlog.host_and_ident(self, session, True)))
        return Reply(550, "<%s> %s" % (arg, result.user_message or "Unrouteable address"))

    def expn(self, session, arg):
        """EXPN: the ACL, then one level of routing; a redirection lists what it generated."""
        reply = self._run_acl("expn", "acl_smtp_expn", session, recipient=arg, command_data=arg)
        if reply is not None:
            return reply
        from exim_py.delivery.address import REROUTED, OK, Address
        from exim_py.delivery.context import DeliveryContext
        from exim_py.delivery.route import route_address
        address = arg if "@" in arg else arg + "@" + self._recipient_domain()
        ctx = DeliveryContext(self.config, mode="verify", verify_kind="recipient",
                              base=self.expand_context(session))
        outcome = route_address(Address(address), ctx)
        if outcome.code is REROUTED and outcome.new:
            return Reply(250, "\n".join("<%s>" % a.address for a in outcome.new))
        if outcome.code is OK:
            return Reply(250, "<%s>" % address)
        return Reply(553, "%s is undeliverable" % address)

    def etrn(self, session, arg):
        """ETRN: the ACL, then smtp_etrn_command (or, without one, a '#' argument is just noted)."""
        if self.logger is not None and self.logger.selector("etrn"):
            self.logger.main("ETRN %s received from %s" % (arg, connlog.host_and_ident(self, session, False)))
        reply = self._run_acl("etrn", "acl_smtp_etrn", session, command_data=arg)
        if reply is not None:
            return reply
        command = self._option("smtp_etrn_command")
        if not command:
            if not arg.startswith("#"):
                return Reply(501, "argument must begin with #")
            return Reply(250, "OK")
        # smtp_etrn_serialize: one command per argument at a time
        running = self._etrn_running.get(arg)
        if running is not None and running.poll() is None and self._option("smtp_etrn_serialize", True):
            return Reply(458, "Already processing %s" % arg)
        session.etrn_domain = arg
        argv = self._expand(command, session)
        if argv is None:
            return Reply(458, "Unable to run ETRN command")
        import shlex
        import subprocess
        self._etrn_running[arg] = subprocess.Popen(shlex.split(argv), stdin=subprocess.DEVNULL,
                                                   start_new_session=True)
        return Reply(250, "OK")

    def signal_exit(self, session, envelope):
        """The daemon ends the session on SIGTERM: Exim logs "closed after
        SIGTERM" whatever the selectors, then runs acl_smtp_notquit."""
        if self.logger is not None:
            # a message abandoned once it had its id: the line carries it
            self.logger.main(connlog.connection_info(self, session) + " closed after SIGTERM",
                             message_id=envelope.message_id if envelope is not None else None)
        self.notquit(session, False, envelope, "signal-exit")

    def starttls(self, session):
        """The STARTTLS ACL; then, when tls_verify_hosts or
        tls_try_verify_hosts (checked as the handshake is set up) may wait
        on the DNS, those in a thread first, their answers kept."""
        reply = self._run_acl("starttls", "acl_smtp_starttls", session)
        if self.tls is None:
            return reply
        if isinstance(reply, defer.Deferred):
            return reply.addCallback(session_hosts.tls_verify_lists, self, session)
        return session_hosts.tls_verify_lists(reply, self, session)

    def tls_lists(self, session):
        """Before a TLS-on-connect handshake: None, or a Deferred when
        tls_verify_hosts or tls_try_verify_hosts may wait on the DNS."""
        return session_hosts.tls_verify_lists(None, self, session)

    def quit(self, session):
        """QUIT: the ACL runs, and only its message counts (acl_phase)."""
        return self._run_acl("quit", "acl_smtp_quit", session)

    def notquit(self, session, in_data, envelope=None, reason="connection-lost"):
        """The session ends without QUIT (``envelope``: the unfinished
        transaction): the client went away, or we end it for ``reason``
        (Exim's $smtp_notquit_reason words: synchronization-error,
        bad-commands, command-timeout, data-timeout, tls-failed,
        signal-exit); only a lost connection gets the "lost" log line here.
        The ACL sees the transaction ($sender_address, $recipients_count,
        and $message_id once an abandoned message has one), as in Exim."""
        session.notquit_reason = reason
        lost = reason == "connection-lost"
        if lost:
            connlog.lost_before_acl(self, session, envelope, in_data)
        if self._option("acl_smtp_notquit"):
            self._run_acl("notquit", "acl_smtp_notquit", session, envelope)
        if lost:
            connlog.lost_after_acl(self, session, envelope, in_data)

    # -- connection log lines (smtp/connlog.py) ----------------------------

    def connection_opened(self, session, factory=None):
        """The connection's log line; a Deferred when hosts_connection_nolog,
        checked for it, may wait on the DNS (Exim's daemon checks it before
        it forks: here the other sessions must not wait)."""
        count = len(factory.connections) if factory is not None else None
        if (session_hosts.list_dns(self, "hosts_connection_nolog", session)
                and self.logger is not None and self.logger.selector("smtp_connection")):
            return threads.deferToThread(connlog.opened, self, session, count)
        connlog.opened(self, session, count)

    def command_seen(self, session, verb):
        connlog.command(session, verb)

    def transaction_reset(self, session, envelope):
        connlog.incomplete(self, session, envelope, "RSET")

    def quit_done(self, session, envelope):
        connlog.quit(self, session, envelope)

    def auth_exchange(self, session, arg):
        """An AUTH command: a Reply refusing it, or an AuthDialogue to run (RFC 4954)."""
        words = arg.split()
        if not words:
            return Reply(501, "AUTH must be followed by an authentication mechanism name", drop=False)
        mechanism = words[0]
        reply = self._run_acl("auth", "acl_smtp_auth", session)
        if reply is not None and not reply.ok:
            return reply
        auth = self.auths_base.find_server(self.authenticators, mechanism, self.auth_mechanisms(session))
        if auth is None:
            code, text = self.auths_base.unsupported_reply(mechanism).split(" ", 1)
            return Reply(int(code), text)
        return AuthDialogue(self, session, auth, words[1] if len(words) > 1 else None)

    def tls_context(self, session):
        return self.tls.context_for(session)

    def tls_failed(self, session, transport, reason):
        """The TLS handshake after STARTTLS failed and took the connection
        with it: Exim's "TLS error on connection from ..." line."""
        from exim_py.smtp.tls import handshake_failure
        self.notquit(session, False, None, "tls-failed")
        try:
            connection = transport.getHandle()
        except AttributeError:
            connection = None
        connlog.tls_failed(self, session, handshake_failure(reason, connection))

    def tls_established(self, session, transport):
        if self.tls is not None:
            self.tls.record(session, transport)
        # The AUTH context was made before TLS; server_advertise_condition and
        # the authenticators must see the $tls_in_* values from now on.
        session.auth_expand_ctx = None

    # -- ACLs --------------------------------------------------------------

    def acl_blocks(self, spec):
        """Whether ACL ``spec`` may block (cached per configuration)."""
        answer = self._may_block.get(spec)
        if answer is None:
            from exim_py.acl import acl_may_block
            answer = self._may_block[spec] = acl_may_block(self.config, spec)
        return answer

    def acl_accepts_at_once(self, spec):
        """Whether ACL ``spec`` accepts at its first statement, unconditionally (cached)."""
        answer = self._accepts.get(spec)
        if answer is None:
            from exim_py.acl.engine import accepts_at_once
            answer = self._accepts[spec] = accepts_at_once(self.config, spec)
        return answer

    def _run_acl(self, where, option, session, envelope=None, recipient=None, command_data=None):
        """Run one ACL phase; None means "go on with the default reply" (see acl_phase)."""
        return acl_phase.run_phase(self, where, option, session, envelope, recipient, command_data)

    # -- logging -----------------------------------------------------------

    def host_text(self, session):
        """Exim's host_and_ident: '(helo) [ip]' or 'name (helo) [ip]'."""
        parts = []
        if session.sender_host_name:
            parts.append(session.sender_host_name)
        if session.helo_name and session.helo_name != session.sender_host_name:
            parts.append("(%s)" % session.helo_name)
        if session.sender_host_address:
            parts.append("[%s]" % session.sender_host_address)
        return " ".join(parts)

    def log_reject(self, line):
        """A line for the main and reject logs (Exim's LOG_MAIN|LOG_REJECT)."""
        if self.logger is not None:
            self.logger.reject(line)

    def log_main(self, line):
        if self.logger is not None:
            self.logger.main(line)

    def log_sync_error(self, session, why, pending, command=None):
        # Exim: host_and_ident(TRUE) (so "H=") and string_printing of the input
        text = string_printing(pending[:150].decode("latin-1"), tab=True)
        if command is None:
            self.log_reject("SMTP protocol synchronization error (%s): rejected connection from H=%s input=\"%s\""
                          % (why, self.host_text(session), text))
        else:
            self.log_reject("SMTP protocol synchronization error (%s): rejected \"%s\" H=%s next input=\"%s\""
                          % (why, command, self.host_text(session), text))

    def log_policy_failure(self, session, error):
        """An internal error while answering a command (the client is told
        451): Exim writes its own internal errors to the panic log and the
        main log (LOG_MAIN|LOG_PANIC), with the connection and the command."""
        if self.logger is None:
            return
        cause = "%s: %s" % (type(error).__name__, error) if str(error) else type(error).__name__
        self.logger.panic('%s internal error while answering "%s": %s'
                          % (connlog.host_and_ident(self, session, True),
                             printing(getattr(session, "smtp_command", None) or ""), printing(cause)))

    def log_timeout(self, session, mode, envelope=None):
        # both lines belong to the lost_incoming_connection selector (on by default)
        if self.logger is None or not self.logger.selector("lost_incoming_connection"):
            return
        if mode in ("data", "bdat"):
            # with the message's id once it has one (message_abandoned)
            self.logger.main("SMTP data timeout (message abandoned) on connection from %s F=<%s>"
                             % (self.host_text(session), getattr(session, "last_mail_sender", "")),
                             message_id=envelope.message_id if envelope is not None else None)
        else:
            self.log_main("SMTP command timeout on%s connection from %s"
                          % (" TLS" if session.tls_cipher else "", self.host_text(session)))

    def log_too_big(self, session, envelope, size, message=None):
        """A message refused for its size.  Exim has read its header
        section and given it an id by then: the reject log line has the id
        (under -bh no later line keeps it) and is followed by the envelope
        and the header lines of ``message`` (the part kept, stored form)."""
        connlog.host_check_message_id(self, None)
        if self.logger is not None:
            self.logger.reject("rejected from <%s> H=%s: message too big: read=%d max=%d"
                               % (envelope.sender, self.host_text(session), size,
                                  self.message_size_limit(session)),
                               message_id=self.spool_writer.new_message_id() if self.spool_writer else None,
                               headers=receiving.split_message(message)[0] if message else None,
                               sender=envelope.sender, recipients=envelope.recipients)
