"""helo_verify_hosts and helo_try_verify_hosts, checked when HELO/EHLO arrives.

For a host in helo_verify_hosts a name that does not verify (acl/helo.py)
gets Exim's "550 EHLO argument does not match calling host" and a main and
reject log line; 451 and "temporarily rejected" when the client's reverse
lookup could not be done.  For a host in helo_try_verify_hosts the command
goes on and the outcome waits for ``verify = helo``.  A name in
helo_lookup_domains (our own, by default) makes the client's real name be
looked up, as Exim does.  Spec "SMTP processing"
and the options' entries in "Main configuration".
"""

from twisted.internet import threads

from exim_py.acl.context import AclContext
from exim_py.acl.dnslists import DnsDefer
from exim_py.acl.helo import host_name_lookup, reset, restore, verify_helo
from exim_py.smtp import session_hosts
from exim_py.smtp.reply import Reply


def check(policy, session, verb):
    """None to go on with the HELO ACL, a Reply refusing the command, or a
    Deferred firing with one of those (the check may wait on DNS)."""
    before = reset(session)
    if not session.sender_host_address:
        return None          # -bs without -oMa: Exim's sender_host_unknown
    # which of the two lists the client is in was found as the session started
    required = session_hosts.session_host(policy, "helo_verify_hosts", session)
    verifying = required or session_hosts.session_host(policy, "helo_try_verify_hosts", session)
    if session.sender_host_name:
        lookup = False
    elif _lookup_domains_may_block(policy):
        lookup = None             # checked in the thread, before the verification
    else:
        lookup = _in_lookup_domains(policy, session)
    if not verifying and lookup is False:
        return None
    ctx = AclContext(policy.config, session, log=policy.logger,
                     expand_ctx=policy.expand_context(session))

    def work():
        if lookup or (lookup is None and _in_lookup_domains(policy, session)):
            # helo_lookup_domains: a client calling itself by our name gets
            # its real name looked up, for the logs' sake
            try:
                host_name_lookup(ctx)
            except DnsDefer:
                pass
        return verify_helo(ctx) if verifying else True

    if lookup is False and session.helo_name.startswith("["):
        # an IP literal is compared with the address: no DNS involved
        return _verdict(work(), policy, session, verb, required, before)
    d = threads.deferToThread(work)
    return d.addCallback(_verdict, policy, session, verb, required, before)


def _lookup_domains_may_block(policy):
    """Whether checking helo_lookup_domains may wait on the DNS or a file:
    an @mx_ item, a lookup, a file of items or an expansion."""
    domains = policy._option("helo_lookup_domains", "@ : @[]") or ""
    return any(token in domains for token in ("@mx_", ";", "/", "$"))


def _in_lookup_domains(policy, session):
    """Does the HELO name match helo_lookup_domains (default "@ : @[]")?"""
    domains = policy._option("helo_lookup_domains", "@ : @[]")
    if not domains or policy.match is None:
        return False
    name = session.helo_name.lower()
    if domains.strip() == "@ : @[]" and not name.startswith("[") \
            and name != policy.primary_hostname.lower():
        return False               # the default list cannot match: skip the matcher
    try:
        return policy.match.match_domain(session.helo_name, domains, policy.expand_context(session))
    except Exception:              # LookupDefer: as Exim, a DEFER is not a match
        return False


def _verdict(complete, policy, session, verb, required, before):
    if not required or session.helo_verified:
        return None
    # a refused HELO leaves the earlier one's outcome in place, as in Exim
    restore(session, before)
    policy.log_reject('%srejected "%s %s" from %s' % ("" if complete else "temporarily ", verb,
                                                      session.helo_name, policy.host_text(session)))
    return Reply(550 if complete else 451, "%s argument does not match calling host" % verb)
