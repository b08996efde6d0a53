"""${readsocket{spec}{request}{timeout,options}{eol}{fail string}}.

The spec is a Unix socket path or ``inet:host:port``; the request is written,
the write side shut down (unless ``shutdown=no``), and everything read until
the peer closes or the timeout (default 5s) passes is the result.  Failures
give the fail string when one is there, else an expansion error.  With
``cache=yes`` a reply is kept (in the context's lookup cache, as Exim keeps it
in its lookup cache): the same request to the same socket is not sent again.
"""

import socket

from exim_py.errors import ExpansionError
from exim_py.expand.arith import read_time
from exim_py.expand.lists import iter_list
from exim_py.expand.nodes import Node, Tainted
from exim_py.expand.strings import to_bytes


class ReadSocket(Node):
    __slots__ = ("args", "fail")

    def __init__(self, args, fail):
        self.args = args
        self.fail = fail

    def ev(self, ctx):
        if "readsocket" in ctx.forbid:
            raise ExpansionError("socket insertions are not permitted")
        spec, request, options, eol = [a.ev(ctx) if a is not None else None
                                       for a in self.args]
        try:
            if spec.__class__ is Tainted:
                # Exim logs this and fails the item (its own message is "(null)").
                raise ExpansionError("Tainted socket name for readsocket: '%s'" % spec)
            return exchange(spec, request, options, eol,
                            getattr(ctx, "lookup_cache", None))
        except ExpansionError:
            if self.fail is None:
                raise
            return self.fail.ev(ctx)


def exchange(spec, request, options, eol, cache=None):
    timeout = 5
    shutdown = True
    use_cache = False
    if options:
        # A colon list, as any Exim list: the timeout, then name=value options.
        for n, item in enumerate(iter_list(options)):
            if n == 0 and "=" not in item:
                t = read_time(item) if not item.isdigit() else int(item)
                if t < 0:
                    raise ExpansionError('bad time value "%s"' % item)
                timeout = t
            elif item == "shutdown=no":
                shutdown = False
            elif item == "cache=yes":
                use_cache = cache is not None
    # Exim passes the timeout, shutdown and eol settings to its lookup as
    # options, so they are part of what must be identical.
    key = ("readsocket", spec, request, timeout, shutdown, eol)
    if use_cache and key in cache:
        return cache[key]
    if cache is not None and not use_cache:
        # Spec: a request without cache=yes forgets what this socket said.
        for old in [k for k in cache if k[:2] == ("readsocket", spec)]:
            del cache[old]
    if spec.startswith("inet:"):
        host, _, port = spec[5:].rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        try:
            sock = socket.create_connection((host, int(port)), timeout=timeout or None)
        except (OSError, ValueError) as e:
            raise ExpansionError("failed to connect to any address for %s: %s"
                                 % (host, getattr(e, "strerror", None) or e))
    else:
        try:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout or None)
            sock.connect(spec)
        except OSError as e:
            sock.close()
            raise ExpansionError("failed to connect to socket %s: %s" % (spec, e.strerror))
    chunks = []
    try:
        with sock:
            if request:
                sock.sendall(to_bytes(request))
            if shutdown:
                sock.shutdown(socket.SHUT_WR)
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                chunks.append(data)
    except socket.timeout:
        raise ExpansionError("socket read timed out")
    except OSError as e:
        raise ExpansionError("error reading from socket: %s" % e.strerror)
    text = b"".join(chunks).decode("latin-1")
    if eol:
        text = text.replace("\n", eol)
    if use_cache:
        cache[key] = text
    return text
