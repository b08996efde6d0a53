"""Files root creates in a spool that belongs to another user: they are that
user's, made so by a per-thread file-system identity or by a chown."""

import os
import pwd
import shutil
import tempfile
import threading

from twisted.trial.unittest import SkipTest, TestCase

from exim_py.spool import Spool
from exim_py.spool import owner as ownermodule
from tests.test_spool import sample_envelope


def in_thread(function):
    """Run ``function`` in a new thread (whose identity dies with it); return its result."""
    result = {}

    def run():
        try:
            result["value"] = function()
        except BaseException as e:
            result["error"] = e

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["value"]


class OwnerIdentityTests(TestCase):
    """spool/owner.py: create_as, open_new and make_dirs."""

    def setUp(self):
        if os.geteuid() != 0:
            raise SkipTest("needs root: it hands files to another user")
        nobody = pwd.getpwnam("nobody")
        self.owner = (nobody.pw_uid, nobody.pw_gid)
        top = tempfile.mkdtemp(prefix="exim_py-owner-")
        self.addCleanup(shutil.rmtree, top, True)
        os.chmod(top, 0o755)   # the owner must be able to reach its spool
        self.top = top
        self.directory = os.path.join(top, "spool")
        os.mkdir(self.directory, 0o750)
        os.chown(self.directory, *self.owner)
        self.chowns = []
        for name in ("chown", "fchown"):
            real = getattr(os, name)
            self.patch(os, name, lambda *a, real=real, name=name: (self.chowns.append(name), real(*a)))

    def owners(self, *paths):
        return [(os.stat(p).st_uid, os.stat(p).st_gid) for p in paths]

    def paths(self, spool, message_id):
        return [spool.input_dir(message_id), os.path.dirname(spool.msglog_path(message_id)),
                spool.body_path(message_id), spool.header_path(message_id), spool.msglog_path(message_id)]

    def test_thread_creates_as_owner_without_chown(self):
        """A thread that took the owner's identity stores a message whose
        directories, -D, -H and msglog all belong to the owner, with no
        chown at all; other threads still create files as root."""
        spool = Spool(self.directory)

        def store():
            self.assertTrue(ownermodule.create_as(spool.owner, spool.directory))
            return spool.store(sample_envelope(), b"body\n", msglog_line="received")

        message_id = in_thread(store)
        self.assertEqual(self.owners(*self.paths(spool, message_id)), [self.owner] * 5)
        self.assertEqual(self.chowns, [])
        # The identity was the thread's alone: this one still creates as root.
        mine = os.path.join(self.top, "made-by-main-thread")
        open(mine, "w").close()
        self.assertEqual(self.owners(mine), [(0, 0)])

    def test_other_threads_chown(self):
        """Without create_as, the files still end up the owner's, by chown."""
        spool = Spool(self.directory)
        message_id = in_thread(lambda: spool.store(sample_envelope(), b"body\n", msglog_line="received"))
        self.assertEqual(self.owners(*self.paths(spool, message_id)), [self.owner] * 5)
        self.assertEqual(sorted(set(self.chowns)), ["chown", "fchown"])

    def test_falls_back_where_owner_may_not_write(self):
        """When the owner may not create in a directory (root's input/), the
        thread goes back to root's identity and chowns: the message is
        stored, its files are the owner's, and the thread stays root."""
        os.mkdir(os.path.join(self.directory, "input"), 0o755)   # root's, as an old tool might leave it
        spool = Spool(self.directory)

        def store():
            self.assertTrue(ownermodule.create_as(spool.owner, spool.directory))
            message_id = spool.store(sample_envelope(), b"body\n", msglog_line="received")
            probe = os.path.join(self.top, "made-after-fallback")
            open(probe, "w").close()
            return message_id, probe

        message_id, probe = in_thread(store)
        self.assertEqual(self.owners(*self.paths(spool, message_id)[2:]), [self.owner] * 3)
        self.assertEqual(self.owners(probe), [(0, 0)])
        self.assertIn("fchown", self.chowns)
        self.assertEqual(spool.read(message_id).sender, "joe@example.org")

    def test_unreachable_spool_is_not_taken(self):
        """A spool below a directory only root may enter (mkdtemp's 0700)
        cannot be written as its owner: the thread keeps root's identity
        and chowns, and no directory above the spool is handed over."""
        os.chmod(self.top, 0o700)
        nested = os.path.join(self.directory, "deeper")
        spool = Spool(nested)
        self.assertEqual(spool.owner, self.owner)

        def store():
            self.assertFalse(ownermodule.create_as(spool.owner, spool.directory))
            return spool.store(sample_envelope(), b"body\n", msglog_line="received")

        message_id = in_thread(store)
        self.assertEqual(self.owners(nested, *self.paths(spool, message_id)), [self.owner] * 6)
        self.assertEqual(self.owners(self.top), [(0, 0)])
        self.assertIn("fchown", self.chowns)

    def test_no_owner_changes_nothing(self):
        """create_as does nothing for a spool that needs no owner (None)."""
        self.assertFalse(in_thread(lambda: ownermodule.create_as(None, self.directory)))
