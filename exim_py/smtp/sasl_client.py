"""Client-side SASL for the smtp transport: Exim's authenticators, as client.py uses them.

client.py drives AUTH with objects that have ``public_name`` and
``client_start(server_mechanisms)``, which returns a per-attempt object with
``initial_response()`` (bytes or None) and ``respond(challenge) -> bytes``.
``for_transport`` wraps the configured authenticators (auths/) in that shape
for one connection, with the expansion context of the host being delivered
to (spec chapter "SMTP authentication", client side).
"""

from exim_py.errors import ExpansionError, ForcedFail


class _ItemsExchange:
    """plaintext: the first client_send item as initial response, then one per challenge."""

    def __init__(self, initial, answers):
        self._initial = initial
        self._answers = list(answers)

    def initial_response(self):
        return self._initial

    def respond(self, challenge):
        if not self._answers:
            raise ValueError("no more client_send items for the server's challenge")
        return self._answers.pop(0)


class _ChallengeExchange:
    """cram_md5 and the like: nothing up front, one computed answer per challenge."""

    def __init__(self, answer):
        self._answer = answer

    def initial_response(self):
        return None

    def respond(self, challenge):
        return self._answer(challenge)


class DriverSASL:
    """One configured authenticator, ready to be tried on one connection."""

    def __init__(self, auth, ctx):
        self.auth = auth
        self.ctx = ctx
        self.public_name = auth.public_name
        self.name = auth.name
        self.error = None           # an expansion failure, for the debug output

    def client_start(self, mechanisms):
        """The exchange for this attempt, or None to skip this authenticator.

        A forced failure in client_condition or the client options skips it,
        as Exim does; another expansion failure also skips it here and is
        kept in ``error``.
        """
        auth = self.auth
        try:
            if auth.client_condition is not None:
                value = auth.expand(auth.client_condition, self.ctx)
                if value in ("", "0") or value.lower() in ("no", "false"):
                    return None
            if hasattr(auth, "client_items"):
                initial, answers = auth.client_items(self.ctx)
                return _ItemsExchange(initial, answers)
            if hasattr(auth, "client_response"):
                return _ChallengeExchange(lambda challenge: auth.client_response(challenge,
                                                                                 self.ctx))
        except ForcedFail:
            return None
        except ExpansionError as exc:
            self.error = str(exc)
            return None
        return None


def for_transport(authenticators, ctx):
    """The client-capable authenticators, wrapped for client.py, in configuration order."""
    return [DriverSASL(a, ctx) for a in authenticators if a.client_enabled]
