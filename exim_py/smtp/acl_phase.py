"""Running one ACL phase for the SMTP server, and applying what it asked for.

The ACL engine (exim_py.acl) decides and collects side effects; this module
turns its result into what the server does: the reply (through
``acl.replies``, so texts and reject-log lines are Exim's), the delay
(waited for without blocking the reactor), the controls that change the
session or the message (enforce_sync, submission, queue_only, freeze,
suppress_local_fixups, no_multiline_responses, fakereject/fakedefer) and
the header lines to add or remove when the message arrives.
"""

from twisted.internet import task, threads

from exim_py.acl import DISCARD, OK, run_acl
from exim_py.acl.engine import ERROR
from exim_py.acl import replies
from exim_py.acl.context import AclContext
from exim_py.acl.phases import DENY_WHEN_UNSET, WHERE_NAMES
from exim_py.log import printing
from exim_py.receive import make_header
from exim_py.smtp.reply import Reply

# the default reply an accepting ACL's message replaces, where it is not 250
ACCEPT_CODES = {"connect": "220", "predata": "354"}

# controls that change the session: control name -> (Session attribute, value)
SESSION_CONTROLS = {
    "enforce_sync": ("enforce_sync", True),
    "no_enforce_sync": ("enforce_sync", False),
    "no_multiline_responses": ("no_multiline", True),
    "no_pipelining": ("no_pipelining", True),
}

# controls that belong to the message, kept on the envelope until it is stored
MESSAGE_CONTROLS = ("submission", "queue_only", "freeze", "suppress_local_fixups",
                    "fakereject", "fakedefer", "no_delay_flush", "dkim_disable_verify")


def callouts_allowed(policy):
    """Callouts are made except under -bh: that omits them unless it is -bhc
    (spec, -bhc in "The Exim command line")."""
    return not policy.host_checking or policy.host_checking_callout


def run_phase(policy, where, option, session, envelope=None, recipient=None, command_data=None):
    """Run acl_smtp_<where>; returns None (go on with the default reply), a Reply,
    or a Deferred firing with one of those.

    An ACL that may wait on the network or the disk (acl_may_block: DNS
    lists, callouts, lookups...) runs in the thread pool, so the reactor
    keeps serving other sessions (and a callout to this very daemon works).
    """
    spec = policy._option(option)
    if not spec and where not in DENY_WHEN_UNSET:
        return None          # an unset ACL accepts here, with no side effects
    if policy.acl_accepts_at_once(spec):
        return None          # so does one that starts with a bare "accept"
    ctx = AclContext(policy.config, session, envelope, recipient, log=policy.logger,
                     make_expand_ctx=lambda: policy.expand_context(session, envelope),
                     host_checking=policy.host_checking, dns_cache=_dns_cache(session))
    ctx.callouts_allowed = callouts_allowed(policy)
    if policy.acl_blocks(spec):
        d = threads.deferToThread(run_acl, where, spec, ctx)
        return d.addCallback(_finish, policy, where, ctx, command_data, session, envelope)
    return _finish(run_acl(where, spec, ctx), policy, where, ctx, command_data, session, envelope)


def _finish(result, policy, where, ctx, command_data, session, envelope):
    apply_effects(result, session, envelope)
    reply = _reply(where, result, ctx, command_data, session)
    delay = result.effects.delay
    if delay and not policy.host_checking:
        from twisted.internet import reactor
        return task.deferLater(reactor, delay, lambda: reply)
    return reply


def _dns_cache(session):
    cache = getattr(session, "dns_cache", None)
    if cache is None:
        cache = session.dns_cache = {}
    return cache


def _reply(where, result, ctx, command_data, session):
    if where == "notquit":
        # Exim ignores the not-QUIT ACL's verdict: nothing is said or logged
        return None
    if where == "quit":
        # whatever the verdict, 221, before the ACL's message as it is
        if result.rc == ERROR and ctx.log is not None:
            ctx.log.panic("ACL for QUIT returned ERROR: %s" % result.log_message)
        message = result.user_message
        return Reply(221, message, lines=replies.respond_lines("221", message)) if message else None
    if result.rc in (OK, DISCARD):
        if result.rc == DISCARD and ctx.envelope is not None and where in ("mail", "rcpt", "data"):
            _discard(where, result, ctx, command_data)
        if result.user_message and where not in ("vrfy", "expn"):
            # (Exim verifies or expands after an accepting VRFY/EXPN ACL,
            # whatever its message)
            return accepted_reply(where, result.user_message, ctx.log)
        return None
    reply = replies.rejection(result, ctx, command_data,
                              no_multiline=getattr(session, "no_multiline", False))
    replies.write_logs(reply, ctx)
    return Reply(int(reply.code), reply.text, drop=reply.close, lines=reply.lines)


def _discard(where, result, ctx, command_data):
    """What ``discard`` drops (spec "Access control lists", the discard
    verb): at MAIL every recipient to come, at RCPT this one (logged to the
    main and reject logs), after DATA all of them.  The envelope remembers
    which ACL did it (``discarded``: "MAIL", "RCPT" or "DATA") for the
    message's "=> blackhole" line, and MAIL's log message for the lines of
    the recipients it drops; the server leaves a recipient out when
    ``rcpt_discarded`` is set."""
    env = ctx.envelope
    env.discarded = WHERE_NAMES[where]
    if where == "mail":
        env.discard_log = result.log_message
    elif where == "rcpt":
        env.rcpt_discarded = True
        ctx.write_log(replies.discard_line(ctx, command_data, where, result.log_message), ("main", "reject"))
    else:
        env.discard_log = result.log_message
        env.recipients = []


def accepted_reply(where, message, log):
    """An accepting ACL's ``message`` as the reply that replaces the default
    one (smtp_in.c's smtp_user_msg, spec chapter "Access control lists",
    the message modifier).

    A code at the message's start is used when its first digit is the
    default's (2 for most phases, 3 for the DATA command's 354); another
    is dropped with a main and panic log line.  HELO and EHLO take one line
    only: the code goes on every EHLO line, its enhanced code on the first,
    and a message with a newline is cut there, with a panic log line.
    """
    code, text, _, panic = replies.message_code(ACCEPT_CODES.get(where, "250"), message, None, False)
    if panic is not None and log is not None:
        log.panic(panic)
    if where == "helo":
        enhanced = code[4:]
        cut = min((i for i in (text.find("\r"), text.find("\n")) if i >= 0), default=-1)
        if cut >= 0:
            if log is not None:
                log.panic("EHLO/HELO response must not contain newlines: message truncated: %s"
                          % printing("%s %s%s" % (code[:3], enhanced, text)))
            text = text[:cut]
        return Reply(int(code[:3]), enhanced + text)
    return Reply(int(code[:3]), text, lines=replies.respond_lines(code, text))


def apply_effects(result, session, envelope):
    """Controls and header changes an ACL asked for."""
    effects = result.effects
    for name, options in effects.controls:
        if name in SESSION_CONTROLS:
            attribute, value = SESSION_CONTROLS[name]
            setattr(session, attribute, value)
        elif name in MESSAGE_CONTROLS:
            target = envelope if envelope is not None else session
            controls = getattr(target, "acl_controls", None)
            if controls is None:
                controls = target.acl_controls = {}
            controls[name] = options
    if effects.added_headers or effects.removed_headers:
        target = envelope if envelope is not None else session
        added = getattr(target, "acl_added_headers", None)
        if added is None:
            added = target.acl_added_headers = []
        for entry in effects.added_headers:
            if entry not in added:
                added.append(entry)
        removed = getattr(target, "acl_removed_headers", None)
        if removed is None:
            removed = target.acl_removed_headers = []
        removed.extend(effects.removed_headers)


def message_controls(session, envelope):
    """The controls in force for a message: from the connection, then the message."""
    merged = dict(getattr(session, "acl_controls", None) or {})
    merged.update(getattr(envelope, "acl_controls", None) or {})
    return merged


def add_acl_headers(envelope, session=None):
    """Put the headers ACLs added into the message (spec: add_header positions) and
    mark the removed ones deleted, as Exim does before and after the DATA ACL."""
    added, removed = [], []
    for holder in (session, envelope):
        if holder is None:
            continue
        more = getattr(holder, "acl_added_headers", None)
        if more:
            added.extend(more)
            holder.acl_added_headers = []
        more = getattr(holder, "acl_removed_headers", None)
        if more:
            removed.extend(more)
            holder.acl_removed_headers = []
    if not added and not removed:
        return      # the usual case: no ACL asked for a header change
    headers = envelope.headers
    for name in removed:
        for h in headers:
            if h.flag != "*" and h.name.lower() == name.lower():
                h.flag = "*"
    for position, text in added:
        header = make_header(text)
        if position == ":at_start:":
            headers.insert(0, header)
        elif position == ":after_received:":
            i = 0
            while i < len(headers) and headers[i].name.lower() == "received":
                i += 1
            headers.insert(max(i, 1) if headers else 0, header)
        elif position == ":at_start_rfc:":
            i = 0
            while i < len(headers) and (headers[i].name.lower() == "received"
                                        or headers[i].name.lower().startswith("resent-")):
                i += 1
            headers.insert(i, header)
        else:
            headers.append(header)


def run_prdr(policy, session, envelope):
    """PRDR (RFC draft "SMTP Service Extension for Per-Recipient Data Responses"):
    acl_smtp_data_prdr once per recipient, in order.

    Returns the reply lines to send after "353" (one complete reply per
    recipient) and the final reply's text, or None when PRDR does not apply.
    Recipients refused here are removed from the envelope.
    """
    if not envelope.prdr or len(envelope.recipients) < 2 or not policy._option("acl_smtp_data_prdr"):
        return None
    lines = []
    all_pass, all_fail, kept = True, True, []
    for rcpt in list(envelope.recipients):
        ctx = AclContext(policy.config, session, envelope, rcpt.address, log=policy.logger,
                         expand_ctx=policy.expand_context(session, envelope),
                         host_checking=policy.host_checking, dns_cache=_dns_cache(session))
        ctx.callouts_allowed = callouts_allowed(policy)
        result = run_acl("data_prdr", policy._option("acl_smtp_data_prdr"), ctx)
        apply_effects(result, session, envelope)
        ok = result.rc in (OK, DISCARD)
        code = "250" if ok else "450" if result.rc == "defer" else "550"
        all_pass = all_pass and ok
        all_fail = all_fail and result.rc not in (OK, DISCARD, "defer")
        what = "acceptance" if ok else "temporary refusal" if result.rc == "defer" else "refusal"
        text = result.user_message or "PRDR R=<%s> %s" % (rcpt.address, what)
        lines.extend(replies.respond_lines(code, text))
        if policy.logger is not None:
            policy.logger.main(("PRDR %s %s" % (rcpt.address, result.log_message or result.user_message))
                               if (result.log_message or result.user_message) else text,
                               message_id=envelope.message_id)
        if ok:
            kept.append(rcpt)
    envelope.recipients = kept
    if all_fail:
        return lines, "550", "message rejected for all recipients"
    return lines, "250", "message accepted" if all_pass else "message accepted for some recipients"
