"""The log lines about an SMTP connection itself, as Exim writes them.

Spec "Log files", selectors smtp_connection (a line when a connection opens
and when it closes), smtp_incomplete_transaction (a transaction abandoned by
RSET, QUIT or a lost connection), smtp_no_mail (a session that never gave
MAIL, with its duration and the commands it used) and
lost_incoming_connection (on by default: a connection lost in the middle of
a transaction or of the message data).  hosts_connection_nolog turns the
smtp_connection lines off for the hosts it matches.  The lines about a client's
errors (an invalid HELO name, a session dropped for too many errors, a
declared size over the limit) are here too.

The server calls ``opened``, ``command``, ``incomplete``, ``quit`` and
``lost``; everything they need is kept on the Session
(``connection_start``, ``commands_had``, ``mail_commands``).
"""

import time

from exim_py.config.options import format_time
from exim_py.log import printing
from exim_py.match import split_list
from exim_py.receive import host_strings

# Exim keeps the last 20 commands of a session for the C= list (SMTP_HBUFF_SIZE)
HISTORY = 20

# a declared message size is held in a C int
INT_MAX = 2 ** 31 - 1


def _selected(policy, name):
    logger = policy.logger
    return logger is not None and logger.selector(name)


def _fullhost(policy, session):
    """$sender_fullhost as log lines show it (with the port under +incoming_port)."""
    return host_strings(session, _selected(policy, "incoming_port"))[0]


def host_and_ident(policy, session, flag):
    """Exim's host_and_ident: 'H=(helo) [ip] U=ident', or just the ident for a
    local caller; without ``flag`` the H= and U= are left out."""
    fullhost = _fullhost(policy, session)
    if not fullhost:
        return "%s%s" % ("U=" if flag else "", session.sender_ident or "unknown")
    text = ("H=" if flag else "") + fullhost
    if session.sender_ident:
        text += " U=" + session.sender_ident
    return text


def connection_info(policy, session):
    """Exim's smtp_get_connection_info: 'SMTP connection from ...'."""
    if policy.host_checking:
        return "SMTP connection from %s" % (_fullhost(policy, session) or "")
    if session.sender_host_address is None or getattr(session, "not_socket", False):
        return "SMTP connection from %s" % (session.sender_ident or "")
    text = "SMTP connection from %s" % _fullhost(policy, session)
    if _selected(policy, "incoming_interface") and session.interface_address:
        text += " I=[%s]:%s" % (session.interface_address, session.interface_port)
    return text


class _LastMessageLog:
    """The -bh logger once a message has been accepted: Exim's -bh loop never
    clears its global message_id after a message, so every later line of the
    session starts with that id, until the next message's reception clears
    it (a daemon or -bs session clears it when the message is done, so only
    -bh shows this).  A line that names its own id keeps it."""

    def __init__(self, logger):
        self._logger = logger
        self.message_id = None

    def __getattr__(self, name):
        return getattr(self._logger, name)

    def main(self, text, message_id=None):
        self._logger.main(text, message_id or self.message_id)

    def reject(self, text, message_id=None, **kwargs):
        self._logger.reject(text, message_id or self.message_id, **kwargs)

    def panic(self, text, message_id=None, main=True):
        self._logger.panic(text, message_id or self.message_id, main)


def host_check_message_id(policy, message_id):
    """Under -bh, the id later lines of the session start with: the id of
    a message just accepted, or None once the next message's data begins
    (or when one is refused or all its recipients were discarded)."""
    logger = policy.logger
    if not policy.host_checking or logger is None:
        return
    if not isinstance(logger, _LastMessageLog):
        logger = policy.logger = _LastMessageLog(logger)
    logger.message_id = message_id


def _log_connection(policy, session, line):
    """A line under the smtp_connection selector (not for hosts_connection_nolog)."""
    if _selected(policy, "smtp_connection") and not getattr(session, "connection_nolog", False):
        policy.logger.main(line)


def opened(policy, session, count=None):
    """A connection starts; ``count`` is the daemon's number of open connections."""
    session.connection_start = time.time()
    session.commands_had = []
    session.mail_commands = 0
    if not _selected(policy, "smtp_connection"):
        return
    session.connection_nolog = _nolog(policy, session)
    if count is None or policy.host_checking or getattr(session, "not_socket", False):
        return _log_connection(policy, session, connection_info(policy, session))
    where = "[%s]" % session.sender_host_address
    if _selected(policy, "incoming_port"):
        where += ":%s" % session.sender_host_port
    if _selected(policy, "incoming_interface"):
        where += " I=[%s]:%s" % (session.interface_address, session.interface_port)
    _log_connection(policy, session, "SMTP connection from %s (TCP/IP connection count = %d)"
                    % (where, count))


def _nolog(policy, session):
    """Does the client match hosts_connection_nolog?  For a local caller
    (-bs) an empty item matches, as in any Exim host list: "hosts_connection_nolog = :"."""
    if session.sender_host_address:
        return policy.host_in("hosts_connection_nolog", session)
    value = policy._option("hosts_connection_nolog")
    return value is not None and "" in split_list(value)


def command(session, verb):
    """Remember a recognised command for the C= list of the no-MAIL line."""
    had = getattr(session, "commands_had", None)
    if had is None:
        had = session.commands_had = []
    had.append(verb)
    if len(had) > HISTORY:
        del had[0]
    if verb == "MAIL":
        session.mail_commands = getattr(session, "mail_commands", 0) + 1


def commands_had(session):
    """Exim's C= list of the commands a session used, the last 20; empty
    when there were none.  Exim keeps them in a ring of 20 and writes
    "C=..." once the ring is full, even when nothing was dropped yet."""
    had = getattr(session, "commands_had", None)
    if not had:
        return ""
    return ("C=..." if len(had) >= HISTORY else "C=") + ",".join(had)


def incomplete(policy, session, envelope, why):
    """smtp_incomplete_transaction: a transaction given up (RSET, QUIT, lost)."""
    if envelope is None or envelope.sender is None or not _selected(
            policy, "smtp_incomplete_transaction"):
        return
    line = "%s incomplete transaction (%s) from <%s>" % (
        host_and_ident(policy, session, True), why, envelope.sender)
    if envelope.recipients:
        line += " for " + " ".join(r.address for r in envelope.recipients)
    policy.logger.main(line)


def quit(policy, session, envelope):
    """After the 221: the abandoned transaction, the close and the no-MAIL lines."""
    incomplete(policy, session, envelope, "QUIT")
    _log_connection(policy, session, connection_info(policy, session) + " closed by QUIT")
    _no_mail(policy, session)


def lost_before_acl(policy, session, envelope, in_data):
    """The client went away without QUIT: the lines Exim writes before it
    runs the not-QUIT ACL (then lost_after_acl)."""
    if in_data:
        # Exim's handle_lost_connection (selectors lost_incoming_connection
        # or smtp_connection), with where the data stopped (" (header)",
        # " (after header)" or nothing: message_abandoned noted it)
        if _selected(policy, "lost_incoming_connection") or _selected(policy, "smtp_connection"):
            policy.logger.main(connection_info(policy, session) + " lost while reading message data"
                               + getattr(envelope, "lost_where", ""))
        return
    incomplete(policy, session, envelope, "connection lost")


def lost_after_acl(policy, session, envelope, in_data):
    """The rest of the lines for a client gone without QUIT."""
    if in_data:
        return
    if envelope is not None and (envelope.sender is not None or envelope.recipients):
        if _selected(policy, "lost_incoming_connection"):
            # "EOF" when there is no remote host (Exim's sender_host_unknown:
            # -bs without -oMa); -bh and -bs -oMa have one
            policy.logger.main("unexpected %s while reading SMTP command from %s D=%s" % (
                "disconnection" if session.sender_host_address else "EOF",
                host_and_ident(policy, session, False), _duration(session)))
    else:
        _log_connection(policy, session, "%s lost D=%s" % (connection_info(policy, session),
                                                          _duration(session)))
    _no_mail(policy, session)


def tls_failed(policy, session, why):
    """Exim's smtp_log_tls_fail line for a failed handshake (always logged),
    then the lines of a connection closed by the client."""
    if policy.logger is None:
        return
    info = connection_info(policy, session)
    policy.logger.main("TLS error on %s %s" % (info[len("SMTP "):], why))
    _log_connection(policy, session, info + " closed by EOF")
    _no_mail(policy, session)


def _duration(session):
    start = getattr(session, "connection_start", None)
    return format_time(int(time.time() - start) if start else 0)


def _no_mail(policy, session):
    """smtp_no_mail: a session without MAIL; D=, A=, TLS details and C=."""
    if getattr(session, "mail_commands", 0) or not _selected(policy, "smtp_no_mail"):
        return
    parts = ["D=" + _duration(session)]
    if session.auth_mechanism:
        parts.append("A=" + session.auth_mechanism +
                     (":" + session.authenticated_id if session.authenticated_id else ""))
    if session.tls_cipher:
        if _selected(policy, "tls_cipher"):
            parts.append("X=" + session.tls_cipher)
        if _selected(policy, "tls_certificate_verified"):
            parts.append("CV=" + ("yes" if session.tls_certificate_verified else "no"))
        if _selected(policy, "tls_peerdn") and session.tls_peerdn:
            parts.append('DN="%s"' % session.tls_peerdn)
    had = commands_had(session)
    if had:
        parts.append(had)
    policy.logger.main("no MAIL in SMTP connection from %s %s" % (
        host_and_ident(policy, session, False), " ".join(parts)))


# -- lines about a client's errors (smtp_in.c), main and reject logs -----

def _printing(policy, text):
    """Client text on its way to a log, as Exim's string_printing."""
    return printing(text, policy._option("print_topbitchars", False))


def helo_invalid(policy, session, verb, name):
    """A HELO/EHLO argument that is not a valid name."""
    policy.log_reject("rejected %s from %s: syntactically invalid argument(s): %s" % (
        verb, host_and_ident(policy, session, False),
        _printing(policy, name) if name else "(no argument given)"))


def synprot_error(policy, session, kind, text):
    """Exim's synprot_error line for a command refused as a syntax or a
    protocol error (``kind``), under selector smtp_syntax_error or
    smtp_protocol_error: the command as received, then the reason."""
    if _selected(policy, "smtp_%s_error" % kind):
        policy.logger.main('SMTP %s error in "%s" %s %s' % (
            kind, _printing(policy, getattr(session, "smtp_command", None) or ""),
            host_and_ident(policy, session, True), text))


def unqualified(policy, session, what, address):
    """A sender or recipient ("what") without a domain, from a host not
    allowed to send one (smtp_syntax_error; main and reject logs)."""
    if _selected(policy, "smtp_syntax_error"):
        policy.log_reject("unqualified %s rejected: <%s> %s" % (
            what, address, host_and_ident(policy, session, True)))


def auth_ignored(policy, session, value, why):
    """MAIL's AUTH= value is not taken (a main log line, always)."""
    if policy.logger is not None:
        policy.logger.main("ignoring AUTH=%s from %s (%s)" % (
            value, host_and_ident(policy, session, True), why))


def synprot_drop(policy, session):
    """The session ends for too many syntax or protocol errors: the last
    command escaped, then a blank and the C= list (so two blanks after the
    comma)."""
    had = commands_had(session)
    policy.log_reject("SMTP call from %s dropped: too many syntax or protocol errors "
                      "(last command was \"%s\", %s)" % (
                          host_and_ident(policy, session, False),
                          _printing(policy, getattr(session, "smtp_command", None) or ""),
                          " " + had if had else ""))


def unknown_drop(policy, session, line):
    """The session ends for too many unknown commands (no C= list here)."""
    policy.log_reject("SMTP call from %s dropped: too many unrecognized commands (last was \"%s\")"
                      % (host_and_ident(policy, session, False), _printing(policy, line)))


def nonmail_drop(policy, session, verb):
    """The session ends for too many non-mail commands: the verb as sent."""
    policy.log_reject("SMTP call from %s dropped: too many nonmail commands (last was \"%s\")"
                      % (host_and_ident(policy, session, False), _printing(policy, verb)))


def size_reject(policy, session, sender, size, limit):
    """MAIL's SIZE over the limit (selector size_reject); beyond a C int
    the size shows as ">=2147483647"."""
    if _selected(policy, "size_reject"):
        policy.log_reject("rejected MAIL FROM:<%s> %s: message too big: size%s=%d max=%d" % (
            sender, host_and_ident(policy, session, True),
            ">" if size >= INT_MAX else "", min(size, INT_MAX), limit))
