"""Per-connection and per-transaction state: Session and Envelope.

A Session lives as long as one SMTP connection (or one local submission); an
Envelope lives for one message transaction.  RSET and the end of DATA replace
only the Envelope.  The Envelope holds exactly what the spool's -H file
stores, so receiving code fills it and spool code writes it, and the delivery
engine reads it back the same way.
"""

import time


class Recipient:
    """One envelope recipient, with its DSN parameters (RFC 3461)."""

    __slots__ = ("address", "dsn_notify", "orcpt", "errors_to", "pno")

    def __init__(self, address, dsn_notify=None, orcpt=None, errors_to=None, pno=-1):
        self.address = address
        self.dsn_notify = dsn_notify   # e.g. "SUCCESS,FAILURE", "NEVER", or None if not given
        self.orcpt = orcpt             # "rfc822;user@example" or None
        self.errors_to = errors_to
        self.pno = pno                 # parent number for one_time redirection (-1: none)

    def __repr__(self):
        return "Recipient(%r)" % (self.address,)

    def __eq__(self, other):
        return isinstance(other, Recipient) and self.address == other.address


class Header:
    """One header line as Exim's spool keeps it: its full text and a type flag.

    ``text`` includes the name, the colon and the trailing newline, folded
    lines included.  ``flag`` is Exim's one-character header type (spec
    chapter "Format of spool files"): ' ' for a header Exim has no special
    interest in, '*' for one replaced or deleted, 'B' Bcc, 'C' Cc, 'F' From,
    'I' Message-id, 'P' Received ("postmark"), 'R' Reply-To, 'S' Sender,
    'T' To.
    """

    __slots__ = ("text", "flag")

    def __init__(self, text, flag=" "):
        self.text = text
        self.flag = flag

    @property
    def name(self):
        return self.text.split(":", 1)[0].strip()

    @property
    def value(self):
        return self.text.split(":", 1)[1] if ":" in self.text else ""

    def __repr__(self):
        return "Header(%r, %r)" % (self.text, self.flag)


class Session:
    """What is known about the connection (or local caller) a message came from."""

    # Slots for what every session has: an instance with this many
    # attributes in a plain __dict__ costs ~1.5 kB, held by every idle SMTP
    # connection.  What other modules add later (connlog, helo checks...)
    # still goes to __dict__.
    __slots__ = ("sender_host_address", "sender_host_port", "sender_host_name",
                 "interface_address", "interface_port", "sender_ident", "helo_name", "esmtp",
                 "received_protocol", "authenticated_id", "authenticated_sender",
                 "authenticated_fail_id", "auth_mechanism", "tls_cipher", "tls_version",
                 "tls_peerdn", "tls_certificate_verified", "tls_sni", "tls_ocsp", "proxy",
                 "origin_tainted", "acl_c", "local", "caller_uid", "caller_gid", "caller_name",
                 "__dict__", "__weakref__")

    def __init__(self):
        self.sender_host_address = None
        self.sender_host_port = None
        self.sender_host_name = None
        self.interface_address = None
        self.interface_port = None
        self.sender_ident = None
        self.helo_name = None
        self.esmtp = False
        self.received_protocol = "local"
        self.authenticated_id = None
        self.authenticated_sender = None
        self.authenticated_fail_id = None
        self.auth_mechanism = None         # name of the authenticator that succeeded
        self.tls_cipher = None
        self.tls_version = None
        self.tls_peerdn = None
        self.tls_certificate_verified = False
        self.tls_sni = None
        self.tls_ocsp = None
        self.proxy = None                  # set by smtp/proxy.py when Proxy Protocol was used
        self.origin_tainted = False        # addresses came from -oMa/-oMi: -H marks them tainted
        self.acl_c = {}                    # $acl_c... connection variables
        self.local = True                  # locally submitted (not SMTP from a host)
        self.caller_uid = None
        self.caller_gid = None
        self.caller_name = None


def connection_variables(session):
    """The expansion variables a Session determines: ``$sender_host_*``,
    ``$sender_helo_name``, ``$sender_ident``, ``$received_protocol``,
    ``$interface_*`` and ``$authenticated_id``.  Shared by the ACL and
    delivery contexts, each of which adds its own."""
    return {
        "sender_host_address": session.sender_host_address or "",
        "sender_host_name": session.sender_host_name or "",
        "sender_host_port": str(session.sender_host_port or 0),
        "sender_helo_name": session.helo_name or "",
        "sender_ident": session.sender_ident or "",
        "received_protocol": session.received_protocol or "",
        "interface_address": session.interface_address or "",
        # Exim starts it at -1: no interface (-bm, -be)
        "interface_port": str(-1 if session.interface_port is None else session.interface_port),
        "authenticated_id": session.authenticated_id or "",
    }


class Envelope:
    """One message transaction: sender, recipients, headers, and the -H metadata."""

    def __init__(self, session=None):
        self.session = session if session is not None else Session()
        self.message_id = None
        self.sender = None                 # "" for the null sender <>
        self.recipients = []               # list of Recipient
        self.non_recipients = set()        # addresses already delivered (the -H tree)
        self.headers = []                  # list of Header
        self.received_time = time.time()
        self.body_linecount = 0
        self.body_zerocount = 0
        self.max_received_linelength = 0
        self.size = 0
        self.body_type = None              # "7BIT" / "8BITMIME" from MAIL BODY=
        self.smtputf8 = False
        self.dsn_envid = None
        self.dsn_ret = None                # "FULL" / "HDRS"
        self.auth_sender = None            # MAIL AUTH= value, once accepted
        self.acl_m = {}                    # $acl_m... message variables
        self.frozen = False
        self.deliver_firsttime = True
        self.local_scan_data = None
        self.host_lookup_failed = False
        self.manual_thaw = False
        self.spam_score_int = None
        self.prdr = False
        self.flags = set()                 # other -H flags as Exim names them
        self.warning_count = 0             # delay warnings sent (-H line 4)
        self.spool_extra = {}              # other "-name value" -H lines, kept as read
        self.spool_tainted = set()         # names in spool_extra read as tainted ("--name")
