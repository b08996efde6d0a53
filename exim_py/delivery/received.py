"""Handing a just-received message to its immediate delivery in memory.

The daemon delivers a message as soon as it is on the spool (unless
queue_only); the envelope it has just written is the one the delivery would
read back from -H, so the delivery takes a copy of it instead of reading and
parsing the file again.
"""

import os

from exim_py.envelope import Envelope, Session

# The Session's own attributes (it keeps most in slots, the rest in __dict__).
_SESSION_SLOTS = tuple(n for n in Session.__slots__ if n not in ("__dict__", "__weakref__"))


class ReceivedCopy:
    """The envelope of a message just put on the spool, handed to its
    immediate delivery so that the delivery need not read and parse the -H
    file it was written to.

    It is taken on the reactor thread as soon as the message is stored: the
    SMTP session goes on to its next transaction (a later HELO changes the
    Session), so the delivery gets copies of everything it may change or
    read.  The -H file's identity is noted too: another delivery of the
    message (a queue runner, another process) that got there first rewrites
    -H or starts a -J journal, and then the spool is read as usual.
    """

    def __init__(self, spool, envelope):
        env = _shallow_copy(envelope)
        env.session = _copy_session(envelope.session)
        env.session.acl_c = dict(envelope.session.acl_c)
        env.recipients = list(envelope.recipients)
        env.non_recipients = set(envelope.non_recipients)
        env.headers = list(envelope.headers)
        env.acl_m = dict(envelope.acl_m)
        env.flags = set(envelope.flags)
        env.spool_extra = dict(envelope.spool_extra)
        env.spool_tainted = set(envelope.spool_tainted)
        self.envelope = env
        # Where Spool.store has just put it: one stat, on the reactor thread.
        self.path = os.path.join(spool.input_dir(envelope.message_id),
                                 envelope.message_id + "-H")
        self.identity = _identity(self.path)

    def current(self):
        """The envelope when -H is still the file stored and no journal has
        begun (call with the message locked); else None."""
        if self.identity is None or _identity(self.path) != self.identity:
            return None
        if os.path.exists(self.path[:-1] + "J"):
            return None
        return self.envelope


def _shallow_copy(envelope):
    """copy.copy of an Envelope (a plain object), without copy's generic
    reduce protocol: this runs on the reactor for every message received."""
    env = Envelope.__new__(type(envelope))
    env.__dict__.update(envelope.__dict__)
    return env


def _copy_session(session):
    """copy.copy of a Session: its slots, then what is in its __dict__."""
    new = Session.__new__(type(session))
    for name in _SESSION_SLOTS:
        try:
            setattr(new, name, getattr(session, name))
        except AttributeError:      # a slot never set stays unset
            pass
    new.__dict__.update(session.__dict__)
    return new


def _identity(path):
    """What changes when a file is replaced or rewritten: (inode, mtime, size)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size
