"""Spooling speed: exim_py against real Exim 4.96 on this machine.

Prints messages per second for local submission with -odq (one process per
message, as sendmail callers run it) for exim4 and exim_py, and for
exim_py's Spool.store / store_batch called in one process (what the SMTP
server does), with the ratios.  Run as root:

    /opt/venv/bin/python bench/bench_spool.py [count]
"""

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from exim_py.envelope import Envelope, Header, Recipient  # noqa: E402
from exim_py.spool import Spool  # noqa: E402

CONFIG = """\
spool_directory = {spool}
log_file_path = {spool}/log/%slog
keep_environment =
qualify_domain = example.org
primary_hostname = mx.example.org
"""
MESSAGE = b"Subject: bench\nTo: user@example.org\n\n" + b"A line of body text for the benchmark.\n" * 50


def rate(count, seconds):
    return count / seconds if seconds else float("inf")


def submissions(command, count):
    start = time.perf_counter()
    for _ in range(count):
        subprocess.run(command, input=MESSAGE, check=True, capture_output=True)
    return rate(count, time.perf_counter() - start)


def envelope():
    env = Envelope()
    env.session.caller_name, env.session.caller_uid, env.session.caller_gid = "root", 0, 0
    env.session.received_protocol = "esmtp"
    env.sender = "sender@example.org"
    env.recipients = [Recipient("user@example.org")]
    env.headers = [Header("Subject: bench\n"), Header("To: user@example.org\n", "T")]
    return env


def main():
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    work = tempfile.mkdtemp(prefix="bench-spool-")
    os.chmod(work, 0o755)
    try:
        exim_spool = os.path.join(work, "exim")
        os.mkdir(exim_spool)
        user = pwd.getpwnam("Debian-exim")
        os.chown(exim_spool, user.pw_uid, user.pw_gid)
        exim_conf = os.path.join(work, "exim.conf")
        with open(exim_conf, "w") as f:
            f.write(CONFIG.format(spool=exim_spool))
        py_spool = os.path.join(work, "py")
        py_conf = os.path.join(work, "py.conf")
        with open(py_conf, "w") as f:
            f.write(CONFIG.format(spool=py_spool))

        exim_rate = submissions(["/usr/sbin/exim4", "-C", exim_conf, "-odq", "user@example.org"], count)
        py_rate = submissions([sys.executable, "-m", "exim_py", "-C", py_conf, "-odq", "user@example.org"],
                              count)
        print("local submission -odq: exim4 %.1f msg/s, exim_py %.1f msg/s, ratio %.2f"
              % (exim_rate, py_rate, py_rate / exim_rate))

        spool = Spool(os.path.join(work, "store"))
        body = MESSAGE.split(b"\n\n", 1)[1]
        n = count * 20
        start = time.perf_counter()
        for _ in range(n):
            spool.store(envelope(), body)
        single = rate(n, time.perf_counter() - start)
        start = time.perf_counter()
        for _ in range(n // 50):
            spool.store_batch([(envelope(), body) for _ in range(50)])
        batched = rate(n // 50 * 50, time.perf_counter() - start)
        print("in-process Spool.store: %.0f msg/s (%.1f x exim4 -odq); store_batch of 50: %.0f msg/s (%.1f x)"
              % (single, single / exim_rate, batched, batched / exim_rate))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
