"""The text of Exim's -H spool file: an Envelope to bytes and back.

Spec chapter "Format of spool files".  The writer follows the order and
spelling of the lines Exim 4.96 writes (checked field by field against real
``exim4`` in tests/test_spool_exim.py); the reader accepts what any Exim 4
release writes: lines it does not know are kept in ``spool_extra`` and
written back unchanged, and both ``ip.port`` and ``[ip]:port`` addresses are
understood.

Bytes that are not UTF-8 (8-bit headers from the wire) survive a round trip
through ``str`` by the ``surrogateescape`` error handler; header sizes count
bytes, as Exim's do.
"""

import re
import time

from exim_py.envelope import Envelope, Header, Recipient, Session

ENCODING = "utf-8"
ERRORS = "surrogateescape"

# DSN NOTIFY bits as Exim stores them in the recipient line (rf_notify_*).
DSN_BITS = (("NEVER", 0x02), ("SUCCESS", 0x04), ("FAILURE", 0x08), ("DELAY", 0x10))
DSN_RET = {"FULL": 1, "HDRS": 2}

# Boolean "-name" lines, in the order Exim 4.96 writes them (after the counts).
_EARLY_FLAGS = ("allow_unqualified_recipient", "allow_unqualified_sender")
_LATE_FLAGS = ("N", "host_lookup_deferred")
_LOCAL_FLAGS = ("local", "localerror")
_TRAILING_FLAGS = ("sender_set_untrusted",)


class SpoolFormatError(ValueError):
    """A -H file that cannot be understood (Exim's ERRNO_SPOOLFORMAT)."""


def encode(text):
    return text.encode(ENCODING, ERRORS)


def decode(data):
    return data.decode(ENCODING, ERRORS)


def dsn_flags(notify):
    """Exim's rf_notify bits for a NOTIFY= value such as ``"SUCCESS,DELAY"``."""
    if not notify:
        return 0
    words = {w.strip().upper() for w in notify.split(",")}
    return sum(bit for name, bit in DSN_BITS if name in words)


def dsn_notify(flags):
    names = [name for name, bit in DSN_BITS if flags & bit]
    return ",".join(names) if names else None


def _address(host, port):
    # Exim 4.96 writes [ip]:port for both families.
    return "[%s]:%s" % (host, port if port is not None else 0)


def _parse_address(text):
    """``[ip]:port`` (4.96) or ``ip.port`` (older) → (ip, port)."""
    m = re.match(r"^\[([^\]]*)\]:(\d+)$", text)
    if m:
        return m.group(1), int(m.group(2))
    ip, _, port = text.rpartition(".")
    if port.isdigit() and ip:
        return ip, int(port)
    return text, None


def _short_acl_name(name, prefix):
    # acl_m_foo is written "-aclm _foo", acl_c0 is written "-aclc 0".
    return name[len(prefix):] if name.startswith(prefix) else name


def tree_lines(addresses):
    """The non-recipients tree as Exim writes it: a balanced tree, node first.

    Exim searches the tree it reads back with a byte comparison, so any
    balanced binary search tree over the sorted addresses is a valid file.
    """
    ordered = sorted(addresses, key=encode)
    out = []

    def walk(lo, hi):
        if lo >= hi:
            return
        mid = (lo + hi) // 2
        out.append("%s%s %s" % ("Y" if mid > lo else "N", "Y" if mid + 1 < hi else "N", ordered[mid]))
        walk(lo, mid)
        walk(mid + 1, hi)

    walk(0, len(ordered))
    return out or ["XX"]


def recipient_line(r):
    flags = dsn_flags(r.dsn_notify)
    if r.pno < 0 and r.errors_to is None and flags == 0 and r.orcpt is None:
        return r.address
    orcpt = r.orcpt or ""
    errors_to = r.errors_to or ""
    return "%s %s %d,%d %s %d,%d#3" % (r.address, orcpt, len(encode(orcpt)), flags,
                                       errors_to, len(encode(errors_to)), r.pno)


def parse_recipient(line):
    """One recipient line, in any of the forms Exim 4 writes."""
    m = re.search(r"#(\d+)$", line)
    if not m:
        # Pre-4.x "one time" form: address followed by a parent number.
        m2 = re.match(r"^(.*) (\d+)$", line)
        if m2 and "@" in m2.group(1):
            return Recipient(m2.group(1), pno=int(m2.group(2)))
        return Recipient(line)
    bits = int(m.group(1))
    rest = line[:m.start()]
    data = encode(rest)
    errors_to = orcpt = None
    pno = -1
    notify_bits = 0
    if bits & 1:
        m1 = re.search(rb" (\d+),(-?\d+)$", data)
        if not m1:
            raise SpoolFormatError("bad recipient line %r" % line)
        length, pno = int(m1.group(1)), int(m1.group(2))
        data = data[:m1.start()]
        errors_to = decode(data[len(data) - length:]) if length else None
        data = data[:len(data) - length - 1]
    if bits & 2:
        m2 = re.search(rb" (\d+),(\d+)$", data)
        if not m2:
            raise SpoolFormatError("bad recipient line %r" % line)
        length, notify_bits = int(m2.group(1)), int(m2.group(2))
        data = data[:m2.start()]
        orcpt = decode(data[len(data) - length:]) if length else None
        data = data[:len(data) - length - 1]
    return Recipient(decode(data), dsn_notify=dsn_notify(notify_bits), orcpt=orcpt,
                     errors_to=errors_to, pno=pno)


def _value_lines(name, value, tainted=False):
    return ["%s%s %s" % ("--" if tainted else "-", name, value)]


def format_header_file(env):
    """The complete -H file for ``env`` (which must have its message_id) as bytes."""
    s = env.session
    rt = env.received_time
    seconds = int(rt)
    lines = [
        "%s-H" % env.message_id,
        "%s %d %d" % ((s.caller_name or "")[:63], s.caller_uid or 0, s.caller_gid or 0),
        "<%s>" % (env.sender or ""),
        "%d %d" % (seconds, env.warning_count),
        "-received_time_usec .%06d" % int(round((rt - seconds) * 1e6) % 1000000),
    ]
    complete = env.spool_extra.get("received_time_complete")
    if complete is None:
        complete = "%.6f" % max(time.time(), rt)
    lines.append("-received_time_complete %s" % complete)
    lines += _connection_lines(env)
    lines += _acl_variable_lines(env)
    lines += _status_lines(env)
    lines += _tls_lines(env)
    lines += _message_option_lines(env)
    lines += tree_lines(env.non_recipients)
    lines.append("%d" % len(env.recipients))
    lines += [recipient_line(r) for r in env.recipients]
    lines.append("")
    out = [encode("\n".join(lines) + "\n")]
    for h in env.headers:
        data = encode(h.text)
        out.append(b"%03d%s %s" % (len(data), encode(h.flag or " "), data))
    return b"".join(out)


def _connection_lines(env):
    """Where the message came from: HELO, addresses, authenticator, ident, protocol."""
    s = env.session
    lines = []
    # Values that came from the network are tainted: Exim marks them "--".
    # The connection's addresses are not, unless they were given on the
    # command line (-oMa, -oMi: Session.origin_tainted).
    origin_tainted = getattr(s, "origin_tainted", False)
    if s.helo_name:
        lines += _value_lines("helo_name", s.helo_name, True)
    if s.sender_host_address:
        lines += _value_lines("host_address", _address(s.sender_host_address, s.sender_host_port),
                              origin_tainted)
        if s.sender_host_name:
            lines += _value_lines("host_name", s.sender_host_name, True)
        if s.auth_mechanism:
            lines += _value_lines("host_auth", s.auth_mechanism)
            pubname = getattr(s, "auth_public_name", None) or env.spool_extra.get("host_auth_pubname")
            if pubname:
                lines += _value_lines("host_auth_pubname", pubname)
    if s.interface_address:
        lines += _value_lines("interface_address", _address(s.interface_address, s.interface_port),
                              origin_tainted)
    if "active_hostname" in env.spool_extra:
        lines += _value_lines("active_hostname", env.spool_extra["active_hostname"])
    if s.sender_ident:
        lines += _value_lines("ident", s.sender_ident)
    if s.received_protocol:
        lines += _value_lines("received_protocol", s.received_protocol)
    return lines


def _acl_variable_lines(env):
    """ACL variables: a name and length line, then the value (which may hold newlines)."""
    s = env.session
    lines = []
    for kind, variables in (("aclc", s.acl_c), ("aclm", env.acl_m)):
        prefix = "acl_" + kind[-1]
        for name in sorted(variables, key=lambda n: _short_acl_name(n, prefix)):
            value = variables[name]
            value = "" if value is None else str(value)
            lines.append("-%s %s %d" % (kind, _short_acl_name(name, prefix), len(encode(value))))
            lines.append(value)
    return lines


def _status_lines(env):
    """Body counts, AUTH identities and the boolean and scanning flags."""
    s = env.session
    lines = []
    if "spool_file_wireformat" in env.flags:
        lines.append("-spool_file_wireformat")
    else:
        lines.append("-body_linecount %d" % env.body_linecount)
    lines.append("-max_received_linelength %d" % env.max_received_linelength)
    if env.body_zerocount > 0:
        lines.append("-body_zerocount %d" % env.body_zerocount)
    # AUTH data that came over SMTP is tainted; a local caller's login is not.
    smtp_auth = s.received_protocol not in (None, "local")
    if s.authenticated_id:
        lines += _value_lines("auth_id", s.authenticated_id, smtp_auth)
    sender_auth = env.auth_sender or s.authenticated_sender
    if sender_auth:
        lines += _value_lines("auth_sender", sender_auth, smtp_auth)
    lines += ["-" + f for f in _EARLY_FLAGS if f in env.flags]
    if env.deliver_firsttime:
        lines.append("-deliver_firsttime")
    if env.frozen:
        # The time of freezing; a message frozen just now has none recorded yet.
        lines.append("-frozen %d" % int(env.spool_extra.get("frozen") or time.time()))
    lines += ["-" + f for f in _LATE_FLAGS if f in env.flags]
    if env.host_lookup_failed:
        lines.append("-host_lookup_failed")
    lines += ["-" + f for f in _LOCAL_FLAGS if f in env.flags]
    if env.local_scan_data:
        lines += _value_lines("local_scan", env.local_scan_data)
    for name in ("spam_bar", "spam_score"):
        if name in env.spool_extra:
            lines += _value_lines(name, env.spool_extra[name])
    if env.spam_score_int is not None:
        lines += _value_lines("spam_score_int", env.spam_score_int)
    if env.manual_thaw:
        lines.append("-manual_thaw")
    lines += ["-" + f for f in _TRAILING_FLAGS if f in env.flags]
    return lines


def _tls_lines(env):
    """The TLS session the message arrived over."""
    s = env.session
    lines = []
    if s.tls_certificate_verified:
        lines.append("-tls_certificate_verified")
    if s.tls_cipher:
        lines += _value_lines("tls_cipher", s.tls_cipher)
    # What the client sent in TLS (its certificate, its DN, SNI) is tainted.
    if "tls_peercert" in env.spool_extra:
        lines += _value_lines("tls_peercert", env.spool_extra["tls_peercert"], True)
    if s.tls_peerdn:
        lines += _value_lines("tls_peerdn", s.tls_peerdn, True)
    if s.tls_sni:
        lines += _value_lines("tls_sni", s.tls_sni, True)
    if "tls_ourcert" in env.spool_extra:
        lines += _value_lines("tls_ourcert", env.spool_extra["tls_ourcert"])
    if s.tls_ocsp:
        lines += _value_lines("tls_ocsp", s.tls_ocsp)
    lines.append("-tls_resumption %s" % env.spool_extra.get("tls_resumption", "A"))
    if s.tls_cipher and s.tls_version:
        lines += _value_lines("tls_ver", s.tls_version)
    return lines


def _message_option_lines(env):
    """SMTPUTF8, DSN and the unknown lines kept from a file that was read."""
    lines = []
    if env.smtputf8:
        lines.append("-smtputf8")
        for f in ("utf8_downcvt", "utf8_optdowncvt"):
            if f in env.flags:
                lines.append("-" + f)
    if env.dsn_envid:
        lines += _value_lines("dsn_envid", env.dsn_envid)
    if env.dsn_ret:
        lines.append("-dsn_ret %d" % DSN_RET.get(str(env.dsn_ret).upper(), 0))
    for name, value in env.spool_extra.items():
        if name not in _WRITTEN_EXTRAS:
            tainted = name in env.spool_tainted
            lines += _value_lines(name, value, tainted) if value is not None else \
                ["%s%s" % ("--" if tainted else "-", name)]
    return lines


_WRITTEN_EXTRAS = {"received_time_complete", "active_hostname", "host_auth_pubname", "frozen", "spam_bar", "spam_score",
                   "tls_peercert", "tls_ourcert", "tls_resumption"}


def headers_size(env):
    """Bytes of the live headers (deleted '*' ones do not count), as Exim's message_size."""
    return sum(len(encode(h.text)) for h in env.headers if h.flag != "*")


# "-name" lines that set an Envelope attribute to True, and "-name value" lines
# stored as they are.
_TRUE_ATTRIBUTES = {"deliver_firsttime": "deliver_firsttime", "manual_thaw": "manual_thaw",
                    "host_lookup_failed": "host_lookup_failed", "smtputf8": "smtputf8"}
_VALUE_ATTRIBUTES = {"local_scan": "local_scan_data", "spam_score_int": "spam_score_int",
                     "dsn_envid": "dsn_envid"}


def _apply_option(env, name, value):
    """Set what one "-name value" line of the -H file says."""
    s = env.session
    simple_session = {"helo_name": "helo_name", "host_name": "sender_host_name",
                      "ident": "sender_ident", "received_protocol": "received_protocol",
                      "auth_id": "authenticated_id", "host_auth": "auth_mechanism",
                      "tls_cipher": "tls_cipher", "tls_peerdn": "tls_peerdn", "tls_ver": "tls_version",
                      "tls_sni": "tls_sni", "tls_ocsp": "tls_ocsp"}
    if name in simple_session:
        setattr(s, simple_session[name], value)
    elif name == "host_address":
        s.sender_host_address, s.sender_host_port = _parse_address(value)
        s.local = False
    elif name == "interface_address":
        s.interface_address, s.interface_port = _parse_address(value)
    elif name == "auth_sender":
        env.auth_sender = s.authenticated_sender = value
    elif name in ("body_linecount", "body_zerocount", "max_received_linelength"):
        setattr(env, name, int(value))
    elif name == "received_time_usec":
        env.received_time = int(env.received_time) + float(value or 0)
    elif name in _TRUE_ATTRIBUTES:
        setattr(env, _TRUE_ATTRIBUTES[name], True)
    elif name in _VALUE_ATTRIBUTES:
        setattr(env, _VALUE_ATTRIBUTES[name], value)
    elif name == "frozen":
        env.frozen = True
        env.spool_extra["frozen"] = value
    elif name == "tls_certificate_verified":
        s.tls_certificate_verified = True
    elif name == "dsn_ret":
        env.dsn_ret = {1: "FULL", 2: "HDRS"}.get(int(value or 0))
    elif value is None and name in (_EARLY_FLAGS + _LATE_FLAGS + _LOCAL_FLAGS + _TRAILING_FLAGS
                                    + ("spool_file_wireformat", "utf8_downcvt", "utf8_optdowncvt")):
        env.flags.add(name)
    else:
        env.spool_extra[name] = value


def parse_header_file(data, message_id=None):
    """An Envelope from the bytes of a -H file; raises SpoolFormatError."""
    pos = 0

    def line():
        nonlocal pos
        end = data.find(b"\n", pos)
        if end < 0:
            raise SpoolFormatError("truncated -H file")
        text = decode(data[pos:end])
        pos = end + 1
        return text

    env = Envelope(Session())
    env.deliver_firsttime = False
    first = line()
    if not first.endswith("-H") or (message_id and first[:-2] != message_id):
        raise SpoolFormatError("-H file does not start with its own name")
    env.message_id = first[:-2]
    s = env.session
    parts = line().rsplit(" ", 2)
    if len(parts) != 3:
        raise SpoolFormatError("bad originator line")
    s.caller_name, s.caller_uid, s.caller_gid = parts[0], int(parts[1]), int(parts[2])
    sender = line()
    if not (sender.startswith("<") and sender.endswith(">")):
        raise SpoolFormatError("bad sender line")
    env.sender = sender[1:-1]
    times = line().split()
    env.received_time = float(int(times[0]))
    env.warning_count = int(times[1]) if len(times) > 1 else 0
    s.local = True
    while True:
        text = line()
        if not text.startswith("-"):
            break
        tainted = text.startswith("--")
        body = text[2:] if tainted else text[1:]
        m = re.match(r"^\(\w+\)", body)    # "(quoter)" marks quoted data: not needed here
        if m:
            body = body[m.end():]
        name, sep, value = body.partition(" ")
        if name in ("aclc", "aclm", "acl"):
            var, _, length = value.rpartition(" ")
            length = int(length)
            raw = data[pos:pos + length]
            pos += length + 1
            if name == "acl":   # pre-4.61: numbered 0-9 connection, 10-19 message
                n = int(var)
                target, key = (s.acl_c, "acl_c%d" % n) if n < 10 else (env.acl_m, "acl_m%d" % (n - 10))
            else:
                target = s.acl_c if name == "aclc" else env.acl_m
                key = "acl_" + name[-1] + var
            target[key] = decode(raw)
            continue
        _apply_option(env, name, value if sep else None)
        if tainted and name in env.spool_extra:
            env.spool_tainted.add(name)
        if name in ("host_address", "interface_address") and tainted:
            s.origin_tainted = True
    env.non_recipients = set()
    if text != "XX":
        _read_tree(text, line, env.non_recipients)
    text = line()
    try:
        count = int(text)
    except ValueError:
        raise SpoolFormatError("bad recipient count %r" % text)
    env.recipients = [parse_recipient(line()) for _ in range(count)]
    if line() != "":
        raise SpoolFormatError("no blank line after the recipients")
    env.headers = []
    while pos < len(data):
        m = re.compile(rb"(\d{3,})(.) ").match(data, pos)
        if not m:
            raise SpoolFormatError("bad header size at offset %d" % pos)
        size = int(m.group(1))
        start = m.end()
        env.headers.append(Header(decode(data[start:start + size]), decode(m.group(2))))
        pos = start + size
    return env


def _read_tree(first, line, into):
    """Read the tree whose root line is ``first``: node, left subtree, right subtree."""
    def node(text):
        if len(text) < 3 or text[0] not in "YN" or text[1] not in "YN":
            raise SpoolFormatError("bad non-recipients tree line %r" % text)
        into.add(text[3:])
        if text[0] == "Y":
            node(line())
        if text[1] == "Y":
            node(line())
    node(first)
