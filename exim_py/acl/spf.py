"""The ``spf`` and ``spf_guess`` ACL conditions and the ``$spf_*`` variables
(spec section "SPF (Sender Policy Framework)").

The check itself is exim_py.mailauth.spf's.  As in Exim, the request is
the one set up at HELO/EHLO (client address, HELO name); without a HELO
or a client address there is none, and the condition sees permerror with
no variables set.  The results belong to the transaction: they are kept
on the Envelope as ``envelope.spf`` (``{variable name: value}``), which
``acl.context.session_variables`` copies into every later expansion of
the same transaction, and which the ``<=`` line reads for the ``spf`` and
``spf_verbose`` log selectors.  RSET and a new MAIL start a new Envelope,
which is Exim's spf_smtp_reset().

The DNS questions are asked from the thread the ACL runs in (the server
runs ACLs with these conditions in its thread pool: acl/blocking.py),
with the answers kept in the connection's DNS cache.
"""

from exim_py.acl import dnslists
from exim_py.expand.variables import value_of
from exim_py.mailauth import spf
from exim_py.match import split_list

OK, FAIL = "accept", "deny"

VARIABLES = ("spf_header_comment", "spf_received", "spf_result", "spf_result_guessed",
             "spf_smtp_comment")


def condition(run, item, arg):
    """``spf = list`` / ``spf_guess = list``: true when the result (or, for
    spf_guess on a domain without a record, the result of the
    ``spf_guess`` record) is one of the list's names; ``!name`` is true for
    any other result, ``*`` for every one.  The list is read left to right
    and the first item that decides wins, as Exim's spf_process reads it."""
    result = evaluate(run.ctx, guess=item.name == "spf_guess")
    for word in split_list(arg):
        negate = word.startswith("!")
        name = word[1:] if negate else word
        if negate != (name == result or name == "*"):
            return OK
    return FAIL


def evaluate(ctx, guess=False):
    """Run the check for the ACL context's client and sender; sets the
    variables and returns the result's name (one of spf.RESULTS)."""
    session = ctx.session
    if not session.sender_host_address or not session.helo_name:
        return "permerror"
    envelope = ctx.envelope
    receiver = value_of(ctx.expand_ctx, "primary_hostname")
    request = spf.Request(session.sender_host_address,
                          envelope.sender if envelope is not None else "",
                          session.helo_name, receiver)
    query = spf.resolver_query(dnslists.resolver_of(ctx), ctx.dns_cache)
    response = spf.check(request, query)
    _publish(ctx, response)
    if guess and response.result == "none":
        response = spf.check(request, query, record=ctx.config.main.spf_guess)
        _publish(ctx, response, guessed=True)
    return response.result


def _publish(ctx, response, guessed=False):
    template = ctx.config.main.spf_smtp_comment_template or ""
    stored = getattr(ctx.envelope, "spf", None) or {}
    values = {
        "spf_header_comment": response.header_comment(),
        "spf_received": response.received(),
        "spf_result": response.result_text,
        # once a guess was needed it stays so for the transaction
        "spf_result_guessed": guessed or bool(stored.get("spf_result_guessed")),
        "spf_smtp_comment": response.smtp_comment(ctx.expand(template)),
    }
    if ctx.envelope is not None:
        ctx.envelope.spf = values
    for name, value in values.items():
        ctx.set_variable(name, value)


def log_field(envelope, selector):
    """The ``<=`` line's SPF item: ``SPF=result`` with +spf_verbose, a bare
    ``SPF`` for a pass with +spf, else None (spec: log_selector)."""
    values = getattr(envelope, "spf", None)
    if not values:
        return None
    if selector("spf_verbose"):
        return "SPF=" + values["spf_result"]
    if selector("spf") and values["spf_result"] == "pass":
        return "SPF"
    return None
