"""Finding the real peers the tests run against (Exim, swaks, openssl ...).

Locally a test whose peer is missing is skipped with a clear reason; with
CI=true it fails, because CI installs every peer and a missing one is a bug.
"""

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile

from twisted.trial.unittest import SkipTest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# The date and time at the start of a log line.
_LOG_STAMP = re.compile(rb"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ")


def require_command(name, why=""):
    """The absolute path of program ``name``; skip (locally) or fail (CI) when absent."""
    path = shutil.which(name) or (os.path.exists("/usr/sbin/" + name) and "/usr/sbin/" + name)
    if path:
        return path
    reason = "%s is not installed%s" % (name, (": " + why) if why else "")
    if IN_CI:
        raise AssertionError(reason + " (CI must install it: see .ci/run)")
    raise SkipTest(reason)


def exim_py_command():
    """argv prefix that runs exim_py from this checkout with this interpreter."""
    return [sys.executable, "-m", "exim_py"]


def run_exim_py(args, input=None, timeout=60, env=None, text=True):
    """Run exim_py with ``args``; returns CompletedProcess with text (or,
    with ``text=False``, bytes) stdout/stderr."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    full_env["PYTHONPATH"] = root + os.pathsep + full_env.get("PYTHONPATH", "")
    return subprocess.run(exim_py_command() + list(args), input=input, capture_output=True,
                          text=text, timeout=timeout, env=full_env)


# The start of a configuration that exim4 and exim_py both run quietly as a
# host checker or a peer: no environment warning, no DNS or ident lookup of
# the client, no TLS or SMTPUTF8 on offer.
QUIET_MAIN = """\
primary_hostname = mx.test.example
keep_environment =
host_lookup =
rfc1413_hosts =
tls_advertise_hosts =
smtputf8_advertise_hosts =
"""


class RealExim:
    """Debian's exim4 binary used as an oracle (-be, -bP, -bt, -bh) or as a peer.

    Exim insists that a -C configuration is root-owned and not writable by
    group or others, so configurations are written into a private directory.
    """

    def __init__(self):
        self.binary = require_command("exim4", "Debian package exim4-daemon-heavy")
        self.dir = tempfile.mkdtemp(prefix="exim4-oracle-")
        os.chmod(self.dir, 0o755)

    def write_config(self, text, name="exim4.conf"):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o644)
        return path

    def exim_user_dirs(self, name):
        """A directory ``name`` here, with ``log`` and ``spool`` below it, all
        belonging to the Exim user (exim4 writes its logs and spool as that
        user); returns its path."""
        base = os.path.join(self.dir, name)
        for sub in ("", "log", "spool"):
            os.mkdir(os.path.join(base, sub))
            shutil.chown(os.path.join(base, sub), "Debian-exim", "Debian-exim")
        return base

    @staticmethod
    def logs(base, names):
        """{name: lines} of the logs ``names`` ("main", "reject", "panic")
        under ``base`` (as ``exim_user_dirs`` makes it), as bytes without
        their timestamps; a log not written has no lines."""
        found = {}
        for name in names:
            path = os.path.join(base, "log", name + "log")
            with open(path, "rb") if os.path.exists(path) else open(os.devnull, "rb") as f:
                found[name] = [_LOG_STAMP.sub(b"", line) for line in f.read().splitlines()]
        return found

    def run(self, config_path, args, input=None, timeout=60, text=True):
        return subprocess.run([self.binary, "-C", config_path] + list(args), input=input,
                              capture_output=True, text=text, timeout=timeout)

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def runners(exim, text=True, timeout=60):
    """(exim4's, exim_py's) ``run(config_path, args, input=None)``: each
    runs its program on a configuration and returns the finished process.
    ``exim`` is the RealExim that wrote the configurations."""
    return (lambda config_path, args, input=None: exim.run(config_path, args, input, timeout, text),
            lambda config_path, args, input=None: run_exim_py(["-C", config_path] + list(args), input,
                                                              timeout, text=text))


def run_both(exim, config_path, args, input=None, text=True):
    """(exim4's, exim_py's) finished runs of the same ``args`` with the
    configuration at ``config_path``, each given ``input``."""
    return tuple(run(config_path, args, input) for run in runners(exim, text))


def both_outputs(exim, config_path, args, input=None):
    """(exim4's, exim_py's) standard output, as bytes, for the same ``args``."""
    return tuple(result.stdout for result in run_both(exim, config_path, args, input, text=False))


def ehlo_session(port, timeout=20):
    """A raw client session on 127.0.0.1:``port`` that has read the banner,
    said ``EHLO client.example`` and read the whole reply: (socket, its
    binary reading file)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    f = s.makefile("rb")
    f.readline()
    s.sendall(b"EHLO client.example\r\n")
    while f.readline()[3:4] == b"-":
        pass
    return s, f
