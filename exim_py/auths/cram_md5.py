"""The cram_md5 authenticator (RFC 2195; spec "The cram_md5 authenticator").

Server: sends ``<pid.time@primary_hostname>``; the client answers with its
name, a space and the hex HMAC-MD5 of the challenge keyed with the shared
secret.  The name is ``$auth1``; ``server_secret`` is expanded (a forced
failure means "no such user") and the digest compared; ``server_condition``,
when set, then authorizes.
Client: :meth:`Authenticator.client_response` computes the answer from
``client_name`` and ``client_secret``.
"""

import hashlib
import hmac
import os
import socket
import time

from exim_py.auths.base import FAIL, OK, UNEXPECTED, AuthenticatorBase
from exim_py.config.options import STRING, Option, OptionTable

OPTIONS = OptionTable([
    Option("client_name", STRING, None, "the name the client sends (default: primary_hostname)",
           expand=True),
    Option("client_secret", STRING, None, "the client's shared secret", expand=True),
    Option("server_secret", STRING, None, "the server's secret for user $auth1", expand=True),
])


def cram_digest(secret, challenge):
    """Hex HMAC-MD5 of ``challenge`` keyed with ``secret`` (both bytes or str)."""
    if isinstance(secret, str):
        secret = secret.encode("utf-8", "surrogateescape")
    if isinstance(challenge, str):
        challenge = challenge.encode("utf-8", "surrogateescape")
    return hmac.new(secret, challenge, hashlib.md5).hexdigest()


class Authenticator(AuthenticatorBase):
    """A cram_md5 authenticator instance."""

    def __init__(self, dconf, config):
        super().__init__(dconf, config)
        self.server_secret = self.options["server_secret"]
        self.client_name = self.options["client_name"]
        self.client_secret = self.options["client_secret"]
        self.server_enabled = self.server_secret is not None
        self.client_enabled = self.client_secret is not None

    def _primary_hostname(self):
        main = getattr(self.config, "main", None)
        name = None
        if main is not None:
            try:
                name = main["primary_hostname"]
            except (KeyError, TypeError):
                name = None
        return name or socket.getfqdn()

    def server(self, initial, ctx, exchange):
        if initial:
            return UNEXPECTED
        challenge = "<%d.%d@%s>" % (os.getpid(), int(time.time()), self._primary_hostname())
        answer = yield challenge.encode("utf-8")
        name, space, digest = answer.partition(b" ")
        if not space and b"\t" in answer:
            name, space, digest = answer.partition(b"\t")
        if not space or len(digest) != 32:
            return FAIL
        self.set_auth_vars(ctx, [name])
        secret, failed = self.expand_for(self.server_secret, ctx, exchange)
        if failed:
            return failed
        # Exim compares against lower-case hex only.
        if not hmac.compare_digest(cram_digest(secret, challenge).encode("ascii"), digest):
            return FAIL
        return self.check_server_condition(ctx, exchange, default=OK)

    # -- client ------------------------------------------------------------

    def client_response(self, challenge, ctx):
        """The answer to a server's challenge (bytes): ``name SP hexdigest``.

        Raises ForcedFail (give up on this authenticator) or ExpansionError.
        """
        name = self.expand(self.client_name, ctx) if self.client_name is not None \
            else self._primary_hostname()
        secret = self.expand(self.client_secret, ctx)
        return ("%s %s" % (name, cram_digest(secret, challenge))).encode(
            "utf-8", "surrogateescape")
