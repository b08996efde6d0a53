"""Queue listing details that a fresh queue does not show: old messages and big ones,
and -bpc over a spool with split subdirectories and stray files."""

import io
import os
import shutil
import tempfile

from twisted.trial.unittest import TestCase

from exim_py.spool import Spool
from exim_py.spool.listing import count_messages, format_age, format_size, list_message, sort_key
from tests.support.peers import RealExim, run_exim_py
from tests.test_spool import sample_envelope


class ListingFormatTests(TestCase):
    """The age and size columns of -bp, as Exim's queue listing computes them."""

    def test_age(self):
        """Minutes up to 90, then hours (rounded) up to 72, then days (rounded)."""
        self.assertEqual(format_age(59), " 0m")
        self.assertEqual(format_age(90 * 60), "90m")
        self.assertEqual(format_age(91 * 60), " 2h")
        self.assertEqual(format_age(72 * 3600), "72h")
        self.assertEqual(format_age(73 * 3600), " 3d")
        self.assertEqual(format_age(400 * 86400), "400d")

    def test_age_counts_whole_seconds(self):
        """The age is the current second less the arrival second, as Exim
        counts it: a message that arrived at .9 of a second, listed 89
        minutes and half a second later by the clock, is 89m old (not 88m)."""
        directory = tempfile.mkdtemp(prefix="exim_py-listing-")
        self.addCleanup(shutil.rmtree, directory, True)
        spool = Spool(directory)
        env = sample_envelope()
        env.received_time = 1795282727.9
        spool.store(env, b"x\n")
        out = io.StringIO()
        list_message(spool, env.message_id, None, 1795282727 + 89 * 60 + 0.5, out)
        self.assertEqual(out.getvalue()[:3], "89m")

    def test_size(self):
        """Bytes below 1K, one decimal below 10K/10M, whole K or M above."""
        self.assertEqual(format_size(0), "     ")
        self.assertEqual(format_size(220), "  220")
        self.assertEqual(format_size(1536), " 1.5K")
        self.assertEqual(format_size(20 * 1024 + 600), "  21K")
        self.assertEqual(format_size(2 * 1024 * 1024), " 2.0M")
        self.assertEqual(format_size(30 * 1024 * 1024), "  30M")

    def test_sort_order(self):
        """Arrival second first, then the fraction, then the pid field (Exim's queue order)."""
        ids = ["1xUp2q-0001oh-2a", "1xUp2q-0001aa-2b", "1xUp2p-zzzzzz-zz", "1xUp2q-000001-2a"]
        self.assertEqual(sorted(ids, key=sort_key),
                         ["1xUp2p-zzzzzz-zz", "1xUp2q-000001-2a", "1xUp2q-0001oh-2a", "1xUp2q-0001aa-2b"])


def _touch(path):
    with open(path, "w") as f:
        f.write("x\n")


class QueueCountTests(TestCase):
    """-bpc counts header-file names without reading them, exactly as exim4 does."""

    def setUp(self):
        self.base = tempfile.mkdtemp(prefix="exim_py-bpc-")
        self.addCleanup(shutil.rmtree, self.base, True)
        os.chmod(self.base, 0o755)
        inp = os.path.join(self.base, "spool", "input")
        for sub in ("a", "b", "zz"):
            os.makedirs(os.path.join(inp, sub))
        for name in ("1xUp2q-0001oh-2a-H", "1xUp2q-0001oh-2a-D", "1xUp2q-0001oi-2a-H",
                     "a/1xUp2a-0001oh-2a-H", "b/1xUp2b-0001oh-2a-H",
                     # not counted: a temporary header, a lone data file, a
                     # name of the wrong length, a subdirectory that is not split_spool's
                     "hdr.1xUp2q-0001oj-2a", "1xUp2q-0001ok-2a-D", "1xUp2q-0001ol-H",
                     "zz/1xUp2q-0001om-2a-H",
                     # counted, as by Exim: the right length and -H, whatever the id
                     "xxxxxxxxxxxxxxxx-H"):
            _touch(os.path.join(inp, name))
        for root, dirs, files in os.walk(self.base):
            for d in dirs:
                os.chmod(os.path.join(root, d), 0o755)

    def test_count_function(self):
        """count_messages sees input/ and its one-letter subdirectories only."""
        self.assertEqual(count_messages(Spool(os.path.join(self.base, "spool"))), 5)

    def test_missing_spool_counts_zero(self):
        """A spool whose input/ does not exist yet holds no messages."""
        self.assertEqual(count_messages(Spool(os.path.join(self.base, "nothing"))), 0)

    def test_same_count_as_exim4(self):
        """exim_py -bpc prints what exim4 -bpc prints for the same spool directory."""
        exim = RealExim()
        self.addCleanup(exim.cleanup)
        conf = exim.write_config("spool_directory = %s/spool\nkeep_environment =\n"
                                 "log_file_path = %s/%%slog\n" % (self.base, self.base))
        theirs = exim.run(conf, ["-bpc"])
        ours = run_exim_py(["-C", conf, "-bpc"])
        self.assertEqual((theirs.returncode, theirs.stdout), (0, "5\n"))
        self.assertEqual((ours.returncode, ours.stdout, ours.stderr), (0, "5\n", ""))
