"""exim_py.procid: the cached process id follows forks."""

import os

from twisted.trial import unittest

from exim_py import procid
from exim_py.spool.ids import IdGenerator, PID_SPAN, BASE62


class ProcidTests(unittest.TestCase):

    def test_current_is_this_process(self):
        """current() is os.getpid() in the process that imported it."""
        self.assertEqual(procid.current(), os.getpid())

    def test_child_of_fork_sees_its_own_pid(self):
        """After os.fork the child's current() is the child's pid, and the ids it
        makes carry that pid (two processes never share an id)."""
        ids = IdGenerator()
        read, write = os.pipe()
        child = os.fork()
        if child == 0:
            try:
                os.write(write, ("%d %s" % (procid.current(), ids.new_id()[0])).encode())
            finally:
                os._exit(0)
        os.close(write)
        reported = os.read(read, 100).decode().split()
        os.close(read)
        os.waitpid(child, 0)
        self.assertEqual(int(reported[0]), child)
        middle = 0
        for ch in reported[1].split("-")[1]:
            middle = middle * 62 + BASE62.index(ch)
        self.assertEqual(middle % PID_SPAN, child)
        self.assertEqual(procid.current(), os.getpid())
