"""One SMTP dialogue played to ``exim4 -bh`` and ``exim_py -bh`` with the
same configuration, and each transcript cut down to what the differential
tests compare: the reply lines (standard output) and the ``LOG:`` lines
(standard error), with what differs between two runs by nature (message
ids, the date in the banner) replaced by ``ID`` and ``DATE``.

``RealExim`` (tests/support/peers.py) writes the configuration where exim4
accepts it; exim_py reads the same file.
"""

import re

from tests.support.peers import RealExim, run_both

# Exim's message id (spec chapter "How Exim receives and delivers mail")
# and the RFC 5322 date in the default smtp_banner.
_ID = re.compile(r"\b[0-9A-Za-z]{6}-[0-9A-Za-z]{6}-[0-9A-Za-z]{2}\b")
_DATE = re.compile(r"\w{3}, \d\d \w{3} \d{4} [\d:]{8} [+-]\d{4}")


def oracle(testcase):
    """A RealExim removed when ``testcase`` ends."""
    exim = RealExim()
    testcase.addCleanup(exim.cleanup)
    return exim


def script(commands):
    """The client's side of a dialogue: each command on a line of its own."""
    return "".join(command + "\r\n" for command in commands)


def _normal(line):
    return _DATE.sub("DATE", _ID.sub("ID", line))


def reply_lines(text):
    """The reply lines of a -bh transcript's standard output."""
    return [_normal(line) for line in text.splitlines() if line[:3].isdigit()]


def log_lines(text):
    """The ``LOG:`` lines of a -bh run's standard error."""
    return [_normal(line) for line in text.splitlines() if line.startswith("LOG: ")]


def session(result):
    """(reply lines, LOG: lines) of a finished -bh run."""
    return reply_lines(result.stdout), log_lines(result.stderr)


def logged(result):
    """The LOG: lines of a finished -bh run."""
    return log_lines(result.stderr)


def host_checks(exim, path, dialogue, address="127.0.0.1", flag="-bh"):
    """(exim4's, exim_py's) finished runs of ``-bh address`` (or ``-bhc``)
    with the configuration at ``path``, each given ``dialogue`` on standard
    input."""
    return run_both(exim, path, [flag, address], dialogue)


def same_session(testcase, exim, path, dialogue, address="127.0.0.1", summary=session):
    """Assert that both programs' -bh runs come to the same ``summary``
    (by default ``session``: replies and log lines); exim_py's summary."""
    theirs, ours = (summary(result) for result in host_checks(exim, path, dialogue, address))
    testcase.assertEqual(ours, theirs)
    return ours
