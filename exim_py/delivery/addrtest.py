"""The -bt (address testing) and -bv / -bvs (verification) command-line modes.

Output follows Exim's verify_address byte for byte: a failed or deferred
address is reported as it happens, generated pipes and files when they are
reached, and successfully routed addresses at the end (local deliveries
first, each list most recent first), each with its parents, its router and
transport, and its hosts.  The exit status is 2 if any address failed, 1 if
any could not be resolved now, else 0.
"""

import os
import sys

from exim_py.delivery.addrparse import AddressSyntaxError, extract_address, qualify
from exim_py.delivery.address import FAIL, DEFER, OK
from exim_py.delivery.context import DeliveryContext
from exim_py.delivery.verify import verify_address
from exim_py.expand.rfc822 import find_address_end


def _load(inv):
    from exim_py import cli, config
    return config.load(cli.config_path(inv), inv.macros or None)


def _addresses(inv):
    """The addresses to test, taken as Exim's test mode takes them (exim.c):
    each argument is a comma-separated list, else each line of standard
    input is one address."""
    if inv.args:
        for arg in inv.args:
            yield from _argument_addresses(arg)
    else:
        yield from _input_lines()


def _argument_addresses(text):
    """The addresses of one argument: split where an address ends at a
    comma, the commas and white space after it skipped; an empty argument
    has none, but an empty item before a comma is tested (and refused)."""
    while text:
        end = find_address_end(text)
        yield text[:end]
        text = text[end + 1:].lstrip(", \t\n\r\f\v")


def _input_lines():
    """Standard input's lines, each after a "> " prompt (no readline here),
    a line ending in a backslash joined to the next; a blank line is tested
    too.  At the end of input the prompt gets its newline."""
    while True:
        sys.stdout.write("> ")
        sys.stdout.flush()
        parts = []
        while True:
            line = sys.stdin.readline()
            if not line:
                break
            text = line.rstrip()
            if parts:
                text = text.lstrip()
            if not text.endswith("\\"):
                parts.append(text)
                break
            parts.append(text[:-1])
        if not parts:
            sys.stdout.write("\n")
            return
        yield "".join(parts)


def _reason(addr):
    text = ""
    if addr.basic_errno and addr.basic_errno > 0:
        text += ": " + os.strerror(addr.basic_errno)
    if addr.message:
        text += ": " + addr.message
    return text


def format_hosts(addr):
    """The "  host NAME [IP] MX=n port=p" lines, padded as Exim pads them."""
    hosts = addr.host_list
    if not hosts or addr.transport is None:
        return []
    maxlen = max(len(h.name) for h in hosts)
    maxaddlen = max(len(h.address) if h.address else 7 for h in hosts)
    lines = []
    for h in hosts:
        line = "  host %-*s " % (maxlen, h.name)
        if h.address:
            line += "[%s%s" % (h.address, "]".ljust(maxaddlen + 1 - len(h.address)))
        elif not addr.transport.remote:
            line += " %-*s " % (maxaddlen, "")
        else:
            line += "[unknown%s" % "]".ljust(maxaddlen + 1 - 7)
        if h.mx is not None and h.mx >= 0:
            line += " MX=%d" % h.mx
        if h.port is not None:
            line += " port=%d" % h.port
        if h.status == "unusable":
            line += " ** unusable **"
        lines.append(line)
    return lines


def format_test(top_address, result, seen=None):
    """-bt output for one address, as a list of lines.

    ``seen`` holds the addresses already shown in this run: as in Exim, an
    address routed a second time, even for another argument, is marked as
    a duplicate.
    """
    out = []
    seen = set() if seen is None else seen
    for kind, addr in result.events:
        if kind == "pfr":
            # An autoreply's address is ">recipients"; -bt shows it as "mail ...".
            target = addr.address
            if target.startswith(">"):
                target = "mail " + target[1:]
            line = "%s -> %s" % (addr.parent.address, target)
            if addr.setup_error is not None:
                out.append(line)
                out.append("*** Error in setting up pipe, file, or autoreply:")
                out.append(addr.setup_error)
            elif addr.forbidden:
                out.append(line + " *** forbidden ***")
            else:
                out.append(line)
                out.append("  transport = %s" % addr.transport.name)
            continue
        verb = "is undeliverable" if kind == "fail" else "cannot be resolved at this time"
        reason = _reason(addr)
        if kind == "defer" and not addr.message and not (addr.basic_errno or 0) > 0:
            reason += ": unknown error"
        out.append("%s %s%s" % (addr.address, verb, reason))
        out.extend("    <-- %s" % p.address for p in addr.ancestors())
    if result.discarded:
        out.append("mail to %s is discarded" % top_address)
        return out
    for addr in result.routed:
        line = addr.address
        if not addr.is_pfr:
            if addr.unique in seen:
                line += "   [duplicate, would not be delivered]"
            seen.add(addr.unique)
        out.append(line)
        out.extend("    <-- %s" % p.address for p in addr.ancestors())
        out.append("  router = %s, transport = %s"
                   % (addr.router, addr.transport.name if addr.transport else "unset"))
        out.extend(format_hosts(addr))
    return out


def _run(inv, full):
    config = _load(inv)
    kind = "sender" if inv.mode_flag == "-bvs" else "recipient"
    main = config.main
    qualify_domain = (main.get("qualify_recipient") if kind == "recipient" else None) \
        or main.get("qualify_domain") or main.get("primary_hostname")
    qualify_sender = main.get("qualify_domain") or main.get("primary_hostname")
    status = 0
    seen = set()
    for raw in _addresses(inv):
        try:
            address = extract_address(raw)
        except AddressSyntaxError as e:
            sys.stdout.write("syntax error: %s\n" % e)
            status = 2
            continue
        given = address
        address = qualify(address, qualify_domain)
        ctx = DeliveryContext(config, mode="test" if full else "verify")
        ctx.base = _sender_context(config, inv.sender if inv.sender is not None
                                   else "%s@%s" % (_login(), qualify_sender))
        result = verify_address(address, ctx, kind, full=full, unique=given)
        if full:
            lines = format_test(address, result, seen)
        else:
            lines = [_verdict(address, result)]
        sys.stdout.write("".join(line + "\n" for line in lines))
        if result.code is FAIL:
            status = 2
        elif result.code is DEFER and status == 0:
            status = 1
    sys.stdout.flush()
    return status


def _login():
    import pwd
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


def _sender_context(config, sender):
    from exim_py.expand import ExpandContext
    return ExpandContext(config=config, variables={"sender_address": sender})


def _verdict(address, result):
    if result.code is OK:
        return "%s verified" % address
    addr = result.address
    if result.code is FAIL:
        return "%s failed to verify%s" % (address, _reason(addr))
    reason = _reason(addr) or ": unknown error"
    return "%s cannot be resolved at this time%s" % (address, reason)


def address_test_mode(inv):
    """exim_py -bt ADDRESS...: show how each address would be routed."""
    return _run(inv, full=True)


def verify_mode(inv):
    """exim_py -bv / -bvs ADDRESS...: verify recipient (or sender) addresses."""
    return _run(inv, full=False)
