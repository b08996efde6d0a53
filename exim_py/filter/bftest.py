"""``exim_py -bf FILE`` and ``-bF FILE``: testing a filter against a message.

As ``exim -bf``: the message (headers, then body) is read from standard
input, the envelope comes from ``-f`` (sender) and ``-bfl``/``-bfd``/
``-bfp``/``-bfs`` (the recipient's local part, domain, prefix and suffix),
and the filter is obeyed in test mode, each action described on standard
output instead of being set up.  ``-bF`` tests a system filter: no
"# Exim filter" line is needed, and header changes, defer, fail and freeze
are allowed.  A file that is not a filter is read as a forward file and
the addresses it generates are listed.  The exit status is 1 when the
filter has an error, else 0.
"""

import os
import sys

from exim_py.expand.be import _load_config, _login, build_context, load_message
from exim_py.filter import filter_type
from exim_py.filter.interpreter import (DEFER, DELIVERED, ERROR, FAIL, FREEZE,
                                        NOTDELIVERED, Interpreter)

_ENDINGS = {
    DEFER: 'Filtering ended by "defer".',
    FREEZE: 'Filtering ended by "freeze".',
    FAIL: 'Filtering ended by "fail".',
    DELIVERED: "Filtering set up at least one significant delivery or other action.\n"
               "No other deliveries will occur.",
    NOTDELIVERED: "Filtering did not set up a significant delivery.\n"
                  "Normal delivery will occur.",
}


def _out(line):
    sys.stdout.write(line + "\n")


def _envelope(inv, ctx, out):
    """Set the sender and recipient variables and print them as Exim does."""
    from exim_py.expand.variables import qualify_domain
    from exim_py.spool.spool import Spool
    qualify = qualify_domain(ctx)
    sender = inv.sender
    if sender is not None:
        sender = "" if sender in ("<>", "") else sender.strip("<>")
        if sender and "@" not in sender:
            sender = "%s@%s" % (sender, qualify)
    else:
        sender = "%s@%s" % (_login(), qualify)
    if not ctx.headers:
        out("Warning: no message headers read")
    return_path = sender
    for h in ctx.headers:
        if h.flag != "*" and h.text[:12].lower() == "return-path:":
            from exim_py.expand.rfc822 import extract_address
            found = extract_address(h.text[12:].strip(), allow_null=True)
            return_path = found[0] if found else h.text[12:].strip()
            h.flag = "*"
            out('Return-path taken from "Return-path:" header line')
            out("Return-path = %s" % (return_path or "<>"))
            break
    else:
        out("Return-path copied from sender")
    out("Sender      = %s" % (sender or "<>"))
    local_part = inv.filter_local_part or _login()
    domain = inv.filter_domain or qualify
    prefix = inv.filter_prefix or ""
    suffix = inv.filter_suffix or ""
    out("Recipient   = %s%s%s@%s" % (prefix, local_part, suffix, domain))
    if prefix:
        out("Prefix    = %s" % prefix)
    if suffix:
        out("Suffix    = %s" % suffix)
    ctx.set("sender_address", sender)
    ctx.set("return_path", return_path)
    for name, value in (("local_part", local_part), ("domain", domain),
                        ("local_part_prefix", prefix), ("local_part_suffix", suffix)):
        ctx.set(name, value)
    spool_dir = ctx.main_option("spool_directory", "/tmp")
    message_id = Spool(spool_dir).new_message_id()
    ctx.set("message_id", message_id)
    ctx.set("message_exim_id", message_id)
    return message_id, qualify


def filter_test_mode(inv):
    """The -bf / -bF mode function (see exim_py.cli.MODES)."""
    path = inv.filter_file
    try:
        with open(path, "rb") as f:
            text = f.read().decode("latin-1")
    except OSError as e:
        sys.stderr.write("exim: failed to open %s: %s\n" % (path, os.strerror(e.errno)))
        return 1
    config = _load_config(inv)
    ctx = build_context(inv, config)
    ctx.first_delivery = True
    load_message(ctx, "/dev/stdin")
    message_id, qualify = _envelope(inv, ctx, _out)
    system = inv.mode_flag == "-bF"
    kind = filter_type(text) or ("exim" if system else None)
    _out('Testing %s file "%s"\n' % ({"exim": "Exim filter", "sieve": "Sieve filter"}
                                     .get(kind, "forward file"), path))
    if kind is None:
        return _forward_file(text, ctx, qualify)
    if kind == "sieve":
        _out("Filter error: Sieve filters are not supported by exim_py")
        return 1
    interpreter = Interpreter(ctx, system=system,
                              allowed=("defer", "fail", "freeze") if system else (),
                              test=_out, message_id=message_id, qualify=qualify)
    result = interpreter.run(text)
    if result.code == ERROR:
        _out("Filter error: %s" % result.message)
        return 1
    _out(_ENDINGS[result.code])
    return 0


def _forward_file(text, ctx, qualify):
    """A plain forward file: list what it generates, newest first as Exim does."""
    from exim_py.delivery.addrparse import AddressSyntaxError, extract_address
    from exim_py.routers.redirect import split_items
    generated = []
    for item in split_items(text):
        low = item.lower()
        if low.startswith(":fail:"):
            _out('exim: forward file contains ":fail:"')
            break
        if low.startswith(":blackhole:"):
            _out('exim: forwardfile contains ":blackhole:"')
            continue
        if item.startswith(("|", "/")):
            generated.append(item)
            continue
        try:
            address = extract_address(item)
        except AddressSyntaxError as e:
            _out('exim: error in forward file: %s in "%s"' % (e, item))
            return 1
        if "@" not in address:
            address = "%s@%s" % (address, ctx.get("domain") or qualify)
        generated.append(address)
    if not generated:
        _out("exim: no addresses generated from forward file")
        return 0
    _out("exim: forward file generated:")
    for address in reversed(generated):
        _out("  %s" % address)
    return 0
