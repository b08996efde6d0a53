"""Run the trial suite and end with a plain 'N passed, N failed, N skipped' line.

Used by .ci/run.  The exit status is trial's: non-zero when any test failed or
errored, or when no test ran at all.
"""

import re
import subprocess
import sys


def main(argv):
    targets = argv or ["tests"]
    proc = subprocess.Popen([sys.executable, "-m", "twisted.trial", "--reporter=text", *targets],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tail = []
    for line in proc.stdout:
        sys.stdout.write(line)
        tail.append(line)
        del tail[:-50]
    rc = proc.wait()
    summary = "".join(tail)
    counts = {k: 0 for k in ("successes", "failures", "errors", "skips", "expectedFailures",
                              "unexpectedSuccesses")}
    m = re.search(r"^(PASSED|FAILED) \(([^)]*)\)", summary, re.M)
    if m:
        for key, value in re.findall(r"(\w+)=(\d+)", m.group(2)):
            counts[key] = int(value)
    passed = counts["successes"] + counts["expectedFailures"]
    failed = counts["failures"] + counts["errors"] + counts["unexpectedSuccesses"]
    print("%d passed, %d failed, %d skipped" % (passed, failed, counts["skips"]))
    if passed + failed == 0:
        return 1
    return rc if rc else (1 if failed else 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
