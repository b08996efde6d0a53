#!/usr/bin/env python3
"""Relay throughput, end to end: SMTP in → spool → smtp transport → smtp-sink.

Runs the shared relay configuration (shared/bench/exim-relay.conf) once with
Debian's exim4 and once with exim_py, on free loopback ports, and drives each
with Postfix's smtp-source at 10 and 50 concurrent senders.  The rate is
messages per second until smtp-sink has received them all.  Prints one line
per case and the exim_py / Exim ratio.

Needs root (exim4 drops to Debian-exim; smtp-sink -u), exim4-daemon-heavy,
and smtp-source/smtp-sink from the postfix .deb, extracted without
installing it (it conflicts with exim4): this script does that into $PFX
(default /tmp/pfx) with ``apt-get download postfix`` when they are missing.

Environment: MSGS [500] messages per case, SIZE [2048] bytes each,
CONCS ["10 50"], PFX [/tmp/pfx], TIMEOUT [300] seconds per case,
SOURCE_FLAGS [""] extra smtp-source flags: by default each message has its
own connection, where Exim holds every QUIT reply up to 200 ms (see the
shared ANCHORS.md), which caps it near 4.8 messages/s per sender;
SOURCE_FLAGS=-d keeps each sender's messages on one connection;
MTAS ["exim4 exim_py"] which MTAs to run (``MTAS=exim_py`` for quick
iterations), WORK [the system's temporary directory] where each case's
directory is made (give each concurrent user their own), TREE [this
checkout] the exim_py source tree to run (an older worktree, to compare
before and after a change).  Besides the rates, each case prints the CPU milliseconds per
message spent by the MTA's whole process tree (its daemon, workers and
delivery processes, reaped ones included): on a shared machine that figure
is steadier than the rate.
"""

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as common  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SHARED_CONF = os.path.join(REPO, "..", "shared", "bench", "exim-relay.conf")
PFX = os.environ.get("PFX", "/tmp/pfx")
MSGS = int(os.environ.get("MSGS", "500"))
SIZE = int(os.environ.get("SIZE", "2048"))
CONCS = [int(c) for c in os.environ.get("CONCS", "10 50").split()]
TIMEOUT = float(os.environ.get("TIMEOUT", "300"))
SOURCE_FLAGS = os.environ.get("SOURCE_FLAGS", "").split()
MTAS = os.environ.get("MTAS", "exim4 exim_py").split()
WORK = os.environ.get("WORK") or None
TREE = os.environ.get("TREE", REPO)
CLOCK_TICK = os.sysconf("SC_CLK_TCK")
EXIM = "/usr/sbin/exim4"
PFX_ENV = dict(os.environ, LD_LIBRARY_PATH=os.path.join(PFX, "usr/lib/postfix"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("nothing listening on port %d" % port)


def ensure_postfix_tools():
    if os.path.exists(os.path.join(PFX, "usr/sbin/smtp-sink")):
        return
    work = tempfile.mkdtemp(prefix="pfx-deb-")
    subprocess.run(["apt-get", "download", "postfix"], cwd=work, check=True,
                   stdout=subprocess.DEVNULL)
    deb = glob.glob(os.path.join(work, "postfix_*.deb"))[0]
    subprocess.run(["dpkg", "-x", deb, PFX], check=True)
    shutil.rmtree(work, ignore_errors=True)


def write_config(directory, relay_port, sink_port):
    """The shared relay configuration with this run's directory and ports."""
    with open(SHARED_CONF) as f:
        text = f.read()
    text = (text.replace("/tmp/exim-bench/relay", directory)
            .replace("127.0.0.1.2526", "127.0.0.1.%d" % relay_port)
            .replace("daemon_smtp_ports = 2526", "daemon_smtp_ports = %d" % relay_port)
            .replace("port = 2600", "port = %d" % sink_port))
    path = os.path.join(directory, "exim.conf")
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o644)
    return path


def cpu_seconds(pid):
    """CPU time (user + system) of ``pid``'s process tree, its reaped children included.

    A live process's own time and the time of the children it has reaped
    (cutime, cstime) are disjoint, so the sum over the tree counts each
    process once, whether it has exited yet or not.
    """
    ticks = 0
    for p in common.process_tree(pid):
        try:
            with open("/proc/%d/stat" % p) as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        ticks += sum(int(v) for v in fields[11:15])
    return ticks / CLOCK_TICK


def sink_count(path):
    """Messages smtp-sink -c has counted so far (its last "mesg=N")."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 200))
            tail = f.read().decode("ascii", "replace")
    except OSError:
        return 0
    i = tail.rfind("mesg=")
    if i < 0:
        return 0
    digits = ""
    for ch in tail[i + 5:]:
        if not ch.isdigit():
            break
        digits += ch
    return int(digits or 0)


class Process:
    """A child in its own process group, stopped with the whole group."""

    def __init__(self, argv, cwd=None, env=None, stdout=None):
        self.out = stdout
        self.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                     stdout=stdout or subprocess.DEVNULL,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.out is not None:
            self.out.close()


def run_case(mta, conc):
    if WORK is not None:
        os.makedirs(WORK, exist_ok=True)
    directory = tempfile.mkdtemp(prefix="relay-bench-%s-" % mta, dir=WORK)
    os.chmod(directory, 0o755)
    for sub in ("spool", "log"):
        os.mkdir(os.path.join(directory, sub))
        shutil.chown(os.path.join(directory, sub), "Debian-exim", "Debian-exim")
    relay_port, sink_port = free_port(), free_port()
    conf = write_config(directory, relay_port, sink_port)
    sink_out = os.path.join(directory, "sink.out")
    sink = Process([os.path.join(PFX, "usr/sbin/smtp-sink"), "-c", "-u", "nobody", "-m", "1000",
                    "127.0.0.1:%d" % sink_port, "1000"], env=PFX_ENV,
                   stdout=open(sink_out, "wb"))
    if mta == "exim4":
        argv = [EXIM, "-C", conf, "-bdf"]
    else:
        argv = [sys.executable, "-m", "exim_py", "-C", conf, "-bdf"]
    # python -m finds exim_py in its working directory before site-packages.
    server = Process(argv, cwd=TREE)
    try:
        wait_port(sink_port)
        wait_port(relay_port)
        cpu_before = cpu_seconds(server.proc.pid)
        start = time.perf_counter()
        subprocess.run([os.path.join(PFX, "usr/sbin/smtp-source")] + SOURCE_FLAGS + ["-l", str(SIZE),
                        "-f", "a@x.test", "-t", "b@y.test", "-s", str(conc), "-m", str(MSGS),
                        "127.0.0.1:%d" % relay_port], env=PFX_ENV, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=TIMEOUT)
        accepted = time.perf_counter() - start
        deadline = start + TIMEOUT
        while sink_count(sink_out) < MSGS and time.perf_counter() < deadline:
            time.sleep(0.02)
        wall = time.perf_counter() - start
        received = sink_count(sink_out)
        cpu = cpu_seconds(server.proc.pid) - cpu_before
    finally:
        server.stop()
        sink.stop()
        common.retire(directory)
    return MSGS / wall, MSGS / accepted, received, cpu * 1000.0 / MSGS


def main():
    if os.geteuid() != 0:
        sys.exit("relay_bench.py must run as root (exim4 and smtp-sink -u need it)")
    ensure_postfix_tools()
    print("relay end to end, %d messages of %d bytes per case%s" % (
        MSGS, SIZE, ", smtp-source " + " ".join(SOURCE_FLAGS) if SOURCE_FLAGS else ""))
    # The machine's load average after each case: figures taken while other
    # work runs are not comparable with those of a quiet machine.
    print("%-8s %6s %12s %12s %10s %10s %7s" % ("mta", "conc", "e2e msg/s", "accept msg/s",
                                                 "received", "cpu ms/msg", "load1"))
    rates = {}
    for conc in CONCS:
        for mta in MTAS:
            rate, accept_rate, received, cpu_ms = run_case(mta, conc)
            rates[mta, conc] = rate
            print("%-8s %6d %12.1f %12.1f %10d %10.2f %7.2f" % (
                mta, conc, rate, accept_rate, received, cpu_ms, os.getloadavg()[0]), flush=True)
        if len(MTAS) < 2:
            continue
        print("ratio exim_py/exim4 at %d senders: %.2f" % (
            conc, rates["exim_py", conc] / rates["exim4", conc]))


if __name__ == "__main__":
    main()
