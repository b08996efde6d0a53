"""ACL modifiers: set, add_header, remove_header, logwrite, log_reject_target,
delay, control, queue, continue, udpsend.

``message``, ``log_message`` and ``endpass`` are handled by the engine
itself.  A modifier never changes the outcome of its statement; it returns
the engine's OK, or ERROR with ``run.log`` set to Exim's text.
"""

import re
import socket

from exim_py.acl.phases import CONTROLS, WHERE_NAMES
from exim_py.config.options import read_time
from exim_py.log import printing
from exim_py.match import split_list

OK, ERROR = "accept", "error"

_POSITIONS = (":after_received:", ":at_start_rfc:", ":at_start:", ":at_end:")
_HEADER_START = re.compile(r"[\x21-\x39\x3b-\x7e]+:")


def add_headers(run, text):
    """Queue header lines from ``add_header`` (or a warn ``message``), as Exim's setup_header.

    An optional position prefix applies to all the lines; a line that does
    not start with ``Name:`` gets ``X-ACL-Warn: `` in front of it; lines
    starting with white space continue the previous header.
    """
    text = text.rstrip("\n")
    position = ":at_end:"
    for prefix in _POSITIONS:
        if text.lower().startswith(prefix):
            position, text = prefix, text[len(prefix):]
            break
    headers = []
    for line in text.split("\n"):
        if headers and line[:1] in (" ", "\t"):
            headers[-1] += "\n" + line
        elif line:
            headers.append(line)
    added = run.effects.added_headers
    for header in headers:
        if not _HEADER_START.match(header):
            header = "X-ACL-Warn: " + header
        entry = (position, header + "\n")
        if entry not in added:
            added.append(entry)
    run.ctx.set_variable("headers_added", "\n".join(h.rstrip("\n") for _, h in added))


def _set(run, item, arg):
    run.ctx.set_variable(item.var, arg)
    return OK


def _add_header(run, item, arg):
    add_headers(run, arg)
    return OK


def _remove_header(run, item, arg):
    for name in split_list(arg):
        name = name.strip().rstrip(":")
        if name:
            run.effects.removed_headers.append(name)
    return OK


def _logwrite(run, item, arg):
    """``logwrite = [:main,reject,panic:] text`` (spec "ACL modifiers"): the
    text goes to exactly the logs named (the main log alone by default),
    with its non-printing characters escaped as Exim's string_printing does
    (a tab stays a tab; top-bit bytes as print_topbitchars says)."""
    targets = []
    text = arg
    if text.startswith(":") and ":" in text[1:]:
        names, text = text[1:].split(":", 1)
        for name in names.split(","):
            name = name.strip()
            if name in ("main", "panic", "reject"):
                targets.append(name)
            else:
                targets = ["main", "panic"]
                text = 'unknown log name in "%s" in "logwrite" in %s ACL' % (
                    arg, WHERE_NAMES[run.where])
                break
    run.ctx.write_log(log_printing(run, text.lstrip()), tuple(targets or ["main"]))
    return OK


def log_printing(run, text):
    """``text`` made printable for a log line, as Exim's string_printing
    (honouring print_topbitchars): logwrite text and warn log_message."""
    return printing(text, bool(run.ctx.config.main.get("print_topbitchars")))


def _log_reject_target(run, item, arg):
    targets = []
    for name in split_list(arg):
        if not name:
            continue
        if name in ("main", "panic", "reject"):
            targets.append(name)
        else:
            targets.extend(("main", "reject"))
            run.ctx.write_log('unknown log name "%s" in "log_reject_target" in %s ACL'
                              % (name, WHERE_NAMES[run.where]), ("main", "panic"))
    run.effects.log_reject_target = tuple(dict.fromkeys(targets))
    return OK


def _delay(run, item, arg):
    seconds = read_time(arg.strip())
    if seconds < 0:
        run.log = ('syntax error in argument for "delay" modifier: "%s" is not a time value'
                   % arg)
        return ERROR
    run.effects.delay += seconds
    return OK


def _control(run, item, arg):
    """``control = name[/options]``: checked as Exim does and recorded in the effects."""
    name = None
    for candidate in sorted(CONTROLS, key=len, reverse=True):
        if arg.startswith(candidate):
            rest = arg[len(candidate):]
            if rest == "" or (rest.startswith("/") and CONTROLS[candidate][0]):
                name = candidate
                break
    if name is None:
        run.log = 'syntax error in "control=%s"' % arg
        return ERROR
    if run.where in CONTROLS[name][1]:
        run.log = 'cannot use "control=%s" in %s ACL' % (name, WHERE_NAMES[run.where])
        return ERROR
    options = arg[len(name):]
    ok = {
        "freeze": lambda o: o in ("", "/no_tell"),
        "submission": _submission_options_ok,
        "utf8_downconvert": lambda o: o in ("", "/1", "/0", "/-1"),
        "dscp": lambda o: o.startswith("/") and len(o) > 1,
        "queue": lambda o: o in ("", "/only", "/first_pass_route"),
    }.get(name, lambda o: True)
    if not ok(options):
        run.log = ("bad option value for control=utf8_downconvert" if name == "utf8_downconvert"
                   else 'syntax error in "control=%s"' % arg)
        return ERROR
    if name in ("caseful_local_part", "caselower_local_part"):
        ctx = run.ctx
        ctx.local_part = ctx.cc_local_part if name == "caseful_local_part" \
            else ctx.cc_local_part.lower()
        ctx.set_variable("local_part", ctx.local_part)
    if name == "queue":
        # control = queue is the newer name of queue_only (first_pass_route
        # only changes how a later queue run goes about it).
        name = "queue_only"
    run.effects.controls.append((name, options))
    return OK


def _submission_options_ok(options):
    rest = options
    while rest.startswith("/"):
        if rest.startswith("/sender_retain"):
            rest = rest[len("/sender_retain"):]
        elif rest.startswith("/domain="):
            end = rest.find("/", 1)
            rest = rest[end:] if end >= 0 else ""
        elif rest.startswith("/name="):
            rest = ""
        else:
            break
    return rest == ""


def _queue(run, item, arg):
    if "/" in arg:
        run.log = "Directory separator not permitted in queue name: '%s'" % arg
        return ERROR
    run.effects.queue = arg
    return OK


def _continue(run, item, arg):
    return OK


def _udpsend(run, item, arg):
    """``udpsend = host : port : payload`` sends one datagram (no reply is awaited)."""
    parts = arg.split(":", 2)
    if not parts[0].strip():
        run.log = 'missing destination host in "udpsend" modifier'
        return ERROR
    if len(parts) < 2 or not parts[1].strip():
        run.log = 'missing destination port in "udpsend" modifier'
        return ERROR
    if len(parts) < 3:
        run.log = 'missing datagram payload in "udpsend" modifier'
        return ERROR
    host, port, payload = parts[0].strip(), parts[1].strip(), parts[2].lstrip()
    if not port.isdigit():
        run.log = 'bad destination port in "udpsend" modifier'
        return ERROR
    try:
        family, _, _, _, sockaddr = socket.getaddrinfo(host, int(port), type=socket.SOCK_DGRAM)[0]
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.sendto(payload.encode("utf-8", "surrogateescape"), sockaddr)
    except OSError as e:
        run.log = '"udpsend" failed: %s' % (e.strerror or e)
        return "defer"
    return OK


_OBEY = {
    "add_header": _add_header,
    "continue": _continue,
    "control": _control,
    "delay": _delay,
    "log_reject_target": _log_reject_target,
    "logwrite": _logwrite,
    "queue": _queue,
    "remove_header": _remove_header,
    "set": _set,
    "udpsend": _udpsend,
}


def obey(run, item, arg):
    """Carry out modifier ``item``; returns OK or ERROR (with ``run.log`` set)."""
    return _OBEY[item.name](run, item, arg)
