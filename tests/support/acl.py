"""Helpers shared by the ACL and authenticator tests: a configuration from text, and one ACL run."""

import os
import shutil
import tempfile

from exim_py.acl import AclContext, run_acl
from exim_py.acl import replies
from exim_py.config import load
from exim_py.envelope import Envelope, Recipient, Session


class ListLog:
    """A logger that keeps lines in lists (the Logger contract: main, reject, panic)."""

    def __init__(self, selectors=()):
        self.lines = []
        self.selectors = set(selectors)

    def main(self, text, message_id=None):
        self.lines.append(("main", text))

    def reject(self, text, message_id=None, headers=None, sender=None, recipients=None,
               main=True):
        self.lines.append(("reject", text))

    def panic(self, text, message_id=None, main=True):
        self.lines.append(("panic", text))

    def selector(self, name):
        return name in self.selectors

    def texts(self, which="main"):
        return [t for w, t in self.lines if w == which]


def write_config(testcase, text, name="exim.conf"):
    """Write ``text`` to a fresh directory; returns its path."""
    directory = tempfile.mkdtemp(prefix="exim_py-acl-")
    os.chmod(directory, 0o755)
    testcase.addCleanup(shutil.rmtree, directory, True)
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o644)
    return path


def config_from(testcase, acls, main=""):
    """A loaded configuration with ``main`` options and the ``acls`` section text."""
    text = "primary_hostname = test.example\n%s\nbegin acl\n%s\n" % (main, acls)
    return load(write_config(testcase, text))


def session(address="1.2.3.4", helo="x"):
    s = Session()
    s.sender_host_address = address
    s.helo_name = helo
    s.received_protocol = "smtp"
    s.local = address is None
    return s


def envelope(sess, sender="a@b.example", recipients=()):
    env = Envelope(sess)
    env.sender = sender
    env.recipients = [Recipient(r) for r in recipients]
    return env


def run(config, where, spec, sess=None, env=None, recipient=None, log=None, **kw):
    """Run one ACL; returns (result, context)."""
    sess = sess if sess is not None else session()
    if env is None and where not in ("connect", "helo", "quit", "notquit", "auth",
                                     "starttls", "etrn", "expn", "vrfy"):
        env = envelope(sess)
    ctx = AclContext(config, sess, env, recipient, log=log, **kw)
    return run_acl(where, spec, ctx), ctx


def reply(config, where, spec, command_data=None, **kw):
    """(reply lines, log lines) for an ACL run, as the server would send and log them."""
    log = kw.pop("log", None) or ListLog()
    result, ctx = run(config, where, spec, log=log, **kw)
    if result.accepted:
        return None, []
    answer = replies.rejection(result, ctx, command_data)
    replies.write_logs(answer, ctx)
    return answer.lines, log.texts("main")
