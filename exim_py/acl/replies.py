"""From an ACL result to the SMTP reply and the log line, as Exim writes them.

This is the one place that knows Exim's rejection texts (smtp_in.c's
handling of an ACL failure): default codes per phase (550, 252 for VRFY, 458
for ETRN, 503 for AUTH), a code and enhanced code given at the start of a
``message``, "Administrative prohibition" and "Temporary local problem -
please try later", multi-line messages, ``control = no_multiline_responses``,
the ``H=... rejected RCPT <...>: ...`` log line, and ``drop`` closing the
connection.
"""

import re

from exim_py.acl.engine import DEFER, FAIL, FAIL_DROP, host_and_ident
from exim_py.acl.phases import WHERE_CODES, WHERE_NAMES

# A reply code at the start of a message, with any enhanced status codes.
_CODE = re.compile(r"^\d\d\d\s(?:\d\.\d\d?\d?\.\d\d?\d?\s)*")

ADMIN_PROHIBITION = "Administrative prohibition"
TEMPORARY_PROBLEM = "Temporary local problem - please try later"


class AclReply:
    """What to send and log for a rejection.

    ``code`` ("550"), ``enhanced`` ("5.7.1" or None), ``text`` (may contain
    newlines), ``lines`` (the reply lines without CRLF), ``close`` (drop the
    connection after sending), ``logs`` (list of (line, targets) to write,
    targets a tuple of "main", "reject", "panic").
    """

    def __init__(self, code, enhanced, text, lines, close, logs):
        self.code = code
        self.enhanced = enhanced
        self.text = text
        self.lines = lines
        self.close = close
        self.logs = logs

    @property
    def temporary(self):
        return self.code.startswith("4")

    def data(self):
        """The reply as bytes for the wire."""
        return "".join(line + "\r\n" for line in self.lines).encode("utf-8", "surrogateescape")

    def __repr__(self):
        return "AclReply(%r)" % (self.lines,)


def message_code(default, msg, log_msg, log_is_user, check_valid=True):
    """Take a reply code from the start of ``msg`` (Exim's smtp_message_code).

    Returns (code with enhanced part, message without it, log message, panic
    line or None).  A code whose first digit disagrees with the default is
    refused (and, when the log message is the user message, the log shows the
    default code instead).
    """
    if not msg:
        return default, msg, log_msg, None
    m = _CODE.match(msg)
    if not m:
        return default, msg, log_msg, None
    found = m.group(0)
    panic = None
    code = default
    if check_valid and msg[0] != default[0]:
        panic = ('configured error code starts with incorrect digit (expected %s) in "%s"'
                 % (default[0], msg))
        if log_is_user:
            log_msg = "%s %s" % (default, msg[len(found):])
    else:
        code = found
    return code, msg[len(found):], log_msg, panic


def respond_lines(code, text, no_multiline=False):
    """Exim's smtp_respond: one line per text line; continuation lines lose leading blanks."""
    basic = code[:3]
    esc = code[4:] if len(code) > 4 else ""
    if esc and not esc.endswith(" "):
        esc += " "
    lines = []
    msg = text
    while True:
        nl = msg.find("\n")
        if nl < 0:
            lines.append("%s %s%s" % (basic, esc, msg))
            return lines
        if nl == len(msg) - 1 or no_multiline:
            lines.append("%s %s%s" % (basic, esc, msg[:nl]))
            return lines
        lines.append("%s-%s%s" % (basic, esc, msg[:nl]))
        msg = msg[nl + 1:].lstrip(" \t")


def _tls_info(ctx):
    session = ctx.session
    log = ctx.log
    if not session.tls_cipher or log is None:
        return ""
    out = ""
    if log.selector("tls_cipher"):
        out += " X=%s" % session.tls_cipher
    if log.selector("tls_certificate_verified"):
        out += " CV=%s" % ("yes" if session.tls_certificate_verified else "no")
    if log.selector("tls_peerdn") and session.tls_peerdn:
        out += ' DN="%s"' % session.tls_peerdn
    return out


def _what(where, command_data):
    if where == "predata":
        return "DATA"
    if where == "data":
        return "after DATA"
    if where == "data_prdr":
        return "after DATA PRDR"
    if where == "mime":
        return "during MIME ACL checks"
    place = command_data if command_data is not None else 'in "connect" ACL'
    if where == "auth" and command_data is not None:
        place = command_data.split()[0] if command_data.split() else ""   # never log credentials
    return "%s %s" % (WHERE_NAMES[where], place[:100])


def _sender_info(ctx, where):
    if where not in ("rcpt", "data", "mime"):
        return ""
    env = ctx.envelope
    session = ctx.session
    out = " F=<%s>" % ((env.sender if env is not None else None) or "")
    if session.auth_mechanism:
        out += " A=%s" % session.auth_mechanism
        if session.authenticated_id:
            out += ":%s" % session.authenticated_id
    return out


def rejection(result, ctx, command_data=None, no_multiline=False):
    """The AclReply for a result that is not an acceptance (``ctx`` None: no logs).

    ``command_data`` is the command's argument as received (``<a@b>`` for
    MAIL and RCPT, the HELO name, the VRFY argument ...; None at connect).
    ``no_multiline``: ``control = no_multiline_responses`` is in force.
    """
    where = result.where
    rc = result.rc
    drop = rc == FAIL_DROP
    if drop:
        rc = FAIL
    logs = []
    default = WHERE_CODES.get(where, "550") if rc == FAIL else "451"
    code, user, log_msg, panic = message_code(
        default, result.user_message, result.log_message, result.log_is_user,
        check_valid=where != "vrfy")
    if panic:
        logs.append((panic, ("main", "panic")))

    lines = []
    failed = getattr(ctx, "sender_verify_failed", None) if ctx is not None else None
    if failed is not None and not failed.get("told"):
        failed["told"] = True
        log = ctx.log
        if rc != FAIL or log is None or log.selector("sender_verify_fail"):
            logs.append(("%s sender verify %s for <%s>%s" % (
                host_and_ident(ctx), "defer" if failed["result"] == DEFER else "fail",
                failed["address"], ": " + failed["message"] if failed.get("message") else ""),
                ("main", "reject")))
        if rc == FAIL and failed.get("user_message") and not no_multiline:
            # A preliminary, non-final part of the reply (smtp_respond SR_NOT_FINAL).
            pre = respond_lines(code, "Verification failed for <%s>\n%s" % (
                failed["address"], failed["user_message"]))
            lines = [line[:3] + "-" + line[4:] for line in pre]

    if rc == FAIL:
        text = user if user else ADMIN_PROHIBITION
    elif result.temp_details and user:
        text = user
    else:
        text = TEMPORARY_PROBLEM
    lines.extend(respond_lines(code, text, no_multiline))

    targets = result.effects.log_reject_target
    if targets and ctx is not None:
        log_text = ": %s" % log_msg.split("\n", 1)[0] if log_msg else ""
        logs.append(("%s%s%s %srejected %s%s" % (
            host_and_ident(ctx), _tls_info(ctx), _sender_info(ctx, where),
            "" if rc == FAIL else "temporarily ", _what(where, command_data), log_text),
            targets))
    enhanced = code[4:].strip() or None
    return AclReply(code[:3], enhanced, text, lines, drop, logs)


def write_logs(reply, ctx):
    """Write a reply's log lines through the context's logger."""
    for line, targets in reply.logs:
        ctx.write_log(line, targets)


def discard_line(ctx, command_data, where, log_message=None):
    """The log line for a recipient accepted but dropped by ``discard``.

    ``where`` is "rcpt" for a discard by the RCPT ACL, or "mail" for each
    recipient of a transaction whose MAIL ACL discarded (the server keeps
    that result's ``log_message`` for them).  ``command_data`` is the RCPT
    argument as received.
    """
    env = ctx.envelope
    return "%s F=<%s> RCPT %s: discarded by %s ACL%s" % (
        host_and_ident(ctx), (env.sender if env is not None else None) or "", command_data,
        WHERE_NAMES[where], ": " + log_message if log_message else "")
