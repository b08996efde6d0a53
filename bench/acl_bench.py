"""ACL speed: exim_py's RCPT ACL against real Exim 4.96 on this machine.

Both run the same configuration's RCPT ACL (named lists, local part
patterns, host lists, a message) for the same recipients: exim4 in one
``-bh`` session (one RCPT command each, so its figure includes its SMTP
command handling and the debug output -bh writes), exim_py by calling
``run_acl`` and building the reply.  Neither side talks to a socket.
Prints recipients per second for each and the ratio.  Run as root:

    /opt/venv/bin/python bench/acl_bench.py [count]
"""

import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from exim_py.acl import AclContext, replies, run_acl  # noqa: E402
from exim_py.config import load  # noqa: E402
from exim_py.envelope import Envelope, Session  # noqa: E402

CONFIG = """\
keep_environment =
host_lookup =
rfc1413_hosts =
primary_hostname = mx.example.org
smtp_accept_max_per_connection = 0
recipients_max = 0
smtp_max_synprot_errors = 0
domainlist local_domains = example.org : example.net
hostlist relay_from_hosts = 127.0.0.1 : 10.0.0.0/8
acl_smtp_rcpt = r
begin acl
r:
  accept hosts = :
  deny domains = +local_domains
       local_parts = ^[.] : ^.*[@%!/|]
       message = Restricted characters in address
  accept local_parts = postmaster
         domains = +local_domains
  accept hosts = +relay_from_hosts
  require message = relay not permitted
          domains = +local_domains
  accept
"""


def exim_rate(path, count):
    commands = "HELO x\r\nMAIL FROM:<a@b.example>\r\n" + "".join(
        "RCPT TO:<user%d@example.org>\r\n" % i for i in range(count)) + "QUIT\r\n"
    start = time.perf_counter()
    out = subprocess.run(["exim4", "-C", path, "-bh", "192.0.2.1"], input=commands,
                         capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    accepted = out.stdout.count("250 Accepted")
    return count / elapsed, accepted


def our_rate(path, count):
    config = load(path)
    session = Session()
    session.sender_host_address = "192.0.2.1"
    session.helo_name = "x"
    envelope = Envelope(session)
    envelope.sender = "a@b.example"
    accepted = 0
    start = time.perf_counter()
    for i in range(count):
        ctx = AclContext(config, session, envelope, "user%d@example.org" % i)
        result = run_acl("rcpt", config.main["acl_smtp_rcpt"], ctx)
        if result.accepted:
            accepted += 1
        else:
            replies.rejection(result, ctx, "<user%d@example.org>" % i)
    return count / (time.perf_counter() - start), accepted


def main():
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    directory = tempfile.mkdtemp(prefix="acl-bench-")
    os.chmod(directory, 0o755)
    path = os.path.join(directory, "exim.conf")
    with open(path, "w") as f:
        f.write(CONFIG)
    os.chmod(path, 0o644)
    theirs, their_ok = exim_rate(path, count)
    ours, our_ok = our_rate(path, count)
    print("recipients: %d (accepted: exim4 %d, exim_py %d)" % (count, their_ok, our_ok))
    print("exim4 -bh:        %8.0f RCPT/s" % theirs)
    print("exim_py run_acl:  %8.0f RCPT/s" % ours)
    print("ratio exim_py/exim4: %.2f" % (ours / theirs))


if __name__ == "__main__":
    main()
