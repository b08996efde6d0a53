"""What the SMTP server asks at HELO and EHLO: the HELO name's syntax, the
checks and the HELO ACL, the keywords offered, HELP's list and the AUTH
mechanisms advertised.

A mixin of ServerPolicy (smtp/policy.py), as MessagePolicy is
(smtp/policy_message.py).  Spec chapter "SMTP processing" (HELO/EHLO,
the EHLO response) and "SMTP authentication" (advertising AUTH).
"""

import ipaddress
import re

from twisted.internet import defer, threads

from exim_py.smtp import helo_check, session_hosts
from exim_py.smtp.reply import Reply

_HELO_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9-])?\.?$")


class HeloPolicy:
    """HELO/EHLO answers; see ServerPolicy for the attributes used."""

    def helo_syntax_ok(self, session, name):
        if not name or " " in name:
            return False
        if session_hosts.session_host(self, "helo_accept_junk_hosts", session):
            return True
        if name.startswith("[") and name.endswith("]"):
            literal = name[1:-1]
            if literal.lower().startswith(("ipv6:", "ipv4:")):
                literal = literal[5:]
            try:
                ipaddress.ip_address(literal)
                return True
            except ValueError:
                return False
        allowed = self._option("helo_allow_chars", "") or ""
        checked = name.translate({ord(c): "a" for c in allowed}) if allowed else name
        return bool(_HELO_NAME.match(checked))

    def helo(self, session, verb, name):
        """helo_verify_hosts / helo_try_verify_hosts (smtp/helo_check.py),
        the HELO ACL, then for EHLO the host lists of its reply."""
        if getattr(session, "host_answers", None) is not None:
            session.host_answers = None         # each HELO/EHLO checks its lists anew
        checked = helo_check.check(self, session, verb)
        if isinstance(checked, defer.Deferred):
            return checked.addCallback(self._helo_acl, session, verb, name)
        return self._helo_acl(checked, session, verb, name)

    def _helo_acl(self, refused, session, verb, name):
        if refused:
            return refused
        reply = self._run_acl("helo", "acl_smtp_helo", session, command_data=name)
        if verb != "EHLO":
            return reply
        if reply is not None and reply.__class__ is not Reply:  # a Deferred
            return reply.addCallback(session_hosts.ehlo_lists, self, session)
        return session_hosts.ehlo_lists(reply, self, session)

    def helo_required(self, session):
        """hosts_require_helo (default *, Exim 4.95) or helo_verify_hosts."""
        return self.host_in("hosts_require_helo", session, "*") or session_hosts.session_host(
            self, "helo_verify_hosts", session)

    def log_no_helo(self, session):
        if self.logger is not None:
            self.logger.reject("rejected MAIL from %s: no HELO/EHLO given" % self.host_text(session))

    def protocol_name(self, session, esmtp):
        name = "esmtp" if esmtp else "smtp"
        if session.local and session.sender_host_address is None:
            return "local-" + name
        if esmtp and session.tls_cipher:
            name += "s"
        if esmtp and session.authenticated_id is not None:
            name += "a"
        return name

    def helo_greeting(self, session):
        who = session.sender_host_name or session.helo_name
        text = "%s Hello %s%s" % (self.hostname(session),
                                  session.sender_ident + " at " if session.sender_ident else "", who)
        if session.sender_host_address:
            text += " [%s]" % session.sender_host_address
        return text

    def ehlo_extensions(self, session):
        """The set of keywords this session is offered (in no order; see ehlo_lines)."""
        ext = {"SIZE", "HELP"}
        if self._option("accept_8bitmime", True):
            ext.add("8BITMIME")
        if self.host_in("dsn_advertise_hosts", session, on_defer=True):
            ext.add("DSN")
        for name in ("etrn", "vrfy", "expn"):
            if self._option("acl_smtp_" + name):
                ext.add(name.upper())
        if self.host_in("pipelining_advertise_hosts", session, "*") and not getattr(session, "no_pipelining", False):
            ext.add("PIPELINING")
            if self.pipe_connect(session):
                ext.add("PIPECONNECT")
        if self.host_in("chunking_advertise_hosts", session, "*", on_defer=True):
            ext.add("CHUNKING")
        if self.auth_mechanisms(session):
            ext.add("AUTH")
        if self.tls is not None and session.tls_cipher is None and self.host_in(
                "tls_advertise_hosts", session, "*", on_defer=True):
            ext.add("STARTTLS")
        if self._option("prdr_enable", False):
            ext.add("PRDR")
        # Exim's I18N support is a build option; a configuration that does
        # not mention smtputf8_advertise_hosts gets the non-I18N behaviour.
        if self.main_is_set("smtputf8_advertise_hosts") and self.host_in(
                "smtputf8_advertise_hosts", session, on_defer=True):
            ext.add("SMTPUTF8")
        return ext

    def main_is_set(self, name):
        try:
            return self.main.is_set(name)
        except AttributeError:
            return False

    def ehlo_lines(self, session, ext):
        """EHLO keyword lines in Exim's order."""
        lines = []
        if "SIZE" in ext:
            limit = self.message_size_limit(session)
            lines.append("SIZE %d" % limit if limit else "SIZE")
        for word in ("8BITMIME", "DSN", "ETRN", "VRFY", "EXPN", "PIPELINING", "PIPECONNECT"):
            if word in ext:
                lines.append(word)
        if "AUTH" in ext:
            lines.append("AUTH " + " ".join(self.auth_mechanisms(session)))
        for word in ("CHUNKING", "STARTTLS", "PRDR", "SMTPUTF8", "HELP"):
            if word in ext:
                lines.append(word)
        return lines

    def help_text(self, session, tls_active):
        """HELP's list of commands; a Deferred firing with it when
        tls_advertise_hosts, checked for STARTTLS, may wait on the DNS."""
        if self.tls is not None and not tls_active and session_hosts.list_dns(
                self, "tls_advertise_hosts", session, "*"):
            return threads.deferToThread(self._help_text, session, tls_active)
        return self._help_text(session, tls_active)

    def _help_text(self, session, tls_active):
        words = ["AUTH"]
        if self.tls is not None and not tls_active and self.host_in(
                "tls_advertise_hosts", session, "*", on_defer=True):
            words.append("STARTTLS")
        words += ["HELO", "EHLO", "MAIL", "RCPT", "DATA", "BDAT", "NOOP", "QUIT", "RSET", "HELP"]
        for name in ("etrn", "expn", "vrfy"):
            if self._option("acl_smtp_" + name):
                words.append(name.upper())
        return " ".join(words)

    def auth_mechanisms(self, session):
        """Names for 250-AUTH (spec "Advertising AUTH"): auth_advertise_hosts, then each
        authenticator's server_advertise_condition."""
        if not self.authenticators:
            return []
        allowed = self.host_in("auth_advertise_hosts", session, "*")
        return self.auths_base.advertised(self.authenticators, allowed, self._auth_context(session))

    def _auth_context(self, session):
        if self.expand_mod is None:
            return None
        ctx = getattr(session, "auth_expand_ctx", None)
        if ctx is None:
            ctx = session.auth_expand_ctx = self.expand_context(session)
        return ctx
