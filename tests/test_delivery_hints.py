"""The retry hints database's view of changes made by other connections."""

import os
import shutil
import subprocess
import sys
import tempfile
import threading

from twisted.trial import unittest

from exim_py.delivery import hints
from exim_py.delivery.hints import HintsDB

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class SharedRecheckTests(unittest.TestCase):

    def test_one_recheck_serves_every_thread(self):
        """Within RECHECK_SECONDS of one thread's look at data_version,
        another thread's lookups do not ask again; a record another process
        writes is still seen by the next look, whichever thread makes it."""
        d = tempfile.mkdtemp(prefix="exim_py-hints-")
        self.addCleanup(shutil.rmtree, d, True)
        db = HintsDB(d)
        self.patch(hints, "RECHECK_SECONDS", 3600)
        self.assertIsNone(db.get_retry("T:b@y.test"))
        statements = []

        def other_thread():
            db._conn().set_trace_callback(statements.append)
            for _ in range(3):
                db.get_retry("T:b@y.test")
            db.close()
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
        self.assertEqual([s for s in statements if "data_version" in s], [])
        code = ("from exim_py.delivery.hints import HintsDB, RetryRecord; "
                "HintsDB(%r).put_retry(RetryRecord('T:b@y.test', 1, 2, 3))" % d)
        subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
        self.patch(hints, "RECHECK_SECONDS", 0)
        found = []
        thread = threading.Thread(target=lambda: found.append(db.get_retry("T:b@y.test")))
        thread.start()
        thread.join()
        self.assertEqual(found[0].next_try, 3)
