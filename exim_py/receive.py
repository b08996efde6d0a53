"""Turning received message bytes into what the spool stores.

Shared by the SMTP server and local (sendmail-style) submission: both hand
over the message as Exim stores it — dot-unstuffed, lines ending in LF — and
an Envelope; this module splits the header section from the body, types each
header line as the -H file does, counts what -H records about the body,
applies the changes Exim makes on input (spec chapter "Message processing":
Return-path:/Envelope-to:/Delivery-date: removal, Bcc: removal with -t, the
Message-ID:/Date:/From:/Sender: fixups for local and submission-mode
messages) and prepends the Received: header built from received_header_text.
"""

import email.utils
import functools
import os
import re

from exim_py.config.main_options import RECEIVED_HEADER_TEXT
from exim_py.envelope import Header, Recipient
from exim_py.expand.variables import tod, value_of

# One-letter header types of the -H file (spec chapter "Format of spool files").
HEADER_FLAGS = {"bcc": "B", "cc": "C", "from": "F", "message-id": "I", "received": "P",
                "reply-to": "R", "sender": "S", "to": "T"}
_HEADER_NAME = re.compile(rb"^[\x21-\x39\x3b-\x7e]+[ \t]*:")
# the same, for pattern.match(data, pos, end) on a line inside a buffer
_HEADER_NAME_AT = re.compile(rb"[\x21-\x39\x3b-\x7e]+[ \t]*:")


def header_flag(name):
    return HEADER_FLAGS.get(name.strip().lower(), " ")


def make_header(text):
    """A Header for ``text`` (name, colon, value; a final newline is added when missing)."""
    if not text.endswith("\n"):
        text += "\n"
    return Header(text, header_flag(text.split(":", 1)[0]))


def split_message(data, longest=None):
    """Message bytes → (list of Header, body bytes, longest line length).

    The header section ends at an empty line (which belongs to neither part)
    or at the first line that is neither a header nor a continuation: that
    line starts the body, as in Exim.  A missing final newline is supplied.
    ``longest``: the longest line, when the caller has measured it already
    (the SMTP server does while it unstuffs the data).
    """
    known = longest is not None
    if data and not data.endswith(b"\n"):
        data += b"\n"
    spans = []          # (start, end) of each header line with its continuations
    start = None
    header_end = 0      # just after the last header or continuation line
    pos = 0
    longest = longest or 0
    n = len(data)
    while pos < n:
        end = data.index(b"\n", pos)
        if start is not None and data[pos:pos + 1] in (b" ", b"\t"):
            pass            # a continuation: the header goes on
        elif end == pos:
            pos = end + 1   # the blank line ending the header
            break
        elif _HEADER_NAME_AT.match(data, pos, end):
            if start is not None:
                spans.append((start, header_end))
            start = pos
        else:
            break
        if not known:
            longest = max(longest, end - pos)
        pos = header_end = end + 1
    if start is not None:
        spans.append((start, header_end))
    body = data[pos:]
    if not known:
        longest = max(longest, max(map(len, body.split(b"\n"))))
    # a header's text is its lines as they are, each ending in LF
    out = []
    for first, last in spans:
        text = data[first:last].decode("utf-8", "surrogateescape")
        out.append(Header(text, header_flag(text[:text.index(":")])))
    return out, body, longest


def live_headers(headers, name):
    """The headers called ``name`` that are not deleted ('*')."""
    lname = name.lower()
    return [h for h in headers if h.flag != "*" and h.name.lower() == lname]


def addresses_in(headers, names, qualify_domain):
    """Addresses in the named header lines (for -t), qualified with ``qualify_domain``."""
    values = [h.value for name in names for h in live_headers(headers, name)]
    out = []
    for _, addr in email.utils.getaddresses(values):
        if not addr:
            continue
        if "@" not in addr and qualify_domain:
            addr = "%s@%s" % (addr, qualify_domain)
        out.append(addr)
    return out


def host_strings(session, incoming_port=False):
    """($sender_fullhost, $sender_rcvhost) as Exim builds them for a remote sender.

    The HELO name is shown only when it differs from the looked-up host name
    (ignoring case) and is not the IP literal of the connection; without a
    host name, $sender_fullhost shows the HELO name in parentheses.
    """
    ip = session.sender_host_address
    if not ip:
        return None, None
    # asked for twice per message (Received: and the <= line) with the same facts
    key = (ip, bool(incoming_port), session.sender_host_port if incoming_port else None,
           session.sender_host_name, session.helo_name, session.sender_ident)
    kept = getattr(session, "received_host_strings", None)
    if kept is not None and kept[0] == key:
        return kept[1]
    strings = _host_strings(session, ip, incoming_port)
    try:
        session.received_host_strings = (key, strings)
    except AttributeError:
        pass            # a session object that takes no new attributes
    return strings


def _host_strings(session, ip, incoming_port):
    address = "[%s]" % ip
    if incoming_port and session.sender_host_port is not None:
        address += ":%d" % session.sender_host_port
    name, helo, ident = session.sender_host_name, session.helo_name, session.sender_ident
    if not helo:
        fullhost = "%s %s" % (name, address) if name else address
        details = [address] if name else []
    else:
        literal = helo.strip("[]").lower().replace("ipv6:", "") == ip.lower() and helo.startswith("[")
        if name:
            show = helo.lower() != name.lower() and not literal
            fullhost = "%s (%s) %s" % (name, helo, address) if show else "%s %s" % (name, address)
            details = [address] + (["helo=%s" % helo] if show else [])
        else:
            fullhost = "(%s) %s" % (helo, address)
            details = [] if literal else ["helo=%s" % helo]
    if ident:
        details.append("ident=%s" % ident)
    if name:
        # Exim starts a new line when the comment carries both helo and ident.
        sep = "\n\t" if len(details) > 2 else " "
        rcvhost = "%s%s(%s)" % (name, sep, " ".join(details))
    else:
        # without a name the port goes inside the comment (spec, $sender_rcvhost)
        if incoming_port and session.sender_host_port is not None:
            address = "[%s]" % ip
            details.insert(0, "port=%d" % session.sender_host_port)
        rcvhost = address + (" (%s)" % " ".join(details) if details else "")
    return fullhost, rcvhost


def received_variables(env, incoming_port=False):
    """The variables received_header_text and the <= log line refer to."""
    s = env.session
    fullhost, rcvhost = host_strings(s, incoming_port)
    values = {
        "message_exim_id": env.message_id, "message_id": env.message_id,
        "sender_address": env.sender, "received_protocol": s.received_protocol,
        "sender_host_address": s.sender_host_address, "sender_host_port": s.sender_host_port,
        "sender_host_name": s.sender_host_name, "sender_helo_name": s.helo_name,
        "sender_ident": s.sender_ident, "sender_fullhost": fullhost, "sender_rcvhost": rcvhost,
        "received_ip_address": s.interface_address, "received_port": s.interface_port,
        "authenticated_id": s.authenticated_id, "authenticated_sender": env.auth_sender,
        "sender_host_authenticated": s.auth_mechanism,
        "tls_in_cipher": s.tls_cipher, "tls_in_cipher_std": s.tls_cipher and _std_cipher(s.tls_cipher),
        "tls_in_ver": s.tls_version, "tls_in_peerdn": s.tls_peerdn, "tls_in_sni": s.tls_sni,
        "received_for": env.recipients[0].address if len(env.recipients) == 1 else None,
        "recipients_count": len(env.recipients),
    }
    return {k: v for k, v in values.items() if v is not None}


def _std_cipher(cipher):
    # GnuTLS-style names ("TLS1.3:ECDHE_X25519__RSA_PSS_RSAE_SHA256__AES_256_GCM:256")
    # carry the version first; $tls_in_cipher_std is the cipher part alone.
    parts = cipher.split(":")
    return parts[1] if len(parts) >= 2 else cipher


def expansion_context(env, config, ctx=None):
    """An ExpandContext holding the variables of the message being received."""
    if ctx is None:
        from exim_py.expand import ExpandContext
        ctx = ExpandContext(config=config, headers=env.headers)
    # ExpandContext.set stores into ``variables``: one update sets them all
    ctx.variables.update(received_variables(env, _selector(config, "incoming_port")))
    return ctx


def received_header(env, config, now, expand=None, ctx=None):
    """The Received: header: received_header_text expanded, then ";\\n\\t" and the date."""
    if expand is None:
        from exim_py.expand import expand
    return _received_header(config, now, expand, expansion_context(env, config, ctx))


def _received_header(config, now, expand, ctx):
    """received_header for a context that holds the message's variables already."""
    option = config.main.received_header_text
    text = _default_received_text(ctx) if option == RECEIVED_HEADER_TEXT else None
    if text is None:
        text = expand(option, ctx)
    if not text:
        return None   # an empty expansion adds no Received: header (spec, received_header_text)
    return Header("%s;\n\t%s\n" % (text, tod("full", now)), "P")


def _default_received_text(ctx):
    """received_header_text's default, evaluated without walking its expansion:
    every message gets this header, and the default is what nearly every
    configuration uses.  The same text the expansion gives (the tests hold
    both to it); None for the rare case left to the engine, an ident with
    no host (``${quote_local_part:}``), or a value with a NUL in it."""
    variables = ctx.variables

    def value(name):
        found = variables.get(name)
        return found if found.__class__ is str else value_of(ctx, name)

    out = ["Received: "]
    rcvhost = value("sender_rcvhost")
    if rcvhost:
        out += ("from ", rcvhost, "\n\t")
    else:
        if value("sender_ident"):
            return None
        helo = value("sender_helo_name")
        if helo:
            out += ("(helo=", helo, ")\n\t")
    out += ("by ", value("primary_hostname"), " ")
    protocol = value("received_protocol")
    if protocol:
        out += ("with ", protocol, " ")
    version = value("tls_in_ver")
    if version:
        out += (" (", version, ")")
    cipher = value("tls_in_cipher_std")
    if cipher:
        out += (" tls ", cipher, "\n\t")
    out += ("(Exim ", value("version_number"), ")\n\t")
    sender = value("sender_address")
    if sender:
        out += ("(envelope-from <", sender, ">)\n\t")
    out += ("id ", value("message_exim_id"))
    received_for = value("received_for")
    if received_for:
        out += ("\n\tfor ", received_for)
    text = "".join(out)
    return None if "\0" in text else text


def _optional_expansion(option, expand, ctx):
    """An expandable option's value; unset, empty or forced failure give None."""
    from exim_py.errors import ForcedFail
    if not option:
        return None
    try:
        return expand(option, ctx) or None
    except ForcedFail:
        return None


def message_id_text(env, config, expand=None, ctx=None):
    """What goes between the brackets of a created Message-ID: (spec message_id_header_text/domain)."""
    if expand is None:
        from exim_py.expand import expand
    ctx = expansion_context(env, config, ctx)
    main = config.main
    domain = _optional_expansion(main.message_id_header_domain, expand, ctx)
    domain = re.sub(r"[^A-Za-z0-9.-]", "-", domain) if domain else _primary_hostname(config)
    text = _optional_expansion(main.message_id_header_text, expand, ctx)
    local = "E" + env.message_id
    if text:
        local += "." + re.sub(r"[^A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]", "-", text)
    return "%s@%s" % (local, domain)


def _selector(config, name):
    """Whether log_selector turns ``name`` on (incoming_port changes $sender_rcvhost too)."""
    return name in _selectors(config.main.log_selector)


@functools.lru_cache(maxsize=16)
def _selectors(text):
    """log_selector parsed once per setting, not once per message."""
    from exim_py.log import parse_selector
    return frozenset(parse_selector(text))


def count_body(env, body, longest):
    env.body_linecount = body.count(b"\n")
    env.body_zerocount = body.count(b"\0")
    env.max_received_linelength = longest


def remove_transit_headers(env, config):
    """Mark Return-path:, Envelope-to:, Delivery-date: as deleted (spec "Message processing")."""
    doomed, initials = _transit_headers(config.main)
    if not doomed:
        return
    for h in env.headers:
        # most headers are passed over on their first letter (each message
        # comes this way; working out a header's name costs more)
        first = h.text[:1].lower()
        if (first in initials or first.isspace()) and h.name.lower() in doomed:
            h.flag = "*"


@functools.lru_cache(maxsize=16)
def _transit_headers(main):
    """The header names the *_remove options remove, and their first letters."""
    doomed = frozenset(name for name, option in (("return-path", "return_path_remove"),
                                                 ("envelope-to", "envelope_to_remove"),
                                                 ("delivery-date", "delivery_date_remove"))
                       if getattr(main, option))
    return doomed, frozenset(name[0] for name in doomed)


def extract_recipients(env, config, remove_arguments=None):
    """-t: recipients from To:/Cc:/Bcc: (or their Resent- forms), then drop Bcc:.

    Addresses given on the command line are, with
    extract_addresses_remove_arguments (the default), not recipients: they
    go into the non-recipients tree instead.
    """
    resent = any(h.name.lower().startswith("resent-") for h in env.headers if h.flag != "*")
    prefix = "resent-" if resent else ""
    qualify = config.main.qualify_recipient or config.main.qualify_domain
    found = addresses_in(env.headers, [prefix + "to", prefix + "cc", prefix + "bcc"], qualify)
    arguments = [r.address for r in env.recipients]
    if remove_arguments is None:
        remove_arguments = config.main.extract_addresses_remove_arguments
    if remove_arguments:
        lowered = {a.lower() for a in arguments}
        env.non_recipients.update(arguments)
        new = [a for a in found if a.lower() not in lowered]
    else:
        new = arguments + [a for a in found if a not in arguments]
    seen = set()
    env.recipients = []
    for a in new:
        if a.lower() not in seen:
            seen.add(a.lower())
            env.recipients.append(Recipient(a))
    for h in live_headers(env.headers, prefix + "bcc"):
        h.flag = "*"


def _phrase(name):
    """A display name, quoted when it holds characters special in RFC 5322 phrases."""
    if re.search(r'[()<>\[\]:;@\\,."]', name):
        return '"%s"' % name.replace("\\", "\\\\").replace('"', '\\"')
    return name


def local_fixups(env, config, message_id, now, originator_name=None, submission=False,
                 untrusted_login=None):
    """Add Message-ID:, From: and Date: when missing (local or submission-mode input).

    Added lines go at the end of the header, Message-ID first, as Exim does;
    with Resent- headers the Resent- forms are added instead.  ``submission``
    is True or the domain of ``control = submission/domain=...``.  For an
    untrusted local caller (``untrusted_login``) the Sender: rules apply too.
    """
    headers = env.headers
    resent = any(h.name.lower().startswith("resent-") for h in headers if h.flag != "*")
    prefix = "Resent-" if resent else ""
    added_top, added_end = [], []
    if not live_headers(headers, prefix + "Message-Id"):
        line = Header("%sMessage-Id: <%s>\n" % (prefix, message_id), "I")
        (added_top if resent else added_end).append(line)
        env.flags.add("message_id_created")
    if resent and not live_headers(headers, "Resent-Date"):
        added_top.insert(0, Header("Resent-Date: %s\n" % tod("full", now), " "))
    if not live_headers(headers, prefix + "From"):
        author = env.sender or (submission and _submission_address(env, config, submission))
        if author:
            added_end.append(Header("%sFrom: %s\n" % (prefix, mailbox(originator_name, author)), "F"))
    if untrusted_login is not None:
        _untrusted_sender(env, config, headers, added_end, prefix, untrusted_login, originator_name)
    if not resent and not live_headers(headers, "Date"):
        added_end.append(Header("Date: %s\n" % tod("full", now), " "))
    env.headers = added_top + headers + added_end


def _submission_address(env, config, submission):
    """$authenticated_id made an address as ``control = submission/domain=`` says (spec "From:")."""
    auth_id = env.session.authenticated_id
    if not auth_id:
        return None
    if isinstance(submission, str):
        return "%s@%s" % (auth_id, submission) if submission else auth_id
    return "%s@%s" % (auth_id, config.main.qualify_domain or _primary_hostname(config))


def mailbox(name, address):
    """``Name <address>``, or the bare address when there is no name."""
    return "%s <%s>" % (_phrase(name), address) if name else address


def _untrusted_sender(env, config, headers, added_end, prefix, login, full_name):
    """Sender: rules for an untrusted local caller (spec "Sender:" and local_from_check)."""
    main = config.main
    own = "%s@%s" % (login, main.qualify_domain or _primary_hostname(config))
    # Sendmail compatibility: a From: holding just the caller's login becomes
    # their full address; the old line is kept as deleted.
    for i, h in enumerate(headers):
        if h.flag != "*" and h.name.lower() == prefix.lower() + "from" and h.value.strip() == login:
            h.flag = "*"
            headers.insert(i + 1, Header("%sFrom: %s\n" % (prefix, mailbox(full_name, own)), "F"))
            break
    if not main.local_sender_retain:
        for h in live_headers(headers, "Sender") + live_headers(headers, "Resent-Sender"):
            h.flag = "*"
    if not main.local_from_check:
        return
    froms = live_headers(headers + added_end, prefix + "From")
    found = [a for _, a in email.utils.getaddresses([h.value for h in froms])]
    if froms and (len(found) != 1 or not _same_address(found[0], own)):
        added_end.append(Header("%sSender: %s\n" % (prefix, mailbox(full_name, own)), "S"))
        env.sender = own   # a created Sender: becomes the return path too


def _same_address(a, b):
    """Local parts compare exactly, domains without regard to case."""
    la, _, da = a.rpartition("@")
    lb, _, db = b.rpartition("@")
    return la == lb and da.lower() == db.lower()


def message_size(env, body):
    """Exim's message_size: live header bytes, one for the blank line, body bytes."""
    return sum(len(h.text.encode("utf-8", "surrogateescape")) for h in env.headers if h.flag != "*") \
        + 1 + len(body)


def receive(env, data, config, local=False, submission=False, suppress_local_fixups=False,
            extract=False, originator_name=None, now=None, expand=None, ctx=None, untrusted_login=None,
            longest=None):
    """Build ``env``'s headers and counts from ``data``; returns the body bytes for the -D file.

    ``env.message_id`` must already be set (the Received: and Message-ID:
    headers carry it); ``env.received_time`` is the time in Received:.
    ``longest``: the longest line of ``data`` when already known.
    """
    headers, body, longest = split_message(data, longest)
    env.headers = headers
    # -H's -host_lookup_failed flag: the name lookup made for this session failed
    env.host_lookup_failed = bool(getattr(env.session, "host_lookup_failed", False))
    count_body(env, body, longest)
    remove_transit_headers(env, config)
    if extract:
        extract_recipients(env, config)
    if expand is None:
        from exim_py.expand import expand
    ctx = expansion_context(env, config, ctx)
    if (local or submission) and not suppress_local_fixups:
        local_fixups(env, config, message_id_text(env, config, expand, ctx), now or env.received_time,
                     originator_name, submission, untrusted_login)
        expansion_context(env, config, ctx)     # the fixups may have changed the sender
    ctx.headers = env.headers
    received = _received_header(config, now or env.received_time, expand, ctx)
    if received is not None:
        env.headers.insert(0, received)
    env.size = message_size(env, body)
    return body


def _primary_hostname(config):
    return config.main.primary_hostname or os.uname().nodename
