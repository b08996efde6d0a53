"""A real authoritative DNS server for tests (twisted.names), on 127.0.0.1.

It serves the zone files in tests/support/zones/ (standard master-file
syntax, one zone per file, named after its origin) plus any zones a test
adds, over UDP and TCP on one free port.  Every name under a "servfail"
origin (``servfail.test`` by default) is answered SERVFAIL, to exercise
temporary DNS errors, and names under a "silent" origin (``timeout.test``)
are never answered, for timeouts; names under a "delayed" origin are
answered after the given number of seconds (``delayed={origin: seconds}``),
for a slow DNS that does answer.  Answers about names under a "secure"
origin (none by default) carry the AD bit, as a validating resolver's
would, for $sender_host_dnssec and friends.  Every answer about a name in a
zone it serves has the AA bit, the empty ones (NXDOMAIN, NODATA) included,
as a real authoritative server's: a stub resolver such as glibc's takes an
empty answer with neither AA nor RA for a lame referral, a temporary error.

The server runs in a child process, so code under test may make blocking
dnspython queries from the test's own thread.  Use from a trial test::

    from tests.support.dnsserver import DNSServer

    def setUp(self):
        self.dns = DNSServer(zones={"example.test": ZONE_TEXT})
        self.dns.start()
        self.addCleanup(self.dns.stop)
        # configuration: dns_nameservers = <; 127.0.0.1.PORT
        self.dns.nameservers     # "127.0.0.1.PORT", for dns_nameservers

``shared_server()`` gives one server with only the stock zones for a whole
test run (stopped at interpreter exit), which is cheaper when a test needs
nothing else.  ``python -m tests.support.dnsserver [--port N] [ZONEFILE...]``
runs it by hand and prints the port.
"""

import atexit
import os
import socket
import subprocess
import sys
import tempfile
import threading

ZONE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "zones")
SERVFAIL = ("servfail.test",)
SILENT = ("timeout.test",)


class DNSServer:
    """A child process serving zones on 127.0.0.1:``port`` (UDP and TCP)."""

    def __init__(self, zones=None, servfail=SERVFAIL, silent=SILENT, stock=True, secure=(),
                 delayed=None):
        self.extra_zones = dict(zones or {})
        self.servfail = tuple(servfail)
        self.silent = tuple(silent)
        self.delayed = dict(delayed or {})
        self.secure = tuple(secure)
        self.stock = stock
        self.port = None
        self._proc = None
        self._tmp = None

    @property
    def nameservers(self):
        """The value for the ``dns_nameservers`` option."""
        return "127.0.0.1.%d" % self.port

    def zone_files(self):
        files = []
        if self.stock:
            files += [os.path.join(ZONE_DIR, n) for n in sorted(os.listdir(ZONE_DIR))]
        if self.extra_zones:
            self._tmp = tempfile.mkdtemp(prefix="exim-py-zones-")
            for origin, text in self.extra_zones.items():
                path = os.path.join(self._tmp, origin.rstrip("."))
                with open(path, "w") as f:
                    f.write(text)
                files.append(path)
        return files

    def start(self):
        """Start the child and wait until it listens; sets ``port``."""
        args = [sys.executable, "-m", "tests.support.dnsserver"]
        for origin in self.servfail:
            args += ["--servfail", origin]
        for origin in self.silent:
            args += ["--silent", origin]
        for origin in self.secure:
            args += ["--secure", origin]
        for origin, seconds in self.delayed.items():
            args += ["--delay", "%s=%s" % (origin, seconds)]
        files = self.zone_files()
        args += files if files else ["--no-zones"]
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(os.environ)
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        # The child stops when its standard input closes, so a test run that
        # dies without cleaning up leaves no server behind.
        self._proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.DEVNULL, text=True, cwd=root, env=env)
        line = self._proc.stdout.readline()
        if not line.startswith("port "):
            self._proc.wait()
            raise RuntimeError("DNS test server did not start (exit status %s): %s"
                               % (self._proc.returncode, line))
        self.port = int(line.split()[1])
        return self

    def stop(self):
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait()
            self._proc.stdin.close()
            self._proc.stdout.close()
            self._proc = None
        if self._tmp is not None:
            for name in os.listdir(self._tmp):
                os.unlink(os.path.join(self._tmp, name))
            os.rmdir(self._tmp)
            self._tmp = None


_shared = None
_shared_lock = threading.Lock()


def shared_server():
    """One server with the stock zones for the whole run, started on first use."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = DNSServer().start()
            atexit.register(_shared.stop)
        return _shared


# ---------------------------------------------------------------------------
# The server itself (runs in the child process).

def _load_zones(paths):
    """{origin dns.name.Name: dns.zone.Zone} from master files named after their origin."""
    import dns.zone
    zones = {}
    for path in paths:
        origin = os.path.basename(path).rstrip(".") + "."
        zone = dns.zone.from_file(path, origin=origin, relativize=False)
        zones[zone.origin] = zone
    return zones


def _resolver_class():
    import dns.name
    import dns.rdataclass
    import dns.rdatatype
    from twisted.internet import defer, reactor, task
    from twisted.names import common
    from twisted.names import dns as tdns
    from twisted.names import error

    class ZoneResolver(common.ResolverBase):
        """Answers from dnspython zones, with CNAME chasing, SERVFAIL, silent and delayed origins."""

        def __init__(self, zones, servfail, silent, delayed=()):
            super().__init__()
            self.zones = zones
            self.servfail = [dns.name.from_text(o) for o in servfail]
            self.silent = [dns.name.from_text(o) for o in silent]
            self.delayed = [(dns.name.from_text(o), float(s)) for o, s in delayed]

        def _lookup(self, name, cls, qtype, timeout=None):
            qname = dns.name.from_text(name.decode() if isinstance(name, bytes) else name)
            for origin, seconds in self.delayed:
                if qname.is_subdomain(origin):
                    return task.deferLater(reactor, seconds, self._answer, name, cls, qtype)
            return self._answer(name, cls, qtype)

        def is_authoritative(self, name):
            """Whether ``name`` (a dns.name.Name) is in a zone served here."""
            return self._zone_for(name) is not None

        def _zone_for(self, name):
            best = None
            for origin, zone in self.zones.items():
                if name.is_subdomain(origin) and (best is None or origin.is_subdomain(best)):
                    best = origin
            return None if best is None else self.zones[best]

        def _rr(self, name, rdataset, rdata):
            wire = rdata.to_digestable()
            return tdns.RRHeader(name=name.to_text(omit_final_dot=True).encode(),
                                 type=rdataset.rdtype, cls=tdns.IN, ttl=rdataset.ttl,
                                 payload=tdns.UnknownRecord(wire, ttl=rdataset.ttl),
                                 auth=True)

        def _soa(self, zone):
            rdataset = zone.find_rdataset(zone.origin, dns.rdatatype.SOA)
            return [self._rr(zone.origin, rdataset, r) for r in rdataset]

        def _answer(self, name, cls, qtype):
            qname = dns.name.from_text(name.decode() if isinstance(name, bytes) else name)
            if any(qname.is_subdomain(o) for o in self.servfail):
                return defer.fail(RuntimeError("configured to fail: %s" % qname))
            if any(qname.is_subdomain(o) for o in self.silent):
                return defer.Deferred()
            answers = []
            for _ in range(8):
                zone = self._zone_for(qname)
                if zone is None:
                    return defer.fail(error.DomainError(name))
                node = zone.get_node(qname)
                if node is None:
                    if answers:
                        break
                    return defer.fail(error.AuthoritativeDomainError(name))
                found = [rs for rs in node.rdatasets
                         if qtype in (tdns.ALL_RECORDS, rs.rdtype)]
                if found:
                    for rs in found:
                        answers += [self._rr(qname, rs, r) for r in rs]
                    break
                cname = node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.CNAME)
                if cname is None:
                    break
                answers += [self._rr(qname, cname, r) for r in cname]
                qname = list(cname)[0].target
            authority = [] if answers else self._soa(zone)
            return defer.succeed((answers, authority, []))

    return ZoneResolver


def _serve(zone_paths, servfail, silent, port, secure=(), delayed=()):
    import dns.name
    from twisted.internet import reactor
    from twisted.names import dns as tdns
    from twisted.names import server

    secure = [dns.name.from_text(o) for o in secure]
    resolver = _resolver_class()(_load_zones(zone_paths), servfail, silent, delayed)

    class Factory(server.DNSServerFactory):
        def _responseFromMessage(self, message, *args, **kwargs):
            response = super()._responseFromMessage(message, *args, **kwargs)
            names = [dns.name.from_text(q.name.name.decode()) for q in message.queries]
            response.authenticData = bool(names) and all(
                any(n.is_subdomain(o) for o in secure) for n in names)
            # Twisted sets AA only when an answer record carries it; an
            # authoritative server sets it on its NXDOMAIN and NODATA
            # answers too (RFC 1035 4.1.1, RFC 2308 2).
            if response.rCode in (tdns.OK, tdns.ENAME) and names and all(
                    resolver.is_authoritative(n) for n in names):
                response.auth = True
            return response

    factory = Factory(authorities=[resolver])
    factory.noisy = False
    # One port number for both transports: bind TCP first (port 0 picks one),
    # then UDP on the same number; retry if UDP's is taken.
    for _ in range(20):
        tcp = reactor.listenTCP(port, factory, interface="127.0.0.1")
        chosen = tcp.getHost().port
        try:
            reactor.listenUDP(chosen, tdns.DNSDatagramProtocol(factory), interface="127.0.0.1")
            break
        except Exception:
            tcp.stopListening()
            if port:
                raise
    sys.stdout.write("port %d\n" % chosen)
    sys.stdout.flush()
    threading.Thread(target=_stop_at_eof, args=(reactor,), daemon=True).start()
    reactor.run()


def _stop_at_eof(reactor):
    """Stop serving when standard input closes (the test process went away)."""
    sys.stdin.read()
    reactor.callFromThread(reactor.stop)


def main(argv=None):
    import argparse
    parser = argparse.ArgumentParser(description="exim_py test DNS server")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--servfail", action="append", default=[])
    parser.add_argument("--silent", action="append", default=[])
    parser.add_argument("--secure", action="append", default=[],
                        help="answers under this origin carry the AD bit")
    parser.add_argument("--delay", action="append", default=[], metavar="ORIGIN=SECONDS",
                        help="answer names under ORIGIN after SECONDS")
    parser.add_argument("--no-zones", action="store_true", help="serve nothing at all")
    parser.add_argument("zones", nargs="*", help="zone files (default: the stock zones)")
    args = parser.parse_args(argv)
    zones = args.zones
    if not zones and not args.no_zones:
        zones = [os.path.join(ZONE_DIR, n) for n in sorted(os.listdir(ZONE_DIR))]
    _serve(zones, args.servfail or list(SERVFAIL), args.silent or list(SILENT), args.port,
           args.secure, [item.rsplit("=", 1) for item in args.delay])


if __name__ == "__main__":
    socket.setdefaulttimeout(None)
    main()
