"""Retry rules and hints (spec chapter "Retry configuration").

The F, G and H algorithms, the choice of rule by pattern and error, the
cut-off that turns a temporary error into a failure, retry_interval_max,
host usability, and the SQLite hints database surviving across threads.
"""

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading

from twisted.internet import defer, task
from twisted.trial import unittest

from exim_py import config as configmod
from exim_py.delivery import hints, retry
from exim_py.delivery.address import Address, Host, DEFER, FAIL, OK
from exim_py.delivery.context import DeliveryContext
from exim_py.delivery.hints import HintsDB, RetryRecord

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CONFIG = """\
primary_hostname = myhost.test
retry_interval_max = 2h
begin retry
slow.example    *                F,1h,5m
geo.example     *                G,1d,10m,2
heur.example    *                H,1d,10m,2
*.example       rcpt_4xx         F,30m,1m
*               refused          F,10m,2m
*               *                F,2h,15m; G,16h,1h,1.5; F,4d,6h
"""


class RetryTestCase(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="exim_py-retry-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        path = os.path.join(self.dir, "exim.conf")
        with open(path, "w") as f:
            f.write(CONFIG)
        self.config = configmod.load(path)
        self.hints = HintsDB(self.dir)
        self.clock = task.Clock()
        self.clock.advance(1_000_000)
        self.ctx = DeliveryContext(self.config, hints=self.hints, clock=self.clock)

    def fail_key(self, key, error="timeout_connect", more_errno=None, domain=None):
        if domain is None and "." in key:
            domain = key.split(":")[1].split(".", 1)[1]
        return retry.record_failure(self.ctx, key, error, more_errno, domain=domain)


class RuleChoiceTests(RetryTestCase):
    """Which rule applies to a key and an error."""

    def test_host_key_matches_by_host_name_then_domain(self):
        """A T:host:ip key is matched against the host's name, then the domain."""
        rule = retry.find_rule(self.config, "T:slow.example:192.0.2.1", "timeout_connect")
        self.assertEqual(rule.pattern, "slow.example")
        rule = retry.find_rule(self.config, "T:mx.elsewhere.test:192.0.2.1", "timeout_connect",
                               domain="slow.example")
        self.assertEqual(rule.pattern, "slow.example")
        rule = retry.find_rule(self.config, "T:mx.elsewhere.test:192.0.2.1", "timeout_connect")
        self.assertEqual(rule.pattern, "*")

    def test_error_specific_rule(self):
        """An error-specific rule is chosen only for that error (refused_MX is a refused)."""
        self.assertEqual(retry.find_rule(self.config, "T:h.other.test:192.0.2.9",
                                         "refused_MX").error, "refused")
        self.assertEqual(retry.find_rule(self.config, "T:h.other.test:192.0.2.9",
                                         "timeout_connect").error, "*")

    def test_rcpt_rule_for_address_key(self):
        """An R:user@domain key with rcpt_4xx finds the rcpt_4xx rule for its domain."""
        rule = retry.find_rule(self.config, "R:u@x.example", "rcpt_4xx", more_errno=451)
        self.assertEqual(rule.error, "rcpt_4xx")


class AlgorithmTests(RetryTestCase):
    """F, G and H intervals, cut-offs and retry_interval_max."""

    def test_fixed_interval(self):
        """F,1h,5m: every retry five minutes after the last try."""
        rec = self.fail_key("T:mx.slow.example:192.0.2.1")
        self.assertEqual(rec.next_try - rec.last_try, 300)
        self.assertEqual(rec.first_failed, rec.last_try)

    def test_geometric_interval_grows(self):
        """G,1d,10m,2: 10m, then 20m, then 40m."""
        key = "T:mx.geo.example:192.0.2.2"
        gaps = []
        for _ in range(3):
            rec = self.fail_key(key)
            gaps.append(rec.next_try - rec.last_try)
            self.clock.advance(rec.next_try - self.clock.seconds())
        self.assertEqual(gaps, [600, 1200, 2400])

    def test_heuristic_interval_within_bounds(self):
        """H,1d,10m,2: each gap lies between the last gap and twice it."""
        key = "T:mx.heur.example:192.0.2.3"
        rec = self.fail_key(key)
        last = rec.next_try - rec.last_try
        self.assertEqual(last, 600)
        for _ in range(5):
            self.clock.advance(rec.next_try - self.clock.seconds())
            rec = self.fail_key(key)
            gap = rec.next_try - rec.last_try
            self.assertTrue(last <= gap <= 2 * last, (last, gap))
            last = gap

    def test_interval_max_caps(self):
        """retry_interval_max (2h here) caps a geometric gap."""
        key = "T:mx.geo.example:192.0.2.4"
        for _ in range(8):
            rec = self.fail_key(key)
            self.clock.advance(rec.next_try - self.clock.seconds())
        self.assertLessEqual(rec.next_try - rec.last_try, 7200)

    def test_cutoff_expires(self):
        """Past the rule's cut-off (1h) the record is expired."""
        key = "T:mx.slow.example:192.0.2.5"
        self.fail_key(key)
        self.clock.advance(3601)
        rec = self.fail_key(key)
        self.assertTrue(rec.expired)

    def test_no_rule_means_permanent(self):
        """With no matching rule, record_failure returns None (treat as permanent)."""
        path = os.path.join(self.dir, "norules.conf")
        with open(path, "w") as f:
            f.write("primary_hostname = x.test\nbegin retry\n")
        ctx = DeliveryContext(configmod.load(path), hints=self.hints, clock=self.clock)
        self.assertIsNone(retry.record_failure(ctx, "T:h:192.0.2.6", "refused"))


class UpdateTests(RetryTestCase):
    """retry.update after a delivery attempt."""

    def test_success_deletes_record(self):
        """A key that worked loses its record."""
        key = "T:mx.slow.example:192.0.2.7"
        self.fail_key(key)
        a = Address("u@slow.example")
        a.set_result(OK)
        a.add_retry(key, delete=True)
        retry.update(self.ctx, [a])
        self.assertIsNone(self.hints.get_retry(key))

    def test_deferred_past_cutoff_fails(self):
        """A deferral whose key is past its cut-off fails the address."""
        key = "T:mx.slow.example:192.0.2.8"
        self.fail_key(key)
        self.clock.advance(7200)
        a = Address("u@slow.example")
        a.set_result(DEFER, "Connection timed out")
        a.add_retry(key, error="timeout_connect")
        retry.update(self.ctx, [a])
        self.assertIs(a.result, FAIL)
        self.assertIn("retry timeout exceeded", a.message)

    def test_deferred_within_cutoff_stays_deferred(self):
        """A first deferral stays a deferral and records a next try time."""
        a = Address("u@slow.example")
        a.set_result(DEFER, "Connection refused")
        a.add_retry("T:mx.slow.example:192.0.2.9", error="refused")
        retry.update(self.ctx, [a])
        self.assertIs(a.result, DEFER)
        rec = self.hints.get_retry("T:mx.slow.example:192.0.2.9")
        self.assertGreater(rec.next_try, self.clock.seconds())


class HostUsableTests(RetryTestCase):
    """retry.host_usable, which the smtp transport asks before connecting."""

    def test_host_in_retry_is_unusable(self):
        """A host whose next try is in the future is skipped, marked why="retry"."""
        host = Host("mx.slow.example", "192.0.2.10")
        self.fail_key(retry.host_key(host))
        self.assertFalse(retry.host_usable(self.ctx, host))
        self.assertEqual((host.status, host.why), ("unusable", "retry"))
        self.clock.advance(301)
        self.assertTrue(retry.host_usable(self.ctx, host))

    def test_forced_delivery_ignores_retry(self):
        """-M / -qf (ctx.force) try every host."""
        host = Host("mx.slow.example", "192.0.2.11")
        self.fail_key(retry.host_key(host))
        self.ctx.force = True
        self.assertTrue(retry.host_usable(self.ctx, host))

    def test_port_in_host_key(self):
        """A non-standard port is part of the host's key."""
        self.assertEqual(retry.host_key(Host("h", "192.0.2.1", 2525)), "T:h:192.0.2.1:2525")
        self.assertEqual(retry.host_key(Host("h", "192.0.2.1", 25)), "T:h:192.0.2.1")


class HintsDBTests(unittest.TestCase):
    """The SQLite hints database."""

    def test_threads_share_it(self):
        """Records written from several threads are all there afterwards."""
        d = tempfile.mkdtemp(prefix="exim_py-hints-")
        self.addCleanup(shutil.rmtree, d, True)
        db = HintsDB(d)

        def writer(n):
            for i in range(50):
                db.put_retry(RetryRecord("T:h%d:%d" % (n, i), 1, 2, 3))
        threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(len(HintsDB(d).retry_records()), 200)

    def test_processes_open_a_new_database_together(self):
        """Several processes (a daemon's workers) opening the same new hints
        database at once all get it: none fails with "database is locked"
        while another switches it to WAL mode."""
        script = ("import sys, time\n"
                  "from exim_py.delivery.hints import HintsDB\n"
                  "start = float(sys.argv[2])\n"
                  "time.sleep(max(0, start - time.time()))\n"
                  "print(HintsDB(sys.argv[1]).get_retry('R:x@y'))\n")
        for _round in range(5):
            d = tempfile.mkdtemp(prefix="exim_py-hints-")
            self.addCleanup(shutil.rmtree, d, True)
            start = "%.3f" % (__import__("time").time() + 0.5)
            procs = [subprocess.Popen([sys.executable, "-c", script, d, start],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                     for _ in range(6)]
            results = [p.communicate(timeout=60) for p in procs]
            self.assertEqual([(p.returncode, out, err) for p, (out, err) in zip(procs, results)],
                             [(0, "None\n", "")] * 6)

    def test_survives_reopen(self):
        """A record is still there when the database is opened again (a restart)."""
        d = tempfile.mkdtemp(prefix="exim_py-hints-")
        self.addCleanup(shutil.rmtree, d, True)
        HintsDB(d).put_retry(RetryRecord("R:x@y", 10, 20, 30, True, 0, 451, "later"))
        rec = HintsDB(d).get_retry("R:x@y")
        self.assertEqual((rec.first_failed, rec.next_try, rec.expired, rec.text),
                         (10, 30, True, "later"))

    def test_record_written_by_another_process_is_seen(self):
        """A key remembered as absent is looked up again once another process
        has written it (the absent-key cache follows SQLite's data_version)."""
        d = tempfile.mkdtemp(prefix="exim_py-hints-")
        self.addCleanup(shutil.rmtree, d, True)
        db = HintsDB(d)
        self.assertIsNone(db.get_retry("T:b@y.test"))
        code = ("from exim_py.delivery.hints import HintsDB, RetryRecord; "
                "HintsDB(%r).put_retry(RetryRecord('T:b@y.test', 1, 2, 3))" % d)
        subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
        self.assertEqual(db.get_retry("T:b@y.test").next_try, 3)
        db.delete_retry("T:b@y.test")
        self.assertEqual(HintsDB(d).retry_records(), [])

    def test_absences_are_rechecked_only_after_a_while(self):
        """Lookups in quick succession ask SQLite whether another connection
        changed the database once, not every time (hints.RECHECK_SECONDS)."""
        d = tempfile.mkdtemp(prefix="exim_py-hints-")
        self.addCleanup(shutil.rmtree, d, True)
        db = HintsDB(d)
        self.patch(hints, "RECHECK_SECONDS", 3600)
        statements = []
        db._conn().set_trace_callback(statements.append)
        for _ in range(5):
            self.assertIsNone(db.get_retry("T:b@y.test"))
        self.assertEqual(len([s for s in statements if "data_version" in s]), 1)

    def test_deleting_an_absent_key_commits_nothing(self):
        """A successful delivery deletes its key: when there is no record, no
        transaction is written (another connection sees no change)."""
        d = tempfile.mkdtemp(prefix="exim_py-hints-")
        self.addCleanup(shutil.rmtree, d, True)
        db = HintsDB(d)
        watcher = sqlite3.connect(db.path)
        self.addCleanup(watcher.close)
        before = watcher.execute("PRAGMA data_version").fetchone()[0]
        for _ in range(3):
            db.delete_retry("T:b@y.test")
        self.assertEqual(watcher.execute("PRAGMA data_version").fetchone()[0], before)
        db.put_retry(RetryRecord("T:b@y.test", 1, 2, 3))
        self.assertNotEqual(watcher.execute("PRAGMA data_version").fetchone()[0], before)


class CutoffEndToEndTests(unittest.TestCase):
    """A delivery that keeps deferring fails with a bounce after the cut-off."""

    @defer.inlineCallbacks
    def test_deferral_becomes_bounce_after_cutoff(self):
        """Exit status 75 defers at first; past the retry rule's 10 minute
        cut-off the next failure is permanent and the sender gets a bounce."""
        from tests.test_delivery_engine import MailEnv, BASE_CONFIG
        env = MailEnv(self, config_text=BASE_CONFIG.replace("* * F,1h,10m", "* * F,10m,1m"))
        mid = env.submit(["tempfail"])
        received = env.spool.read(mid).received_time
        clock = task.Clock()
        clock.advance(received + 1)
        outcome = yield env.deliver(mid, clock=clock, deliver_bounces=False)
        self.assertEqual(len(outcome.deferred), 1)
        clock.advance(5 * 60)
        outcome = yield env.deliver(mid, clock=clock, deliver_bounces=False)
        self.assertEqual(len(outcome.deferred), 1)
        clock.advance(10 * 60)
        outcome = yield env.deliver(mid, clock=clock, deliver_bounces=False)
        self.assertTrue(outcome.completed)
        self.assertEqual(len(outcome.failed), 1)
        self.assertIn("retry timeout exceeded", outcome.failed[0].message)
        self.assertEqual(len(outcome.bounces), 1)
