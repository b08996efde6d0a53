"""How many SMTP connections the server takes: smtp_accept_max, the
smtp_accept_reserve slots kept for smtp_reserve_hosts, and
smtp_accept_max_per_host (spec "Main configuration"; the refusals and their
log lines, under the connection_reject selector, are exim4's daemon's).
"""

from exim_py.envelope import Session
from exim_py.smtp.reply import Reply


def refuse(policy, addr, active):
    """A Reply refusing a new connection from ``addr``, or None.

    ``active`` is the collection of open sessions (each with ``peer_address``).
    """
    count = len(active)
    address = getattr(addr, "host", None)
    shown = policy.unmapped(address)
    limit = policy.smtp_accept_max
    if limit and count >= limit:
        _log(policy, "Connection from [%s] refused: too many connections" % shown)
        return Reply(421, "Too many concurrent SMTP connections; please try again later.")
    reserve = policy.smtp_accept_reserve
    if limit and reserve and count >= limit - reserve:
        probe = Session()
        probe.sender_host_address = shown
        if not policy.host_in("smtp_reserve_hosts", probe):
            _log(policy, "temporarily refused connection from [%s]: not in reserve list: "
                 "connected=%d max=%d reserve=%d" % (shown, count, limit, reserve))
            return Reply(421, "%s: Too many concurrent SMTP connections; please try again later"
                         % policy.hostname(probe))
    per_host = policy.smtp_accept_max_per_host
    if isinstance(per_host, str):
        per_host = int(per_host) if per_host.strip().isdigit() else 0
    if per_host and address is not None:
        same = sum(1 for p in active if getattr(p, "peer_address", None) == address)
        if same >= per_host:
            _log(policy, "Connection from [%s] refused: too many connections from that "
                 "IP address" % shown)
            return Reply(421, "Too many concurrent SMTP connections from this IP address; "
                              "please try again later.")
    return None


def _log(policy, line):
    if policy.logger is not None and policy.logger.selector("connection_reject"):
        policy.logger.main(line)
