"""One AUTH exchange on the server side (RFC 4954): the SMTP server feeds it
the client's lines and sends back what it returns.
"""

from twisted.internet import threads

from exim_py.smtp.reply import Reply


class AuthDialogue:
    """``step(line)`` gives the next base64 challenge or the final Reply.

    ``policy`` is the server's ServerPolicy (authenticator helpers, logging),
    ``auth`` the authenticator chosen, ``initial`` the initial response given
    with the AUTH command, if any.
    """

    def __init__(self, policy, session, auth, initial):
        self.policy = policy
        self.session = session
        self.auth = auth
        self.initial = initial
        self.exchange = None

    def step(self, line):
        """The next challenge (base64 text) or the final Reply; a Deferred
        of it for a driver that waits on another process."""
        if self.auth.blocking:
            return threads.deferToThread(self._advance, line).addCallback(self._answer)
        self._advance(line)
        return self._answer(None)

    def _advance(self, line):
        if self.exchange is None:
            self.exchange = self.auth.server_start(self.initial, self.policy._auth_context(self.session))
        else:
            self.exchange.server_step(line)

    def _answer(self, _):
        if self.exchange.result is None:
            if self.auth.relays_base64:
                return self.exchange.challenge or ""
            return self.policy.auths_base.encode64(self.exchange.challenge or b"")
        result = self.exchange.result
        result.apply(self.session, self.auth.name)
        failure = result.log_line(self.auth.name, self.policy.host_text(self.session))
        if failure is not None:
            self.policy.log_main(failure)
        code, _, text = result.reply.partition(" ")
        if int(code) == 235:
            self.session.received_protocol = self.policy.protocol_name(self.session, self.session.esmtp)
        return Reply(int(code), text)
