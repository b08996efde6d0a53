"""Differential testing of ACLs: the same configuration and SMTP dialogue through
real Exim's ``-bh`` host checking and through exim_py's ACL engine.

``exim_dialogue`` returns Exim's replies (one list of lines per command) and
its rejection log lines; ``our_dialogue`` runs the same commands through
``run_acl`` and ``replies.rejection`` the way the SMTP server does.  For
commands the ACL accepts only the first digit of the reply is compared (the
acceptance texts belong to the SMTP server, not to the ACL engine).
"""

import os
import pwd
import re
import shutil
import tempfile

from exim_py.acl import AclContext, run_acl
from exim_py.acl import replies
from exim_py.config import load
from exim_py.envelope import Envelope, Recipient, Session
from exim_py.receive import split_message
from tests.support.acl import ListLog, write_config
from tests.support.peers import RealExim

EXIM_MAIN = """\
keep_environment =
host_lookup =
rfc1413_hosts =
primary_hostname = test.example
tls_advertise_hosts =
log_selector = -tls_cipher -tls_certificate_verified
"""

_MESSAGE_ID = re.compile(r"^\w{6}-\w{6}-\w{2} ")
_LOG_KEEP = re.compile(r"rejected|Warning:|configured error code|sender verify|discard|wrote")


def split_replies(text):
    """Reply lines grouped per reply (a group ends at a line with a space after the code)."""
    groups, current = [], []
    for line in text.splitlines():
        if not re.match(r"^\d\d\d[ -]", line):
            continue
        current.append(line)
        if line[3] == " ":
            groups.append(current)
            current = []
    return groups


def exim_dialogue(testcase, text, commands, address="1.2.3.4", mode="-bh"):
    """(replies after the banner, kept log lines) from ``exim4 -bh`` (or ``-bhc``)
    with the configuration ``text``."""
    exim = RealExim()
    testcase.addCleanup(exim.cleanup)
    path = exim.write_config(text)
    out = exim.run(path, [mode, address], input="".join(c + "\r\n" for c in commands))
    groups = split_replies(out.stdout)
    logs = [_MESSAGE_ID.sub("", line[5:]) for line in out.stderr.splitlines()
            if line.startswith("LOG: ") and _LOG_KEEP.search(line)]
    if not groups:
        raise AssertionError("exim4 -bh failed: %s" % out.stderr[-2000:])
    if groups[0][0].startswith("220"):
        groups = groups[1:]
    return groups, logs


def our_dialogue(config_path, commands, address="1.2.3.4"):
    """The same dialogue through exim_py's ACL engine: (replies, kept log lines)."""
    config = load(config_path)
    main = config.main
    log = ListLog(selectors=("sender_verify_fail",))
    session = Session()
    session.sender_host_address = address
    session.local = False
    envelope = None
    out = []
    no_multiline = [False]
    discards = {}

    def acl(where, option, command_data, recipient=None, ok="250"):
        ctx = AclContext(config, session, envelope, recipient, log=log)
        result = run_acl(where, main[option], ctx)
        if result.effects.control("no_multiline_responses") is not None:
            no_multiline[0] = True
        if result.accepted:
            if ok:
                out.append([ok])
            if result.rc == "discard" and where in ("mail", "rcpt"):
                discards[where] = result.log_message or ""
            return True
        answer = replies.rejection(result, ctx, command_data, no_multiline[0])
        replies.write_logs(answer, ctx)
        out.append(answer.lines)
        if answer.close:
            raise StopIteration
        return False

    try:
        if main["acl_smtp_connect"]:
            acl("connect", "acl_smtp_connect", None, ok=None)
            if out:
                return out, _kept(log)
        skip_to = -1
        for index, command in enumerate(commands):
            if index <= skip_to:
                continue
            verb, _, arg = command.partition(" ")
            verb = verb.upper()
            if verb in ("HELO", "EHLO"):
                session.helo_name = arg
                if not acl("helo", "acl_smtp_helo", arg):
                    session.helo_name = None
            elif verb == "MAIL":
                data = arg.split(":", 1)[1].strip()
                envelope = Envelope(session)
                envelope.sender = data.strip("<>")
                if not acl("mail", "acl_smtp_mail", data):
                    envelope = None
            elif verb == "RCPT":
                data = arg.split(":", 1)[1].strip()
                discards.pop("rcpt", None)
                if "mail" in discards:
                    # After a MAIL discard Exim does not run the RCPT ACL.
                    out.append(["250"])
                    ctx = AclContext(config, session, envelope, log=log)
                    log.main(replies.discard_line(ctx, data, "mail", discards["mail"]))
                elif acl("rcpt", "acl_smtp_rcpt", data, recipient=data.strip("<>")):
                    if "rcpt" in discards:
                        ctx = AclContext(config, session, envelope, log=log)
                        log.main(replies.discard_line(ctx, data, "rcpt", discards["rcpt"]))
                    else:
                        envelope.recipients.append(Recipient(data.strip("<>")))
            elif verb == "RSET":
                envelope = None
                discards.clear()
                out.append(["250"])
            elif verb == "DATA":
                ctx = AclContext(config, session, envelope, log=log)
                result = run_acl("predata", main["acl_smtp_predata"], ctx)
                if result.accepted and result.rc != "discard":
                    out.append(["354"])
                    end = commands.index(".", index)
                    body = "".join(line + "\n" for line in commands[index + 1:end])
                    envelope.headers = split_message(body.encode())[0]
                    envelope.message_id = "1xUpNQ-0002ZN-1n"
                    skip_to = end
                    acl("data", "acl_smtp_data", None)
                    envelope = None
                else:
                    answer = replies.rejection(result, ctx, None, no_multiline[0])
                    replies.write_logs(answer, ctx)
                    out.append(answer.lines)
            elif verb in ("VRFY", "EXPN"):
                acl(verb.lower(), "acl_smtp_" + verb.lower(), arg, recipient=arg, ok="2")
            elif verb == "QUIT":
                ctx = AclContext(config, session, envelope, log=log)
                result = run_acl("quit", main["acl_smtp_quit"], ctx)
                if result.rc == "error":
                    log.main("ACL for QUIT returned ERROR: %s" % result.log_message)
                out.append(["221"])
    except StopIteration:
        pass
    return out, _kept(log)


def _kept(log):
    """Log lines in order, one per write (Exim -bh shows a line once whatever its logs)."""
    lines = []
    previous = None
    for which, text in log.lines:
        duplicate = which != "main" and previous is not None and previous[1] == text
        if _LOG_KEEP.search(text) and not duplicate:
            lines.append(text)
        previous = (which, text)
    return lines


def _spool(testcase, owner=None):
    """A fresh spool directory (owned by ``owner`` for Exim, which drops privilege)."""
    directory = tempfile.mkdtemp(prefix="exim_py-acl-spool-")
    testcase.addCleanup(shutil.rmtree, directory, True)
    if owner is not None:
        os.chown(directory, pwd.getpwnam(owner).pw_uid, -1)
    return directory


def compare(testcase, main, acls, commands, spool=False, mode="-bh"):
    """Assert that exim_py answers and logs ``commands`` as exim4 -bh does.

    With ``spool``, each side gets its own empty spool directory (for hints
    such as ratelimit's and callout caches).  ``mode="-bhc"`` lets Exim make
    callouts.
    """
    their_main = our_main = main
    if spool:
        their_main += "\nspool_directory = %s" % _spool(testcase, "Debian-exim")
        our_main += "\nspool_directory = %s" % _spool(testcase)
    return compare_texts(testcase, EXIM_MAIN + their_main + "\nbegin acl\n" + acls + "\n",
                         EXIM_MAIN + our_main + "\nbegin acl\n" + acls + "\n", commands,
                         mode=mode)


def compare_texts(testcase, their_text, our_text, commands, address="1.2.3.4", mode="-bh"):
    """As ``compare``, for whole configuration files (one for each side)."""
    theirs, their_logs = exim_dialogue(testcase, their_text, commands, address, mode)
    ours, our_logs = our_dialogue(write_config(testcase, our_text), commands, address)
    testcase.assertEqual(len(ours), len(theirs), (ours, theirs))
    for mine, real in zip(ours, theirs):
        if len(mine) == 1 and len(mine[0]) < 4:
            testcase.assertEqual(real[-1][:len(mine[0])], mine[0], (mine, real))
        else:
            testcase.assertEqual(mine, real)
    testcase.assertEqual(our_logs, their_logs)
    return ours, our_logs
