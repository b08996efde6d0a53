"""What the ESMTP client is asked to send, and what it reports back.

``Transaction`` (one message: envelope and bytes), ``ClientSettings`` (how
to talk to one host), ``Outcome`` (what happened to one recipient) and
``SessionResult`` (one connection), plus the wire encodings the client needs:
CRLF line ends and dot-stuffing (RFC 5321 4.5.2) and xtext (RFC 3461 4).
These are plain classes so that the smtp transport, callouts and tests can
build and read them without a reactor.
"""

import errno

OK = "ok"
DEFER = "defer"
FAIL = "fail"

# Exim's internal error numbers for failures that are not system errors;
# they appear in log lines as "defer (-NN)".
ERRNO_SMTPCLOSED = -18
ERRNO_SMTPFORMAT = -17
ERRNO_TLSFAILURE = -37
ERRNO_TLSREQUIRED = -38
ERRNO_AUTHFAIL = -42
ERRNO_UTF8_FWD = -59
ERRNO_TIMEOUT = errno.ETIMEDOUT


def to_wire(data, dot_stuff=True):
    """Message bytes as SMTP sends them: CRLF line ends, dot-stuffed, ending in CRLF.

    RFC 5321 2.3.8 (lines end in CRLF) and 4.5.2 (a line that starts with a
    dot gets another dot).  BDAT content (RFC 3030) is not dot-stuffed.
    """
    data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if data and not data.endswith(b"\r\n"):
        data += b"\r\n"
    if dot_stuff:
        data = data.replace(b"\r\n.", b"\r\n..")
        if data.startswith(b"."):
            data = b"." + data
    return data


def xtext(value):
    """RFC 3461 4.1 xtext encoding, for ORCPT and ENVID."""
    out = []
    for ch in value:
        if "!" <= ch <= "~" and ch not in "+=":
            out.append(ch)
        else:
            out.extend("+%02X" % b for b in ch.encode("utf-8"))
    return "".join(out)


class Recipient:
    """One RCPT to send: address and the DSN parameters to pass on."""

    def __init__(self, address, dsn_notify=None, orcpt=None):
        self.address = address
        self.dsn_notify = dsn_notify
        self.orcpt = orcpt

    def __repr__(self):
        return "Recipient(%r)" % (self.address,)


class Transaction:
    """One message to send: the envelope and the bytes (header and body).

    ``data`` None makes a callout: the dialogue stops after the RCPT replies.
    ``size`` is the message size for SIZE= (size_addition is added here).
    """

    def __init__(self, sender, recipients, data=None, size=None, body_type=None,
                 smtputf8=False, dsn_envid=None, dsn_ret=None, auth_sender=None,
                 auth_sender_option=None, auth_sender_force=False):
        self.sender = sender
        self.recipients = [r if isinstance(r, Recipient) else Recipient(r) for r in recipients]
        self.data = data
        self.size = size if size is not None else (len(data) if data is not None else 0)
        self.body_type = body_type
        self.smtputf8 = smtputf8
        self.dsn_envid = dsn_envid
        self.dsn_ret = dsn_ret
        # AUTH= on MAIL (RFC 4954 5): the message's authenticated sender, or
        # what ``auth_sender_option(session_result)`` gives once TLS is up
        # (the smtp transport's authenticated_sender; it may raise
        # ExpansionError).  Sent only after AUTH succeeded, or when forced.
        self.auth_sender = auth_sender
        self.auth_sender_option = auth_sender_option
        self.auth_sender_force = auth_sender_force
        self.outcomes = {}          # address -> Outcome
        self.confirmation = None    # the reply to the end of data, for C= in the log
        self.prdr_requested = False  # PRDR was on the MAIL command
        self.prdr_used = False      # ... and the server answered the data with 353
        self.chunking_used = False
        self.dsn_passed = False     # DSN parameters were forwarded to the server


class Outcome:
    """What happened to one recipient on this host.

    ``kind`` tells the retry logic which hint to write: "host", "message"
    or "recipient" (spec, "Errors in outgoing SMTP"); ``stage`` which
    command's reply (or timeout) decided.  ``reply`` is the
    server's reply text, when there was one.
    """

    def __init__(self, status, message="", kind=None, reply=None, errno=0, code=None,
                 stage=None):
        self.status = status
        self.stage = stage          # the reply that decided: "mail", "rcpt", "dot" ...
        self.message = message
        self.kind = kind
        self.reply = reply
        self.errno = errno
        self.code = code

    def __repr__(self):
        return "Outcome(%s, %r)" % (self.status, self.message)


class ClientSettings:
    """Everything about how to talk to one host, decided before connecting.

    ``tls`` is None (no STARTTLS), "try" or "require"; ``tls_settings`` a
    ``tls_client.TLSClientSettings``; ``tls_on_connect`` starts TLS before
    the greeting (protocol = smtps) and requires it.  ``auth`` is None, "try" or "require";
    ``authenticators`` an ordered list of objects with ``public_name`` and
    ``client_start(server_mechanisms)`` returning a ``SASLClient`` (see
    ``smtp/sasl_client.py``) or None.
    """

    def __init__(self, helo_data="localhost", command_timeout=300, data_timeout=300,
                 final_timeout=600, esmtp=True, pipelining=True, chunking=True, prdr=True,
                 size_addition=1024, tls=None, tls_settings=None, tls_tempfail_tryclear=True,
                 auth=None, authenticators=(), max_rcpt=100, dsn=True, callout=False,
                 tls_on_connect=False, lmtp=False, ignore_quota=False, mua_wrapper=False):
        self.helo_data = helo_data
        self.command_timeout = command_timeout
        self.data_timeout = data_timeout
        self.final_timeout = final_timeout
        self.esmtp = esmtp
        self.pipelining = pipelining
        self.chunking = chunking
        self.prdr = prdr
        self.size_addition = size_addition
        self.tls = tls
        self.tls_settings = tls_settings
        self.tls_tempfail_tryclear = tls_tempfail_tryclear
        self.auth = auth
        self.authenticators = list(authenticators)
        self.max_rcpt = max_rcpt
        self.dsn = dsn
        self.callout = callout
        self.tls_on_connect = tls_on_connect   # protocol = smtps
        # protocol = lmtp (RFC 2033): LHLO, and a reply per recipient after
        # the data; ignore_quota adds IGNOREQUOTA to RCPT when offered.
        self.lmtp = lmtp
        self.ignore_quota = ignore_quota
        # mua_wrapper: all recipients or none; DATA only once every RCPT
        # has been accepted, so it is never pipelined.
        self.mua_wrapper = mua_wrapper


class SessionResult:
    """The outcome of one connection: per-recipient outcomes live on the transactions."""

    def __init__(self, transactions):
        self.transactions = transactions
        self.host_error = None      # Outcome for a host error, or None
        self.tls = None             # tls_client.TLSState once TLS is up
        self.retry_in_clear = False  # TLS negotiation failed; tls_tempfail_tryclear says retry
        self.authenticated = None   # public name of the mechanism that succeeded
        self.authenticator = None   # the authenticator object that succeeded
        self.extensions = {}
        self.greeting = None
        self.reused = False         # sent down a connection kept from earlier
        self.stale = False          # ... which the server had closed meanwhile
        self.continued = False      # ... which had carried another message (log: "*")

    def outcomes(self):
        """All (address, Outcome) pairs over every transaction."""
        for txn in self.transactions:
            for rcpt in txn.recipients:
                yield rcpt.address, txn.outcomes.get(rcpt.address)


def reply_text(code, lines):
    """A reply as Exim quotes it in messages: its lines, joined with newlines."""
    return "\n".join("%d%s%s" % (code, "-" if i < len(lines) - 1 else " ", line)
                     for i, line in enumerate(lines))


def split_by_max_rcpt(transactions, max_rcpt):
    """Transactions with at most ``max_rcpt`` recipients each (0: no limit).

    A message with more recipients is sent as several copies, each with its
    own MAIL transaction on the same connection (spec, option max_rcpt).
    """
    if not max_rcpt:
        return list(transactions)
    out = []
    for txn in transactions:
        if len(txn.recipients) <= max_rcpt:
            out.append(txn)
            continue
        for i in range(0, len(txn.recipients), max_rcpt):
            part = Transaction.__new__(Transaction)
            part.__dict__.update(txn.__dict__)
            part.recipients = txn.recipients[i:i + max_rcpt]
            part.outcomes = {}
            out.append(part)
    return out
