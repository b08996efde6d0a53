#!/usr/bin/env python3
"""A large queue: -bpc time and time to the first delivery of -q, exim_py against exim4.

The spool format is Exim's, so one generator serves both MTAs: N messages
(2 KB, one recipient) are written as -H/-D files with exim_py.spool into a
separate spool for each MTA (owned by Debian-exim, as Exim's own would be;
batches of 1000 share one sync).  exim4 reading these files is itself part
of the check: its -bpc must count N and its -Mvh must print a message's
header file, or the script says so.  Then, for each MTA:

- ``-bpc``: wall and CPU time of counting the queue (the best of RUNS runs,
  warm cache), next to -bpc on an empty spool (the program's start-up cost);
- ``-q``: a foreground queue run is started and the clock stops when the
  first message is in the maildir; the runner's process group is then
  killed and the maildir emptied (the best of RUNS such runs).  This is the
  latency of a queue run over a big queue (reading the directory, ordering,
  reading the first -H, delivering), not a throughput.

The best run is the one least disturbed by whatever else the machine is
doing (as timeit reports); the load average is printed before and after.

Nothing is asserted; every step is bounded by TIMEOUT seconds.  Run as root::

    /opt/venv/bin/python bench/queue_scale_bench.py [N]

Environment: MSGS [100000] (or the first argument), RUNS [5], TIMEOUT [600],
WORK [/tmp/exim_py-queue-scale], EXIM [/usr/sbin/exim4], KEEP (leave WORK).
"""

import compileall
import os
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as common  # noqa: E402

sys.path.insert(0, common.ROOT)

from exim_py.envelope import Envelope, Header, Recipient  # noqa: E402
from exim_py.spool import Spool  # noqa: E402

MSGS = int(sys.argv[1]) if len(sys.argv) > 1 else int(os.environ.get("MSGS", "100000"))
TIMEOUT = float(os.environ.get("TIMEOUT", "600"))
RUNS = int(os.environ.get("RUNS", "5"))
WORK = os.environ.get("WORK", "/tmp/exim_py-queue-scale")
BATCH = 1000

CONFIG = """\
# queue_scale_bench.py: a queue run delivers to one maildir
primary_hostname = bench.test
qualify_domain = bench.test
exim_user = Debian-exim
exim_group = Debian-exim
never_users = root
keep_environment =
spool_directory = {base}/spool
log_file_path = {base}/log/%slog
host_lookup =
queue_run_max = 1

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

BODY = b"".join(b"%04d The quick brown fox jumps over the lazy dog, again.\n" % i
                for i in range(40))[:2047] + b"\n"


def envelope(n):
    """Message ``n`` as exim4 would have received it over SMTP from 127.0.0.1."""
    env = Envelope()
    s = env.session
    s.caller_name, s.caller_uid, s.caller_gid = "Debian-exim", 0, 0
    s.received_protocol = "esmtp"
    s.sender_host_address, s.sender_host_port = "127.0.0.1", 40000 + n % 20000
    s.interface_address, s.interface_port = "127.0.0.1", 25
    s.helo_name, s.esmtp, s.local = "client.test", True, False
    env.sender = "a@x.test"
    env.recipients = [Recipient("b@y.test")]
    env.headers = [
        Header("Received: from [127.0.0.1] (helo=client.test)\n\tby bench.test with esmtp\n"
               "\tfor b@y.test; Sat, 21 Nov 2026 19:00:00 +0000\n", "P"),
        Header("From: a@x.test\n", "F"),
        Header("To: b@y.test\n", "T"),
        Header("Subject: queue scale %d\n" % n),
        Header("Message-Id: <qs%d@x.test>\n" % n, "I"),
        Header("Date: Sat, 21 Nov 2026 19:00:00 +0000\n"),
    ]
    env.body_linecount = BODY.count(b"\n")
    env.size = len(BODY) + sum(len(h.text) for h in env.headers)
    return env


def generate(base):
    """Fill ``base``/spool with MSGS messages; returns seconds taken."""
    spool = Spool(os.path.join(base, "spool"))
    spool.make_directories()
    start = time.perf_counter()
    done = 0
    while done < MSGS:
        batch = min(BATCH, MSGS - done)
        spool.store_batch([(envelope(done + i), BODY) for i in range(batch)])
        done += batch
    return time.perf_counter() - start


def first_id(base):
    with os.scandir(os.path.join(base, "spool", "input")) as it:
        for entry in it:
            if entry.name.endswith("-H"):
                return entry.name[:-2]
    return None


def timed(argv):
    """(wall seconds, CPU seconds (user + system), CompletedProcess) of running ``argv``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    r = subprocess.run(argv, capture_output=True, timeout=TIMEOUT, env=common.child_env())
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, r


def bpc(mta, conf):
    """(best wall seconds, best CPU seconds of RUNS -bpc runs, the count printed)."""
    walls, cpus, out = [], [], b""
    for _ in range(RUNS):
        wall, cpu, r = timed(common.argv_for(mta, conf, "-bpc"))
        walls.append(wall)
        cpus.append(cpu)
        out = r.stdout.strip() or r.stderr.strip()
    return min(walls), min(cpus), out.decode(errors="replace")


def first_delivery(mta, base, conf):
    """Best seconds of RUNS queue runs from starting ``-q`` until a message is in
    the maildir (None: one did not deliver within TIMEOUT)."""
    new = os.path.join(base, "maildir", "b", "new")
    times = []
    for _ in range(RUNS):
        seconds = first_delivery_once(base, conf, mta, new)
        if seconds is None:
            return None
        times.append(seconds)
        for name in os.listdir(new):
            os.unlink(os.path.join(new, name))
    return min(times)


def first_delivery_once(base, conf, mta, new):
    """Seconds until ``-q`` has put a message into ``new`` (None: not within TIMEOUT)."""
    start = time.perf_counter()
    runner = common.start_group(common.argv_for(mta, conf, "-q"), os.path.join(base, "q.stderr"))
    try:
        deadline = start + TIMEOUT
        while common.count_files(new) == 0 and time.perf_counter() < deadline:
            if runner.poll() is not None and common.count_files(new) == 0:
                return None
            time.sleep(0.005)
        return time.perf_counter() - start if common.count_files(new) else None
    finally:
        common.stop_group(runner, timeout=5)


def main():
    common.require_root_and_tools()
    # Run exim_py as installed, from its bytecode cache: with
    # PYTHONDONTWRITEBYTECODE set, a module edited since its .pyc was written
    # would be compiled again on every start and counted as start-up time.
    compileall.compile_dir(os.path.join(common.ROOT, "exim_py"), quiet=1)
    print("queue scale: %d queued messages of %d body bytes, one maildir; %s"
          % (MSGS, len(BODY), common.load_line()))
    bases = {}
    for mta in common.MTAS:
        base = common.make_tree(os.path.join(WORK, mta))
        conf = common.write_conf(base, CONFIG.format(base=base))
        seconds = generate(base)
        print("%-8s spool written by exim_py.spool in %.1f s (%.0f msg/s)"
              % (mta, seconds, MSGS / seconds))
        bases[mta] = base, conf
        sys.stdout.flush()
    base, conf = bases["exim4"]
    message_id = first_id(base)
    r = subprocess.run(common.argv_for("exim4", conf, "-Mvh", message_id), capture_output=True)
    if r.returncode or b"b@y.test" not in r.stdout:
        print("warning: exim4 -Mvh %s did not read the generated -H file: %s"
              % (message_id, (r.stdout + r.stderr).decode(errors="replace")[:500]))
    else:
        print("exim4 -Mvh reads the generated -H files (checked %s)" % message_id)
    results = {}
    for mta in common.MTAS:
        empty = common.make_tree(os.path.join(WORK, mta + "-empty"))
        empty_time, empty_cpu, _ = bpc(mta, common.write_conf(empty, CONFIG.format(base=empty)))
        base, conf = bases[mta]
        count_time, count_cpu, count = bpc(mta, conf)
        first = first_delivery(mta, base, conf)
        results[mta] = count_time, first
        print("%-8s -bpc %8.3f s, CPU %.3f s (printed %s; empty spool %.3f s, CPU %.3f s)"
              "   -q first delivery %s"
              % (mta, count_time, count_cpu, count, empty_time, empty_cpu,
                 "%.3f s" % first if first is not None else "none"))
        sys.stdout.flush()
    (ebpc, eq), (pbpc, pq) = results["exim4"], results["exim_py"]
    print("ratio (exim4 time / exim_py time, >1 means exim_py faster): -bpc %.2f, first delivery %s"
          % (common.ratio(ebpc, pbpc),
             "%.2f" % common.ratio(eq, pq) if eq and pq else "n/a"))
    print(common.load_line())
    if not os.environ.get("KEEP"):
        common.retire(WORK)


if __name__ == "__main__":
    main()
