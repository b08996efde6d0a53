#!/usr/bin/env python3
"""Accepting mail: exim_py against real Exim 4.96 with the same configuration.

Both daemons run /work/shared/bench/exim-accept.conf (queue_only, fsync'ed
spool, RCPT accepted for y.test from 127.0.0.1), each with its own spool and
port.  Postfix's smtp-source sends 100 messages of 2 KB per connection at 1,
10 and 50 concurrent connections; the script prints messages per second for
each server and the exim_py/Exim ratio, and checks that every message is on
the queue afterwards.  Both run as an admin would run them: ``-bdf -odq``,
so exim_py uses its default number of daemon processes (one per CPU, see
README.rst) unless EXIM_PY_DAEMON_PROCESSES says otherwise.

The machine may be shared, so the script also prints the CPU time each
server's whole process tree used per message while the load ran (user +
system from /proc, of the daemon, its living descendants and the children
it has reaped; start-up is left out): that figure is much less disturbed by
other load than the rate is.

Run as root (Exim drops to Debian-exim).  Needs exim4-daemon-heavy and
smtp-source from the postfix .deb (see /work/shared/TESTING.md)::

    apt-get download postfix && dpkg -x postfix_*.deb /tmp/pfx
    PFX=/tmp/pfx /opt/venv/bin/python bench/accept_bench.py

Environment: PFX [/tmp/pfx], EXIM [/usr/sbin/exim4], CONF [the shared
exim-accept.conf], CONCS ["1 10 50"], PER_CONN [100], REPS [1], SIZE [2048],
WORK [/tmp/exim_py-accept-bench].
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as common  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PFX = os.environ.get("PFX", "/tmp/pfx")
EXIM = os.environ.get("EXIM", "/usr/sbin/exim4")
CONF = os.environ.get("CONF", "/work/shared/bench/exim-accept.conf")
CONCS = [int(x) for x in os.environ.get("CONCS", "1 10 50").split()]
PER_CONN = int(os.environ.get("PER_CONN", "100"))
REPS = int(os.environ.get("REPS", "1"))
SIZE = int(os.environ.get("SIZE", "2048"))
WORK = os.environ.get("WORK", "/tmp/exim_py-accept-bench")
SOURCE = os.path.join(PFX, "usr/sbin/smtp-source")
SOURCE_ENV = dict(os.environ, LD_LIBRARY_PATH=os.path.join(PFX, "usr/lib/postfix"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_conf(name, port):
    """The shared configuration with this run's directories and port."""
    base = os.path.join(WORK, name)
    common.retire(base)
    for sub in ("spool", "log"):
        os.makedirs(os.path.join(base, sub))
        shutil.chown(os.path.join(base, sub), "Debian-exim", "Debian-exim")
    with open(CONF) as f:
        text = f.read()
    text = text.replace("/tmp/exim-bench/accept", base)
    text = re.sub(r"(?m)^local_interfaces = .*$", "local_interfaces = <; 127.0.0.1.%d" % port, text)
    text = re.sub(r"(?m)^daemon_smtp_ports = .*$", "daemon_smtp_ports = %d" % port, text)
    path = os.path.join(base, "exim.conf")
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o644)
    return path, os.path.join(base, "spool")


def wait_port(port, proc, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("server exited: %s" % proc.stderr.read().decode(errors="replace"))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not listen on %d" % port)


def start(kind, conf, port):
    if kind == "exim":
        argv = [EXIM, "-C", conf, "-bdf", "-odq"]
    else:
        argv = [sys.executable, "-m", "exim_py", "-C", conf, "-bdf", "-odq"]
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True, env=env)
    wait_port(port, proc)
    return proc


def stop(proc):
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def queued(spool):
    directory = os.path.join(spool, "input")
    count = 0
    for _, _, files in os.walk(directory):
        count += sum(1 for f in files if f.endswith("-H"))
    return count


def run_source(port, conc):
    """smtp-source: ``conc`` sessions of PER_CONN messages each; returns (messages, seconds)."""
    msgs = conc * PER_CONN
    argv = [SOURCE, "-d", "-l", str(SIZE), "-f", "a@x.test", "-t", "b@y.test",
            "-s", str(conc), "-m", str(msgs), "127.0.0.1:%d" % port]
    t0 = time.perf_counter()
    r = subprocess.run(argv, env=SOURCE_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError("smtp-source failed: %s" % r.stderr.decode(errors="replace")[-2000:])
    return msgs, wall


def tree_cpu(pid):
    """CPU seconds used so far by process ``pid``, its descendants and the children it reaped."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            children = [int(c) for c in f.read().split()]
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    # utime stime cutime cstime are fields 14-17 of stat (11-14 after the name)
    ticks = sum(int(x) for x in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK") + sum(tree_cpu(c) for c in children)


def settled_cpu(pid, timeout=10):
    """tree_cpu once the daemon has finished starting (exim_py's worker processes
    load the configuration after the port is open): two readings 0.2 s apart agree."""
    deadline = time.monotonic() + timeout
    last = tree_cpu(pid)
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = tree_cpu(pid)
        if now - last < 0.005:
            return now
        last = now
    return last


def measure(kind, conc):
    """(messages per second, CPU milliseconds per message) for one run."""
    port = free_port()
    conf, spool = write_conf(kind, port)
    proc = start(kind, conf, port)
    try:
        before = settled_cpu(proc.pid)
        # What the previous run left unwritten (Exim does not fsync its
        # message logs and main log) goes to disk now, not during this run,
        # where a syncfs (exim_py) would write it and an fsync (Exim) not.
        os.sync()
        msgs, wall = run_source(port, conc)
        time.sleep(0.2)
        cpu = tree_cpu(proc.pid) - before
    finally:
        stop(proc)
    count = queued(spool)
    if count != msgs:
        print("  warning: %s queued %d of %d messages" % (kind, count, msgs))
    return msgs / wall, 1000.0 * cpu / msgs


def median(values):
    return sorted(values)[len(values) // 2]


def main():
    for path in (SOURCE, EXIM, CONF):
        if not os.path.exists(path):
            sys.exit("missing %s (see the docstring)" % path)
    print("load average before: %s" % " ".join("%.2f" % x for x in os.getloadavg()))
    print("%-12s %12s %12s %8s %14s %14s" % ("connections", "exim msg/s", "exim_py", "ratio",
                                            "exim cpu ms/m", "exim_py cpu"))
    for conc in CONCS:
        exim, ours = [], []
        for _ in range(REPS):       # alternated, so that a slow spell hits both
            exim.append(measure("exim", conc))
            ours.append(measure("exim_py", conc))
        e, o = median([r for r, _ in exim]), median([r for r, _ in ours])
        ec, oc = median([c for _, c in exim]), median([c for _, c in ours])
        print("%-12d %12.1f %12.1f %7.2fx %14.2f %14.2f" % (conc, e, o, o / e, ec, oc))
        sys.stdout.flush()
    print("load average after: %s" % " ".join("%.2f" % x for x in os.getloadavg()))


if __name__ == "__main__":
    main()
