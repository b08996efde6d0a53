"""Handing a write to the kernel at once, for the SMTP server and client.

Twisted queues every ``transport.write`` and sends it on the reactor's next
turn, switching the socket's epoll interest on and off around it.  An SMTP
command or reply is small and usually the only thing to send, so when the
socket is plain TCP and nothing is queued, ``write_now`` sends it straight
away; whatever the kernel does not take is queued as usual, behind nothing.
"""

from twisted.internet import tcp

_PLAIN_TCP = (tcp.Client, tcp.Server)


def write_now(transport, data):
    """Write ``data`` to ``transport``, at once when the socket allows (see above)."""
    t = transport
    if (type(t) in _PLAIN_TCP and not t.TLS and t.connected and not t.disconnecting
            and not t.dataBuffer and not t._tempDataBuffer):
        sent = t.writeSomeData(data)
        if isinstance(sent, int) and sent > 0:
            data = data[sent:]
            if not data:
                return
    t.write(data)
