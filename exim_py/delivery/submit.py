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
from exim_py.delivery.addrparse import AddressSyntaxError, extract_address, qualify
from exim_py.envelope import Envelope, Recipient, Session
from exim_py.hostport import checked_address
from exim_py.log import Logger, received_line
from exim_py.receive import make_header, receive, split_message
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


def _strip_brackets(address):
    address = address.strip()
    if address.startswith("<") and address.endswith(">"):
        address = address[1:-1].strip()
    return address


class BadRecipient(ValueError):
    """A command-line recipient that does not parse: (address, Exim's reason)."""


def command_line_recipients(args, domain):
    """Recipients from arguments: each may hold several, separated by commas."""
    out = []
    for arg in args:
        for item in arg.split(","):
            if not item.strip():
                continue
            try:
                address = extract_address(item)
            except AddressSyntaxError as e:
                raise BadRecipient(item.strip(), str(e))
            out.append(Recipient(qualify(address, domain) if address else address))
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
        wanted = qualify(wanted, domain) if wanted else wanted
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


# The explanations of Exim's error messages to the sender of a local message
# (its moan_to_sender), by the reason for refusing the message.
_COPY_LINE = "------ This is a copy of your message, including all the headers. ------"
_EXPLANATIONS = {
    "no recipient addresses":
        "A message that you sent contained no recipient addresses, and therefore no\n"
        "delivery could be attempted.\n",
    "malformed recipient address":
        "A message that you sent contained a recipient address that was incorrectly\n"
        "constructed:\n\n  %s\n\nThe message has not been delivered to any recipients.\n",
    "rejected by local scanning code":
        "A message that you sent was rejected by the local scanning code that\n"
        "checks incoming messages on this system. The following error was given:\n\n  %s\n",
}


def _error(job, stderr_text, subject, detail=None, copy=b"", references=None):
    """Report a refused message as the -oe mode asks; returns the exit status.

    -oep and -oeq write ``stderr_text`` to standard error; -oem (the
    default), -oew and -oee mail an error message to the sender instead
    (Exim writes to the terminal for -oew only when it can: it mails here),
    and -oee then exits 0.
    """
    inv, env = job.inv, job.env
    mode = inv.error_mode or "m"
    if mode in "pq" or not env.sender:
        sys.stderr.write("exim: %s\n" % stderr_text)
        return 1
    explanation = _EXPLANATIONS[subject] % detail if detail is not None else _EXPLANATIONS[subject]
    header = ["Auto-Submitted: auto-replied", "From: %s" % job.dsn_from(), "To: %s" % env.sender]
    if references:
        header.append("References: <%s>" % references)
    header.append("Subject: Mail failure - %s" % subject)
    text = "%s\n\n%s\n%s\n\n" % ("\n".join(header), explanation, _COPY_LINE)
    job.send_error(text.encode("utf-8", "surrogateescape") + copy, env.sender)
    return 0 if mode == "e" else 1


def size_limit(config):
    """message_size_limit in bytes (expanded; K, M, G suffixes), or None for no limit."""
    text = config.main.message_size_limit
    if not text:
        return None
    if "$" in text:
        from exim_py.expand import ExpandContext, expand
        text = expand(text, ExpandContext(config=config))
    m = re.match(r"^\s*(\d+)\s*([KkMmGg]?)\s*$", text or "")
    if not m:
        return None
    value = int(m.group(1)) * 1024 ** " KMG".index((m.group(2) or " ").upper())
    return value or None


def _run_not_smtp_acl(config, env, logger, where="not_smtp"):
    """acl_not_smtp or acl_not_smtp_start (spec "The non-SMTP ACLs"); the result, or None when unset."""
    spec = config.main.acl_not_smtp if where == "not_smtp" else config.main.acl_not_smtp_start
    if not spec:
        return None
    from exim_py.acl.context import AclContext
    from exim_py.acl.engine import run_acl
    return run_acl(where, spec, AclContext(config, env.session, env, log=logger))


def _add_acl_headers(env, *results):
    """Headers the ACLs added (add_header) go at the end of the message's header."""
    for result in results:
        if result is not None and result.accepted:
            env.headers.extend(make_header(text) for _, text in result.effects.added_headers)


def deliver_after_receipt(config, spool, logger, message_id, mode, dont_deliver=False,
                          queue_smtp=False):
    """Start delivery as -od asks: -odi/-odf now, -odb (the default) in a child process.

    -odqs (``queue_smtp``, mode "qs" when alone) routes the message and
    makes its local deliveries, in the background unless -odi/-odf came
    too, and leaves its SMTP deliveries queued (spec, option -odqs).
    """
    if config.main.get("mua_wrapper"):
        # Exim as a relay for a local MUA delivers at once, in the foreground,
        # whatever -od and queue_only say (spec chapter "Exim as a
        # non-queueing client").
        mode, queue_smtp = "i", False
    if mode == "qs":
        mode, queue_smtp = "b", True
    mode = mode or ("q" if config.main.queue_only else "b")
    options = {"dont_deliver": dont_deliver}
    if queue_smtp:
        options["queue_smtp"] = True
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
            engine.deliver_now(config, spool, message_id, logger, **options)
        except Exception as e:
            logger.panic("delivery failed unexpectedly: %s" % e, message_id)
            status = 1
        os._exit(status)
    engine.deliver_now(config, spool, message_id, logger, **options)
    return 0


class Submission:
    """One local submission: the command line, the caller, and the message being received."""

    def __init__(self, inv, config, caller=None):
        self.inv = inv
        self.config = config
        self.caller = caller or Caller(config)
        self.logger = Logger(config)
        self.spool = Spool.from_config(config)
        self.spool.make_directories()
        main = config.main
        self.domain = main.qualify_domain or main.primary_hostname or os.uname().nodename
        self.env = None

    def new_envelope(self, login, uid, gid):
        session = Session()
        session.local = True
        session.caller_name, session.caller_uid, session.caller_gid = login, uid, gid
        session.sender_ident = login
        session.received_protocol = "local"
        return Envelope(session)

    def describe_origin(self, session):
        """-oMa, -oMs, -oMr, -oMt: a trusted caller may say where the message came from."""
        inv = self.inv
        if inv.sender_host_address:
            session.sender_host_address, session.sender_host_port = checked_address(
                inv.sender_host_address)
            session.local = False
            session.origin_tainted = True
        session.sender_host_name = inv.sender_host_name
        if inv.received_protocol:
            session.received_protocol = inv.received_protocol
        if inv.sender_ident is not None:
            session.sender_ident = inv.sender_ident or None

    def run(self, stdin):
        inv, config, caller = self.inv, self.config, self.caller
        self.env = env = self.new_envelope(caller.login, caller.uid, caller.gid)
        if caller.trusted:
            self.describe_origin(env.session)
        set_by_f = choose_sender(inv, config, caller, env)
        if not set_by_f:
            # The caller's own address: Exim records it as an authenticated local sender.
            env.flags.add("local")
            env.session.authenticated_id = caller.login
            env.auth_sender = env.sender
        env.flags.update(("allow_unqualified_recipient", "allow_unqualified_sender"))
        # acl_not_smtp_start runs before the message is read; its verdict is
        # ignored, but its controls (suppress_local_fixups) and variables count.
        start = _run_not_smtp_acl(config, env, self.logger, "not_smtp_start")
        suppress = start is not None and any(name == "suppress_local_fixups"
                                             for name, _ in start.effects.controls)
        data = read_message(stdin, inv.dot_ends and inv.argv0 != "rmail")
        try:
            env.recipients = command_line_recipients(inv.args, config.main.qualify_recipient or self.domain)
        except BadRecipient as e:
            address, reason = e.args
            return _error(self, 'bad recipient address "%s": %s' % (address, reason),
                          "malformed recipient address", "%s  %s" % (address, reason), b"\n" + data)
        limit = size_limit(config)
        if limit is not None and len(data) > limit:
            # Exim stops reading one byte past the limit.
            env.message_id, env.received_time = self.spool.ids.new_id()
            env.headers = split_message(data[:limit + 1])[0]
            self.logger.reject("rejected from <%s> U=%s: message too big: read=%d max=%d"
                               % (env.sender, env.session.sender_ident, limit + 1, limit), env.message_id,
                               headers=env.headers, sender=env.sender, recipients=env.recipients)
            sys.stderr.write("exim: message rejected: message too big (max=%d)\n" % limit)
            return 1
        data, uucp_sender, uucp_length = strip_uucp_from(data, config)
        if uucp_sender is not None and inv.sender is None and caller.trusted:
            # A trusted caller's "From sender date" line sets the sender as -f
            # would; Exim keeps $authenticated_id, drops the rest (checked with exim4).
            env.sender, set_by_f = uucp_sender, True
            env.flags.discard("local")
            env.auth_sender = None
        env.message_id, env.received_time = self.spool.ids.new_id()
        originator = inv.sender_name if inv.sender_name is not None else ("" if set_by_f else caller.full_name)
        body = receive(env, data, config, local=True, extract=inv.extract_recipients,
                       suppress_local_fixups=suppress, originator_name=originator,
                       untrusted_login=None if caller.trusted else caller.login)
        env.max_received_linelength = max(env.max_received_linelength, uucp_length)
        if not env.recipients:
            self.logger.main("%s no recipients found in headers" % env.message_id, env.message_id)
            # The copy is the message before its Received: header was added.
            return _error(self, "no recipients in message", "no recipient addresses",
                          copy=self.copy(env.headers[1:], body), references=self.message_id_value())
        acl = _run_not_smtp_acl(config, env, self.logger)
        _add_acl_headers(env, start, acl)
        if acl is not None and not acl.accepted:
            self.logger.reject("F=<%s> rejected by non-SMTP ACL: %s"
                               % (env.sender, acl.log_message or acl.user_message), env.message_id,
                               headers=env.headers, sender=env.sender, recipients=env.recipients)
            why = acl.user_message or "local configuration problem"
            return _error(self, "message rejected by non-SMTP ACL: %s" % why, "rejected by local scanning code",
                          why, self.copy(env.headers, body), self.message_id_value())
        if acl is not None and acl.rc == "discard":
            return 0   # accepted and thrown away, as "discard" does
        message_id = self.store(env, body)
        return deliver_after_receipt(config, self.spool, self.logger, message_id, inv.delivery_mode,
                                     inv.dont_deliver, inv.queue_smtp)

    def store(self, env, body):
        env.spool_extra["received_time_complete"] = "%.6f" % time.time()
        message_id = self.spool.store(env, body)   # the spool writes the msglog's first line
        self.logger.main(received_line(env, self.logger), message_id)
        return message_id

    @staticmethod
    def copy(headers, body):
        """The message as an error message quotes it: its live headers, a blank line, the body."""
        text = "".join(h.text for h in headers if h.flag != "*")
        return text.encode("utf-8", "surrogateescape") + b"\n" + body

    def message_id_value(self):
        ids = [h.value.strip() for h in self.env.headers if h.flag == "I"]
        return ids[0].strip("<>") if ids else None

    def dsn_from(self):
        from exim_py.expand import ExpandContext, expand
        return expand(self.config.main.dsn_from, ExpandContext(config=self.config))

    def exim_identity(self):
        """(login, uid, gid) of exim_user, which sends error messages; the caller's when unset."""
        uid = self.config.main.exim_user
        try:
            pw = pwd.getpwuid(uid) if uid is not None else None
        except KeyError:
            pw = None
        if pw is None:
            return self.caller.login, self.caller.uid, self.caller.gid
        return pw.pw_name, pw.pw_uid, pw.pw_gid

    def send_error(self, data, recipient):
        """Queue an error message from <> to ``recipient`` as the Exim user, and start its delivery."""
        env = self.new_envelope(*self.exim_identity())
        env.sender = ""
        env.recipients = [Recipient(recipient)]
        env.flags.update(("allow_unqualified_recipient", "allow_unqualified_sender", "localerror"))
        env.message_id, env.received_time = self.spool.ids.new_id()
        body = receive(env, data, self.config, local=True)
        message_id = self.store(env, body)
        deliver_after_receipt(self.config, self.spool, self.logger, message_id, None)


def submit(inv, config, stdin=None, caller=None):
    """Receive one message from ``stdin`` as the command line describes; returns the exit status."""
    return Submission(inv, config, caller).run(stdin if stdin is not None else sys.stdin.buffer)


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
