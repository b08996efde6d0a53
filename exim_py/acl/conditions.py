"""ACL conditions: hosts, domains, senders, authenticated, condition, verify ...

Each condition takes the statement's run state, the item and its argument
(already expanded when the condition table says so; list conditions leave
expansion to the list matcher) and returns one of the engine's outcomes.
List matching is exim_py.match's; address verification is delivery's
(``exim_py.delivery.verify.verify_address``) when that module exists.
"""

import ipaddress

from exim_py.acl import callout, dnslists, headers, ratelimit, spf
from exim_py.acl.context import optional_module
from exim_py.acl.phases import VERIFIES, WHERE_NAMES
from exim_py.config.options import read_time
from exim_py.errors import ExpansionError
from exim_py.match import hosts as hostlists
from exim_py.match import match_static
from exim_py.match.engine import check_list
from exim_py.match.items import StringMatcher

OK, FAIL, DEFER, ERROR = "accept", "deny", "defer", "error"


class HostInfo:
    """The calling host as list matching sees it (``.address``, ``.name``)."""

    __slots__ = ("address", "name")

    def __init__(self, address, name=None):
        self.address = address
        self.name = name


def _rc(matched):
    return OK if matched else FAIL


def _ectx(run):
    return run.ctx.expand_ctx


def string_list_match(run, value, liststring):
    """Match ``value`` against a plain string list (authenticated, encrypted),
    as Exim's MCL_STRING lists: caseless, ``!``, ``^regex``, ``*suffix``, lookups."""
    return check_list(liststring, StringMatcher("string", value, _ectx(run)))


def authenticated(run, item, arg):
    mechanism = run.ctx.session.auth_mechanism
    if not mechanism:
        return FAIL
    return _rc(string_list_match(run, mechanism, arg))


def condition(run, item, arg):
    # Exim's boolean reading: digits (optionally negative) are false when
    # zero; yes/true and no/false in any case; anything else defers.
    body = arg[1:] if arg.startswith("-") else arg
    if body.isdigit() or arg == "":
        return _rc(int(arg or "0") != 0)
    low = arg.lower()
    if low in ("no", "false"):
        return FAIL
    if low in ("yes", "true"):
        return OK
    run.log = 'invalid "condition" value "%s"' % arg
    return DEFER


def _static_rc(run, result, data_variable):
    """The condition's answer from a list that needed no expansion context
    (match_static); a match sets its data variable as match_domain/match_host do."""
    if result.matched:
        run.ctx.set_variable(data_variable, result.value)
    return _rc(result.matched)


def domains(run, item, arg):
    domain = run.ctx.domain or ""
    known = match_static("domain", domain, arg)
    if known is not None:
        return _static_rc(run, known, "domain_data")
    return _rc(run.ctx.matcher("match_domain")(domain, arg, _ectx(run)))


def local_parts(run, item, arg):
    return _rc(run.ctx.matcher("match_localpart")(run.ctx.cc_local_part or "", arg, _ectx(run),
                                                  caseless=True))


def recipients(run, item, arg):
    # A lookup in the list leaves its data in $recipient_data (spec: ACL conditions).
    return _rc(run.ctx.matcher("match_address")(run.ctx.recipient or "", arg, _ectx(run),
                                                data_variable="recipient_data"))


def _sender(run):
    env = run.ctx.envelope
    return (env.sender if env is not None else None) or ""


def senders(run, item, arg):
    return _rc(run.ctx.matcher("match_address")(_sender(run), arg, _ectx(run),
                                                data_variable="sender_data"))


def sender_domains(run, item, arg):
    sender = _sender(run)
    domain = sender.rsplit("@", 1)[1] if "@" in sender else ""
    return _rc(run.ctx.matcher("match_domain")(domain, arg, _ectx(run)))


def hosts(run, item, arg):
    session = run.ctx.session
    host = HostInfo(session.sender_host_address or "", session.sender_host_name)
    known = match_static("host", host, arg)
    if known is not None:
        return _static_rc(run, known, "host_data")
    return _rc(run.ctx.matcher("match_host")(host, arg, _ectx(run)))


def encrypted(run, item, arg):
    cipher = run.ctx.session.tls_cipher
    if not cipher:
        return FAIL
    # Exim keeps "TLS1.3:ECDHE_RSA_AES_256_GCM_SHA384:256" and compares the
    # middle part; a bare cipher name is compared whole.
    parts = cipher.split(":")
    name = parts[1] if len(parts) > 1 else parts[0]
    return _rc(string_list_match(run, name, arg))


def verify(run, item, arg):
    """``verify = what[/options]`` (spec "Using verification in ACLs")."""
    parts = arg.split("/")
    what = parts[0].strip()
    key = what.lower()
    if key.startswith("sender") and key[6:].lstrip().startswith("=") or key == "sender":
        key = "sender"
    if key not in VERIFIES:
        run.log = ('expected "sender[=address]", "recipient", "helo", "header_syntax", '
                   '"header_sender", "header_names_ascii" or "reverse_host_lookup" at start '
                   'of ACL condition "verify %s"' % arg)
        return ERROR
    allowed, has_options = VERIFIES[key]
    if not has_options and len(parts) > 1:
        run.log = ("unexpected '/' found in \"%s\" (this verify item has no options)" % arg)
        return ERROR
    if run.where not in allowed:
        run.log = "cannot verify %s in ACL for %s" % (key, WHERE_NAMES[run.where])
        return ERROR
    options = [p.strip() for p in parts[1:]]
    session = run.ctx.session
    if key == "certificate":
        if session.tls_certificate_verified:
            return OK
        run.user = "no verified certificate"
        return FAIL
    if key == "helo":
        return _verify_helo(run)
    if key == "reverse_host_lookup":
        rc = _verify_reverse(run)
        if rc == DEFER and "defer_ok" in (o.lower() for o in options):
            return OK
        return rc
    if key == "header_syntax":
        return headers.header_syntax(run)
    if key == "not_blind":
        return headers.not_blind(run, options)
    if key == "header_names_ascii":
        return headers.header_names_ascii(run)
    if key == "csa":
        from exim_py.acl import csa
        status, reason, succeeds = csa.check(run.ctx, options[0] if options else None)
        run.ctx.set_variable("csa_status", status)
        if succeeds:
            return OK
        run.user = run.log = "client SMTP authorization %s" % reason
        return FAIL
    return _verify_address(run, key, what, options)


def _verify_helo(run):
    """verify = helo: the outcome of the check at HELO (helo_verify_hosts,
    helo_try_verify_hosts), else the check made now (acl/helo.py)."""
    from exim_py.acl import helo
    if not helo.known(run.ctx.session):
        helo.verify_helo(run.ctx)
    return _rc(run.ctx.session.helo_verified)


def _verify_reverse(run):
    """verify = reverse_host_lookup (Exim's acl_verify_reverse): the client
    must have a name that resolves back to it.  This is the session's own
    lookup (acl.context.HostNameLookup), made now if nobody has yet; its
    name, or its failure, stays for the rest of the session."""
    session = run.ctx.session
    if not session.sender_host_address or session.sender_host_name:
        return OK
    if getattr(session, "host_lookup_failed", False):
        run.log = "host lookup failed" + _lookup_failure(run)
        return FAIL
    if run.ctx.expand_ctx.host_name_lookup.names():
        return OK
    if not getattr(session, "host_lookup_failed", False):
        run.log = "host lookup deferred for reverse lookup check"
        return DEFER
    run.log = "host lookup failed for reverse lookup check" + _lookup_failure(run)
    return FAIL


def _lookup_failure(run):
    """Why the client's name lookup failed, as Exim's host_lookup_msg: no
    name at all, or the first one found does not resolve back.  The
    names are asked again without confirming them; the answers are in the
    session's DNS cache."""
    address = run.ctx.session.sender_host_address
    try:
        candidates, _, _ = hostlists.confirmed_names(
            address, hostlists.lookup_order(run.ctx.config),
            lambda a: dnslists.query_dnssec(run.ctx, ipaddress.ip_address(a).reverse_pointer, "PTR"),
            lambda name: ([], False))
    except dnslists.DnsDefer:
        candidates = []
    if not candidates:
        return " (failed to find host name from IP address)"
    return " (%s does not match any IP address for %s)" % (address, candidates[0])


_VERIFY_OPTIONS = ("defer_ok", "no_details", "success_on_redirect")


def _route(run, key, address, lowered, co=None):
    """Route ``address`` (delivery's verify_address), then call out if asked.

    Returns (outcome, user message, log message, address_data).
    """
    module = optional_module("exim_py.delivery.verify")
    if module is None:
        return DEFER, None, ("address verification is not available "
                             "(exim_py.delivery.verify is missing)"), None
    outcome = module.verify_address(
        address, run.ctx.expand_ctx, kind="sender" if key != "recipient" else key,
        options={"success_on_redirect": "success_on_redirect" in lowered})
    rc = {"ok": OK, "fail": FAIL}.get(str(outcome.code).lower(), DEFER)
    user, log = outcome.user_message, outcome.message
    # ctx.callouts_allowed is false under -bh (not -bhc): the callout is omitted, as Exim
    if rc == OK and co is not None and co.enabled and outcome.address is not None \
            and getattr(run.ctx, "callouts_allowed", True):
        result = callout.run(run.ctx.config, run.ctx.expand_ctx, outcome.address,
                             "recipient" if key == "recipient" else "sender",
                             _callout_sender(run, key, co), co, envelope=run.ctx.envelope)
        rc, user, log = result.rc, result.user_message, result.message
        if rc == DEFER:
            if co.defer_ok:
                rc = OK
            else:
                run.temp_details = True       # Exim's ERRNO_CALLOUTDEFER
    return rc, user, log, outcome.address_data


def _callout_sender(run, key, co):
    """MAIL FROM for a callout: <> unless use_sender / use_postmaster (recipients only)."""
    if key == "recipient" and co.use_sender:
        return _sender(run)
    if key == "recipient" and co.use_postmaster:
        return "postmaster@%s" % headers.qualify_domain(run.ctx.config)
    return ""


def _verify_address(run, key, what, options):
    """verify = sender / recipient / header_sender: routing, and callouts when asked."""
    lowered = [o.lower() for o in options]
    co, problem = callout.parse_options(options, read_time)
    if problem is not None:
        run.log = problem
        return ERROR
    for option in lowered:
        if option not in _VERIFY_OPTIONS and not option.startswith("callout") and \
                option != "check_postmaster":
            run.log = 'unknown option "%s" in ACL condition "verify %s"' % (
                option, "/".join([what] + options))
            return ERROR
    defer_ok = "defer_ok" in lowered
    if key == "header_sender":
        rc = headers.header_sender(
            run, lambda address: _route(run, "sender", address, lowered, co)[0])
        return OK if rc == DEFER and defer_ok else rc
    if key == "recipient":
        rc, user, log, data = _route(run, key, run.ctx.recipient, lowered, co)
        if data is not None:
            run.ctx.set_variable("address_data", data)
        if rc == DEFER and defer_ok:
            return OK
        run.log = log
        run.user = user if user is not None else log
        return rc
    address = what.split("=", 1)[1].strip() if "=" in what else _sender(run)
    if address == "":
        return OK        # a bounce has no sender to verify
    # Exim verifies a sender once per message and tells the client the
    # details of a failure once (sender_verified_list, af_sverify_told);
    # a callout is always made afresh.
    holder = run.ctx.envelope if run.ctx.envelope is not None else run.ctx.session
    cache = getattr(holder, "acl_sender_verified", None)
    if cache is None:
        cache = holder.acl_sender_verified = {}
    entry = None if co.enabled else cache.get(address)
    if entry is None:
        rc, user, log, data = _route(run, key, address, lowered, co)
        entry = cache[address] = {"address": address, "result": rc, "message": log,
                                  "user_message": user if user is not None else log,
                                  "told": "no_details" in lowered, "data": data}
    if entry["data"] is not None:
        run.ctx.set_variable("sender_address_data", entry["data"])
    rc = entry["result"]
    if rc == DEFER and defer_ok:
        return OK
    if rc != OK:
        run.ctx.sender_verify_failed = entry
        if rc == FAIL:
            run.log = run.user = "Sender verify failed"
        elif (entry["message"] or "").startswith("Could not complete sender verify callout"):
            run.log = run.user = "Could not complete sender verify callout"
        else:
            run.log = run.user = "Could not complete sender verify"
    return rc


_CHECKS = {
    "authenticated": authenticated,
    "condition": condition,
    "dnslists": dnslists.condition,
    "domains": domains,
    "encrypted": encrypted,
    "hosts": hosts,
    "local_parts": local_parts,
    "ratelimit": ratelimit.condition,
    "recipients": recipients,
    "sender_domains": sender_domains,
    "senders": senders,
    "spf": spf.condition,
    "spf_guess": spf.condition,
    "verify": verify,
}


def check(run, item, arg):
    """Evaluate condition ``item`` with argument ``arg``; returns an outcome."""
    try:
        return _CHECKS[item.name](run, item, arg)
    except ExpansionError as e:
        run.log = 'failed to expand ACL string "%s": %s' % (item.value, e)
        return ERROR
