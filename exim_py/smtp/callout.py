"""Verification callouts: asking the next hop whether it would take an address.

``verify = recipient/callout`` and ``verify = sender/callout`` (spec chapter
"Access control lists", section on callout verification) connect to the
hosts the router found for the address, with the settings of the smtp
transport the router chose, and stop after RCPT.  This reuses the ESMTP
client with a data-less transaction; ``hosts_verify_avoid_tls`` replaces
``hosts_avoid_tls``.  The connections that ``callout=...,hold`` keeps open
for the message's delivery are held here too (``hold``, ``held_for``,
``deliver_or_connect``).
"""

import threading
import weakref

from twisted.internet import protocol, reactor, threads

from exim_py.delivery.address import DEFER, FAIL, OK
from exim_py.errors import ExpansionError, LookupDefer
from exim_py.smtp import client
from exim_py.smtp.outbound import Transaction
from exim_py.transports import smtp_settings


async def callout(transport, addr, ctx, sender="", timeout=30, kind="recipient"):
    """Run a callout for ``addr`` through smtp ``transport``; returns (result, message).

    ``result`` is OK (the server accepted RCPT), FAIL (a 5xx to MAIL or
    RCPT; ``message`` is Exim's "response to ... was: ..." text) or DEFER
    (no host gave an answer).
    """
    try:
        hosts = await threads.deferToThread(smtp_settings.host_list, transport, addr, ctx)
    except (ExpansionError, LookupDefer):
        hosts = []
    for host in hosts:
        try:
            settings, port, interface, _ = smtp_settings.for_host(transport, host, addr, ctx,
                                                                  callout=True)
        except (ExpansionError, LookupDefer):
            continue
        settings.command_timeout = timeout
        txn = Transaction(sender, [addr.address])
        await client.deliver(reactor, host.address, port, settings, [txn],
                             connect_timeout=timeout, interface=interface)
        outcome = txn.outcomes[addr.address]
        if outcome.status == client.OK:
            return OK, None
        if outcome.status == client.FAIL and outcome.reply is not None:
            command = ("MAIL FROM:<%s>" % (sender,) if outcome.stage == "mail"
                       else "RCPT TO:<%s>" % (addr.address,))
            return FAIL, 'response to "%s" from %s [%s] was: %s' % (
                command, host.name or host.address, host.address, outcome.reply)
    return DEFER, "Could not complete %s verify callout" % (kind,)


# -- connections kept by ``callout=...,hold`` ---------------------------------
#
# Spec, callout option "hold": the connection of a recipient callout stays
# open and serves further recipients of the same transaction and, when the
# message is delivered at once, its delivery.  As in Exim (which treats it as
# a continued connection), it is used only when the delivery's envelope is
# exactly what the held connection has already sent: the same sender, and
# RCPTs for precisely the addresses being delivered to that host and port;
# any other delivery to that host first sends QUIT on it.

_held = []
_held_lock = threading.Lock()

# Seconds a held connection waits for a delivery once its transaction is
# over (the envelope is gone): the daemon starts the delivery of an accepted
# message at once, so a connection no delivery took by then never will be.
ORPHAN_GRACE = 5


class HeldConnection:
    """A callout connection stopped after RCPT: ``conn`` is the blocking
    smtplib client, ``recipients`` the addresses it has had a 2xx for."""

    def __init__(self, envelope, conn, address, port, sender, recipient, extensions):
        self.envelope = weakref.ref(envelope)
        self.conn = conn
        self.address = address
        self.port = port
        self.sender = sender
        self.recipients = [recipient]
        self.extensions = extensions

    def for_envelope(self, envelope):
        return self.envelope() is envelope

    def add_recipient(self, address):
        """RCPT TO on the held connection: (code, text); drops it unless 2xx."""
        try:
            code, text = self.conn.docmd("RCPT TO:<%s>" % (address,))
        except OSError as e:           # smtplib's errors are OSErrors too
            release(self, quit=False)
            return None, str(e)
        if code // 100 == 2:
            self.recipients.append(address)
        else:
            release(self)
        return code, text

    def close(self, quit=True):
        """QUIT (reading the reply, as Exim does) and close the socket."""
        try:
            if quit:
                self.conn.docmd("QUIT")
        except OSError:
            pass
        self.conn.close()


def hold(envelope, conn, address, port, sender, recipient, ehlo_text):
    """Keep ``conn`` (a callout that just had a 2xx to RCPT) for ``envelope``."""
    extensions = {}
    for line in ehlo_text.decode("utf-8", "replace").splitlines()[1:]:
        words = line.split()
        if words:
            extensions[words[0].upper()] = words[1:]
    entry = HeldConnection(envelope, conn, address, port, sender, recipient, extensions)
    with _held_lock:
        _held.append(entry)
    # The end of the transaction frees its envelope; unless a delivery takes
    # the connection soon after (the message was accepted), it goes too.
    weakref.finalize(envelope, _orphaned, entry)
    return entry


def _orphaned(entry):
    """Close ``entry`` ORPHAN_GRACE seconds from now if it is still held
    (blocking work, so in the thread pool); callable from any thread."""
    with _held_lock:
        if entry not in _held:
            return          # a delivery took it, or it is closed already
    reactor.callFromThread(reactor.callLater, ORPHAN_GRACE,
                           threads.deferToThread, release, entry)


def held_for(envelope):
    """The connection held for ``envelope``, or None."""
    with _held_lock:
        for entry in _held:
            if entry.for_envelope(envelope):
                return entry
    return None


def release(entry, quit=True):
    """Forget ``entry`` and close its connection (once)."""
    with _held_lock:
        if entry not in _held:
            return
        _held.remove(entry)
    entry.close(quit)


def release_all():
    """Close every held connection (end of a -bs session: deliveries are done)."""
    with _held_lock:
        entries = list(_held)
    for entry in entries:
        release(entry)


def _take(address, port, transactions):
    """(entry matching this delivery or None, entries to the same host to close)."""
    wanted = None
    if len(transactions) == 1:
        txn = transactions[0]
        wanted = (txn.sender, sorted(r.address for r in txn.recipients))
    found, others = None, []
    with _held_lock:
        for entry in list(_held):
            if (entry.address, entry.port) != (address, port):
                continue
            _held.remove(entry)
            if found is None and wanted == (entry.sender, sorted(entry.recipients)):
                found = entry
            else:
                others.append(entry)
    return found, others


def deliver_or_connect(reactor, address, port, transactions, factory, connect):
    """Run ``factory``'s session on a held connection when one matches, else
    call ``connect()`` (after closing held connections to the same host, so
    that a server that takes one connection at a time sees the QUIT first)."""
    if not _held:
        connect()
        return
    found, others = _take(address, port, transactions)
    settings = getattr(factory, "settings", None)
    if found is not None and settings is not None and (
            settings.tls_on_connect or (settings.tls and "STARTTLS" in found.extensions)):
        # The callout talked in clear; this delivery would use TLS.
        others.append(found)
        found = None
    if found is not None:
        for entry in others:
            entry.close()
        _resume(reactor, found, factory)
        return
    if not others:
        connect()
        return
    d = threads.deferToThread(lambda: [entry.close() for entry in others])
    d.addBoth(lambda _: connect())


class _Adopted(protocol.Factory):
    """Hands the one protocol built in advance to an adopted socket."""

    def __init__(self, proto):
        self.proto = proto

    def buildProtocol(self, addr):
        return self.proto


def _resume(reactor, entry, factory):
    """Carry on the held SMTP session in Twisted: the data comes next."""
    proto = factory.buildProtocol(None)
    proto.resume_after_envelope(entry.extensions)
    sock = entry.conn.sock
    sock.setblocking(False)
    reactor.adoptStreamConnection(sock.fileno(), sock.family, _Adopted(proto))
    # Twisted works on its own duplicate of the descriptor.
    entry.conn.close()
