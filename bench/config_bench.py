#!/usr/bin/env python3
"""Configuration reading speed: exim_py against real Exim on the same file.

Loads Exim's configure.default (and the project's etc/exim.conf) N times in
process with ``exim_py.config.load``, then times whole ``-bP`` runs of
``exim_py`` and ``exim4`` on the same file, which is what a command-line
user waits for.  Prints loads per second, milliseconds per run and the
ratios.  Not a test: nothing is asserted.

    /opt/venv/bin/python bench/config_bench.py [-n 200] [-r 20]
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from exim_py.config import load  # noqa: E402

REFERENCE = os.path.join(os.path.dirname(ROOT), "shared", "reference", "configure.default")


def per_second(function, n):
    start = time.perf_counter()
    for _ in range(n):
        function()
    return n / (time.perf_counter() - start)


def run_time(argv, runs):
    """Average wall time in milliseconds of running ``argv``."""
    start = time.perf_counter()
    for _ in range(runs):
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return (time.perf_counter() - start) / runs * 1000


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200, help="in-process loads per file")
    parser.add_argument("-r", type=int, default=20, help="command runs per program")
    args = parser.parse_args()

    for path in (REFERENCE, os.path.join(ROOT, "etc", "exim.conf")):
        rate = per_second(lambda: load(path), args.n)
        print("%-60s %8.0f loads/s in process" % (os.path.basename(path), rate))

    exim = shutil.which("exim4") or "/usr/sbin/exim4"
    if not os.path.exists(exim):
        print("exim4 not installed: no comparison")
        return
    # Exim wants a root-owned configuration that nobody else can write.
    directory = tempfile.mkdtemp(prefix="config-bench-")
    try:
        copy = os.path.join(directory, "configure")
        shutil.copy(REFERENCE, copy)
        os.chmod(copy, 0o644)
        ours = run_time([sys.executable, "-m", "exim_py", "-C", copy, "-bP", "qualify_domain"],
                        args.r)
        theirs = run_time([exim, "-C", copy, "-bP", "qualify_domain"], args.r)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    print("-bP qualify_domain on configure.default: exim_py %.1f ms, exim4 %.1f ms, ratio %.1f"
          % (ours, theirs, ours / theirs))


if __name__ == "__main__":
    main()
