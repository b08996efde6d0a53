#!/usr/bin/env python3
"""Expansion speed: exim_py in-process against real Exim's -be.

A mix of strings of the kind ACLs and routers evaluate for every message
(host lists, sender checks, lookups, regex matches, arithmetic) is expanded
N times (default 100,000) in-process by exim_py; the same strings, repeated
to the same count, are fed as lines to one ``exim4 -be`` process and to one
``exim_py -be`` process on standard input.  Prints expansions per second for
each and the ratios.  Not a test: nothing is asserted.

    /opt/venv/bin/python bench/expand_bench.py [-n 100000]
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

from exim_py.expand import ExpandContext, expand  # noqa: E402

CONFIG = """\
keep_environment =
primary_hostname = mail.example.com
qualify_domain = example.com
"""

LSEARCH = "".join("domain%d.example: route%d\n" % (i, i) for i in range(200)) + \
    "example.org: local\n"

# Values the strings read; -be gets the same through -oMa / -f.
SENDER = "Fred.Bloggs@Example.ORG"
HOST = "192.0.2.77"

MIX = [
    "${if match_ip{$sender_host_address}{10.0.0.0/8 : 172.16.0.0/12 : 192.168.0.0/16 : "
    "192.0.2.0/24}{relay}{norelay}}",
    "${if eq{$sender_address}{}{bounce}{${lc:${domain:$sender_address}}}}",
    "${if and{{def:sender_address}{!eq{$sender_address}{}}"
    "{match{$sender_address}{\\N^[^@]+@example\\.(com|org)$\\N}}}{1}{0}}",
    "${if inlist{${lc:$sender_address_domain}}{example.com:example.org:test.example}{local}}",
    "${sg{$sender_address}{\\N[^A-Za-z0-9@.]\\N}{_}}",
    "${extract{2}{.}{$primary_hostname}}",
    "${if >{${eval:(12345+1023)/1024}}{10}{big}{small}}",
    "${lookup{${lc:$sender_address_domain}}lsearch{LSEARCH}{$value}{none}}",
    "${if forany{a.example:b.example:example.com}{eq{$item}{$qualify_domain}}{ours}}",
    "${length_10:${md5:$sender_address}}",
    "${if bool_lax{${if def:sender_host_address{yes}{no}}}{remote}{local}}",
    # (-be would take a line starting with a capital as a macro definition)
    "x-sender-host: ${if def:sender_host_address{[$sender_host_address]}{local}}",
]


def bench_inprocess(strings, n):
    ctx = ExpandContext(variables={"sender_address": SENDER, "sender_host_address": HOST,
                                   "primary_hostname": "mail.example.com",
                                   "qualify_domain": "example.com"})
    ctx.set("sender_address_domain", SENDER.rpartition("@")[2])
    for s in strings:          # warm the parse cache and check every string works
        expand(s, ctx)
    count = len(strings)
    start = time.perf_counter()
    for i in range(n):
        expand(strings[i % count], ctx)
    return time.perf_counter() - start


def bench_process(argv, strings, n):
    lines = "".join(strings[i % len(strings)] + "\n" for i in range(n)).encode()
    start = time.perf_counter()
    proc = subprocess.run(argv, input=lines, capture_output=True)
    elapsed = time.perf_counter() - start
    failures = proc.stdout.count(b"Failed:")
    return elapsed, failures


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=100000, help="expansions (default 100000)")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="expand-bench-")
    os.chmod(tmp, 0o755)
    try:
        conf = os.path.join(tmp, "exim.conf")
        table = os.path.join(tmp, "domains")
        with open(conf, "w") as f:
            f.write(CONFIG)
        with open(table, "w") as f:
            f.write(LSEARCH)
        os.chmod(conf, 0o644)
        os.chmod(table, 0o644)
        strings = [s.replace("LSEARCH", table) for s in MIX]

        ours = bench_inprocess(strings, args.n)
        print("exim_py in-process: %d expansions in %.2fs = %.0f/s"
              % (args.n, ours, args.n / ours))

        be_args = ["-C", conf, "-oMa", HOST, "-f", SENDER, "-be"]
        py_cmd = [sys.executable, "-m", "exim_py"] + be_args
        env_ok = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = ROOT + (os.pathsep + env_ok if env_ok else "")
        py_time, py_fail = bench_process(py_cmd, strings, args.n)
        print("exim_py -be (stdin): %d expansions in %.2fs = %.0f/s (%d failed)"
              % (args.n, py_time, args.n / py_time, py_fail))

        exim = shutil.which("exim4") or "/usr/sbin/exim4"
        if not os.path.exists(exim):
            print("exim4 not installed: no comparison")
            return
        ex_time, ex_fail = bench_process([exim] + be_args, strings, args.n)
        print("exim4 -be (stdin):   %d expansions in %.2fs = %.0f/s (%d failed)"
              % (args.n, ex_time, args.n / ex_time, ex_fail))
        print("ratio exim_py in-process / exim4 -be: %.2f" % (ex_time / ours))
        print("ratio exim_py -be / exim4 -be:        %.2f" % (ex_time / py_time))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
