"""The host lists an SMTP session checks after it has started, kept off the reactor.

Exim checks some host lists once as a session starts (smtp_start_session:
sender_unqualified_hosts ... helo_accept_junk_hosts), one after the connect
ACL (pipelining_connect_advertise_hosts), some when a command first needs
them (smtp_accept_max_nonmail_hosts, hosts_require_helo) and some at each
EHLO (the *_advertise_hosts), HELP (tls_advertise_hosts) and STARTTLS
(tls_verify_hosts, tls_try_verify_hosts).  A list with a host name pattern
needs the client's name (a reverse lookup, made once per session), and a
plain host name a forward lookup each time: either may wait on the DNS,
which in exim_py would stall every other session of the process.  So a
check that may wait (``list_dns``) is made in a thread before the command's
reply is built, and its answer kept on the session (``host_answers``, read
by ServerPolicy.host_in) for the checks the reply makes on the reactor.  A
list of addresses alone is checked inline, as before.
Spec chapters "SMTP processing" and "Domain, host, address, and local part
lists" (host name lookups).
"""

from twisted.internet import threads

from exim_py.match.hosts import CLIENT_NAME, NO_DNS, dns_need

# Host lists Exim checks once, as a session from a remote host starts (after
# host_reject_connection), in this order; the commands that need them read
# the answers (session_host).
SESSION_HOST_LISTS = ("sender_unqualified_hosts", "recipient_unqualified_hosts",
                      "helo_verify_hosts", "helo_try_verify_hosts", "helo_accept_junk_hosts")
# Lists Exim checks when a command first needs them; one that may wait on the
# DNS is checked as the session starts instead: (option, default)
LATER_HOST_LISTS = (("smtp_accept_max_nonmail_hosts", "*"), ("hosts_require_helo", "*"))
# What EHLO's reply depends on (ServerPolicy.ehlo_extensions), with the defaults
EHLO_HOST_LISTS = (("dsn_advertise_hosts", None), ("pipelining_advertise_hosts", "*"),
                   ("chunking_advertise_hosts", "*"), ("auth_advertise_hosts", "*"),
                   ("tls_advertise_hosts", "*"), ("smtputf8_advertise_hosts", None))

_START_LISTS = tuple((option, None) for option in SESSION_HOST_LISTS)
_NONE = frozenset()
_MATCHED = {_NONE: _NONE}       # the few distinct sets of SESSION_HOST_LISTS matched, shared


def list_dns(policy, option, session, default=None):
    """Whether checking the client against host list ``option`` may wait on
    the DNS now: the list has an item that asks it each time, or one that
    needs the client's name while the session does not know it
    (match.hosts.dns_need), and no answer is kept (host_answers)."""
    needs = policy.host_list_needs
    need = needs.get(option)
    if need is None:
        need = needs[option] = dns_need(policy._option(option, default), policy.config)
    if need == NO_DNS or not session.sender_host_address:
        return False
    answers = getattr(session, "host_answers", None)
    if answers is not None and option in answers:
        return False
    if need == CLIENT_NAME:
        return not session.sender_host_name and not getattr(session, "host_lookup_failed", False)
    return True


def off_reactor(session, work, *args):
    """Run ``work(*args)`` in a thread, keeping on the session each host list
    answer found meanwhile (``host_answers``): the same checks made
    afterwards on the reactor take them and wait on nothing.  The answers
    last until the next HELO, EHLO or STARTTLS.  A Deferred firing with what
    ``work`` returns."""
    def run():
        session.host_answers = {}
        return work(*args)
    return threads.deferToThread(run)


def _in_use(policy):
    """Those of SESSION_HOST_LISTS set to a list that can match (a
    configuration sets few of them: the others cost nothing per session)."""
    used = policy.host_list_needs.get("in use")
    if used is None:
        used = policy.host_list_needs["in use"] = tuple(
            option for option in SESSION_HOST_LISTS
            if (policy._option(option) or "").strip() not in ("", ":"))
    return used


def _with_dns(policy, name, group):
    """The (option, default) pairs of ``group`` (kept as ``name``) whose
    lists can use the DNS at all (most configurations have none)."""
    found = policy.host_list_needs.get(name)
    if found is None:
        found = policy.host_list_needs[name] = tuple(
            (option, default) for option, default in group
            if dns_need(policy._option(option, default), policy.config) != NO_DNS)
    return found


def _group_dns(policy, session, name, group):
    lists = _with_dns(policy, name, group)
    return bool(lists) and any(list_dns(policy, option, session, default) for option, default in lists)


def start_lists_dns(policy, session):
    """Whether a list checked as the session starts (or, for
    LATER_HOST_LISTS, once in it) may wait on the DNS: ServerPolicy.connect
    then makes its checks in a thread."""
    return _group_dns(policy, session, "start", _START_LISTS + LATER_HOST_LISTS)


def check_at_start(policy, session):
    """smtp_start_session's checks of SESSION_HOST_LISTS, for a client with
    an address only (not -bs without -oMa); helo_try_verify_hosts is not
    looked at for a host in helo_verify_hosts.  Then those of
    LATER_HOST_LISTS that may wait on the DNS, their answers kept for the
    command that needs them (whether non-mail commands are counted, for the
    whole session; hosts_require_helo, until the first HELO or EHLO)."""
    used = _in_use(policy) if session.sender_host_address else ()
    if not used:
        session.hosts_matched = _NONE
    else:
        matched = []
        for option in used:
            if option == "helo_try_verify_hosts" and "helo_verify_hosts" in matched:
                continue
            if policy.host_in(option, session):
                matched.append(option)
        matched = frozenset(matched)
        session.hosts_matched = _MATCHED.setdefault(matched, matched)
    if _group_dns(policy, session, "later", LATER_HOST_LISTS):
        session.host_answers = {}
        policy.limit_nonmail(session)
        policy.host_in("hosts_require_helo", session, "*")


def session_host(policy, option, session):
    """Is the client in ``option``, one of the SESSION_HOST_LISTS?  (A
    session that did not start through ServerPolicy.connect, as in some
    tests, checks it now.)"""
    matched = getattr(session, "hosts_matched", None)
    if matched is None:
        return policy.host_in(option, session)
    return option in matched


def pipe_connect(reply, policy, session):
    """After the connect ACL (``reply``): whether the client may use
    PIPECONNECT, decided in a thread when that may wait on the DNS."""
    if ((reply is not None and not reply.ok)
            or not _group_dns(policy, session, "pipe", (("pipelining_connect_advertise_hosts", "*"),))):
        return reply       # (the server asks at once, on the reactor)
    return threads.deferToThread(policy.pipe_connect, session).addCallback(lambda _: reply)


def ehlo_lists(reply, policy, session):
    """An accepted EHLO's reply depends on EHLO_HOST_LISTS; when one may
    wait on the DNS they are all checked first in a thread, as
    ehlo_extensions checks them, and the reply is made from the answers
    kept.  AUTH goes by the same answers, as Exim goes by what it advertised."""
    lists = policy.ehlo_dns_lists
    if lists is None:
        # those that can matter in this configuration
        lists = policy.ehlo_dns_lists = tuple(
            (option, default) for option, default in _with_dns(policy, "ehlo", EHLO_HOST_LISTS)
            if (option != "auth_advertise_hosts" or policy.authenticators)
            and (option != "tls_advertise_hosts" or policy.tls is not None)
            and (option != "smtputf8_advertise_hosts" or policy.main_is_set(option)))
    if not lists or (reply is not None and not reply.ok) or not any(
            list_dns(policy, option, session, default) for option, default in lists):
        return reply
    return off_reactor(session, policy.ehlo_extensions, session).addCallback(lambda _: reply)


def tls_verify_lists(reply, policy, session):
    """After an accepting STARTTLS ACL: tls_verify_hosts and
    tls_try_verify_hosts, which the handshake's set-up checks (smtp/tls.py),
    in a thread first when they may wait on the DNS."""
    if (reply is not None and not reply.ok) or not (
            list_dns(policy, "tls_verify_hosts", session)
            or list_dns(policy, "tls_try_verify_hosts", session)):
        return reply
    # in the order tls.py asks
    return off_reactor(session, lambda: policy.host_in("tls_verify_hosts", session)
                       or policy.host_in("tls_try_verify_hosts", session)).addCallback(lambda _: reply)
