"""helo_verify_hosts and helo_try_verify_hosts, checked when HELO/EHLO arrives.

For a host in helo_verify_hosts a name that does not verify (acl/helo.py)
gets Exim's "550 EHLO argument does not match calling host" and a main and
reject log line; 451 and "temporarily rejected" when the client's reverse
lookup could not be done.  For a host in helo_try_verify_hosts the command
goes on and the outcome waits for ``verify = helo``.  Spec "SMTP processing"
and the options' entries in "Main configuration".
"""

from twisted.internet import threads

from exim_py.acl.context import AclContext
from exim_py.acl.helo import reset, restore, verify_helo
from exim_py.smtp.reply import Reply


def check(policy, session, verb):
    """None to go on with the HELO ACL, a Reply refusing the command, or a
    Deferred firing with one of those (the check may wait on DNS)."""
    before = reset(session)
    if not session.sender_host_address:
        return None          # -bs without -oMa: Exim's sender_host_unknown
    required = policy.host_in("helo_verify_hosts", session)
    if not required and not policy.host_in("helo_try_verify_hosts", session):
        return None
    ctx = AclContext(policy.config, session, log=policy.logger,
                     expand_ctx=policy.expand_context(session))
    if session.helo_name.startswith("["):
        # an IP literal is compared with the address: no DNS involved
        return _verdict(verify_helo(ctx), policy, session, verb, required, before)
    d = threads.deferToThread(verify_helo, ctx)
    return d.addCallback(_verdict, policy, session, verb, required, before)


def _verdict(complete, policy, session, verb, required, before):
    if session.helo_verified or not required:
        return None
    # a refused HELO leaves the earlier one's outcome in place, as in Exim
    restore(session, before)
    policy.log_reject('%srejected "%s %s" from %s' % ("" if complete else "temporarily ", verb,
                                                      session.helo_name, policy.host_text(session)))
    return Reply(550 if complete else 451, "%s argument does not match calling host" % verb)
