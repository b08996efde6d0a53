"""Address verification: routing an address without delivering it.

One routing loop serves three callers, as Exim's verify_address does:
``-bt`` (address testing, full information about every generated address),
``-bv``/``-bvs`` (verification, a one-line verdict), and the ACL condition
``verify = recipient`` / ``verify = sender``.  In verification, routing
follows a redirection only when it yields exactly one new address; in
address testing every generated address is routed.
"""

from exim_py.delivery.address import (Address, OK, DEFER, FAIL, DISCARD, REROUTED)
from exim_py.delivery.context import DeliveryContext
from exim_py.delivery.route import route_address


class VerifyResult:
    """The outcome of verifying one address.

    ``code`` is OK, FAIL or DEFER; ``message`` the reason (for logs),
    ``user_message`` what an SMTP client may see (cannot_route_message,
    :fail: text); ``address`` the last Address routed (its
    ``address_data`` is what ACLs see); ``routed`` / ``failed`` / ``deferred``
    / ``pfr`` list what full routing produced (address testing only).
    """

    def __init__(self):
        self.code = OK
        self.message = None
        self.user_message = None
        self.address = None
        self.address_data = None
        self.routed = []          # successfully routed, in Exim's print order
        self.pfr = []             # generated pipes, files and replies
        self.events = []          # ("fail"|"defer"|"pfr", Address) in the order they happened
        self.discarded = False

    @property
    def failure(self):
        """"route" when routing failed (for $recipient_verify_failure)."""
        return None if self.code is OK else "route"


def _delivery_context(ctx, kind, mode):
    if isinstance(ctx, DeliveryContext):
        dctx = ctx
        dctx.mode = mode
        dctx.verify_kind = kind if mode == "verify" else None
        return dctx
    return DeliveryContext(ctx.config, mode=mode, verify_kind=kind if mode == "verify" else None,
                           base=ctx)


def verify_address(address, ctx, kind="recipient", options=None, full=False, unique=None):
    """Route ``address`` for verification; returns a VerifyResult.

    ``ctx`` is a DeliveryContext, or any context with ``config`` and
    ``variables`` (the ACL's ExpandContext), whose variables the routers
    then see.  ``kind`` is "recipient" or "sender".  ``options`` may hold
    ``success_on_redirect``.  With ``full`` (used by -bt) every generated
    address is routed and the result lists them all.  ``unique`` is the
    top address's key for duplicate detection (-bt uses the address as
    given, before qualification, as Exim does).
    """
    options = options or {}
    mode = "test" if full else "verify"
    dctx = _delivery_context(ctx, kind, mode)
    if kind == "sender" and not full:
        # A sender is routed as a bounce to it would be: from <> (as Exim).
        dctx.overrides = dict(dctx.overrides, sender_address="")
    result = VerifyResult()
    top = Address(address)
    if unique is not None:
        top.unique = unique
    stack = [top]
    local, remote = [], []
    allok = True
    while stack:
        addr = stack.pop(0)
        if addr.is_pfr:
            allok = False
            result.pfr.append(addr)
            result.events.append(("pfr", addr))
            continue
        outcome = route_address(addr, dctx)
        result.address = addr
        code = outcome.code
        if code is REROUTED and not outcome.new:
            code = OK
        if code is REROUTED:
            children = outcome.new
            if not full and not options.get("success_on_redirect") and len(children) == 1 \
                    and not children[0].is_pfr:
                stack[:0] = children
                continue
            if not full:
                result.code = OK
                break
            stack[:0] = children
            continue
        if code is FAIL:
            allok = False
            addr.set_result(FAIL, outcome.message, user_message=outcome.user_message)
            result.events.append(("fail", addr))
            if not full:
                return _fill(result, FAIL, addr)
            result.code = FAIL
            continue
        if code is DEFER:
            allok = False
            addr.set_result(DEFER, outcome.message, user_message=outcome.user_message)
            result.events.append(("defer", addr))
            if not full:
                return _fill(result, DEFER, addr)
            if result.code is OK:
                result.code = DEFER
            continue
        if code is DISCARD:
            if not full:
                break
            continue
        if addr.transport is not None and addr.transport.remote:
            remote.insert(0, addr)
        else:
            local.insert(0, addr)
        if not full:
            break
    result.routed = local + remote
    result.discarded = full and allok and not local and not remote
    result.address_data = result.address.address_data if result.address else None
    return result


def _fill(result, code, addr):
    result.code = code
    result.message = addr.message
    result.user_message = addr.user_message
    result.address = addr
    result.address_data = addr.address_data
    return result
