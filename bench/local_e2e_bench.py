#!/usr/bin/env python3
"""Local delivery end to end: SMTP in, maildir out, exim_py against exim4.

Both MTAs run the same configuration as daemons (-bdf) with immediate
delivery (queue_only false, smtp_accept_queue_per_connection 0, so Exim
forks a delivery for every message as it arrives): RCPT to y.test from
127.0.0.1 is accepted, and an accept router hands each message to an
appendfile transport that writes one maildir.  Postfix's smtp-source sends N
messages of 2 KB over 10 concurrent connections (-d: each connection carries
its share of the messages, so Exim's 200 ms QUIT hold does not dominate);
the clock stops when N files are in the maildir's new/ directory.  Prints
accept rate (smtp-source finished), end-to-end rate (all in the maildir),
the rate until the spool is empty again (every -H/-D removed), the
exim_py/exim4 ratio of the end-to-end rates and the load average.  Nothing is asserted; every
case is bounded by TIMEOUT seconds.

Run as root (see bench/README.rst for smtp-source)::

    /opt/venv/bin/python bench/local_e2e_bench.py [N]

Environment: MSGS [5000] (or the first argument), CONC [10], SIZE [2048],
REPS [1], TIMEOUT [600] seconds per case, WORK [/tmp/exim_py-local-e2e],
PFX [/tmp/pfx], EXIM [/usr/sbin/exim4].
"""

import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as common  # noqa: E402

MSGS = int(sys.argv[1]) if len(sys.argv) > 1 else int(os.environ.get("MSGS", "5000"))
CONC = int(os.environ.get("CONC", "10"))
SIZE = int(os.environ.get("SIZE", "2048"))
REPS = int(os.environ.get("REPS", "1"))
TIMEOUT = float(os.environ.get("TIMEOUT", "600"))
WORK = os.environ.get("WORK", "/tmp/exim_py-local-e2e")

CONFIG = """\
# local_e2e_bench.py: accept over SMTP, deliver at once to one maildir
primary_hostname = bench.test
qualify_domain = bench.test
exim_user = Debian-exim
exim_group = Debian-exim
never_users = root
keep_environment =
spool_directory = {base}/spool
log_file_path = {base}/log/%slog
pid_file_path = {base}/exim.pid
local_interfaces = <; 127.0.0.1.{port}
daemon_smtp_ports = {port}

# deliver every message as soon as it is accepted
queue_only = false
smtp_accept_queue_per_connection = 0
smtp_accept_queue = 0

smtp_accept_max = 1000
smtp_connect_backlog = 1000
host_lookup =
rfc1413_hosts =
rfc1413_query_timeout = 0s
tls_advertise_hosts =

acl_smtp_rcpt = acl_check_rcpt
acl_smtp_data = acl_check_data

begin acl

acl_check_rcpt:
  accept  hosts   = 127.0.0.1
          domains = y.test
  deny    message = relay not permitted

acl_check_data:
  accept

begin routers

to_maildir:
  driver = accept
  domains = y.test
  transport = maildir

begin transports

maildir:
  driver = appendfile
  directory = {base}/maildir/b
  maildir_format
  user = Debian-exim
  group = Debian-exim

begin retry
*   *   F,1h,5m
"""


def run_case(mta):
    """One run: (accept seconds, seconds until all are in the maildir, seconds
    until the spool is empty, messages delivered); None for a time not reached."""
    base = common.make_tree(os.path.join(WORK, mta))
    port = common.free_port()
    conf = common.write_conf(base, CONFIG.format(base=base, port=port))
    new = os.path.join(base, "maildir", "b", "new")
    server = common.start_group(common.argv_for(mta, conf, "-bdf"),
                                os.path.join(base, "stderr"))
    try:
        common.wait_port(port, server)
        argv = [common.SOURCE, "-d", "-l", str(SIZE), "-f", "a@x.test", "-t", "b@y.test",
                "-s", str(CONC), "-m", str(MSGS), "127.0.0.1:%d" % port]
        start = time.perf_counter()
        deadline = start + TIMEOUT
        source = subprocess.run(argv, env=common.PFX_ENV, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, timeout=TIMEOUT)
        accepted = time.perf_counter() - start
        if source.returncode != 0:
            print("  %s: smtp-source failed: %s" % (mta, source.stderr.decode(errors="replace")[-500:]))
        done = common.count_files(new)
        while done < MSGS and time.perf_counter() < deadline and server.poll() is None:
            time.sleep(0.02)
            done = common.count_files(new)
        if server.poll() is not None:
            print("  %s: the daemon exited with status %s" % (mta, server.returncode))
        wall = time.perf_counter() - start if done >= MSGS else None
        # and until the spool no longer holds any message (-H/-D removed)
        spool_input = os.path.join(base, "spool", "input")
        while (common.count_files(spool_input) and time.perf_counter() < deadline
               and server.poll() is None):
            time.sleep(0.02)
        left = common.count_files(spool_input)
        emptied = time.perf_counter() - start if not left else None
    finally:
        common.stop_group(server)
    return accepted, wall, emptied, common.count_files(new)


def median(values):
    values = sorted(values)
    return values[len(values) // 2] if values else None


def main():
    common.require_root_and_tools(need_source=True)
    print("local delivery end to end: %d messages of %d bytes, %d connections (smtp-source -d), "
          "maildir, immediate delivery; %s" % (MSGS, SIZE, CONC, common.load_line()))
    print("exim_py daemon processes: %s" % os.environ.get(
        "EXIM_PY_DAEMON_PROCESSES", "its default (EXIM_PY_DAEMON_PROCESSES unset)"))
    print("%-8s %12s %12s %14s %10s" % ("mta", "accept/s", "e2e msg/s", "spool empty/s",
                                         "delivered"))
    rates = {}
    for mta in common.MTAS:
        e2e = []
        for _ in range(REPS):
            accepted, wall, emptied, delivered = run_case(mta)
            e2e.append(MSGS / wall if wall else 0.0)
            print("%-8s %12.1f %12s %14s %10d" % (
                mta, MSGS / accepted, "%.1f" % (MSGS / wall) if wall else "timeout",
                "%.1f" % (MSGS / emptied) if emptied else "timeout", delivered))
            sys.stdout.flush()
        rates[mta] = median(e2e)
    print("median e2e msg/s: exim4 %.1f, exim_py %.1f; ratio exim_py/exim4 %.2f (target >= 3)"
          % (rates["exim4"], rates["exim_py"], common.ratio(rates["exim_py"], rates["exim4"])))
    print(common.load_line())
    if not os.environ.get("KEEP"):
        common.retire(WORK)


if __name__ == "__main__":
    main()
