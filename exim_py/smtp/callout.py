"""Verification callouts: asking the next hop whether it would take an address.

``verify = recipient/callout`` and ``verify = sender/callout`` (spec chapter
"Access control lists", section on callout verification) connect to the
hosts the router found for the address, with the settings of the smtp
transport the router chose, and stop after RCPT.  This reuses the ESMTP
client with a data-less transaction; ``hosts_verify_avoid_tls`` replaces
``hosts_avoid_tls``.
"""

from twisted.internet import reactor, threads

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
