#!/usr/bin/env python3
"""Memory held by idle SMTP sessions: exim_py against exim4.

Both MTAs run the shared receiver configuration
(/work/shared/bench/exim-accept.conf, smtp_accept_max raised above the
session count) as a daemon (-bdf -odq).  The script measures the daemon's
whole process tree (summed Pss and Rss from /proc/PID/smaps_rollup; Exim
forks one process per connection, and exim_py's worker processes, one per
CPU (at most 4) unless EXIM_PY_DAEMON_PROCESSES says otherwise, are children of its
first process, so every one is counted) once when idle, then opens N sessions
from this process, reads each banner, sends EHLO, reads the whole reply,
and leaves the sessions quiet for HOLD seconds before measuring again.  Pss
charges shared pages proportionally, so the sum over the tree is the memory
the daemon really costs.  Prints processes, Pss, Rss, the growth per
session and the exim_py/exim4 ratio of the Pss with N sessions.  Nothing is
asserted; connecting is bounded by TIMEOUT seconds.  Run as root::

    /opt/venv/bin/python bench/idle_memory_bench.py [N]

Environment: SESSIONS [1000] (or the first argument; EXIM_SESSIONS [the
same] for exim4, whose process per session may need a smaller figure),
HOLD [5] seconds, TIMEOUT [120], CONF [the shared exim-accept.conf],
WORK [/tmp/exim_py-idle-memory], EXIM [/usr/sbin/exim4].
"""

import asyncio
import compileall
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as common  # noqa: E402

SESSIONS = int(sys.argv[1]) if len(sys.argv) > 1 else int(os.environ.get("SESSIONS", "1000"))
EXIM_SESSIONS = int(os.environ.get("EXIM_SESSIONS", SESSIONS))
HOLD = float(os.environ.get("HOLD", "5"))
TIMEOUT = float(os.environ.get("TIMEOUT", "120"))
CONF = os.environ.get("CONF", "/work/shared/bench/exim-accept.conf")
WORK = os.environ.get("WORK", "/tmp/exim_py-idle-memory")


def conf_text(base, port, sessions):
    with open(CONF) as f:
        text = f.read()
    text = text.replace("/tmp/exim-bench/accept", base)
    limit = max(1000, sessions + 100)
    for name, value in (("local_interfaces", "<; 127.0.0.1.%d" % port),
                        ("daemon_smtp_ports", str(port)),
                        ("smtp_accept_max", str(limit)),
                        ("smtp_connect_backlog", str(limit))):
        text = re.sub(r"(?m)^%s = .*$" % name, "%s = %s" % (name, value), text)
    return text


async def read_reply(reader):
    """One complete SMTP reply (through the line whose fourth character is a space)."""
    lines = []
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("connection closed after %r" % lines)
        lines.append(line)
        if line[3:4] != b"-":
            return lines


async def open_session(port, sessions, failures, gate):
    async with gate:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            await read_reply(reader)
            writer.write(b"EHLO client.test\r\n")
            reply = await read_reply(reader)
            if not reply[-1].startswith(b"250"):
                raise ConnectionError(reply[-1].decode(errors="replace"))
            sessions.append(writer)
        except (OSError, ConnectionError, asyncio.IncompleteReadError) as e:
            failures.append(str(e))


async def hold_sessions(port, count, measure):
    """Open ``count`` sessions (50 connecting at a time), wait HOLD s, call ``measure``."""
    sessions, failures = [], []
    gate = asyncio.Semaphore(50)
    start = time.perf_counter()
    try:
        await asyncio.wait_for(asyncio.gather(*(open_session(port, sessions, failures, gate)
                                                for _ in range(count))), TIMEOUT)
    except asyncio.TimeoutError:
        failures.append("timeout after %ds" % TIMEOUT)
    opened = time.perf_counter() - start
    await asyncio.sleep(HOLD)
    result = measure()
    for writer in sessions:
        writer.close()
    return len(sessions), failures, opened, result


def run(mta, count):
    base = common.make_tree(os.path.join(WORK, mta), ("spool", "log"))
    port = common.free_port()
    conf = common.write_conf(base, conf_text(base, port, count))
    server = common.start_group(common.argv_for(mta, conf, "-bdf", "-odq"),
                                os.path.join(base, "stderr"))
    try:
        common.wait_port(port, server)
        time.sleep(1)
        idle = common.memory_of(common.process_tree(server.pid))
        opened, failures, seconds, busy = asyncio.run(hold_sessions(
            port, count, lambda: common.memory_of(common.process_tree(server.pid))))
    finally:
        common.stop_group(server)
    return idle, opened, failures, seconds, busy


def main():
    common.require_root_and_tools()
    # exim_py as installed, from its bytecode cache (not compiling stale modules).
    compileall.compile_dir(os.path.join(common.ROOT, "exim_py"), quiet=1)
    print("idle SMTP sessions (banner, EHLO answered, then quiet for %gs); %s"
          % (HOLD, common.load_line()))
    print("%-8s %8s %6s %11s %11s %11s %11s %13s" % (
        "mta", "sessions", "procs", "idle Pss", "busy Pss", "busy Rss", "Pss/session",
        "connect s"))
    pss = {}
    for mta, count in (("exim4", EXIM_SESSIONS), ("exim_py", SESSIONS)):
        idle, opened, failures, seconds, busy = run(mta, count)
        per = (busy[1] - idle[1]) / opened if opened else float("nan")
        pss[mta] = busy[1], opened, per
        print("%-8s %8d %6d %8.1f MB %8.1f MB %8.1f MB %8.1f kB %13.2f" % (
            mta, opened, busy[0], idle[1] / 1024, busy[1] / 1024, busy[2] / 1024, per, seconds))
        if failures:
            print("  %d sessions failed, first: %s" % (len(failures), failures[0]))
        sys.stdout.flush()
    (ebusy, eopen, eper), (pbusy, popen, pper) = pss["exim4"], pss["exim_py"]
    print("exim_py daemon processes: %s" % os.environ.get(
        "EXIM_PY_DAEMON_PROCESSES", "default (one per CPU, at most 4; %d CPUs)" % os.cpu_count()))
    print("summed Pss with sessions: exim_py/exim4 = %.3f%s (target <= 0.2)" % (
        common.ratio(pbusy, ebusy),
        "" if eopen == popen else " (at %d vs %d sessions)" % (popen, eopen)))
    print("Pss per session: exim_py/exim4 = %.3f" % common.ratio(pper, eper))
    print(common.load_line())
    common.retire(WORK)


if __name__ == "__main__":
    main()
