"""The plaintext authenticator: PLAIN and LOGIN (spec "The plaintext authenticator").

Server: the data on the AUTH command, and the answers to each
``server_prompts`` prompt not already answered by it, are split at binary
zeros into ``$auth1``, ``$auth2`` ...; ``server_condition`` then decides.
Client: each item of ``client_send`` is expanded, ``^`` becomes a binary zero
(``^^`` a ``^``); the first item goes with the AUTH command, the others
answer the server's prompts in turn.
"""

from exim_py.auths.base import BAD64, DEFER, FAIL, AuthenticatorBase, BadBase64, decode64
from exim_py.config.options import BOOL, STRING, Option, OptionTable
from exim_py.errors import ExpansionError, LookupDefer

OPTIONS = OptionTable([
    Option("client_ignore_invalid_base64", BOOL, False,
           "send an empty answer to a challenge that is not valid base64"),
    Option("client_send", STRING, None, "what the client sends, item by item", expand=True),
    Option("server_prompts", STRING, None, "the prompts the server sends", expand=True),
])

# Exim keeps at most this many numbered variables ($1..$20).
_MAX_ITEMS = 20


def list_items(text):
    """Items of an Exim list, empty ones kept (``:`` is one empty item)."""
    sep = ":"
    s = text.lstrip()
    if s.startswith("<") and len(s) > 1 and not s[1].isalnum() and not s[1].isspace():
        sep, s = s[1], s[2:]
    items = []
    i = 0
    while True:
        while i < len(s) and s[i].isspace():
            i += 1
        if i >= len(s):
            return items
        cur = []
        while i < len(s):
            if s[i] == sep:
                if s[i + 1:i + 2] == sep:
                    cur.append(sep)
                    i += 2
                    continue
                break
            cur.append(s[i])
            i += 1
        items.append("".join(cur).rstrip())
        if i >= len(s):
            return items
        i += 1
        if i >= len(s):
            return items


def split_zeros(data, at_least_one=False):
    """Split decoded client data at binary zeros, as Exim fills $auth1, $auth2 ..."""
    items = []
    pos = 0
    while pos < len(data):
        nul = data.find(b"\0", pos)
        if nul < 0:
            items.append(data[pos:])
            break
        items.append(data[pos:nul])
        pos = nul + 1
    if not items and at_least_one:
        items.append(b"")
    return items


class Authenticator(AuthenticatorBase):
    """A plaintext authenticator instance."""

    def __init__(self, dconf, config):
        super().__init__(dconf, config)
        self.server_prompts = self.options["server_prompts"]
        self.client_send = self.options["client_send"]
        self.client_ignore_invalid_base64 = self.options["client_ignore_invalid_base64"]
        self.server_enabled = self.server_condition is not None
        self.client_enabled = self.client_send is not None

    def server(self, initial, ctx, exchange):
        prompts = []
        if self.server_prompts is not None:
            try:
                prompts = list_items(self.expand(self.server_prompts, ctx))
            except (ExpansionError, LookupDefer) as e:
                exchange.defer_message = str(e)
                return DEFER
        values = []
        if initial:
            if initial.strip() == "=":
                values = [b""]
            else:
                try:
                    values = split_zeros(decode64(initial))
                except BadBase64:
                    return BAD64
        for number, prompt in enumerate(prompts, 1):
            if len(values) >= _MAX_ITEMS:
                break
            if number <= len(values):
                continue
            answer = yield prompt.encode("utf-8")
            values.extend(split_zeros(answer, at_least_one=True))
        self.set_auth_vars(ctx, values[:_MAX_ITEMS])
        return self.check_server_condition(ctx, exchange, default=FAIL)

    # -- client ------------------------------------------------------------

    def client_items(self, ctx):
        """The expanded ``client_send`` items as bytes (``^`` → NUL, ``^^`` → ``^``).

        The first item is the initial response (None when it is empty: send
        AUTH without data); the rest answer the server's challenges in order.
        Raises ForcedFail (give up on this authenticator) or ExpansionError
        (defer), as Exim's client does.
        """
        out = []
        for item in list_items(self.client_send or ""):
            text = self.expand(item, ctx)
            out.append(text.replace("^^", "\x01").replace("^", "\0").replace("\x01", "^")
                       .encode("utf-8", "surrogateescape"))
        if not out:
            return None, []
        first = out[0] if out[0] else None
        return first, out[1:]
