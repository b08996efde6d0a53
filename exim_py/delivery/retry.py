"""Retry rules and retry hints (spec chapter "Retry configuration").

Keys, as Exim names them:

- ``R:domain`` / ``R:local@domain`` — routing, or an address-specific
  delivery error (a 4xx to RCPT);
- ``T:local@domain`` — a local delivery that deferred;
- ``T:host:ip`` — a remote host that could not be used.

After a delivery attempt the engine calls ``update()``: each deferred key
gets a record whose next try comes from the first retry rule that matches
(F fixed, G geometric, H heuristic/randomised intervals, each until its
cut-off measured from the first failure, capped by retry_interval_max).
A key past its last cut-off is "expired": the address then fails with
"retry timeout exceeded".  With no matching rule a temporary error is
treated as permanent, as Exim does.
"""

import random

from exim_py.delivery.address import DEFER, FAIL
from exim_py.delivery.hints import RetryRecord


def _domain_of_key(key):
    body = key[2:]
    if key.startswith("T:") and body.count(":") >= 1 and "@" not in body:
        return body.split(":", 1)[0], None            # a host: match its name
    address = body.split(":", 1)[0] if "@" in body else body
    if "@" in address:
        return address.rsplit("@", 1)[1], address
    return address, None


def _error_matches(rule_error, error, more_errno):
    if rule_error in (None, "", "*"):
        return True
    if error is None:
        return False
    if rule_error == error or error.startswith(rule_error + "_"):
        return True
    # rcpt_4xx-style patterns with digits: rcpt_45x matches a 451 reply
    head, _, code = rule_error.rpartition("_")
    if code and more_errno and error.startswith(head + "_") and len(code) == 3:
        actual = str(more_errno)
        return all(c == "x" or c == a for c, a in zip(code, actual))
    return False


def find_rule(config, key, error=None, more_errno=None, sender=None, ctx=None, domain=None):
    """The first retry rule that applies to ``key`` and ``error``, or None.

    For a host key the rule's pattern is tried against the host's name and
    then against ``domain`` (the domain of the address being delivered), as
    Exim's retry_find_config does.
    """
    name, address = _domain_of_key(key)
    candidates = [name] + ([domain] if domain and domain != name else [])
    for rule in getattr(config, "retry", None) or []:
        if not _error_matches(rule.error, error, more_errno):
            continue
        if not any(_pattern_matches(rule.pattern, d, address, ctx, config) for d in candidates):
            continue
        if rule.senders and sender is not None:
            from exim_py.match import match_address
            if not match_address(sender, rule.senders, _match_ctx(ctx, config)):
                continue
        return rule
    return None


def _match_ctx(ctx, config):
    if ctx is not None:
        return ctx.expand_context()
    from exim_py.expand import ExpandContext
    return ExpandContext(config=config)


def _pattern_matches(pattern, domain, address, ctx, config):
    if pattern == "*":
        return True
    from exim_py import match
    mctx = _match_ctx(ctx, config)
    if "@" in pattern:
        return match.match_address(address or ("@" + domain), pattern, mctx)
    return match.match_domain(domain, pattern, mctx)


def next_try(rule, first_failed, old, now, interval_max):
    """When to try next under ``rule`` (a RetryRule), or None if past every cut-off.

    ``old`` is the previous RetryRecord (or None).  The interval for G and H
    grows from the previous predicted gap, as in Exim's retry.c.
    """
    elapsed = now - first_failed
    for algorithm, cutoff, params in rule.rules:
        if elapsed >= cutoff:
            continue
        last_gap = (old.next_try - old.last_try) if old is not None else 0
        if algorithm == "F":
            gap = params[0]
        elif algorithm == "G":
            gap = params[0] if last_gap < params[0] else last_gap * params[1]
        else:  # "H": randomly between the last gap and the last gap * multiplier
            if last_gap < params[0]:
                gap = params[0]
            else:
                gap = last_gap + random.random() * (last_gap * params[1] - last_gap)
        gap = min(int(gap), interval_max)
        return now + max(gap, 1)
    return None


def _interval_max(config):
    try:
        return int(config.main["retry_interval_max"])
    except (KeyError, AttributeError, TypeError):
        return 24 * 3600


def record_failure(ctx, key, error=None, more_errno=None, message=None, sender=None,
                   domain=None):
    """Update the retry record of ``key`` after a temporary failure.

    Returns the new RetryRecord, or None when no retry rule applies (the
    caller then treats the error as permanent).
    """
    now = int(ctx.now())
    rule = find_rule(ctx.config, key, error, more_errno, sender, ctx, domain)
    if rule is None or not rule.rules:
        return None
    hints = ctx.hints
    old = hints.get_retry(key) if hints is not None else None
    first = old.first_failed if old is not None else now
    nxt = next_try(rule, first, old, now, _interval_max(ctx.config))
    record = RetryRecord(key, first, now, nxt if nxt is not None else now,
                         expired=nxt is None, basic_errno=0, more_errno=more_errno or 0,
                         text=message or "")
    if hints is not None:
        hints.put_retry(record)
    return record


def retry_time_reached(ctx, key):
    """True when ``key`` has no record or its next try time has come."""
    if ctx.hints is None:
        return True
    record = ctx.hints.get_retry(key)
    return record is None or record.expired or record.next_try <= ctx.now()


def host_usable(ctx, host):
    """Whether the smtp transport may try ``host`` now (its T: record allows it).

    A host whose retry time has not come is marked unusable, why "retry";
    a host whose record is past its cut-off is tried once more ("expired").
    """
    key = host_key(host)
    if ctx.hints is None or getattr(ctx, "force", False):
        host.status = "usable"
        return True
    record = ctx.hints.get_retry(key)
    if record is None or record.next_try <= ctx.now():
        host.status = "usable"
        return True
    if record.expired:
        host.status = "expired"
        return True
    host.status = "unusable"
    host.why = "retry"
    return False


def host_key(host):
    key = "T:%s:%s" % (host.name, host.address)
    if host.port and host.port != 25:
        key += ":%d" % host.port
    return key


def update(ctx, addresses):
    """Apply the retry rules after a delivery attempt of ``addresses``.

    Deletes records for keys that worked, writes records for those that
    failed, and turns a deferred address into a failure when no rule
    applies to its error or its retry period is over.
    """
    done = {}
    sender = ctx.message.sender if ctx.message is not None else None
    for addr in addresses:
        for item in addr.retries:
            if item.key in done:
                record = done[item.key]
            elif item.delete:
                if ctx.hints is not None:
                    ctx.hints.delete_retry(item.key)
                record = done[item.key] = None
                continue
            else:
                record = done[item.key] = record_failure(
                    ctx, item.key, item.error, item.more_errno,
                    item.message or addr.message, sender, addr.domain)
                if record is None:
                    done[item.key] = "permanent"
            if addr.result is not DEFER or item.delete:
                continue
            if done[item.key] == "permanent" or (record is not None and record.expired):
                # Exim logs the deferral, then fails the address with
                # "retry timeout exceeded" (with no rule at all, at once).
                addr.timed_out_defer = (addr.message, addr.basic_errno)
                addr.set_result(FAIL, "retry timeout exceeded")
                if addr.user_message:
                    addr.user_message += ": retry timeout exceeded"

