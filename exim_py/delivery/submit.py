"""Local message submission: exim_py called as sendmail (``-bm``, the default mode).

Reads a message on standard input, takes its recipients from the command
line or, with ``-t``, from its header, puts it on the queue and starts its
delivery unless ``-odq`` or queue_only says not to.  Spec sections
"Command line options" (``-f``, ``-F``, ``-t``, ``-i``/``-oi``, ``-od*``,
``-oe*``), "Trusted and admin users" and chapter "Message processing".
"""

import grp
import importlib
import importlib.util
import os
import pwd
import re
import subprocess
import sys
import time

from exim_py.config.options import find_group, find_user
from exim_py.match.lists import split_list
from exim_py.envelope import Envelope, Recipient, Session
from exim_py.log import Logger, msglog_received_line, received_line
from exim_py.receive import receive
from exim_py.spool import Spool


class Caller:
    """Who ran exim_py: login, uid, gid, full name, and whether Exim trusts them."""

    def __init__(self, config, uid=None, gid=None):
        self.uid = os.getuid() if uid is None else uid
        self.gid = os.getgid() if gid is None else gid
        try:
            pw = pwd.getpwuid(self.uid)
            self.login, gecos = pw.pw_name, pw.pw_gecos
        except KeyError:
            self.login = config.main.unknown_login or str(self.uid)
            gecos = config.main.unknown_username or ""
        # The full name is the gecos field up to its first comma; "&" stands
        # for the login name with a capital (the traditional finger rule).
        name = gecos.split(",", 1)[0]
        self.full_name = name.replace("&", self.login[:1].upper() + self.login[1:])
        self.trusted = self._is_trusted(config)

    def _is_trusted(self, config):
        """Root, the Exim user, trusted_users and trusted_groups are trusted (spec "Trusted and admin users")."""
        main = config.main
        if self.uid == 0:
            return True
        exim_user = main.exim_user
        if exim_user is not None and getattr(exim_user, "pw_uid", exim_user) == self.uid:
            return True
        for item in split_list(main.trusted_users or ""):
            pw = find_user(item)
            if pw is not None and pw.pw_uid == self.uid:
                return True
        groups = {self.gid}
        try:
            groups.update(g.gr_gid for g in grp.getgrall() if self.login in g.gr_mem)
        except KeyError:
            pass
        return any(find_group(item) in groups for item in split_list(main.trusted_groups or ""))


def _qualify(address, domain):
    return address if "@" in address or not address else "%s@%s" % (address, domain)


def _strip_brackets(address):
    address = address.strip()
    if address.startswith("<") and address.endswith(">"):
        address = address[1:-1].strip()
    return address


def split_host_port(text):
    """-oMa's ``ip.port`` (IPv4 or IPv6), or a bare address."""
    host, _, port = text.rpartition(".")
    if port.isdigit() and (host.count(".") == 3 or ":" in host):
        return host, int(port)
    return text, None


def command_line_recipients(args, domain):
    """Recipients from arguments: each may hold several, separated by commas."""
    out = []
    for arg in args:
        for item in arg.split(","):
            item = _strip_brackets(item)
            if item:
                out.append(Recipient(_qualify(item, domain)))
    return out


def read_message(stream, dot_ends):
    """Standard input as Exim stores it: CR LF and bare CR become LF; "." alone ends it unless -i."""
    data = stream.read()
    data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    if dot_ends:
        if data.startswith(b".\n") or data == b".":
            return b""
        cut = data.find(b"\n.\n")
        if cut >= 0:
            data = data[:cut + 1]
        elif data.endswith(b"\n."):
            data = data[:-1]
    return data


def strip_uucp_from(data, config):
    """Remove a leading "From sender date" line (uucp_from_pattern).

    Returns (the rest of the data, the sender it names or None, its length).
    """
    pattern = config.main.uucp_from_pattern
    if not pattern or not data.startswith(b"From "):
        return data, None, 0
    end = data.find(b"\n")
    first = data[:end if end >= 0 else len(data)].decode("utf-8", "surrogateescape")
    m = re.match(pattern, first)
    if not m:
        return data, None, 0
    from exim_py.expand import ExpandContext, expand
    ctx = ExpandContext(config=config)
    ctx.numeric = [m.group(0)] + list(m.groups())
    sender = _strip_brackets(expand(config.main.uucp_from_sender or "$1", ctx))
    return (data[end + 1:] if end >= 0 else b""), sender, len(first)


def choose_sender(inv, config, caller, env):
    """The envelope sender: -f from a trusted caller (or <> from anyone), else the caller's address."""
    domain = config.main.qualify_domain or config.main.primary_hostname or os.uname().nodename
    own = "%s@%s" % (caller.login, domain)
    if inv.sender is not None:
        wanted = _strip_brackets(inv.sender)
        wanted = _qualify(wanted, domain)
        if caller.trusted or wanted == "":
            env.sender = wanted
            return True
        if _untrusted_may_set(config, wanted):
            env.sender = wanted
            env.flags.add("sender_set_untrusted")
            return True
    env.sender = own
    return False


def _untrusted_may_set(config, address):
    """untrusted_set_sender: the senders an untrusted caller may give with -f (an address list)."""
    pattern = config.main.untrusted_set_sender
    if not pattern:
        return False
    try:
        from exim_py.expand import ExpandContext
        from exim_py.match import match_address
    except ImportError:
        return False   # no address-list matching in this build: nothing is allowed
    return match_address(address, pattern, ExpandContext(config=config))


def _error(inv, message, logger=None, message_id=None):
    """Report a submission error as the -oe mode asks; returns the exit status.

    -oeq/-oep write to standard error; the mailing modes (-oem, the default,
    -oee and -oew) also write it there here, -oee then exits 0.
    """
    if logger is not None and message_id:
        logger.main("%s %s" % (message_id, message), message_id)
    sys.stderr.write("exim: %s\n" % message)
    return 0 if inv.error_mode == "e" else 1


def _run_not_smtp_acl(config, env, logger):
    """acl_not_smtp (spec "The non-SMTP ACLs"); returns the ACL result, or None when unset."""
    if not config.main.acl_not_smtp:
        return None
    from exim_py.acl.context import AclContext
    from exim_py.acl.engine import run_acl
    from exim_py.receive import make_header
    result = run_acl("not_smtp", config.main.acl_not_smtp, AclContext(config, env.session, env, log=logger))
    if result.accepted:
        for _, text in result.effects.added_headers:
            env.headers.append(make_header(text))
    return result


def deliver_after_receipt(inv, config, spool, logger, message_id):
    """Start delivery as -od asks: -odi/-odf now, -odb (the default) in a child process."""
    mode = inv.delivery_mode or ("q" if config.main.queue_only else "b")
    if mode.startswith("q"):
        return 0
    if importlib.util.find_spec("exim_py.delivery.engine") is None:
        return 0   # no delivery engine in this build: the message waits for a queue runner
    engine = importlib.import_module("exim_py.delivery.engine")
    if mode == "b":
        # As Exim: a child process delivers while the caller goes on.
        if os.fork() != 0:
            return 0
        os.setsid()
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        status = 0
        try:
            engine.deliver_now(config, spool, message_id, logger, dont_deliver=inv.dont_deliver)
        except Exception as e:
            logger.panic("delivery failed unexpectedly: %s" % e, message_id)
            status = 1
        os._exit(status)
    engine.deliver_now(config, spool, message_id, logger, dont_deliver=inv.dont_deliver)
    return 0


def submit(inv, config, stdin=None, caller=None):
    """Receive one message from ``stdin`` as the command line describes; returns the exit status."""
    stdin = stdin if stdin is not None else sys.stdin.buffer
    caller = caller or Caller(config)
    logger = Logger(config)
    spool = Spool.from_config(config)
    spool.make_directories()
    main = config.main
    domain = main.qualify_domain or main.primary_hostname or os.uname().nodename

    session = Session()
    session.local = True
    session.caller_name, session.caller_uid, session.caller_gid = caller.login, caller.uid, caller.gid
    session.sender_ident = caller.login
    session.received_protocol = "local"
    if caller.trusted:
        # -oMa, -oMs, -oMr, -oMt: a trusted caller may describe where the message came from.
        if inv.sender_host_address:
            session.sender_host_address, session.sender_host_port = split_host_port(inv.sender_host_address)
            session.local = False
        session.sender_host_name = inv.sender_host_name
        if inv.received_protocol:
            session.received_protocol = inv.received_protocol
        if inv.sender_ident is not None:
            session.sender_ident = inv.sender_ident or None

    env = Envelope(session)
    set_by_f = choose_sender(inv, config, caller, env)
    if not set_by_f:
        # The caller's own address: Exim records it as an authenticated local sender.
        env.flags.add("local")
        session.authenticated_id = caller.login
        env.auth_sender = env.sender
    env.flags.update(("allow_unqualified_recipient", "allow_unqualified_sender"))
    env.recipients = command_line_recipients(inv.args, main.qualify_recipient or domain)

    data = read_message(stdin, inv.dot_ends and inv.argv0 != "rmail")
    data, uucp_sender, uucp_length = strip_uucp_from(data, config)
    if uucp_sender is not None and inv.sender is None and caller.trusted:
        # A trusted caller's "From sender date" line sets the sender as -f
        # would; Exim keeps $authenticated_id, drops the rest (checked with exim4).
        env.sender, set_by_f = uucp_sender, True
        env.flags.discard("local")
        env.auth_sender = None
    env.message_id, env.received_time = spool.ids.new_id()
    originator = inv.sender_name if inv.sender_name is not None else ("" if set_by_f else caller.full_name)
    body = receive(env, data, config, local=True, extract=inv.extract_recipients,
                   originator_name=originator, untrusted_login=None if caller.trusted else caller.login)
    env.max_received_linelength = max(env.max_received_linelength, uucp_length)
    if not env.recipients:
        text = "no recipients found in headers" if inv.extract_recipients else "no recipients in message"
        return _error(inv, text, logger, env.message_id)

    acl = _run_not_smtp_acl(config, env, logger)
    if acl is not None and not acl.accepted:
        logger.reject("F=<%s> rejected by non-SMTP ACL: %s" % (env.sender, acl.log_message or acl.user_message),
                      env.message_id, headers=env.headers, sender=env.sender, recipients=env.recipients)
        return _error(inv, "message rejected by non-SMTP ACL: %s" % (acl.user_message or "local configuration problem"))
    if acl is not None and acl.rc == "discard":
        return 0   # accepted and thrown away, as "discard" does

    env.spool_extra["received_time_complete"] = "%.6f" % time.time()
    msglog = msglog_received_line(env, logger) if config.main.message_logs else None
    message_id = spool.store(env, body, msglog)
    logger.main(received_line(env, logger), message_id)
    return deliver_after_receipt(inv, config, spool, logger, message_id)


def receive_mode(inv):
    """``exim_py [-bm] [-t] [-f addr] recipient...``: the mode function named in cli.MODES."""
    from exim_py import config as config_module
    from exim_py.cli import config_path
    config = config_module.load(config_path(inv), inv.macros)
    return submit(inv, config)


def newaliases_mode(inv):
    """``-bi`` / ``newaliases``: Exim has no alias database to rebuild; it runs bi_command if set."""
    from exim_py import config as config_module
    from exim_py.cli import config_path
    config = config_module.load(config_path(inv), inv.macros)
    command = config.main.bi_command
    if not command:
        return 0
    return subprocess.call(command.split() + list(inv.args))
