"""The reactor a daemon process runs: Twisted's epoll reactor, with less
work around each event.

Twisted's epoll reactor hands every ready descriptor to its handler
through ``log.callWithLogger``: it asks the connection for its log prefix
and pushes a logging context, so that a ``log.msg`` made while handling
the event is labelled with the connection.  exim_py writes its own logs
(exim_py.log) and never reads that label, yet a daemon busy with mail
pays for it on every read and write of every session, several times per
message.  ``LeanEPollReactor`` calls the handler directly; an exception
that escapes it is still logged (with the connection's prefix) and still
disconnects the connection, as Twisted does.

Only ``exim_py -bd`` installs it, in each daemon process before anything
imports ``twisted.internet.reactor``.  Under ``twistd`` the reactor is
twistd's choice (``twistd --reactor``).
"""

import errno
import sys

from twisted.internet import epollreactor
from twisted.python import log


class LeanEPollReactor(epollreactor.EPollReactor):
    """EPollReactor whose events go straight to their handlers."""

    def doPoll(self, timeout):
        if timeout is None:
            timeout = -1
        try:
            events = self._poller.poll(timeout, len(self._selectables))
        except OSError as err:
            if err.errno == errno.EINTR:
                return
            raise
        selectables = self._selectables
        handle = self._doReadOrWrite
        for fd, event in events:
            selectable = selectables.get(fd)
            if selectable is None:
                continue
            try:
                handle(selectable, fd, event)
            except BaseException:
                # _doReadOrWrite already catches what the handler raises;
                # this is what callWithLogger would have caught besides.
                log.err(system=_prefix(selectable))

    doIteration = doPoll


def _prefix(selectable):
    try:
        return selectable.logPrefix()
    except Exception:
        return "(buggy logPrefix method)"


def install():
    """Install LeanEPollReactor, unless a reactor is installed already."""
    if "twisted.internet.reactor" in sys.modules:
        return
    from twisted.internet.main import installReactor
    installReactor(LeanEPollReactor())
