#!/usr/bin/env python3
"""List matching and lookup speed: exim_py in-process against real Exim's -be.

A mix of list checks of the kind routers and ACLs make for every message
(named domain lists, host networks, address patterns, an lsearch file of a
few thousand keys, partial matching) is run N times (default 20,000) by
exim_py's match and lookups functions in-process, and the same checks as
``${if match_*}`` / ``${lookup}`` lines fed to one ``exim4 -be`` process.
Prints checks per second for each and the ratio.  Not a test: nothing is
asserted.

    /opt/venv/bin/python bench/lists_bench.py [-n 20000]
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

from exim_py import config as configmod  # noqa: E402
from exim_py import lookups, match  # noqa: E402
from exim_py.expand.context import ExpandContext  # noqa: E402

CONFIG = """\
keep_environment =
primary_hostname = mail.example.com
domainlist local_domains = @ : localhost : example.com : *.example.net
hostlist relay_hosts = 127.0.0.1 : 10.0.0.0/8 : 192.168.0.0/16 : <; ::1
addresslist blocked = *@spam.example : bad@bad.example : ^(?i)noreply@
"""

KEYS = "".join("domain%d.example: route%d\n" % (i, i) for i in range(3000))


class Host:
    def __init__(self, address):
        self.address = address
        self.name = None


def checks(lsearch):
    """(exim -be line, exim_py callable) pairs for one round."""
    return [
        ("${if match_domain{sub.example.net}{+local_domains}{y}{n}}",
         lambda ctx: match.match_domain("sub.example.net", "+local_domains", ctx)),
        ("${if match_domain{other.org}{+local_domains}{y}{n}}",
         lambda ctx: match.match_domain("other.org", "+local_domains", ctx)),
        ("${if match_ip{192.168.7.9}{+relay_hosts}{y}{n}}",
         lambda ctx: match.match_host(Host("192.168.7.9"), "+relay_hosts", ctx)),
        ("${if match_address{someone@spam.example}{+blocked}{y}{n}}",
         lambda ctx: match.match_address("someone@spam.example", "+blocked", ctx)),
        ("${lookup{domain2999.example}lsearch{%s}}" % lsearch,
         lambda ctx: lookups.search("lsearch", lsearch, "domain2999.example", ctx)),
        ("${lookup{a.b.domain17.example}partial-lsearch{%s}{$value}{none}}" % lsearch,
         lambda ctx: lookups.search("partial-lsearch", lsearch, "a.b.domain17.example", ctx)),
    ]


def run_exim(conf, lines):
    exim = shutil.which("exim4") or "/usr/sbin/exim4"
    start = time.perf_counter()
    subprocess.run([exim, "-C", conf, "-be"], input="\n".join(lines) + "\n", text=True,
                   capture_output=True, check=True)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=20000)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="lists-bench-")
    os.chmod(work, 0o755)
    try:
        conf = os.path.join(work, "exim.conf")
        with open(conf, "w") as f:
            f.write(CONFIG)
        lsearch = os.path.join(work, "keys")
        with open(lsearch, "w") as f:
            f.write(KEYS)
        os.chmod(conf, 0o644)
        os.chmod(lsearch, 0o644)
        pairs = checks(lsearch)
        rounds = max(1, args.n // len(pairs))
        total = rounds * len(pairs)

        cfg = configmod.load(conf)
        start = time.perf_counter()
        for _ in range(rounds):
            # A fresh context per round: one message's worth of caching.
            ctx = ExpandContext(config=cfg)
            for _, fn in pairs:
                fn(ctx)
        ours = time.perf_counter() - start

        theirs = run_exim(conf, [line for _ in range(rounds) for line, _ in pairs])
        print("checks: %d" % total)
        print("exim_py in-process: %9.0f checks/s" % (total / ours))
        print("exim4 -be:          %9.0f checks/s" % (total / theirs))
        print("ratio exim_py/exim4: %.2f" % (theirs / ours))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
