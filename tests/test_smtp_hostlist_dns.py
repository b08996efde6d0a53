"""Host lists checked during a session wait on the DNS off the reactor.

A host list item that is a name pattern (``*.client.hl.test``) needs the
client's name, a reverse lookup; a plain host name needs a forward lookup.
Exim makes them in its own process per session; exim_py must make them in
a thread, so that one client's slow DNS holds up only its own session.  The
test DNS server answers the PTR query for 127.0.0.1 (slow.client.hl.test)
after DELAY seconds, and the names under slowfwd.hl.test as late; other
clients (127.0.0.2 quick.other.hl.test, 127.0.0.3 quick.client.hl.test)
are answered at once.  Each test has a slow session wait on the DNS while
another session on the same daemon gets its banner and replies promptly,
then checks that the slow answers still decided what the slow session was
told.  The same lists are compared with exim4 -bh where the names come
from /etc/hosts (exim4 cannot be pointed at the test DNS server).
"""

import os
import re
import shutil
import ssl
import time

from twisted.internet import threads
from twisted.trial import unittest

from tests.support import pki
from tests.support.dnsserver import DNSServer
from tests.support.peers import RealExim, run_exim_py
from tests.test_daemon import DaemonProcess
from tests.test_host_lookup_reactor import connect
from tests.test_smtp_server_bh import AUTHENTICATORS

# how long the slow answers take
DELAY = 2.0
# what a session that waits on nothing may take at most, on a loaded machine
PROMPT = 1.5

REVERSE = """\
$TTL 300
@       SOA   ns.hl.test. hostmaster.hl.test. 1 3600 600 86400 300
@       NS    ns.hl.test.
1       PTR   slow.client.hl.test.
2       PTR   quick.other.hl.test.
3       PTR   quick.client.hl.test.
"""

FORWARD = """\
$TTL 300
@               SOA   ns.hl.test. hostmaster.hl.test. 1 3600 600 86400 300
@               NS    ns.hl.test.
ns              A     127.0.0.1
slow.client     A     127.0.0.1
quick.other     A     127.0.0.2
quick.client    A     127.0.0.3
late.slowfwd    A     127.0.0.1
mx.slowfwd      MX    10 slow.client.hl.test.
"""


def read_reply(f):
    """One whole SMTP reply, as a list of str lines without CRLF."""
    lines = [f.readline().decode()]
    while lines[-1][3:4] == "-":
        lines.append(f.readline().decode())
    return [line.rstrip("\r\n") for line in lines]


def keywords(reply):
    """The EHLO keywords of a reply (its first line is the greeting)."""
    return [line[4:] for line in reply[1:]]


class Client:
    """One SMTP session from ``source``, timed from its connection."""

    def __init__(self, testcase, port, source):
        self.sock, self.file = connect(port, source)
        testcase.addCleanup(self.sock.close)
        self.started = time.monotonic()

    def reply(self):
        return read_reply(self.file)

    def command(self, line):
        self.sock.sendall(line.encode() + b"\r\n")
        return self.reply()

    def elapsed(self):
        return time.monotonic() - self.started


def _client_context():
    """A TLS client without a certificate that takes any server's."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class SlowListTests(unittest.TestCase):
    """While one session's host list waits on the DNS, others go on."""

    def setUp(self):
        self.dns = DNSServer(zones={"0.0.127.in-addr.arpa": REVERSE, "hl.test": FORWARD}, stock=False,
                             delayed={"1.0.0.127.in-addr.arpa": DELAY, "slowfwd.hl.test": DELAY}).start()
        self.addCleanup(self.dns.stop)

    def daemon(self, extra, pipe_connect=None, tail=""):
        """A daemon with ``extra`` main options (``pipe_connect`` for
        pipelining_connect_advertise_hosts, which the base configuration
        sets empty) and ``tail`` after its last section."""
        daemon = DaemonProcess(self, "queue_only\nhost_lookup =\ndns_nameservers = %s\n%s"
                               % (self.dns.nameservers, extra))
        with open(daemon.conf_path) as f:
            text = f.read()
        if pipe_connect is not None:
            text = text.replace("pipelining_connect_advertise_hosts = :",
                                "pipelining_connect_advertise_hosts = " + pipe_connect, 1)
        with open(daemon.conf_path, "w") as f:
            f.write(text + tail)
        daemon.start()
        self.addCleanup(daemon.stop)
        return daemon

    def test_auth_list(self):
        """auth_advertise_hosts by name: the slow client's EHLO waits for its
        name and offers AUTH, which it may then use (the answer found for
        the EHLO serves the AUTH command, as Exim goes by what it
        advertised); the other client is not offered AUTH and may not use
        it, and is answered meanwhile."""
        daemon = self.daemon("auth_advertise_hosts = *.client.hl.test\n", tail=AUTHENTICATORS)

        def slow_dialogue(slow):
            slow.reply()
            offered = keywords(slow.command("EHLO slow.example"))
            return offered, slow.command("AUTH PLAIN AGZyZWQAc2VjcmV0")

        def other_dialogue(other):
            other.reply()
            self.assertNotIn("AUTH PLAIN", keywords(other.command("EHLO other.example")))
            self.assertEqual(other.command("AUTH PLAIN AGZyZWQAc2VjcmV0"),
                             ["503 AUTH command used when not advertised"])

        def check(result):
            offered, auth = result
            self.assertIn("AUTH PLAIN", offered)
            self.assertEqual(auth, ["235 Authentication succeeded"])
        return self.alongside(daemon, slow_dialogue, other_dialogue).addCallback(check)

    def test_require_helo_list(self):
        """hosts_require_helo by name (Exim checks it at a MAIL before any
        HELO; one that needs the DNS is checked as the session starts): the
        slow client's banner waits for its name, and its MAIL without HELO
        is refused; the other client, not in the list, is greeted and its
        MAIL accepted meanwhile."""
        daemon = self.daemon("hosts_require_helo = *.client.hl.test\n")

        def slow_dialogue(slow):
            slow.reply()
            return slow.command("MAIL FROM:<someone@example.com>")

        def other_dialogue(other):
            other.reply()
            self.assertEqual(other.command("MAIL FROM:<someone@example.com>"), ["250 OK"])

        d = self.alongside(daemon, slow_dialogue, other_dialogue)
        return d.addCallback(self.assertEqual, ["503 HELO or EHLO required"])

    def test_helo_lookup_domains_mx(self):
        """helo_lookup_domains with @mx_any (a domain list, asked at HELO):
        a client naming a domain whose MX is this host waits for the MX
        answer, then for its own name, which the greeting shows; another
        client is answered meanwhile."""
        daemon = self.daemon("helo_lookup_domains = @ : @[] : @mx_any\n")

        def slow_dialogue(slow):
            slow.reply()
            return slow.command("EHLO mx.slowfwd.hl.test")[0]

        def other_dialogue(other):
            other.reply()
            self.assertEqual(other.command("EHLO other.example")[0],
                             "250-mx.test.example Hello other.example [127.0.0.2]")

        d = self.alongside(daemon, slow_dialogue, other_dialogue)
        return d.addCallback(self.assertEqual,
                             "250-mx.test.example Hello slow.client.hl.test [127.0.0.1]")

    def test_connection_nolog_list(self):
        """hosts_connection_nolog by name, checked for the connection's log
        line: the slow client's banner waits for its name and its
        connection is not logged; the other's is logged and it is greeted
        meanwhile."""
        daemon = self.daemon("log_selector = +smtp_connection\n"
                             "hosts_connection_nolog = *.client.hl.test\n")

        def slow_dialogue(slow):
            return slow.reply()[0][:4]

        def other_dialogue(other):
            self.assertTrue(other.reply()[0].startswith("220 "))

        def check(greeting):
            self.assertEqual(greeting, "220 ")
            with open(os.path.join(daemon.spool_dir, "mainlog")) as f:
                log = f.read()
            self.assertIn("SMTP connection from [127.0.0.2]", log)
            self.assertNotIn("SMTP connection from [127.0.0.1]", log)
        return self.alongside(daemon, slow_dialogue, other_dialogue).addCallback(check)

    def test_pipe_connect_list(self):
        """pipelining_connect_advertise_hosts by name, decided after the
        connect ACL: the slow client's banner waits for its name and its
        EHLO then offers PIPECONNECT; the other client, not in the list, is
        greeted at once and not offered it."""
        daemon = self.daemon("", pipe_connect="*.client.hl.test")

        def slow_dialogue(slow):
            slow.reply()
            return keywords(slow.command("EHLO slow.example"))

        def other_dialogue(other):
            other.reply()
            self.assertNotIn("PIPECONNECT", keywords(other.command("EHLO other.example")))

        d = self.alongside(daemon, slow_dialogue, other_dialogue)
        return d.addCallback(lambda offered: self.assertIn("PIPECONNECT", offered))

    def in_thread(self, work):
        """Run the blocking client ``work`` away from the test's reactor."""
        return threads.deferToThread(work)

    def test_ehlo_lists_need_the_name(self):
        """Name patterns in the advertise lists: the slow client's EHLO
        waits for its PTR answer while a second client is greeted and
        answered at once; the name found then decides, as for the quick
        clients: PIPELINING for *.client.hl.test, CHUNKING for the others."""
        daemon = self.daemon("pipelining_advertise_hosts = *.client.hl.test\n"
                             "chunking_advertise_hosts = !*.client.hl.test : *\n")

        def run():
            slow = Client(self, daemon.port, "127.0.0.1")
            self.assertTrue(slow.reply()[0].startswith("220 "))
            slow.sock.sendall(b"EHLO slow.example\r\n")
            time.sleep(0.3)                 # its lookup has started
            other = Client(self, daemon.port, "127.0.0.2")
            self.assertTrue(other.reply()[0].startswith("220 "))
            other_ehlo = other.command("EHLO other.example")
            self.assertLess(other.elapsed(), PROMPT)
            self.assertNotIn("PIPELINING", keywords(other_ehlo))
            self.assertIn("CHUNKING", keywords(other_ehlo))
            quick = Client(self, daemon.port, "127.0.0.3")
            quick.reply()
            quick_ehlo = quick.command("EHLO quick.example")
            self.assertLess(quick.elapsed(), PROMPT)
            self.assertIn("PIPELINING", keywords(quick_ehlo))
            self.assertNotIn("CHUNKING", keywords(quick_ehlo))
            slow_ehlo = slow.reply()
            self.assertGreater(slow.elapsed(), DELAY)
            self.assertEqual(slow_ehlo[0], "250-mx.test.example Hello slow.client.hl.test "
                                           "[127.0.0.1]")
            self.assertIn("PIPELINING", keywords(slow_ehlo))
            self.assertNotIn("CHUNKING", keywords(slow_ehlo))
            # the name is kept: a second EHLO asks no more
            slow.started = time.monotonic()
            self.assertEqual(slow.command("EHLO slow.example"), slow_ehlo)
            self.assertLess(slow.elapsed(), PROMPT)
        return self.in_thread(run)

    def test_forward_lookup_in_order(self):
        """A plain host name is looked up forwards, and only when the list
        gets to it: 127.0.0.2 matches the address before it and is answered
        at once; 127.0.0.1 waits for late.slowfwd.hl.test, which is its
        address, and is offered DSN."""
        daemon = self.daemon("dsn_advertise_hosts = 127.0.0.2 : late.slowfwd.hl.test\n")

        def run():
            slow = Client(self, daemon.port, "127.0.0.1")
            slow.reply()
            slow.sock.sendall(b"EHLO slow.example\r\n")
            time.sleep(0.3)
            other = Client(self, daemon.port, "127.0.0.2")
            other.reply()
            self.assertIn("DSN", keywords(other.command("EHLO other.example")))
            self.assertLess(other.elapsed(), PROMPT)
            slow_ehlo = slow.reply()
            self.assertGreater(slow.elapsed(), DELAY)
            self.assertIn("DSN", keywords(slow_ehlo))
        return self.in_thread(run)

    def test_session_start_lists(self):
        """sender_unqualified_hosts and recipient_unqualified_hosts are
        checked as the session starts, as Exim does: the slow client's
        banner waits for its name, the other's does not; the slow client,
        in the lists by name, may then use unqualified addresses and the
        other may not."""
        daemon = self.daemon("sender_unqualified_hosts = *.client.hl.test\n"
                             "recipient_unqualified_hosts = *.client.hl.test\n")

        def run():
            slow = Client(self, daemon.port, "127.0.0.1")
            time.sleep(0.3)
            other = Client(self, daemon.port, "127.0.0.2")
            self.assertTrue(other.reply()[0].startswith("220 "))
            other.command("EHLO other.example")
            self.assertEqual(other.command("MAIL FROM:<someone>"),
                             ["501 <someone>: sender address must contain a domain"])
            self.assertLess(other.elapsed(), PROMPT)
            self.assertTrue(slow.reply()[0].startswith("220 "))
            self.assertGreater(slow.elapsed(), DELAY)
            slow.command("EHLO slow.example")
            self.assertEqual(slow.command("MAIL FROM:<someone>"), ["250 OK"])
            self.assertEqual(slow.command("RCPT TO:<postmaster>"), ["250 Accepted"])
        return self.in_thread(run)

    def test_helo_lists(self):
        """helo_accept_junk_hosts by name: junk in EHLO is taken from the
        slow client once its name is known, and refused from the other,
        which is answered while the slow one waits."""
        daemon = self.daemon("helo_accept_junk_hosts = *.client.hl.test\n")

        def slow_dialogue(slow):
            slow.reply()
            return slow.command("EHLO junk_name!")

        def other_dialogue(other):
            other.reply()
            self.assertEqual(other.command("EHLO junk_name!"),
                             ["501 Syntactically invalid EHLO argument(s)"])

        slow_ehlo = self.alongside(daemon, slow_dialogue, other_dialogue)
        return slow_ehlo.addCallback(lambda reply: self.assertTrue(reply[0].startswith("250-"), reply))

    def test_nonmail_list(self):
        """smtp_accept_max_nonmail_hosts by name: the other client, not in
        the list, may send more non-mail commands than the limit while the
        slow one waits; the slow one, in it, is cut off at the limit."""
        daemon = self.daemon("smtp_accept_max_nonmail = 2\n"
                             "smtp_accept_max_nonmail_hosts = *.client.hl.test\n")

        def slow_dialogue(slow):
            slow.reply()
            return [slow.command("NOOP") for _ in range(3)]

        def other_dialogue(other):
            other.reply()
            for _ in range(4):
                self.assertEqual(other.command("NOOP"), ["250 OK"])

        d = self.alongside(daemon, slow_dialogue, other_dialogue)
        return d.addCallback(self.assertEqual, [["250 OK"], ["250 OK"], ["554 Too many nonmail commands"]])

    def test_hosts_proxy(self):
        """hosts_proxy by name: the proxy at 127.0.0.1 waits for its name
        before its PROXY header is read, while a client outside the list
        is greeted at once (its name, found for the check, stays, as in
        Exim).  The proxied client is then the session's host, and the
        proxy's name is not taken for the client's."""
        daemon = self.daemon("hosts_proxy = *.client.hl.test\n")

        def slow_dialogue(slow):
            slow.sock.sendall(b"PROXY TCP4 192.0.2.1 127.0.0.1 40001 25\r\n")
            slow.reply()
            return slow.command("EHLO proxied.example")[0]

        def other_dialogue(other):
            other.reply()
            self.assertEqual(other.command("EHLO other.example")[0],
                             "250-mx.test.example Hello quick.other.hl.test [127.0.0.2]")

        d = self.alongside(daemon, slow_dialogue, other_dialogue)
        return d.addCallback(self.assertEqual, "250-mx.test.example Hello proxied.example [192.0.2.1]")

    def test_acl_hosts_condition(self):
        """A name pattern in an ACL's hosts condition (the MAIL ACL here)
        is checked with the ACL, in a thread: the slow client's MAIL waits
        for its name and is refused; the other's is accepted meanwhile."""
        daemon = self.daemon("acl_smtp_mail = accept hosts = !*.client.hl.test\n")

        def dialogue(client):
            client.reply()
            client.command("EHLO client.example")
            return client.command("MAIL FROM:<someone@example.com>")

        def other_dialogue(other):
            self.assertEqual(dialogue(other), ["250 OK"])

        d = self.alongside(daemon, dialogue, other_dialogue)
        return d.addCallback(self.assertEqual, ["550 Administrative prohibition"])

    def tls_daemon(self, extra):
        keys = pki.standard()
        self.addCleanup(shutil.rmtree, keys.dir, True)
        return self.daemon("tls_certificate = %s\ntls_privatekey = %s\n%s"
                           % (keys.ecdsa.chain_path, keys.ecdsa.key_path, extra))

    def test_help_lists_starttls(self):
        """HELP names STARTTLS for a host in tls_advertise_hosts: the slow
        client's HELP waits for its name (and gets STARTTLS), the other's
        is answered meanwhile (without)."""
        daemon = self.tls_daemon("tls_advertise_hosts = *.client.hl.test\n")

        def slow_dialogue(slow):
            slow.reply()
            return slow.command("HELP")

        def other_dialogue(other):
            other.reply()
            self.assertEqual(other.command("HELP"), [
                "214-Commands supported:",
                "214 AUTH HELO EHLO MAIL RCPT DATA BDAT NOOP QUIT RSET HELP"])

        d = self.alongside(daemon, slow_dialogue, other_dialogue)
        return d.addCallback(self.assertEqual, [
            "214-Commands supported:",
            "214 AUTH STARTTLS HELO EHLO MAIL RCPT DATA BDAT NOOP QUIT RSET HELP"])

    def test_starttls_verify_list(self):
        """tls_verify_hosts by name, checked as STARTTLS sets up the
        handshake: the slow client waits for its name there, and, in the
        list without a certificate, fails the handshake; the other, not in
        it, gets TLS meanwhile."""
        daemon = self.tls_daemon("tls_verify_hosts = *.client.hl.test\n")

        def starttls(client):
            client.reply()
            client.command("EHLO client.example")
            go_ahead = client.command("STARTTLS")
            try:
                wrapped = _client_context().wrap_socket(client.sock)
                # TLS 1.3: a refused client certificate shows at the first read
                wrapped.sendall(b"NOOP\r\n")
                answer = wrapped.recv(100)
            except (ssl.SSLError, OSError) as e:
                answer = type(e).__name__
            return go_ahead, answer

        def other_dialogue(other):
            self.assertEqual(starttls(other), (["220 TLS go ahead"], b"250 OK\r\n"))

        d = self.alongside(daemon, starttls, other_dialogue)
        return d.addCallback(lambda result: self.assertEqual(result[0], ["220 TLS go ahead"])
                             or self.assertNotEqual(result[1], b"250 OK\r\n"))

    def test_tls_on_connect_verify_list(self):
        """The same list on a TLS-on-connect port, checked before the
        handshake: the slow client's handshake waits for its name (and
        fails, without a certificate), the other's goes through at once."""
        keys = pki.standard()
        self.addCleanup(shutil.rmtree, keys.dir, True)
        daemon = DaemonProcess(self, "queue_only\nhost_lookup =\ndns_nameservers = %s\n"
                                     "tls_certificate = %s\ntls_privatekey = %s\n"
                                     "tls_verify_hosts = *.client.hl.test\n"
                               % (self.dns.nameservers, keys.ecdsa.chain_path, keys.ecdsa.key_path))
        with open(daemon.conf_path) as f:
            text = f.read()
        with open(daemon.conf_path, "w") as f:
            f.write(text.replace("begin acl", "tls_on_connect_ports = %d\nbegin acl" % daemon.port, 1))
        daemon.start()
        self.addCleanup(daemon.stop)

        def banner_over_tls(client):
            try:
                wrapped = _client_context().wrap_socket(client.sock)
                return wrapped.recv(100)
            except (ssl.SSLError, OSError) as e:
                return type(e).__name__.encode()

        def other_dialogue(other):
            self.assertTrue(banner_over_tls(other).startswith(b"220 "))

        d = self.alongside(daemon, banner_over_tls, other_dialogue)
        return d.addCallback(lambda banner: self.assertFalse(banner.startswith(b"220 "), banner))

    def alongside(self, daemon, slow_dialogue, other_dialogue):
        """Run ``slow_dialogue(client)`` from 127.0.0.1, which waits on the
        DNS at some point, and meanwhile ``other_dialogue(client)`` from
        127.0.0.2, which must be over promptly.  Fires with what the slow
        dialogue returned, which took longer than DELAY."""
        slow = Client(self, daemon.port, "127.0.0.1")
        slow_done = threads.deferToThread(slow_dialogue, slow)

        def other():
            time.sleep(0.3)                 # the slow session waits by now
            client = Client(self, daemon.port, "127.0.0.2")
            other_dialogue(client)
            self.assertLess(client.elapsed(), PROMPT)

        def slow_result(result):
            self.assertGreater(slow.elapsed(), DELAY)
            return result
        return threads.deferToThread(other).addCallback(lambda _: slow_done).addCallback(slow_result)


class DeferTests(unittest.TestCase):
    """A forward lookup that gets SERVFAIL is a DEFER: Exim advertises an
    extension whose list it checks for "not FAIL" (CHUNKING, DSN) and not
    one it checks for "OK" (PIPELINING)."""

    def test_deferred_forward_lookup(self):
        """EHLO under -bh, the lists naming a host under servfail.test."""
        dns = DNSServer().start()
        self.addCleanup(dns.stop)
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("primary_hostname = mx.test.example\nkeep_environment =\nhost_lookup =\n"
                    "dns_nameservers = %s\n"
                    "pipelining_advertise_hosts = a.servfail.test\n"
                    "chunking_advertise_hosts = a.servfail.test\n"
                    "dsn_advertise_hosts = a.servfail.test\n" % dns.nameservers)
        ours = run_exim_py(["-C", path, "-bh", "192.0.2.9"], input="EHLO x.example\r\nQUIT\r\n")
        lines = [line[4:] for line in ours.stdout.splitlines() if line.startswith("250")]
        self.assertIn("DSN", lines, ours.stdout)
        self.assertIn("CHUNKING", lines)
        self.assertNotIn("PIPELINING", lines)


def replies(text):
    """The reply lines of a -bh transcript, the banner's date left out."""
    return [re.sub(r"\w{3}, \d\d \w{3} \d{4} [\d:]{8} [+-]\d{4}", "DATE", line)
            for line in text.splitlines() if line[:3].isdigit()]


class AgainstEximTests(unittest.TestCase):
    """The same lists, names from /etc/hosts, against exim4 -bh 127.0.0.1:
    "localhost" is found forwards (from /etc/hosts) and matches; the name
    patterns need a reverse lookup that fails (localhost is not confirmed
    by the DNS), so they do not match, unless +include_unknown says so."""

    def test_lists_match_exim(self):
        """EHLO keywords, junk HELO, unqualified addresses and the
        non-mail limit, reply for reply."""
        exim = RealExim()
        self.addCleanup(exim.cleanup)
        path = exim.write_config(
            "primary_hostname = mx.test.example\nkeep_environment =\nhost_lookup =\n"
            "pipelining_advertise_hosts = *.nowhere.test\n"
            "chunking_advertise_hosts = localhost\n"
            "dsn_advertise_hosts = +include_unknown : *.nowhere.test\n"
            "pipelining_connect_advertise_hosts = :\nsmtputf8_advertise_hosts =\n"
            "helo_accept_junk_hosts = localhost\n"
            "sender_unqualified_hosts = *.nowhere.test\n"
            "recipient_unqualified_hosts = localhost\n"
            "smtp_accept_max_nonmail = 1\n"
            "smtp_accept_max_nonmail_hosts = !localhost : *\n"
            "acl_smtp_rcpt = accept\n")
        dialogue = ("EHLO junk_name!\r\nNOOP\r\nNOOP\r\nMAIL FROM:<someone>\r\n"
                    "MAIL FROM:<someone@else.example>\r\nRCPT TO:<postmaster>\r\nQUIT\r\n")
        theirs = exim.run(path, ["-bh", "127.0.0.1"], input=dialogue)
        ours = run_exim_py(["-C", path, "-bh", "127.0.0.1"], input=dialogue)
        self.assertIn("250-CHUNKING", replies(theirs.stdout))
        self.assertIn("250-DSN", replies(theirs.stdout))
        self.assertEqual(replies(ours.stdout), replies(theirs.stdout), ours.stderr)
