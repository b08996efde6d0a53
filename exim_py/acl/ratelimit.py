"""The ``ratelimit`` ACL condition (spec section "Rate limiting incoming messages").

A client's rate is an exponentially weighted moving average of its events
per period, kept in a hints file (``db/ratelimit.sqlite`` in the spool
directory, see hints.py) and remembered for the rest of the command, message or
connection as Exim does.  The condition is true when the rate is at or over
the limit.  ``unique=`` / ``per_addr`` count each distinct event once per
period with a Bloom filter, as Exim does.
"""

import base64
import hashlib
import math
import re
import time

from exim_py.acl.hints import hints_file
from exim_py.acl.phases import WHERE_NAMES, WHERES
from exim_py.config.options import read_time

OK, FAIL, DEFER, ERROR = "accept", "deny", "defer", "error"

_NUMBER = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)([kKmMgG]?)$")
_MULTIPLIERS = {"": 1.0, "k": 1024.0, "m": 1024.0 ** 2, "g": 1024.0 ** 3}
_BLOOM_MIN = 40
_NOT_SMTP = WHERES.index("not_smtp")
_PREDATA = WHERES.index("predata")


def _error(run, text):
    run.log = 'error in arguments to "ratelimit" condition: ' + text
    return ERROR


def _cache(run, anchor):
    """The rates remembered for the command, the message or the connection."""
    if anchor == "cmd":
        holder = run
    elif anchor == "mail" and run.ctx.envelope is not None:
        holder = run.ctx.envelope
    else:
        holder = run.ctx.session
    cache = getattr(holder, "acl_ratelimiters_" + anchor, None)
    if cache is None:
        cache = {}
        setattr(holder, "acl_ratelimiters_" + anchor, cache)
    return cache


def _set_mode(mode, new):
    return new if mode is None else "clash"


def condition(run, item, arg):
    """``ratelimit = limit / period / options / key``; OK when the client is over."""
    import sqlite3     # the hints database, only when a rate is checked
    ctx = run.ctx
    parts = [p.strip() for p in arg.split("/")]
    limit_text = parts[0] if parts and parts[0] else None
    if limit_text is None:
        return _error(run, "sender rate limit not set")
    m = _NUMBER.match(limit_text)
    limit = float(m.group(1)) * _MULTIPLIERS[m.group(2).lower()] if m else -1.0
    if limit < 0:
        return _error(run, '"%s" is not a positive number' % limit_text)
    period_text = parts[1] if len(parts) > 1 else None
    period = read_time(period_text) if period_text else -1
    if period <= 0:
        return _error(run, '"%s" is not a time value' % period_text)
    ctx.set_variable("sender_rate_limit", limit_text)
    ctx.set_variable("sender_rate_period", period_text)

    where = WHERES.index(run.where)
    env = ctx.envelope
    count = 1.0
    mode = None
    leaky = strict = readonly = noupdate = badacl = False
    key = unique = None
    for option in parts[2:]:
        low = option.lower()
        if low == "leaky":
            leaky = True
        elif low == "strict":
            strict = True
        elif low == "noupdate":
            noupdate = True
        elif low == "readonly":
            readonly = True
        elif low == "per_cmd":
            mode = _set_mode(mode, "per_cmd")
        elif low == "per_conn":
            mode = _set_mode(mode, "per_conn")
            badacl = badacl or run.where in ("not_smtp", "not_smtp_start")
        elif low == "per_mail":
            mode = _set_mode(mode, "per_mail")
            badacl = badacl or where > _NOT_SMTP
        elif low == "per_rcpt":
            if run.where == "rcpt":
                mode = _set_mode(mode, "per_rcpt")
            elif _PREDATA <= where <= _NOT_SMTP:
                mode = _set_mode(mode, "per_allrcpts")
                count = float(len(env.recipients) if env is not None else 0)
            else:
                mode = _set_mode(mode, "per_rcpt")
                badacl = True
        elif low == "per_byte":
            mode = _set_mode(mode, "per_mail")
            if where > _NOT_SMTP:
                badacl = True
            else:
                count = float(env.size) if env is not None and env.size > 0 else 0.0
        elif low == "per_addr":
            mode = _set_mode(mode, "per_rcpt")
            if run.where != "rcpt":
                badacl, unique = True, "*"
            else:
                unique = "%s@%s" % (ctx.local_part, ctx.domain)
        elif low.startswith("count="):
            try:
                count = float(option[6:])
            except ValueError:
                count = -1.0
            if count < 0:
                return _error(run, '"%s" is not a positive number' % option)
        elif low.startswith("unique="):
            unique = option[7:]
        elif key is None:
            key = option
        else:
            key = "%s/%s" % (key, option)

    if mode == "clash":
        return _error(run, "conflicting per_* options")
    if leaky + strict + readonly > 1:
        return _error(run, "conflicting update modes")
    if badacl and (leaky or strict) and not noupdate:
        return _error(run, '"%s" must not have /leaky or /strict option, or cannot be used in '
                      '%s ACL' % (_mode_name(mode), WHERE_NAMES[run.where]))
    if noupdate:
        readonly, leaky, strict = True, False, False
    if badacl:
        readonly = True
    if readonly:
        count = 0.0
    if not strict and not readonly:
        leaky = True
    mode = mode or "per_mail"

    if key is None:
        key = ctx.session.sender_host_address or ""
    dbkey = "%s/%s/%s%s" % (period_text, _mode_name(mode), "unique/" if unique else "", key)

    anchor = "cmd" if readonly else {"per_conn": "conn", "per_mail": "mail",
                                     "per_allrcpts": "mail"}.get(mode, "cmd")
    cache = _cache(run, anchor)
    if dbkey in cache:
        rate = cache[dbkey]
        ctx.set_variable("sender_rate", "%.1f" % rate)
        return FAIL if rate < limit else OK

    try:
        store = hints_file(ctx.config, "ratelimit")
        record = _load(store.get(dbkey))
    except (OSError, sqlite3.Error, ValueError):
        ctx.set_variable("sender_rate", "")
        run.log = "ratelimit database not available"
        return DEFER
    now = time.time()
    rate_known = record is not None
    if record is None:
        record = [now, count, 0, None]
    if unique is not None:
        if record[3] is None or now > record[2] + period:
            size = max(_BLOOM_MIN, int(limit) * 2)
            record[2], record[3] = int(now), bytes(size)
        if not readonly and _bloom_seen(record, unique):
            count = 0.0
    if rate_known:
        interval = max(now - record[0], 1e-9)
        i_over_p = interval / period
        a = math.exp(-i_over_p)
        record[0] = now
        record[1] = (1 - a) * count / i_over_p + a * record[1]
        if record[1] < count:
            record[1] = count
    rate = record[1]
    rc = FAIL if rate < limit else OK
    if (rc == FAIL and leaky) or strict:
        try:
            store.put(dbkey, _dump(record))
        except sqlite3.Error:
            pass
    cache[dbkey] = rate
    ctx.set_variable("sender_rate", "%.1f" % rate)
    return rc


def _load(stored):
    """[time, rate, bloom_epoch, bloom bytes or None] from a stored record."""
    if stored is None:
        return None
    bloom = stored.get("bloom")
    return [stored["time"], stored["rate"], stored.get("bloom_epoch", 0),
            base64.b64decode(bloom) if bloom else None]


def _dump(record):
    return {"time": record[0], "rate": record[1], "bloom_epoch": record[2],
            "bloom": base64.b64encode(record[3]).decode("ascii") if record[3] else None}


def _mode_name(mode):
    return {"per_allrcpts": "per_rcpt", None: "?", "clash": "!"}.get(mode, mode)


def _bloom_seen(record, event):
    """Add ``event`` to the record's Bloom filter; True if it was (probably) there."""
    bloom = bytearray(record[3])
    digest = hashlib.md5(event.encode("utf-8", "surrogateescape")).digest()
    hash_ = int.from_bytes(digest[0:4], "little")
    step = int.from_bytes(digest[4:8], "little")
    seen = True
    for _ in range(8):
        bit = 1 << (hash_ % 8)
        byte = (hash_ // 8) % len(bloom)
        if not bloom[byte] & bit:
            bloom[byte] |= bit
            seen = False
        hash_ = (hash_ + step) & 0xFFFFFFFF
    record[3] = bytes(bloom)
    return seen
