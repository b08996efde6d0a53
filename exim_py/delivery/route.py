"""Running one address through the routers (spec "How Exim receives and
delivers mail" and "Generic options for routers").

``route_address`` tries the configured routers in order from the address's
start router: it checks each router's preconditions in the order of section
"Router preconditions", calls the driver's ``route()``, and applies the
generic options to the outcome (no_more, pass_router, unseen, errors_to,
headers_add/remove, fail_verify, cannot_route_message).  It is plain
synchronous code: -bt, -bv and ACL verification call it directly, the
delivery engine calls it from a worker thread.
"""

import os
import pwd

from exim_py.delivery.address import (Address, RouterResult, OK, DEFER, FAIL, DECLINE,
                                      PASS, DISCARD, REROUTED)
from exim_py.delivery import drivers
from exim_py.errors import ExpansionError, ForcedFail, LookupDefer


def _bool(value, default):
    """An option that is boolean or an expandable boolean already expanded."""
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("yes", "true", "1"):
        return True
    if text in ("no", "false", "0", ""):
        return False
    raise ExpansionError('"%s" is not a valid boolean value' % value)


def expand_bool(router, name, addr, ctx, default):
    """A boolean&!! option: a bool, or a string expanded to yes/no/true/false."""
    value = router.options[name]
    if isinstance(value, str):
        try:
            value = ctx.expand(value, addr)
        except ForcedFail:
            return default
    return _bool(value, default)


def _strip_affix(lp, affixes, is_prefix, caseful):
    """Find a prefix (or suffix) of ``lp`` from the colon list ``affixes``.

    Returns (affix, variable_part, remaining) or None.  A '*' at the start of
    a prefix (end of a suffix) matches any characters (spec: local_part_prefix).
    """
    for affix in [a.strip() for a in affixes.split(":") if a.strip()]:
        cmp_lp = lp if caseful else lp.lower()
        if is_prefix:
            if affix.startswith("*"):
                fixed = affix[1:] if caseful else affix[1:].lower()
                pos = cmp_lp.find(fixed)
                if pos >= 0 and pos + len(fixed) < len(lp) + 1:
                    end = pos + len(fixed)
                    return lp[:end], lp[:pos], lp[end:]
            else:
                a = affix if caseful else affix.lower()
                if cmp_lp.startswith(a) and len(lp) > len(a):
                    return lp[:len(a)], "", lp[len(a):]
        else:
            if affix.endswith("*"):
                fixed = affix[:-1] if caseful else affix[:-1].lower()
                pos = cmp_lp.rfind(fixed)
                if pos > 0:
                    return lp[pos:], lp[pos + len(fixed):], lp[:pos]
            else:
                a = affix if caseful else affix.lower()
                if cmp_lp.endswith(a) and len(lp) > len(a):
                    return lp[-len(a):], "", lp[:-len(a)]
    return None


class _Skip(Exception):
    """A precondition did not hold: go on to the next router."""


def _preconditions(router, addr, ctx):
    """Check ``router``'s preconditions for ``addr`` (raises _Skip), setting
    the address's view of its local part, affixes and local user on the way."""
    opts = router.options
    if router.name in addr.skip_routers:
        raise _Skip("skipped for this address")
    for ancestor in addr.ancestors():
        # Exim's loop breaker: a router never handles an address it already
        # handled for an ancestor with the same address.
        if ancestor.router == router.name and ancestor.address.lower() == addr.address.lower():
            raise _Skip("previously routed %s" % ancestor.address)
    caseful = opts["caseful_local_part"]
    lp = addr.cc_local_part if caseful else addr.cc_local_part.lower()
    addr.prefix = addr.suffix = addr.prefix_v = addr.suffix_v = ""
    if opts["local_part_prefix"]:
        found = _strip_affix(lp, opts["local_part_prefix"], True, caseful)
        if found:
            addr.prefix, addr.prefix_v, lp = found
        elif not opts["local_part_prefix_optional"]:
            raise _Skip("prefix not found")
    if opts["local_part_suffix"]:
        found = _strip_affix(lp, opts["local_part_suffix"], False, caseful)
        if found:
            addr.suffix, addr.suffix_v, lp = found
        elif not opts["local_part_suffix_optional"]:
            raise _Skip("suffix not found")
    addr.local_part = lp

    if ctx.mode == "verify":
        if ctx.verify_kind == "sender" and not opts["verify_sender"]:
            raise _Skip("not used when verifying senders")
        if ctx.verify_kind != "sender" and not opts["verify_recipient"]:
            raise _Skip("not used when verifying recipients")
    if ctx.mode == "test" and not opts["address_test"]:
        raise _Skip("address_test is false")
    if ctx.mode != "verify" and opts["verify_only"]:
        raise _Skip("verify_only set")

    from exim_py import match
    if opts["domains"] is not None:
        mctx = ctx.lazy_expand_context(addr)
        if not match.match_domain(addr.domain, opts["domains"], mctx):
            raise _Skip("domains mismatch")
        addr.domain_data = mctx.value("domain_data") or addr.domain_data
    if opts["local_parts"] is not None:
        mctx = ctx.lazy_expand_context(addr)
        if not match.match_localpart(addr.local_part, opts["local_parts"], mctx,
                                     caseless=not caseful):
            raise _Skip("local_parts mismatch")
        addr.local_part_data = mctx.value("local_part_data") or addr.local_part_data
    if opts["check_local_user"]:
        try:
            addr.local_user = pwd.getpwnam(addr.local_part)
        except KeyError:
            raise _Skip("%s is not a local user" % addr.local_part)
        addr.home_dir = addr.local_user.pw_dir
        addr.local_part_data = addr.local_part
    if opts["router_home_directory"] is not None:
        addr.home_dir = ctx.expand(opts["router_home_directory"], addr)
    sender = ctx.sender() if opts["senders"] is not None else None
    if sender is not None:
        if not match.match_address(sender, opts["senders"], ctx.expand_context(addr)):
            raise _Skip("senders mismatch")
    if opts["require_files"] is not None:
        _require_files(router, addr, ctx)
    if opts["condition"] is not None:
        try:
            ok = ctx.expand_condition(opts["condition"], addr)
        except ForcedFail:
            ok = False
        if not ok:
            raise _Skip("condition failure")


def _require_files(router, addr, ctx):
    """require_files: every listed file must exist (a '!' item must not)."""
    text = ctx.expand(router.options["require_files"], addr)
    for item in [x.strip() for x in text.split(":") if x.strip()]:
        negated = item.startswith("!")
        path = item[1:] if negated else item
        if path.startswith("+") or "/" not in path:
            continue        # "+user" changes the checking identity; nothing to check
        exists = os.path.exists(path)
        if exists == negated:
            raise _Skip("file %s %s" % (path, "exists" if negated else "missing"))


def _set_ugid(router, addr, ctx):
    """The router's user/group options, else the local user's, for local transports."""
    from exim_py.transports.local import group_id, user_ids
    opts = router.options
    if opts["user"] is not None:
        value = opts["user"]
        if isinstance(value, str) and "$" in value:
            value = ctx.expand(value, addr)
        addr.uid, addr.gid = user_ids(value)
    elif addr.local_user is not None:
        addr.uid, addr.gid = addr.local_user.pw_uid, addr.local_user.pw_gid
    if opts["group"] is not None:
        value = opts["group"]
        if isinstance(value, str) and "$" in value:
            value = ctx.expand(value, addr)
        addr.gid = group_id(value)
    if opts["transport_home_directory"] is not None:
        addr.home_dir = ctx.expand(opts["transport_home_directory"], addr)
    if opts["transport_current_directory"] is not None:
        addr.current_dir = ctx.expand(opts["transport_current_directory"], addr)


def _add_headers(router, addr, ctx):
    """headers_add / headers_remove / errors_to after the router accepted."""
    opts = router.options
    if opts["errors_to"] is not None:
        try:
            value = ctx.expand(opts["errors_to"], addr).strip()
        except ForcedFail:
            value = None
        # An empty errors_to means "no bounces": the null sender.  Any other
        # address is used only if it verifies (spec: errors_to); when only
        # routing is being tested or verified it does not matter.
        if value == "" or (value is not None and ctx.mode == "deliver"
                           and _errors_to_verifies(value, ctx)):
            addr.errors_to = value
    if opts["headers_add"] is not None:
        try:
            text = ctx.expand(opts["headers_add"], addr)
        except ForcedFail:
            text = ""
        from exim_py.transports.base import split_header_lines
        addr.extra_headers = addr.extra_headers + split_header_lines(text)
    if opts["headers_remove"] is not None:
        try:
            text = ctx.expand(opts["headers_remove"], addr)
        except ForcedFail:
            text = ""
        addr.remove_headers = addr.remove_headers + [n.strip() for n in text.split(":")
                                                     if n.strip()]


def _errors_to_verifies(address, ctx):
    from exim_py.delivery.context import DeliveryContext
    from exim_py.delivery.verify import verify_address
    vctx = DeliveryContext(ctx.config, mode="verify", verify_kind="recipient")
    return verify_address(address, vctx, "recipient").code is OK


def _router_index(routers, name):
    for i, r in enumerate(routers):
        if r.name == name:
            return i
    return None


def _child_of(parent, child):
    """Give a generated address what it inherits from its parent."""
    if child.errors_to is None:
        child.errors_to = parent.errors_to
    if not child.routed and not child.unseen:
        # unseen's routed copy already has them; its clone starts without
        # any (spec: the unseen option).
        child.extra_headers = list(parent.extra_headers) + child.extra_headers
        child.remove_headers = list(parent.remove_headers) + child.remove_headers
    child.ignore_error = child.ignore_error or parent.ignore_error
    if child.address_data is None:
        child.address_data = parent.address_data
    child.dsn_orig = parent.dsn_orig or parent.top.address
    if child.is_pfr:
        # Pipes and files run as the user the redirecting router settled on.
        child.uid, child.gid = parent.uid, parent.gid
        child.home_dir, child.current_dir = parent.home_dir, parent.current_dir
        child.local_user = parent.local_user
    return child


def route_address(addr, ctx, routers=None):
    """Route ``addr`` through the configured routers; returns a RouterResult.

    On OK, ``addr.router``/``addr.transport``/``addr.host_list`` are set; on
    REROUTED the result's ``new`` holds the addresses to route next: children
    of a redirection, or for ``unseen`` an already routed copy and a clone
    for the following routers.
    """
    if routers is None:
        routers = drivers.routers(ctx.config)
    if addr.routed:
        return RouterResult(OK)
    i = addr.start_router
    last = None
    extra = []
    while i < len(routers):
        router = routers[i]
        try:
            _preconditions(router, addr, ctx)
        except _Skip as why:
            ctx.debug_print("%s router skipped: %s" % (router.name, why))
            i += 1
            continue
        except LookupDefer as e:
            return RouterResult(DEFER, str(e) or "lookup defer")
        except ExpansionError as e:
            return RouterResult(DEFER, str(e))
        last = router
        addr.router = router.name
        # dsn_lasthop: DSN requests end here (not passed on; reported by us).
        addr.dsn_lasthop = bool(router.options["dsn_lasthop"])
        try:
            # debug_print is expanded only when someone is listening: with
            # debugging off Exim never looks at it (spec "Generic options
            # for routers"), so a failing expansion there must not defer.
            if ctx.debug is not None and router.options["debug_print"] is not None:
                ctx.debug_print(ctx.expand(router.options["debug_print"], addr))
            if router.options["address_data"] is not None:
                try:
                    addr.address_data = ctx.expand(router.options["address_data"], addr)
                except ForcedFail:
                    i += 1
                    continue
            # Exim's default: true for routers that check for a local user.
            addr.retry_use_local_part = bool(
                router.options["retry_use_local_part"]
                if router.options.is_set("retry_use_local_part")
                else router.options["check_local_user"])
            result = router.route(addr, ctx)
        except LookupDefer as e:
            result = RouterResult(DEFER, str(e) or "lookup defer")
        except ExpansionError as e:
            result = RouterResult(DEFER, str(e))
        code = result.code

        if code is DECLINE:
            try:
                more = expand_bool(router, "more", addr, ctx, True)
            except ExpansionError as e:
                return RouterResult(DEFER, str(e))
            if not more:
                break
            i += 1
            continue
        if code is PASS:
            target = router.options["pass_router"]
            i = _router_index(routers, target) if target else i + 1
            continue
        if code in (DEFER, FAIL):
            if code is FAIL and result.message is None:
                result.message = "Unrouteable address"
            return result
        if code is DISCARD:
            return result

        try:
            _add_headers(router, addr, ctx)
            _set_ugid(router, addr, ctx)
            unseen = expand_bool(router, "unseen", addr, ctx, False)
        except LookupDefer as e:
            return RouterResult(DEFER, str(e) or "lookup defer")
        except ExpansionError as e:
            return RouterResult(DEFER, str(e))

        if ctx.mode == "verify":
            kind = "fail_verify_sender" if ctx.verify_kind == "sender" else "fail_verify_recipient"
            if router.options[kind]:
                return RouterResult(FAIL, "%s router forced verify failure" % router.name)

        if code is OK:
            addr.log_as_local = bool(router.options["log_as_local"])
        if unseen:
            # The address becomes the parent of two children: one delivered as
            # this router says, and a clone, without the headers added so far,
            # that goes on to the next router (spec: the unseen option).
            clone = Address(addr.address, parent=addr)
            clone.cc_local_part = addr.cc_local_part
            clone.start_router = i + 1
            clone.unseen = True
            if code is OK:
                result = RouterResult(REROUTED, new=[addr.routed_child()])
                code = REROUTED
            extra.append(clone)
        if code is REROUTED:
            for child in result.new:
                _child_of(addr, child)
            result.new.extend(extra)
        return result

    # Every router declined (or one with no_more did): the address is unroutable.
    addr.router = None
    message = "Unrouteable address"
    user_message = None
    if last is not None and last.options["cannot_route_message"] is not None:
        try:
            user_message = ctx.expand(last.options["cannot_route_message"], addr)
            message = user_message
        except ExpansionError:
            pass
    return RouterResult(FAIL, message, user_message=user_message)


__all__ = ["route_address", "expand_bool", "Address"]
