"""The smtp transport: delivering to other mail servers (spec chapter "The smtp transport").

This module is glue.  It works out which hosts to try (the router's list, or
``hosts`` / ``fallback_hosts``), skips hosts whose retry time has not come,
decides per host how to talk to it (TLS, verification, OCSP, AUTH, PRDR,
CHUNKING: ``smtp_settings.py``), runs the ESMTP client (``smtp/client.py``)
and turns its per-recipient outcomes into address results, retry hints and
log fields.  Addresses deferred on one host are tried on the next, as the
spec's "Errors in outgoing SMTP" describes; ``hosts_max_try`` and
``hosts_max_try_hardlimit`` bound how many IP addresses are tried.
"""

import copy
import errno
import ipaddress
import os

from twisted.internet import defer, reactor, threads

from exim_py.delivery import retry
from exim_py.delivery.address import DEFER, FAIL, OK
from exim_py.errors import ExpansionError, LookupDefer
from exim_py.smtp import client
from exim_py.smtp.outbound import Recipient, Transaction, to_wire
from exim_py.transports import smtp_pool, smtp_settings
from exim_py.transports.base import TransportBase
from exim_py.transports.smtp_settings import OPTIONS

__all__ = ["OPTIONS", "Transport"]

# Exim's error numbers for SMTP replies that defer (shown as "defer (-44)").
ERRNO_RCPT4XX = -44
ERRNO_MAIL4XX = -45
ERRNO_DATA4XX = -46
ERRNO_HRETRY = -54


def _host_line(ctx, message, line):
    """A host's own log line: main log and, as Exim's write_logs does, the
    message log (through the engine's DeliveryLog when there is one)."""
    delivery_log = getattr(ctx, "delivery_log", None)
    if delivery_log is not None:
        delivery_log.main(line)
        return
    logger = getattr(ctx, "logger", None)
    if logger is not None:
        logger.main(line, message_id=message.id)


def _wire_size(txn):
    """The bytes of message sent in ``txn``, as Exim's transport_count (``S=``
    on the delivery line): CRLF line ends; after DATA dot-stuffed and with
    the terminating ".CRLF" (Exim writes it with the message), after BDAT
    just the chunk's bytes."""
    if txn.data is None:
        return 0
    if txn.chunking_used:
        return len(to_wire(txn.data, dot_stuff=False))
    return len(to_wire(txn.data)) + 3


def _retry_error(outcome):
    """The retry-rule error name for a host-level failure (spec "Retry rules")."""
    if outcome.errno == errno.ECONNREFUSED:
        return "refused"
    if outcome.errno == errno.ETIMEDOUT:
        return "timeout_connect" if outcome.stage == "connect" else "timeout"
    if outcome.errno == client.ERRNO_SMTPCLOSED:
        return "lost_connection"
    if outcome.errno == client.ERRNO_TLSREQUIRED:
        return "tls_required"
    if outcome.errno == client.ERRNO_AUTHFAIL:
        return "auth_failed"
    return None


def _is_local(address):
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _quote_log(text):
    """A reply for a log field: newlines shown as \\n and then backslashes doubled,
    as Exim's string_printing followed by its quoting does."""
    return text.replace("\n", "\\n").replace("\\", "\\\\").replace('"', '\\"')


def _outcomes(result):
    for txn in result.transactions:
        for rcpt in txn.recipients:
            yield txn, rcpt.address, txn.outcomes.get(rcpt.address)


class Transport(TransportBase):
    """Exim's smtp transport driver."""

    remote = True

    def max_addresses(self):
        # How many addresses the engine may give one call.  A constant
        # max_rcpt limits it, 0 meaning no limit; a value that needs
        # expanding can differ between messages, so Exim groups without a
        # limit and the transport splits the batch into transactions of the
        # expanded size (spec, option max_rcpt; deliver.c address_count_max).
        value = self.options["max_rcpt"]
        if value is None or "$" in str(value):
            return 1 << 30
        try:
            value = int(value)
        except ValueError:
            value = 100
        return value if value > 0 else 1 << 30

    # -- entry point ---------------------------------------------------------

    def deliver(self, message, addresses, ctx, prepared=None):
        """Deliver ``addresses``; ``prepared`` is what prepare_blocking
        returned for them, when the engine has already called it."""
        return defer.ensureDeferred(self._deliver(message, addresses, ctx, prepared))

    def prepare_blocking(self, message, addresses, ctx):
        """The blocking steps of a delivery (the host list, which may ask the
        DNS; the message, read from the spool's -D file), for a worker
        thread: (hosts, transaction), or the ExpansionError / LookupDefer
        that defers the addresses."""
        try:
            return (smtp_settings.host_list(self, addresses[0], ctx),
                    self._transaction(message, addresses, ctx))
        except (ExpansionError, LookupDefer) as exc:
            return exc

    async def _deliver(self, message, addresses, ctx, prepared=None):
        addr = addresses[0]
        missing = smtp_settings.unsupported(self)
        if missing is not None:
            for a in addresses:
                a.set_result(DEFER, "%s transport: %s = %s is not supported by exim_py" % (
                    self.name, missing, self.options[missing]))
            return
        limit = self.options["message_linelength_limit"]
        if limit and (getattr(message.envelope, "max_received_linelength", 0) or 0) > limit:
            # Checked against what reception recorded, before any connection.
            for a in addresses:
                a.set_result(FAIL, "message has lines too long for transport")
            return
        if prepared is None:
            # One trip to a worker thread for both blocking steps: thread
            # hand-offs are a large part of the cost of relaying a small
            # message (the engine saves this one when it can).
            prepared = await threads.deferToThread(self.prepare_blocking, message, addresses, ctx)
        if isinstance(prepared, Exception):
            for a in addresses:
                a.set_result(DEFER, str(prepared))
            return
        hosts, txn = prepared
        if not hosts:
            for a in addresses:
                a.set_result(DEFER, "no hosts found for %s transport" % (self.name,))
            return
        if getattr(ctx, "queue_smtp", False) and not getattr(ctx, "force", False):
            self._queue_only(message, addresses, hosts, addr, ctx)
            return
        pending = list(addresses)
        # Only hosts from the transport's own hosts / fallback_hosts are refused
        # when local (spec, allow_localhost); the router's hosts have been
        # checked already, by its "self" option.
        routed = {id(h) for h in addr.host_list}
        tried = skipped = serialized = attempts = 0
        max_try = self.options["hosts_max_try"]
        hardlimit = self.options["hosts_max_try_hardlimit"]
        last_mx = None
        mx_extra = set()
        for host in hosts:
            if not pending:
                break
            try:
                port = smtp_settings.port_for(self, host, addr, ctx)
            except ExpansionError as exc:
                for a in pending:
                    a.set_result(DEFER, str(exc))
                return
            # Retry hints are keyed on the port too when it is not 25.
            probe = host.copy(port=port)
            if not retry.host_usable(ctx, probe):
                skipped += 1
                continue
            lock = self._serialize(host, port, addr, ctx)
            if lock is False:
                serialized += 1
                continue
            if attempts >= hardlimit:
                if lock is not None:
                    lock.release()
                break
            if probe.status == "expired":
                # Past its retry cut-off: tried, but not counted against
                # hosts_max_try (spec "How the limits ... are used").
                pass
            elif tried >= max_try:
                # Past hosts_max_try, one address of each further MX value is
                # still tried, uncounted.
                if host.mx is None or host.mx == last_mx or host.mx in mx_extra:
                    continue
                mx_extra.add(host.mx)
            else:
                tried += 1
            last_mx = host.mx
            attempts += 1
            if (id(host) not in routed and _is_local(host.address)
                    and not self.options["allow_localhost"]):
                for a in pending:
                    a.set_result(DEFER, "remote host address is the local host")
                if lock is not None:
                    lock.release()
                continue
            pending = await self._try_host(host, message, pending, txn, ctx, lock)
        if pending and not attempts and serialized:
            # Every usable host is serialized and busy: no retry data, so
            # the next queue run tries again at once.
            for a in pending:
                a.set_result(DEFER, "connection limit reached for all hosts for '%s'"
                             % (a.domain,), ERRNO_HRETRY)
        elif pending and not attempts and skipped:
            for a in pending:
                a.set_result(DEFER, "retry time not reached for any host for '%s'" % (a.domain,),
                             ERRNO_HRETRY)
                a.retry_skipped = True

    def _queue_only(self, message, addresses, hosts, addr, ctx):
        """-odqs: nothing is sent now; the message waits for each of its
        hosts (Exim's transport_update_waiting), so that the first delivery
        to one of them carries it down the same connection."""
        spool = getattr(ctx, "spool", None)
        if spool is not None and self.options["connection_max_messages"] != 1:
            db = os.path.join(spool.directory, "db")
            for host in hosts:
                try:
                    port = smtp_settings.port_for(self, host, addr, ctx)
                except ExpansionError:
                    continue
                smtp_pool.WaitList(db, self.name, host.address, port).add(message.id)
        for a in addresses:
            a.set_result(DEFER, "SMTP delivery explicitly queued", errno=0)

    # -- one host ------------------------------------------------------------

    def _serialize(self, host, port, addr, ctx):
        """serialize_hosts: None when ``host`` is not serialized (or a kept
        connection to it can be used), a held SerializeLock, or False when
        another connection has the host now."""
        try:
            if not smtp_settings.serialized(self, host, addr, ctx):
                return None
        except (ExpansionError, LookupDefer):
            return None
        if smtp_pool.POOL.has_idle((self.name, host.name, host.address, port)):
            return None
        db = os.path.join(self.config.main.spool_directory or ".", "db")
        lock = smtp_pool.SerializeLock(db, "%s:%s" % (host.name or host.address, host.address))
        return lock if lock.acquire() else False

    async def _try_host(self, host, message, addresses, txn, ctx, lock=None):
        """Deliver ``addresses`` to ``host``; returns those still deferred.

        ``lock`` (serialize_hosts) lasts as long as the connection made.
        """
        try:
            return await self._try_host_locked(host, message, addresses, txn, ctx, lock)
        finally:
            if lock is not None and not lock.kept:
                lock.release()

    async def _try_host_locked(self, host, message, addresses, txn, ctx, lock):
        addr = addresses[0]
        try:
            settings, port, interface, connect_timeout = smtp_settings.for_host(
                self, host, addr, ctx)
            auth_sender = smtp_settings.authenticated_sender(self, host, addr, ctx)
            force = self.options["authenticated_sender_force"]
        except (ExpansionError, LookupDefer) as exc:
            for a in addresses:
                a.set_result(DEFER, str(exc))
            return []
        by_address = {a.address: a for a in addresses}
        this = Transaction.__new__(Transaction)
        this.__dict__.update(txn.__dict__)
        this.recipients = [r for r in txn.recipients if r.address in by_address]
        this.outcomes = {}
        this.auth_sender_option = auth_sender
        this.auth_sender_force = force
        # More recipients than max_rcpt make several copies of the message;
        # one connection carries at most connection_max_messages of them,
        # counting those of earlier messages when it is reused.
        parts = client.split_by_max_rcpt([this], settings.max_rcpt)
        limit = self.options["connection_max_messages"]
        key = self._pool_key(host, port, interface, settings)
        still = []
        # Reports (bounces, DSNs: the null sender) are delivered straight
        # after the message that caused them, on a connection of their own,
        # as Exim's separate delivery process for them makes one.
        reuse = bool(getattr(message, "sender", None))
        message_id = getattr(message, "id", None)
        # The engine's piece of an address group, and whether another piece
        # of the group follows (then the connection is kept for it).
        group, more_pieces = getattr(addr, "remote_group", (None, False))
        while parts:
            # A connection this message's other address groups used is not
            # taken (Exim gives each group its own); the group's next copy
            # (max_rcpt) takes the one just kept.
            conn = smtp_pool.POOL.take(key, message_id, group) if reuse else None
            room = len(parts)
            if limit:
                room = min(room, limit - (conn.pool_sent if conn is not None else 0))
            batch, parts = parts[:room], parts[room:]
            park = self._parker(key, message, lock, group) \
                if self._may_keep(bool(parts) or more_pieces, host, port, message, ctx) \
                else None
            result = await self._session(host, port, settings, batch, connect_timeout,
                                         interface, conn, park, message_id)
            still.extend(self._record(result, host, port, by_address, message, ctx))
            self._waiting(result, host, port, message, ctx)
        return still

    def _pool_key(self, host, port, interface, settings):
        """What a parked connection must match to carry this delivery: the
        host and everything that shaped the session (EHLO, TLS, AUTH).

        The settings' part is worked out once per settings object, which
        for_host may hand out for many messages to the same host."""
        shape = settings.__dict__.get("_pool_shape")
        if shape is None:
            fields = {k: v for k, v in vars(settings).items()
                      if k not in ("authenticators", "tls_settings", "max_rcpt")
                      and not k.startswith("_")}
            tls = vars(settings.tls_settings) if settings.tls_settings is not None else {}
            shape = settings._pool_shape = (
                repr(sorted(fields.items())), repr(sorted(tls.items())),
                tuple(a.public_name for a in settings.authenticators))
        return (self.name, host.name, host.address, port, interface) + shape

    def _may_keep(self, more, host, port, message, ctx):
        """Whether the connection may outlive this session, known before
        the data ends so that QUIT can travel with it otherwise: for the
        next copy of this message (``more``), for a message waiting for the
        host (Exim's transport_check_waiting), or, in a daemon, for whatever
        comes next (``POOL.speculative``)."""
        if more or smtp_pool.POOL.speculative:
            return True
        spool = getattr(ctx, "spool", None)
        if spool is None or getattr(ctx, "mode", "deliver") != "deliver":
            return False
        return smtp_pool.WaitList(os.path.join(spool.directory, "db"), self.name,
                                  host.address, port).waiting(getattr(message, "id", None))

    def _parker(self, key, message, lock=None, group=None):
        """The client's ``park`` hook: count what went down the connection and
        keep it for the next message unless connection_max_messages is reached.
        A serialize_hosts ``lock`` then stays with the connection."""
        limit = self.options["connection_max_messages"]
        message_id = getattr(message, "id", None)

        def park(proto):
            proto.pool_sent = getattr(proto, "pool_sent", 0) + len(proto.result.transactions)
            proto.pool_messages = getattr(proto, "pool_messages", set()) | {message_id}
            proto.pool_last = (message_id, group)
            if message_id is None or (limit and proto.pool_sent >= limit):
                return False
            # As Exim, only a session that made progress (an address
            # delivered, or refused at RCPT) is carried on: after deferrals
            # or a refused MAIL, QUIT.
            if not any(o is not None and (o.status == client.OK or (
                    o.status == client.FAIL and o.kind == "recipient"))
                    for _, o in proto.result.outcomes()):
                return False
            if not smtp_pool.POOL.offer(key, proto):
                return False
            if lock is not None:
                lock.kept = True
                proto.when_closed().addCallback(lambda _: lock.release())
            return True
        return park

    async def _session(self, host, port, settings, transactions, connect_timeout, interface,
                       conn=None, park=None, message_id=None):
        """One connection (a parked one when ``conn`` is given); a second one
        in clear when TLS broke (tls_tempfail_tryclear)."""
        if conn is not None:
            # Exim marks a message sent down a connection that carried an
            # earlier one (its continue_sequence) with "*" in the log.
            continued = bool(conn.pool_messages - {message_id})
            conn.park = park
            result = await conn.reuse(transactions)
            if not result.stale:
                result.continued = continued
                return result
            # The server had closed it while it was parked: start afresh.
            for txn in transactions:
                txn.outcomes = {}
        result = await client.deliver(reactor, host.address, port, settings, transactions,
                                      connect_timeout, interface, park=park)
        if result.retry_in_clear:
            # TLS failed after STARTTLS was accepted: Exim opens a new
            # connection to the same host and sends in clear.
            clear = copy.copy(settings)
            clear.tls = None
            clear.__dict__.pop("_pool_shape", None)    # describes the TLS settings
            for txn in transactions:
                txn.outcomes = {}
            result = await client.deliver(reactor, host.address, port, clear, transactions,
                                          connect_timeout, interface)
        return result

    def _waiting(self, result, host, port, message, ctx):
        """Exim's wait-<transport> hints: a message the host could not take
        (a host error) waits for it; once a delivery to the host succeeds and
        the connection is kept, the messages waiting for it follow."""
        spool = getattr(ctx, "spool", None)
        if message is None or spool is None:
            return
        err = result.host_error
        if err is not None and err.kind == "host" and err.status == client.DEFER:
            smtp_pool.WaitList(os.path.join(spool.directory, "db"), self.name, host.address,
                               port).add(message.id)
        elif err is None and smtp_pool.POOL.has_idle((self.name, host.name, host.address, port)) \
                and any(o is not None and o.status == client.OK for _, o in result.outcomes()):
            smtp_pool.continue_waiting(ctx, self, host, port, message.id)

    def _record(self, result, host, port, by_address, message, ctx):
        """Outcomes → address results, retry hints and log fields; returns the deferred."""
        still = []
        host_text = "H=%s [%s]" % (host.name or host.address, host.address)
        if port != 25 and self._selector(ctx, "outgoing_port"):
            host_text += ":%d" % (port,)
        # The address lines of a message sent down a connection that carried
        # an earlier one say so with "*" (spec, "connection_max_messages").
        host_field = host_text + ("*" if result.continued else "")
        host_key = retry.host_key(host.copy(port=port))
        err = result.host_error
        reached = err is None or err.stage not in ("connect",)
        if not reached and (err.errno or 0) > 0 and message is not None:
            # A host that could not be reached gets a line of its own before
            # the addresses' == lines (Exim's smtp.c write_logs).
            _host_line(ctx, message, "%s %s" % (host_text, os.strerror(err.errno)))
        elif reached and message is not None:
            # A host or message error after connecting gets its own line too:
            # the host, the error and the errno's text (smtp.c write_logs).
            # Deferred recipients (RCPT 4xx) do not.
            for _, _, outcome in _outcomes(result):
                if outcome is not None and outcome.status == client.DEFER \
                        and outcome.kind in ("host", "message") \
                        and outcome.errno != client.ERRNO_AUTHFAIL:
                    line = "%s: %s" % (host_text, outcome.message)
                    if (outcome.errno or 0) > 0:
                        line += ": " + os.strerror(outcome.errno)
                    _host_line(ctx, message, line)
                    break
        for txn, address, outcome in _outcomes(result):
            addr = by_address.get(address)
            if addr is None:
                continue
            # Exim names the host on every line except for a failed
            # connection and a failed (required) authentication.
            fields = [host_field] if reached and outcome.errno != client.ERRNO_AUTHFAIL else []
            if outcome.status == client.OK:
                addr.set_result(OK, None)
                addr.host_used = host
                addr.log_fields = fields + self._tls_fields(result, ctx) + \
                    self._success_fields(result, txn, outcome, ctx)
                addr.dsn_aware = txn.dsn_passed
                addr.transport_count = _wire_size(txn)
                addr.add_retry(host_key, delete=True)
                continue
            addr.log_fields = fields
            addr.host_used = host if reached else None
            if outcome.status == client.FAIL:
                # Exim's ** lines carry the TLS fields too; its == lines do not.
                addr.log_fields = fields + self._tls_fields(result, ctx)
                addr.set_result(FAIL, outcome.message, more_errno=outcome.code)
                continue
            # A failed connect is logged as just its errno's text, as Exim does.
            text = None if outcome.stage == "connect" and outcome.errno > 0 else outcome.message
            addr.set_result(DEFER, text, self._errno(outcome), more_errno=outcome.code)
            if outcome.kind == "host":
                addr.add_retry(host_key, error=_retry_error(outcome),
                               more_errno=outcome.code, message=outcome.message)
            elif outcome.kind == "message" and message is not None:
                error = "mail_4xx" if outcome.stage == "mail" else "data_4xx"
                addr.add_retry("%s:%s" % (host_key, message.id), error=error,
                               more_errno=outcome.code, message=outcome.message)
            elif outcome.kind == "recipient":
                # Always the address (not the router's retry_use_local_part
                # choice): the recipient, or with the sender too, is delayed.
                key = "R:%s@%s" % (addr.local_part, addr.domain)
                if self.options["address_retry_include_sender"] and message is not None:
                    key = "%s:<%s>" % (key, message.sender or "")
                addr.add_retry(key, error="rcpt_4xx", more_errno=outcome.code,
                               message=outcome.message)
            still.append(addr)
        return still

    def _errno(self, outcome):
        if outcome.stage == "prdr_rcpt":
            return 0
        if outcome.kind == "recipient" and outcome.reply is not None:
            return ERRNO_RCPT4XX
        if outcome.kind == "message" and outcome.reply is not None:
            return ERRNO_MAIL4XX if outcome.stage == "mail" else ERRNO_DATA4XX
        return outcome.errno or None

    def _selector(self, ctx, name):
        logger = getattr(ctx, "logger", None)
        if logger is None:
            return name in ("tls_cipher", "tls_certificate_verified", "smtp_confirmation")
        return logger.selector(name)

    def _tls_fields(self, result, ctx):
        fields = []
        if result.tls is not None:
            if self._selector(ctx, "tls_cipher"):
                from exim_py.smtp.tls_client import RESUME_USED    # loaded by the session
                resumed = result.tls.resumption & RESUME_USED
                fields.append("X=%s%s" % (result.tls.cipher, "*" if resumed and self._selector(
                    ctx, "tls_resumption") else ""))
            if self._selector(ctx, "tls_certificate_verified"):
                fields.append("CV=%s" % ("yes" if result.tls.certificate_verified else "no",))
            if self._selector(ctx, "tls_peerdn") and result.tls.peerdn:
                fields.append('DN="%s"' % (_quote_log(result.tls.peerdn),))
        return fields

    def _success_fields(self, result, txn, outcome, ctx):
        fields = []
        if result.authenticator is not None:
            # A= names the client authenticator that succeeded (its driver
            # instance name, as on Exim's delivery lines).
            fields.append("A=%s" % (getattr(result.authenticator, "name", None)
                                    or result.authenticated,))
        if txn.prdr_used:
            fields.append("PRDR")
        if txn.chunking_used:
            fields.append("K")
        confirmation = txn.confirmation
        if txn.prdr_used and outcome.reply:
            # With PRDR the recipient's own reply comes first.
            confirmation = outcome.reply + "\n" + (confirmation or "")
        if confirmation and self._selector(ctx, "smtp_confirmation"):
            fields.append('C="%s"' % (_quote_log(confirmation),))
        return fields

    # -- the message ---------------------------------------------------------

    def _transaction(self, message, addresses, ctx):
        """The envelope and bytes to send (blocking: reads the spool's -D file)."""
        addr = addresses[0]
        sender = self.return_path(message, addr, ctx)
        data_error = None
        try:
            data = b"".join(self.message_chunks(message, addresses, ctx, eol=b"\n"))
        except ExpansionError as exc:
            if "transport filter" not in str(exc):
                raise
            # Exim runs the filter as it writes the data, after DATA: what
            # the filter wrote is sent, then the delivery defers
            # (client.smtpState_dot).
            data = getattr(exc, "output", b"").replace(b"\r\n", b"\n")
            if data and not data.endswith(b"\n"):
                data += b"\n"
            data_error = str(exc)
        envelope = message.envelope
        # A dsn_lasthop router keeps NOTIFY and ORCPT from the next hop.
        recipients = [Recipient(a.address, None, None) if a.dsn_lasthop
                      else Recipient(a.address, a.top.dsn_notify, a.top.dsn_orcpt)
                      for a in addresses]
        txn = Transaction(sender, recipients, data=data, size=message.size(),
                          body_type=getattr(envelope, "body_type", None),
                          smtputf8=getattr(envelope, "smtputf8", False),
                          dsn_envid=getattr(envelope, "dsn_envid", None),
                          dsn_ret=getattr(envelope, "dsn_ret", None),
                          auth_sender=getattr(envelope, "auth_sender", None))
        txn.data_error = data_error
        return txn
