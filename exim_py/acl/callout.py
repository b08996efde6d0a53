"""Callout verification for ``verify = recipient/callout`` and ``sender/callout``.

After routing an address to the smtp transport, Exim asks the first host
that answers whether it would take the address: EHLO (or HELO), MAIL
FROM:<> (or the sender, or postmaster), RCPT TO:<address>, QUIT (spec
section "Callout verification").  The ACL engine is synchronous code (run in
the server's thread pool when it may block), so the dialogue is a plain
blocking client here; hosts, port, interface and HELO name come from the
transport's settings, as for a delivery.  Accepted and refused addresses are
remembered in ``db/callout.sqlite`` for ``callout_positive_expire`` /
``callout_negative_expire`` (not with ``no_cache``); STARTTLS is not used.
"""

import smtplib
import sqlite3
import time

from exim_py.acl.hints import hints_file
from exim_py.errors import ExpansionError, LookupDefer

OK, FAIL, DEFER, ERROR = "accept", "deny", "defer", "error"

CACHED_FAILURE = "Previous (cached) callout verification failure"

DEFAULT_TIMEOUT = 30

# Sub-options of callout=... that exim_py understands.
_SUPPORTED = ("defer_ok", "no_cache", "use_sender", "use_postmaster", "maxwait", "connect",
              "random")


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
            return co, "callout option postmaster is not supported by exim_py"
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


def run(config, expand_ctx, routed, kind, sender, co):
    """Call out for the routed Address ``routed``; returns a CalloutResult.

    ``kind`` is "recipient" or "sender"; ``sender`` the MAIL FROM address to use.
    Only an address routed to a remote (smtp) transport is called out for;
    any other verifies without one, as in Exim.
    """
    transport = getattr(routed, "transport", None)
    if transport is None or not getattr(transport, "remote", False):
        return CalloutResult(OK)
    cache, key = _cache(config, co), routed.address
    if co.use_sender or co.use_postmaster:
        key = "%s/<%s>" % (key, sender)
    domain = routed.address.rpartition("@")[2].lower()
    if co.random and _cached(config, cache, "random/" + domain) == OK:
        return CalloutResult(OK)          # the domain takes any local part
    cached = _cached(config, cache, key)
    if cached == OK:
        return CalloutResult(OK)
    if cached == FAIL:
        return CalloutResult(FAIL, None if kind == "sender" else CACHED_FAILURE, CACHED_FAILURE)
    random_address = _random_address(config, expand_ctx, domain) if co.random else None
    result = _call(config, expand_ctx, routed, kind, sender, co, random_address)
    if cache is not None and result.rc in (OK, FAIL):
        try:
            cache.put("random/" + domain if result.random_accepted else key,
                      {"result": result.rc, "time": time.time()})
        except sqlite3.Error:
            pass
    return result


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
    if not co.cache:
        return None
    try:
        return hints_file(config, "callout")
    except (OSError, sqlite3.Error):
        return None


def _cached(config, cache, key):
    """OK or FAIL from a callout remembered within callout_positive_expire /
    callout_negative_expire, else None."""
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


def _call(config, expand_ctx, routed, kind, sender, co, random_address=None):
    """Ask the transport's hosts in turn; the first that answers decides."""
    from exim_py.delivery.context import DeliveryContext
    from exim_py.transports import smtp_settings
    transport = routed.transport
    dctx = DeliveryContext(config, mode="verify", verify_kind=kind, base=expand_ctx)
    could_not = "Could not complete %s verify callout" % kind
    try:
        hosts = smtp_settings.host_list(transport, routed, dctx)
    except (ExpansionError, LookupDefer):
        hosts = []
    last_error = None
    for host in hosts:
        try:
            settings, port, interface, _ = smtp_settings.for_host(transport, host, routed, dctx,
                                                                  callout=True)
        except (ExpansionError, LookupDefer):
            continue
        outcome = _dialogue(host, port, interface, settings.helo_data, sender,
                            routed.address, co, random_address)
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


def _dialogue(host, port, interface, helo, sender, address, co, random_address=None):
    """(stage, code, text) of the first refusal, ("rcpt", None, None) if RCPT was
    accepted, or (None, None, why) when the host gave no usable answer."""
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
        code, _ = client.docmd("EHLO", client.local_hostname)
        if code != 250:
            code, _ = client.docmd("HELO", client.local_hostname)
            if code != 250:
                return None, None, None
        code, text = client.docmd("MAIL FROM:<%s>" % sender)
        if code >= 400:
            return "mail", code, text
        if random_address is not None:
            # A domain that takes a made-up local part takes anything: no
            # point asking about the real one (spec, callout option random).
            code, text = client.docmd("RCPT TO:<%s>" % random_address)
            if code < 300:
                return "random", None, None
            if code < 500:
                return "random", code, text
            client.docmd("RSET")
            code, text = client.docmd("MAIL FROM:<%s>" % sender)
            if code >= 400:
                return "mail", code, text
        code, text = client.docmd("RCPT TO:<%s>" % address)
        if code >= 400:
            return "rcpt", code, text
        return "rcpt", None, None
    except (OSError, smtplib.SMTPException) as e:
        return None, None, getattr(e, "strerror", None) or str(e)
    finally:
        try:
            client.docmd("QUIT")
            client.close()
        except (OSError, smtplib.SMTPException):
            client.close()
