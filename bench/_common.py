"""Helpers shared by local_e2e_bench.py, queue_scale_bench.py and idle_memory_bench.py.

Each benchmark runs real Debian exim4 and exim_py on one configuration, each
with its own directory tree under a scratch directory, on free loopback
ports.  Exim run with -C as root drops to Debian-exim, so everything it
writes (spool, log, mail) is owned by that user; the configuration file
itself must be root-owned and not group/world writable.
"""

import errno
import os
import pwd
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
EXIM = os.environ.get("EXIM", "/usr/sbin/exim4")
PFX = os.environ.get("PFX", "/tmp/pfx")
SOURCE = os.path.join(PFX, "usr/sbin/smtp-source")
PFX_ENV = dict(os.environ, LD_LIBRARY_PATH=os.path.join(PFX, "usr/lib/postfix"))
EXIM_USER = "Debian-exim"
MTAS = ("exim4", "exim_py")
# Where finished runs' trees go instead of being deleted (see retire()).
TRASH = os.environ.get("BENCH_TRASH", "/tmp/exim_py-bench-trash")


def require_root_and_tools(need_source=False):
    """Exit with a clear message when the benchmark cannot run here."""
    if os.geteuid() != 0:
        sys.exit("%s must run as root (exim4 -C drops to %s)" % (sys.argv[0], EXIM_USER))
    if not os.path.exists(EXIM):
        sys.exit("missing %s: apt-get install -y exim4-daemon-heavy" % EXIM)
    if need_source and not os.path.exists(SOURCE):
        sys.exit("missing %s: cd /tmp && apt-get download postfix && dpkg -x postfix_*.deb %s"
                 % (SOURCE, PFX))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def retire(path):
    """Move ``path`` (a finished run's tree) into TRASH rather than deleting it.

    On ext4 without a journal (these machines), an inode freed in the last
    one to five minutes is skipped when a new file is created, and the
    allocator tests every such inode in turn (ext4 ``recently_deleted()``).
    Deleting ten thousand spool files just before a run therefore makes each
    file the next run creates cost a long scan in the kernel, whichever MTA
    is measured; the figures then say more about the previous run than about
    this one.  So nothing is deleted while benchmarks run: empty TRASH
    afterwards (``rm -rf /tmp/exim_py-bench-trash``, or the
    ``.exim_py-bench-trash`` beside a tree on another file system) when the
    machine is idle.
    """
    if not os.path.lexists(path):
        return
    name = "%s-%d-%d" % (os.path.basename(path.rstrip("/")), os.getpid(), time.monotonic_ns())
    os.makedirs(TRASH, exist_ok=True)
    try:
        os.rename(path, os.path.join(TRASH, name))
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
        # another file system (TMPDIR elsewhere): a trash directory beside the tree
        trash = os.path.join(os.path.dirname(os.path.abspath(path)), ".exim_py-bench-trash")
        os.makedirs(trash, exist_ok=True)
        os.rename(path, os.path.join(trash, name))


def make_tree(base, subdirs=("spool", "log", "maildir")):
    """A fresh ``base`` (0755) whose ``subdirs`` belong to the Exim user."""
    retire(base)
    os.makedirs(base)
    os.chmod(base, 0o755)
    user = pwd.getpwnam(EXIM_USER)
    for sub in subdirs:
        path = os.path.join(base, sub)
        os.makedirs(path)
        os.chown(path, user.pw_uid, user.pw_gid)
    return base


def write_conf(base, text):
    """Write ``text`` as ``base``/exim.conf, root-owned 0644 (Exim's -C rule)."""
    path = os.path.join(base, "exim.conf")
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o644)
    return path


def argv_for(mta, conf, *args):
    """The command line that runs ``mta`` on ``conf`` with Exim's flags ``args``."""
    if mta == "exim4":
        return [EXIM, "-C", conf] + list(args)
    return [sys.executable, "-m", "exim_py", "-C", conf] + list(args)


def child_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def start_group(argv, stderr_path=None):
    """Start ``argv`` in its own process group (stopped as a group by stop_group)."""
    err = open(stderr_path, "wb") if stderr_path else subprocess.DEVNULL
    try:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                start_new_session=True, env=child_env(), cwd=ROOT)
    finally:
        if stderr_path:
            err.close()


def stop_group(proc, timeout=20):
    """SIGTERM the process group of ``proc`` (Exim forks per connection and
    per delivery), then SIGKILL what is left after ``timeout`` seconds."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if proc.poll() is None:
        proc.wait()


def wait_port(port, proc, timeout=60):
    """Wait until something listens on 127.0.0.1:``port``; fail if ``proc`` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("server exited with status %s before listening" % proc.returncode)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("nothing listening on port %d after %ds" % (port, timeout))


def count_files(directory):
    """Regular files directly in ``directory`` (0 when it does not exist yet)."""
    try:
        with os.scandir(directory) as it:
            return sum(1 for e in it if e.is_file(follow_symlinks=False))
    except FileNotFoundError:
        return 0


def load_line():
    with open("/proc/loadavg") as f:
        return "load average %s" % " ".join(f.read().split()[:3])


def process_tree(pid):
    """``pid`` and all its descendants, found through /proc/*/stat parent links."""
    children = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                stat = f.read()
        except OSError:
            continue
        # the command name is in parentheses and may contain spaces
        fields = stat[stat.rfind(")") + 2:].split()
        children.setdefault(int(fields[1]), []).append(int(name))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(children.get(p, ()))
    return tree


def memory_of(pids):
    """(processes, summed Pss kB, summed Rss kB) from /proc/PID/smaps_rollup."""
    count = pss = rss = 0
    for pid in pids:
        try:
            with open("/proc/%d/smaps_rollup" % pid) as f:
                text = f.read()
        except OSError:
            continue      # gone meanwhile
        count += 1
        for line in text.splitlines():
            if line.startswith("Pss:"):
                pss += int(line.split()[1])
            elif line.startswith("Rss:"):
                rss += int(line.split()[1])
    return count, pss, rss


def ratio(ours, theirs):
    return ours / theirs if theirs else float("nan")
