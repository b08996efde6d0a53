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

from exim_py.expand.be import _login, build_context
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


def _sender(inv, qualify):
    """The envelope sender: -f (``<>`` for none), else the caller."""
    sender = inv.sender
    if sender is None:
        return "%s@%s" % (_login(), qualify)
    sender = "" if sender in ("<>", "") else sender.strip("<>")
    if sender and "@" not in sender:
        sender = "%s@%s" % (sender, qualify)
    return sender


def _read_message(inv, ctx, config, sender, out):
    """Read the message on stdin as a local submission (so it gets the
    Message-Id:, From: and Date: fixups Exim makes), and set the message
    variables.  Returns (message id, return path)."""
    from exim_py.delivery.submit import Caller
    from exim_py.envelope import Envelope, Session
    from exim_py.expand.rfc822 import extract_address
    from exim_py.receive import receive, split_message
    from exim_py.spool.spool import Spool
    data = sys.stdin.buffer.read()
    raw_headers = split_message(data)[0]
    if not raw_headers:
        out("Warning: no message headers read")
    session = Session()
    session.local = True
    session.received_protocol = "local"
    env = Envelope(session)
    env.sender = sender
    env.message_id = Spool(ctx.main_option("spool_directory", "/tmp")).new_message_id()
    caller = Caller(config)
    originator = inv.sender_name if inv.sender_name is not None else \
        ("" if inv.sender is not None else caller.full_name)
    body = receive(env, data, config, local=True, originator_name=originator)
    # Exim's -bf shows the headers as received, without a Received: line.
    received = [h for h in env.headers if h.flag == "P"]
    headers = env.headers[1:] if len(received) > len([h for h in raw_headers if h.flag == "P"]) \
        else env.headers
    ctx.headers = headers
    ctx.body = body.decode("utf-8", "surrogateescape")
    ctx.set("message_size", len(data) or 1)
    ctx.set("message_body_size", len(body))
    ctx.set("body_linecount", env.body_linecount)
    ctx.set("message_linecount", data.count(b"\n"))
    return_path = sender
    for h in raw_headers:
        if h.text[:12].lower() == "return-path:":
            found = extract_address(h.text[12:].strip(), allow_null=True)
            return_path = found[0] if found else h.text[12:].strip()
            out('Return-path taken from "Return-path:" header line')
            out("Return-path = %s" % (return_path or "<>"))
            break
    else:
        out("Return-path copied from sender")
    return env.message_id, return_path


def _envelope(inv, ctx, config, out):
    """Read the message, set the envelope variables and print them as Exim does."""
    from exim_py.expand.variables import qualify_domain
    qualify = qualify_domain(ctx)
    sender = _sender(inv, qualify)
    message_id, return_path = _read_message(inv, ctx, config, sender, out)
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
    # As exim -bf: $home is the caller's home directory.
    ctx.set("home", os.environ.get("HOME") or _home())
    ctx.set("sender_address", sender)
    ctx.set("return_path", return_path)
    for name, value in (("local_part", local_part), ("domain", domain),
                        ("original_local_part", local_part), ("original_domain", domain),
                        ("local_part_prefix", prefix), ("local_part_suffix", suffix),
                        ("message_id", message_id), ("message_exim_id", message_id)):
        ctx.set(name, value)
    return message_id, qualify


def _home():
    import pwd
    try:
        return pwd.getpwuid(os.getuid()).pw_dir
    except KeyError:
        return ""


def _read_filter(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("latin-1")
    except OSError as e:
        sys.stderr.write("exim: failed to open %s: %s\n" % (path, os.strerror(e.errno)))
        return None


def filter_test_mode(inv):
    """The -bf / -bF mode function (see exim_py.cli.MODES)."""
    paths = [(p, system) for p, system in ((inv.system_filter_file, True),
                                           (inv.filter_file, False)) if p]
    texts = [_read_filter(path) for path, _ in paths]
    if None in texts:
        return 1
    from exim_py import cli, config as configmod
    # As Exim, -bf needs the configuration (qualify_domain and so on).
    config = configmod.load(cli.config_path(inv), inv.macros or None)
    ctx = build_context(inv, config)
    ctx.first_delivery = True
    message_id, qualify = _envelope(inv, ctx, config, _out)
    numbers = None
    for (path, system), text in zip(paths, texts):
        kind = filter_type(text) or ("exim" if system else None)
        _out('Testing %s file "%s"\n' % ({"exim": "Exim filter", "sieve": "Sieve filter"}
                                          .get(kind, "forward file"), path))
        if kind is None:
            status = _forward_file(text, ctx, qualify)
            if status:
                return status
            continue
        if kind == "sieve":
            _out("Filter error: Sieve filters are not supported by exim_py")
            return 1
        interpreter = Interpreter(ctx, system=system,
                                  allowed=("defer", "fail", "freeze") if system else (),
                                  test=_out, message_id=message_id, qualify=qualify,
                                  sn=numbers)
        result = interpreter.run(text)
        if result.code == ERROR:
            _out("Filter error: %s" % result.message)
            return 1
        _out(_ENDINGS[result.code])
        if system:
            numbers = result.numbers
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
