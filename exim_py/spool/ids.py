"""Exim 4.96 message ids: ``TTTTTT-PPPPPP-FF`` in base 62.

``TTTTTT`` is the arrival time in seconds, ``PPPPPP`` the id of the process
that received the message and ``FF`` the fraction of the second in units of
5 ms (plus ``localhost_number`` * 200 when that option is set).  These are the
figures Debian's Exim 4.96 writes: its fraction is ``tv_usec / 5000`` with or
without a host number (checked against real ``exim4``; the 4.97 ids with
longer fields are a different format).

Exim forks a process per message, so time plus pid is unique once the clock
has moved past one 5 ms step.  exim_py receives many messages in one process
and at once from several threads, so the middle field carries the pid plus
a per-step sequence number times ``PID_SPAN``, a value above any Linux pid
(pid_max is at most 2**22): two ids never collide, neither inside this
process nor with another process's ids, and every field keeps Exim's width,
alphabet and ordering, so Exim's queue tools parse them.
"""

import re
import threading
import time

from exim_py import procid

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
ID_LENGTH = 16
ID_RE = re.compile(r"^[0-9A-Za-z]{6}-[0-9A-Za-z]{6}-[0-9A-Za-z]{2}$")

# Microseconds per step of the last field, and steps in one second.
RESOLUTION_USEC = 5000
STEPS_PER_SECOND = 1000000 // RESOLUTION_USEC
PID_SPAN = 1 << 22
_MAX_SEQUENCE = 62 ** 6 // PID_SPAN


# every two-digit group, so a message id's fields take a few lookups
_PAIRS = [a + b for a in BASE62 for b in BASE62]
_PAIR = 62 * 62


def base62(number, width=6):
    """``number`` in Exim's base 62, zero padded to ``width`` digits (its
    lowest ``width`` digits when it has more)."""
    if width == 6:
        high, low = divmod(number % (_PAIR ** 3), _PAIR)
        top, middle = divmod(high, _PAIR)
        return _PAIRS[top] + _PAIRS[middle] + _PAIRS[low]
    if width == 2:
        return _PAIRS[number % _PAIR]
    digits = []
    for _ in range(width):
        number, rem = divmod(number, 62)
        digits.append(BASE62[rem])
    return "".join(reversed(digits))


def from_base62(text):
    value = 0
    for ch in text:
        value = value * 62 + BASE62.index(ch)
    return value


def is_message_id(text):
    return bool(ID_RE.match(text))


def id_time(message_id):
    """The arrival time (seconds since the epoch) encoded in a message id."""
    return from_base62(message_id[:6])


def split_subdir(message_id):
    """The input/ subdirectory under split_spool_directory: the id's sixth character."""
    return message_id[5]


class IdGenerator:
    """Hands out unique message ids; safe to call from several threads.

    Uniqueness holds per generator, so every spool in a process must share
    one: use :meth:`shared`, not a new instance (two generators in one
    process would number the same 5 ms step from the same sequence).
    """

    _shared = {}
    _shared_lock = threading.Lock()

    @classmethod
    def shared(cls, localhost_number=None):
        """The process-wide generator for ``localhost_number``."""
        with cls._shared_lock:
            gen = cls._shared.get(localhost_number)
            if gen is None:
                gen = cls._shared[localhost_number] = cls(localhost_number)
            return gen

    def __init__(self, localhost_number=None, clock=time.time, pid=None):
        self.localhost_number = localhost_number
        self.clock = clock
        self.pid = pid               # None: the current process's, looked up each time
        self._lock = threading.Lock()
        self._last_step = None
        self._last_pid = None
        self._sequence = 0

    def new_id(self):
        """A fresh id, and the time it stands for (seconds, float)."""
        with self._lock:
            now = self.clock()
            step = int(now * STEPS_PER_SECOND)
            # A forked child (exim_py -odb delivering) has a new pid and its own sequence.
            pid = procid.current() if self.pid is None else self.pid
            if pid != self._last_pid:
                self._last_pid, self._last_step = pid, None
            if self._last_step is not None and step <= self._last_step:
                self._sequence += 1
                if self._sequence >= _MAX_SEQUENCE:
                    # More ids in one 5 ms step than the field can number:
                    # borrow the next step, as Exim would by waiting for it.
                    self._last_step += 1
                    self._sequence = 0
                step = self._last_step
            else:
                self._sequence = 0
            self._last_step = step
            seconds, fraction = divmod(step, STEPS_PER_SECOND)
            if self.localhost_number is not None:
                fraction += self.localhost_number * STEPS_PER_SECOND
            middle = pid % PID_SPAN + self._sequence * PID_SPAN
            message_id = "%s-%s-%s" % (base62(seconds), base62(middle), base62(fraction, 2))
            return message_id, max(now, float(seconds))


def sort_key(message_id):
    """Exim's queue order: arrival second, then the fraction, then the pid field."""
    return (message_id[:6], message_id[14:], message_id[7:13])
