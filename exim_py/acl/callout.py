"""Callout verification for ``verify = recipient/callout`` and ``sender/callout``.

After routing an address to the smtp transport, Exim asks the first host
that answers whether it would take the address: EHLO (or HELO), MAIL
FROM:<> (or the sender, or postmaster), RCPT TO:<address>, QUIT (spec
section "Callout verification"); with the postmaster options, RSET, MAIL
FROM:<postmaster_mailfrom> and RCPT TO:<postmaster@domain> follow on the same
connection.  The ACL engine is synchronous code (run in
the server's thread pool when it may block), so the dialogue is a plain
blocking client here; hosts, port, interface and HELO name come from the
transport's settings, as for a delivery.  Accepted and refused addresses are
remembered in ``db/callout.sqlite`` for ``callout_positive_expire`` /
``callout_negative_expire``, and what a domain said to MAIL FROM:<>, to a
random local part and to postmaster for ``callout_domain_positive_expire`` /
``callout_domain_negative_expire`` (not with ``no_cache``); STARTTLS is not
used.
"""

import time

from exim_py.acl.hints import hints_file
from exim_py.errors import ExpansionError, LookupDefer

OK, FAIL, DEFER, ERROR = "accept", "deny", "defer", "error"

CACHED_FAILURE = "Previous (cached) callout verification failure"

DEFAULT_TIMEOUT = 30

# Sub-options of callout=... that exim_py understands.
_SUPPORTED = ("defer_ok", "no_cache", "use_sender", "use_postmaster", "maxwait", "connect",
              "random", "postmaster", "fullpostmaster", "postmaster_mailfrom", "hold", "mailfrom")


class CalloutOptions:
    """The parsed ``callout`` options of one verify condition."""

    def __init__(self):
        self.enabled = False
        self.timeout = DEFAULT_TIMEOUT
        self.connect_timeout = None
        self.defer_ok = False
        self.use_sender = False
        self.use_postmaster = False
        self.cache = True
        self.random = False
        # MAIL FROM for the extra RCPT TO:<postmaster@domain> check, or None
        # for no such check; full_postmaster also tries RCPT TO:<postmaster>.
        self.pm_mailfrom = None
        self.full_postmaster = False
        # Keep the connection for more recipients and the delivery.
        self.hold = False
        # MAIL FROM for verify = header_sender callouts (instead of <>).
        self.mailfrom = None


def parse_options(options, read_time):
    """Read ``callout[=...]`` and the old ``callout_defer_ok`` / ``check_postmaster``.

    Returns (CalloutOptions, error text or None).
    """
    co = CalloutOptions()
    for option in options:
        low = option.lower()
        if low == "callout_defer_ok":
            co.enabled = co.defer_ok = True
        elif low == "check_postmaster":
            # The old spelling of callout=postmaster.
            co.enabled = True
            co.pm_mailfrom = ""
        elif low.startswith("callout"):
            co.enabled = True
            rest = option[7:].strip()
            if not rest:
                continue
            if not rest.startswith("="):
                return co, "'=' expected after \"callout\" in ACL condition \"%s\"" % option
            for sub in (s.strip() for s in rest[1:].split(",")):
                if not sub:
                    continue
                name, _, value = sub.partition("=")
                name = name.strip().lower()
                if name and name[0].isdigit():
                    seconds = read_time(sub)
                    if seconds < 0:
                        return co, 'bad time value in ACL condition "verify %s"' % option
                    co.timeout = seconds
                elif name not in _SUPPORTED:
                    return co, "callout option %s is not supported by exim_py" % name
                elif name in ("maxwait", "connect"):
                    seconds = read_time(value.strip())
                    if seconds < 0:
                        return co, 'bad time value in ACL condition "verify %s"' % option
                    if name == "connect":
                        co.connect_timeout = seconds
                elif name == "defer_ok":
                    co.defer_ok = True
                elif name == "no_cache":
                    co.cache = False
                elif name == "random":
                    co.random = True
                elif name == "use_sender":
                    co.use_sender = True
                elif name == "use_postmaster":
                    co.use_postmaster = True
                elif name == "hold":
                    co.hold = True
                elif name in ("postmaster", "fullpostmaster"):
                    co.pm_mailfrom = ""
                    co.full_postmaster = name == "fullpostmaster"
                elif name == "postmaster_mailfrom":
                    co.pm_mailfrom = value.strip()
                elif name == "mailfrom":
                    co.mailfrom = value.strip()
    return co, None


class CalloutResult:
    """``rc`` (OK, FAIL, DEFER); ``message`` for the log; ``user_message``."""

    def __init__(self, rc, message=None, user_message=None):
        self.rc = rc
        self.message = message
        self.user_message = user_message
        self.random_accepted = False      # the domain took a random local part


def _reply(code, text):
    lines = text.decode("utf-8", "replace").split("\n") if isinstance(text, bytes) \
        else text.split("\n")
    return "\n".join("%d%s%s" % (code, "-" if i < len(lines) - 1 else " ", line)
                     for i, line in enumerate(lines))


def run(config, expand_ctx, routed, kind, sender, co, envelope=None):
    """Call out for the routed Address ``routed``; returns a CalloutResult.

    ``kind`` is "recipient" or "sender"; ``sender`` the MAIL FROM address to use.
    Only an address routed to a remote (smtp) transport is called out for;
    any other verifies without one, as in Exim.  ``envelope`` is the
    transaction being received: a connection kept for it by the ``hold``
    option is used for this recipient too, when it suits.
    """
    transport = getattr(routed, "transport", None)
    if transport is None or not getattr(transport, "remote", False):
        return CalloutResult(OK)
    if kind == "sender" and co.mailfrom is not None:
        sender = co.mailfrom
    cache, key = _cache(config, co), routed.address
    if sender:
        key = "%s/<%s>" % (key, sender)
    domain = routed.address.rpartition("@")[2].lower()
    plan = _Plan(co)
    if kind == "recipient" and not co.cache:
        # Exim offers the message's size (from MAIL ... SIZE=) on the main
        # MAIL of an uncached recipient callout, when the host lists SIZE.
        try:
            size = int(expand_ctx.get("message_size") or 0)
        except (TypeError, ValueError, AttributeError):
            size = 0
        plan.size = size if size > 0 else None
    cached = _from_cache(config, cache, key, domain, sender, kind, plan)
    if cached is not None:
        return cached
    random_address = _random_address(config, expand_ctx, domain) if plan.random else None
    plan.envelope = envelope
    result = _call(config, expand_ctx, routed, kind, sender, co, random_address, plan)
    if cache is not None:
        _remember(cache, key, domain, plan)
    return result


class _Plan:
    """What this callout still has to ask, and what the answers were: the
    domain's answers to MAIL, to a random local part and to postmaster, and
    the address's own (Exim's domain and address cache records)."""

    def __init__(self, co):
        self.random = co.random
        self.pm_mailfrom = co.pm_mailfrom
        self.full_postmaster = co.full_postmaster
        self.old_result = "accept"
        self.domain = {"result": None, "random": None, "random_time": 0,
                       "postmaster": None, "postmaster_time": 0}
        self.address = None
        self.command = None               # the command the refusal answered
        self.size = None                  # SIZE= for the main MAIL, if known
        self.lmtp = False                 # the transport speaks LMTP: LHLO
        self.pipelining = False           # the host offered PIPELINING
        self.envelope = None              # the transaction a held connection serves
        # Hold the connection after an accepted RCPT (set by _call when the
        # hold option applies); _dialogue then leaves it open in ``kept``.
        self.hold = False
        self.kept = None


def _from_cache(config, cache, key, domain, sender, kind, plan):
    """A CalloutResult the cache already gives, else None (``plan`` is
    adjusted: a domain known to refuse random local parts is not asked again,
    nor postmaster of a domain known to take it)."""
    if cache is None:
        return None
    record = _domain_record(config, cache, domain)
    if record is not None:
        plan.old_result = record["result"]
        if record["result"] == "reject" or (not sender and record["result"] == "reject_mfnull"):
            text = "(result of an earlier callout reused)."
            return CalloutResult(FAIL, None if kind == "sender" else text, text)
        if plan.random:
            if record["random"] == OK:
                return CalloutResult(OK)
            if record["random"] != FAIL:
                return None
            plan.random = False
            plan.domain["random"], plan.domain["random_time"] = FAIL, record["random_time"]
        if plan.pm_mailfrom is not None:
            if record["postmaster"] == FAIL:
                text = "(result of earlier verification reused)."
                return CalloutResult(FAIL, None if kind == "sender" else text, text)
            if record["postmaster"] != OK:
                return None
            plan.pm_mailfrom = None
            plan.domain["postmaster"] = OK
            plan.domain["postmaster_time"] = record["postmaster_time"]
    cached = _cached(config, cache, key)
    if cached == OK:
        return CalloutResult(OK)
    if cached == FAIL:
        return CalloutResult(FAIL, None if kind == "sender" else CACHED_FAILURE, CACHED_FAILURE)
    return None


def _domain_record(config, cache, domain):
    """The domain's unexpired record (sub-results past their time forgotten), or None."""
    import sqlite3     # the callout cache, only when a callout is made
    try:
        record = cache.get("domain/" + domain)
    except (sqlite3.Error, ValueError):
        return None
    if record is None:
        return None
    negative = record["result"] != "accept" or record["postmaster"] == FAIL
    option = "callout_domain_negative_expire" if negative else "callout_domain_positive_expire"
    try:
        lifetime = config.main[option]
    except (KeyError, TypeError, AttributeError):
        lifetime = 10800 if negative else 604800
    now = time.time()
    if now - record["time"] >= lifetime:
        return None
    for name in ("random", "postmaster"):
        if now - record[name + "_time"] >= lifetime:
            record[name] = None
    return record


def _remember(cache, key, domain, plan):
    """Write what this callout learnt, as Exim's cache_callout_write does."""
    import sqlite3
    now = time.time()
    record = dict(plan.domain)
    if record["result"] == "accept" and plan.old_result == "reject_mfnull":
        record["result"] = "reject_mfnull"
    try:
        if record["result"] is not None:
            record["time"] = now
            cache.put("domain/" + domain, record)
        if plan.address is not None:
            cache.put(key, {"result": plan.address, "time": now})
    except sqlite3.Error:
        pass


def _random_address(config, expand_ctx, domain):
    """``callout_random_local_part`` (expanded) at the address's domain."""
    from exim_py.expand import expand
    try:
        text = config.main["callout_random_local_part"]
        local = expand(text, expand_ctx) if text else None
    except (KeyError, TypeError, AttributeError, ExpansionError, LookupDefer):
        local = None
    return "%s@%s" % (local, domain) if local else None


def _cache(config, co):
    import sqlite3
    if not co.cache:
        return None
    try:
        return hints_file(config, "callout")
    except (OSError, sqlite3.Error):
        return None


def _cached(config, cache, key):
    """OK or FAIL from a callout remembered within callout_positive_expire /
    callout_negative_expire, else None."""
    import sqlite3
    if cache is None:
        return None
    try:
        record = cache.get(key)
    except (sqlite3.Error, ValueError):
        return None
    if record is None:
        return None
    option = "callout_positive_expire" if record["result"] == OK else "callout_negative_expire"
    try:
        lifetime = config.main[option]
    except (KeyError, TypeError, AttributeError):
        lifetime = 7200
    return record["result"] if time.time() - record["time"] < lifetime else None


def _call(config, expand_ctx, routed, kind, sender, co, random_address=None, plan=None):
    """Ask the transport's hosts in turn; the first that answers decides."""
    from exim_py.delivery.context import DeliveryContext
    from exim_py.smtp import callout as held_connections
    from exim_py.transports import smtp_settings
    plan = plan if plan is not None else _Plan(co)
    transport = routed.transport
    dctx = DeliveryContext(config, mode="verify", verify_kind=kind, base=expand_ctx)
    could_not = "Could not complete %s verify callout" % kind
    try:
        hosts = smtp_settings.host_list(transport, routed, dctx)
    except (ExpansionError, LookupDefer):
        hosts = []
    if plan.envelope is not None:
        result = _on_held(transport, hosts, routed, dctx, kind, sender, random_address, plan)
        if result is not None:
            return result
    last_error = None
    for host in hosts:
        try:
            settings, port, interface, _ = smtp_settings.for_host(transport, host, routed, dctx,
                                                                  callout=True)
        except (ExpansionError, LookupDefer):
            continue
        plan.lmtp = getattr(settings, "lmtp", False)
        plan.hold = _may_hold(co, kind, random_address, plan)
        outcome = _dialogue(host, port, interface, settings.helo_data, sender,
                            routed.address, co, random_address, plan)
        if plan.kept is not None:
            held_connections.hold(plan.envelope, plan.kept[0], host.address, port, sender,
                                  routed.address, plan.kept[1])
        stage, code, text = outcome
        if stage == "random" and code is None:
            result = CalloutResult(OK)
            result.random_accepted = True
            return result
        if stage is None:
            # No usable answer from this host: remember why, try the next.
            if text:
                last_error = "%s [%s] : %s" % (host.name or host.address, host.address, text)
            continue
        if code is None:
            return CalloutResult(OK)
        if stage == "postmaster":
            command = plan.command
        else:
            command = ("MAIL FROM:<%s>" % sender) if stage == "mail" else \
                ("RCPT TO:<%s>" % (random_address if stage == "random" else routed.address))
        reply = _reply(code, text)
        message = "%s [%s] : SMTP error from remote mail server after %s: %s" % (
            host.name or host.address, host.address, command, reply)
        if code >= 500:
            if kind == "recipient":
                return CalloutResult(FAIL, message, "Callout verification failed:\n" + reply)
            return CalloutResult(FAIL, message, "Called:   %s\nSent:     %s\nResponse: %s"
                                 % (host.address, command, reply))
        return CalloutResult(DEFER, "%s: %s" % (could_not, message), could_not)
    if last_error is not None:
        return CalloutResult(DEFER, "%s: %s" % (could_not, last_error), could_not)
    return CalloutResult(DEFER, could_not, could_not)


def _may_hold(co, kind, random_address, plan):
    """Whether an accepted RCPT keeps the connection (spec, callout option
    hold): a recipient callout with the message's sender (use_sender), no
    random or postmaster check, not LMTP, for the first recipient of a
    transaction that has no held connection yet."""
    from exim_py.smtp import callout as held_connections
    envelope = plan.envelope
    return (co.hold and kind == "recipient" and co.use_sender and not co.use_postmaster
            and random_address is None and plan.pm_mailfrom is None and not plan.lmtp
            and envelope is not None and not envelope.recipients
            and held_connections.held_for(envelope) is None)


def _on_held(transport, hosts, routed, dctx, kind, sender, random_address, plan):
    """Verify the address with one more RCPT on the connection held for this
    transaction, when it goes to one of ``hosts`` with the same sender;
    returns a CalloutResult, or None to call out as usual (an unsuitable held
    connection is closed first, as Exim's "incompatible connection")."""
    from exim_py.smtp import callout as held_connections
    from exim_py.transports import smtp_settings
    held = held_connections.held_for(plan.envelope)
    if held is None:
        return None
    suitable = (kind == "recipient" and random_address is None and plan.pm_mailfrom is None
                and sender == held.sender)
    for host in hosts if suitable else ():
        try:
            port = smtp_settings.port_for(transport, host, routed, dctx)
        except ExpansionError:
            continue
        if (host.address, port) != (held.address, held.port):
            continue
        code, text = held.add_recipient(routed.address)
        if code is not None and code // 100 == 2:
            plan.address = OK
            return CalloutResult(OK)
        if code is not None and code >= 500:
            plan.address = FAIL
            reply = _reply(code, text)
            return CalloutResult(FAIL, 'response to "RCPT TO:<%s>" was: %s' % (
                routed.address, reply), "Callout verification failed:\n" + reply)
        return None
    held_connections.release(held)
    return None


def _dialogue(host, port, interface, helo, sender, address, co, random_address=None, plan=None):
    """(stage, code, text) of the first refusal, ("rcpt", None, None) if RCPT was
    accepted, or (None, None, why) when the host gave no usable answer.
    ``plan`` (a _Plan) says whether to check postmaster and collects the answers."""
    import smtplib     # the email package only when a callout is made
    plan = plan if plan is not None else _Plan(co)
    source = (interface, 0) if interface else None
    client = smtplib.SMTP(local_hostname=helo, timeout=co.connect_timeout or co.timeout,
                          source_address=source)
    try:
        try:
            code, _ = client.connect(host.address, port)
        except OSError as e:
            return None, None, e.strerror or str(e)
        if code != 220:
            return None, None, None
        client.sock.settimeout(co.timeout)
        # Exim sends the verbs in capitals (smtplib's ehlo()/helo() would not).
        code, text = client.docmd("LHLO" if plan.lmtp else "EHLO", client.local_hostname)
        ehlo_text = text if code == 250 else b""
        offers_size = code == 250 and any(
            line.split()[:1] == [b"SIZE"] for line in text.upper().splitlines()[1:])
        if code != 250 and plan.lmtp:
            return None, None, None
        if code != 250:
            code, _ = client.docmd("HELO", client.local_hostname)
            if code != 250:
                return None, None, None
        plan.domain["result"] = "accept"
        plan.pipelining = code == 250 and any(
            line.split()[:1] == [b"PIPELINING"] for line in text.upper().splitlines()[1:])
        size = " SIZE=%d" % (plan.size + 1024) if plan.size and offers_size else ""
        (code, text), rcpt = _mail_rcpt(
            client, "MAIL FROM:<%s>%s" % (sender, "" if random_address else size),
            "RCPT TO:<%s>" % (address if random_address is None else random_address), plan)
        if code >= 400:
            if code >= 500 and not sender:
                plan.domain["result"] = "reject_mfnull"
            return "mail", code, text
        if random_address is not None:
            # A domain that takes a made-up local part takes anything: no
            # point asking about the real one (spec, callout option random).
            plan.domain["random_time"] = time.time()
            code, text = rcpt
            if code < 300:
                plan.domain["random"] = OK
                return "random", None, None
            if code < 500:
                return "random", code, text
            plan.domain["random"] = FAIL
            try:
                code, _ = client.docmd("RSET")
            except (OSError, smtplib.SMTPException):
                code = None
            if code is None or code >= 300:
                # Some servers drop the connection after refusing a recipient:
                # Exim connects again for the real address.
                client.close()
                return _dialogue(host, port, interface, helo, sender, address, co, None, plan)
            (code, text), rcpt = _mail_rcpt(client, "MAIL FROM:<%s>%s" % (sender, size),
                                            "RCPT TO:<%s>" % address, plan)
            if code >= 400:
                return "mail", code, text
        code, text = rcpt
        if code >= 400:
            if code >= 500:
                plan.address = FAIL
            return "rcpt", code, text
        plan.address = OK
        if plan.pm_mailfrom is not None:
            return _postmaster(client, address.rpartition("@")[2], plan)
        if plan.hold:
            plan.kept = (client, ehlo_text)
        return "rcpt", None, None
    except (OSError, smtplib.SMTPException) as e:
        return None, None, getattr(e, "strerror", None) or str(e)
    finally:
        # A held connection stays open for more recipients and the delivery.
        if plan.kept is None or plan.kept[0] is not client:
            _quit(client)


def _mail_rcpt(client, mail, rcpt, plan):
    """MAIL then RCPT: ((code, text) for MAIL, (code, text) for RCPT or None
    when MAIL was refused).  When the host offers PIPELINING both go in one
    write, as Exim's callouts send them, and both replies are read."""
    if not plan.pipelining:
        first = client.docmd(mail)
        return first, (client.docmd(rcpt) if first[0] < 400 else None)
    client.send("%s\r\n%s\r\n" % (mail, rcpt))
    first = client.getreply()
    second = client.getreply()
    return first, (second if first[0] < 400 else None)


def _quit(client):
    try:
        client.docmd("QUIT")
    except OSError:             # smtplib's errors are OSErrors too
        pass
    client.close()


def _postmaster(client, domain, plan):
    """The postmaster check after an accepted RCPT: RSET, MAIL FROM:<pm_mailfrom>,
    RCPT TO:<postmaster@domain> (then RCPT TO:<postmaster> for fullpostmaster)."""
    code, text = client.docmd("RSET")
    if code >= 300:
        return None, None, None
    plan.domain["postmaster_time"] = time.time()
    mail = "MAIL FROM:<%s>" % plan.pm_mailfrom
    rcpt = "RCPT TO:<postmaster@%s>" % domain
    (code, text), answer = _mail_rcpt(client, mail, rcpt, plan)
    plan.command = mail
    if answer is not None:
        plan.command = rcpt
        code, text = answer
    if code >= 300 and plan.full_postmaster:
        plan.command = "RCPT TO:<postmaster>"
        code, text = client.docmd(plan.command)
    if code < 300:
        plan.domain["postmaster"] = OK
        return "rcpt", None, None
    if code >= 500:
        plan.domain["postmaster"] = FAIL
    return "postmaster", code, text
