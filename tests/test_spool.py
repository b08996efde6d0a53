"""The spool: message ids, the -H/-D format, durable storage, locking, removal."""

import os
import re
import subprocess
import sys
import tempfile
import threading
import types

from twisted.trial.unittest import TestCase

from exim_py.envelope import Envelope, Header, Recipient, Session
from exim_py.spool import MessageLocked, MessageMissing, Spool
from exim_py.spool import format as spoolformat
from exim_py.spool.ids import IdGenerator, base62, from_base62, id_time, is_message_id
from tests.support.peers import require_command


def sample_envelope():
    s = Session()
    s.caller_name, s.caller_uid, s.caller_gid = "Debian-exim", 102, 105
    s.helo_name = "helo.example"
    s.sender_host_address, s.sender_host_port = "192.0.2.7", 41234
    s.sender_host_name = "client.example"
    s.interface_address, s.interface_port = "192.0.2.1", 25
    s.received_protocol = "esmtpsa"
    s.local = False
    s.acl_c = {"acl_c0": "zero", "acl_c_flag": "multi\nline"}
    s.authenticated_id = "joe"
    s.auth_mechanism = "plain"
    s.tls_cipher = "TLS1.3:TLS_AES_256_GCM_SHA384:256"
    s.tls_peerdn = "CN=client"
    s.tls_certificate_verified = True
    env = Envelope(s)
    env.message_id = "1xUp31-0001tl-03"
    env.received_time = 1795282727.016192
    env.sender = "joe@example.org"
    env.auth_sender = "joe@example.org"
    env.acl_m = {"acl_m_score": "12"}
    env.recipients = [Recipient("a@b.example", dsn_notify="SUCCESS,DELAY", orcpt="rfc822;A@B.example"),
                      Recipient("n@b.example", dsn_notify="NEVER"),
                      Recipient("p@b.example"),
                      Recipient("child@b.example", errors_to="owner@b.example", pno=0)]
    env.headers = [Header("Received: from client.example\n\tby mx\n", "P"),
                   Header("Subject: caf\xe9 \udcff\n", " "),
                   Header("From: joe@example.org\n", "F"),
                   Header("Bcc: hidden@example\n", "*")]
    env.body_linecount, env.max_received_linelength, env.body_zerocount = 3, 40, 1
    env.dsn_envid, env.dsn_ret = "abc+2Bdef", "HDRS"
    env.spool_extra["received_time_complete"] = "1795282727.016933"
    return env


class MessageIdTests(TestCase):
    """Exim 4.96 message ids."""

    def test_format_and_fields(self):
        """An id is TTTTTT-PPPPPP-FF in base 62: arrival second, pid, 5 ms steps."""
        # Real exim4 gave 1xUp2q-0001oh-2a for this time and pid.
        gen = IdGenerator(clock=lambda: 1795282716.801374, pid=from_base62("0001oh"))
        message_id, when = gen.new_id()
        self.assertTrue(is_message_id(message_id))
        self.assertEqual(message_id, "1xUp2q-0001oh-2a")
        self.assertEqual(base62(from_base62("0001oh")), "0001oh")
        self.assertEqual(id_time(message_id), 1795282716)
        self.assertEqual(from_base62("2a"), 160)   # 801374 us // 5000

    def test_localhost_number(self):
        """localhost_number adds 200 per host to the fraction, as Exim 4.96 does."""
        gen = IdGenerator(localhost_number=3, clock=lambda: 1795282718.605000, pid=1)
        self.assertEqual(from_base62(gen.new_id()[0][14:]), 3 * 200 + 121)

    def test_unique_within_one_step(self):
        """Many ids in the same 5 ms step differ, in the pid field, and stay valid ids."""
        gen = IdGenerator(clock=lambda: 1795282716.0, pid=4000)
        ids = [gen.new_id()[0] for _ in range(14000)]
        self.assertEqual(len(set(ids)), 14000)
        self.assertTrue(all(is_message_id(i) for i in ids))
        self.assertEqual(len({i[14:] for i in ids}), 2)   # ran out of sequence numbers once

    def test_forked_child_uses_its_own_pid(self):
        """After a fork the child's ids carry the child's pid, so they cannot repeat the parent's."""
        gen = IdGenerator(clock=lambda: 1795282716.0)
        parent = gen.new_id()[0]
        read, write = os.pipe()
        child = os.fork()
        if child == 0:
            os.write(write, gen.new_id()[0].encode())
            os._exit(0)
        os.waitpid(child, 0)
        child_id = os.read(read, 100).decode()
        self.assertEqual(parent[7:13], base62(os.getpid()))
        self.assertEqual(child_id[7:13], base62(child))

    def test_unique_across_threads(self):
        """Ids handed out concurrently from many threads never collide."""
        gen = IdGenerator()
        results = []

        def work():
            results.extend(gen.new_id()[0] for _ in range(2000))

        threads = [threading.Thread(target=work) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(len(set(results)), 16000)


    def test_unique_across_spools(self):
        """Two spools in one process (the SMTP side and the bounce writer, say)
        never hand out the same id, even within one 5 ms step."""
        first = Spool(tempfile.mkdtemp(prefix="exim_py-ids-"))
        second = Spool(tempfile.mkdtemp(prefix="exim_py-ids-"))
        ids = [spool.new_message_id() for _ in range(500) for spool in (first, second)]
        self.assertEqual(len(set(ids)), len(ids))


class HeaderFormatTests(TestCase):
    """The -H file text, both ways."""

    def test_round_trip(self):
        """Everything an Envelope holds survives writing and reading the -H file."""
        env = sample_envelope()
        data = spoolformat.format_header_file(env)
        back = spoolformat.parse_header_file(data, env.message_id)
        self.assertEqual(spoolformat.format_header_file(back), data)
        self.assertEqual(back.sender, "joe@example.org")
        self.assertEqual(back.session.sender_host_address, "192.0.2.7")
        self.assertEqual(back.session.sender_host_port, 41234)
        self.assertEqual(back.session.acl_c, env.session.acl_c)
        self.assertEqual(back.acl_m, {"acl_m_score": "12"})
        self.assertEqual([(r.address, r.dsn_notify, r.orcpt, r.errors_to, r.pno) for r in back.recipients],
                         [(r.address, r.dsn_notify, r.orcpt, r.errors_to, r.pno) for r in env.recipients])
        self.assertEqual([(h.text, h.flag) for h in back.headers], [(h.text, h.flag) for h in env.headers])
        self.assertEqual(back.dsn_ret, "HDRS")
        self.assertEqual(back.received_time, env.received_time)

    def test_exim_lines(self):
        """The lines are spelled as Exim 4.96 spells them (taint marks, [ip]:port, DSN recipients)."""
        text = spoolformat.format_header_file(sample_envelope()).decode("utf-8", "surrogateescape")
        lines = text.split("\n")
        self.assertEqual(lines[:6], ["1xUp31-0001tl-03-H", "Debian-exim 102 105", "<joe@example.org>",
                                     "1795282727 0", "-received_time_usec .016192",
                                     "-received_time_complete 1795282727.016933"])
        for expected in ("--helo_name helo.example", "-host_address [192.0.2.7]:41234",
                         "-interface_address [192.0.2.1]:25", "-aclc 0 4", "-aclc _flag 10",
                         "-aclm _score 2", "--auth_id joe", "--auth_sender joe@example.org",
                         "-host_auth plain",
                         "-dsn_envid abc+2Bdef", "-dsn_ret 2", "-tls_certificate_verified",
                         "a@b.example rfc822;A@B.example 18,20  0,-1#3",
                         "n@b.example  0,2  0,-1#3", "p@b.example",
                         "child@b.example  0,0 owner@b.example 15,0#3"):
            self.assertIn(expected, lines)
        self.assertIn("\n4\n", text)
        self.assertIn("Subject: caf\xe9 \udcff\n", text)
        # Header sizes count bytes: é is two, the stray byte one.
        self.assertIn("017  Subject:", text)

    def test_tree_is_a_balanced_search_tree(self):
        """Delivered addresses are written as Exim's YN tree and read back."""
        env = sample_envelope()
        env.non_recipients = {"a%02d@x" % i for i in range(20)}
        lines = spoolformat.tree_lines(env.non_recipients)
        self.assertEqual(len(lines), 20)
        self.assertEqual(lines[0], "YY a10@x")
        back = spoolformat.parse_header_file(spoolformat.format_header_file(env))
        self.assertEqual(back.non_recipients, env.non_recipients)
        self.assertEqual(spoolformat.tree_lines(set()), ["XX"])

    def test_reads_older_forms(self):
        """ip.port addresses, the #1 errors_to form and unknown lines are understood or kept."""
        data = (b"1aaaaa-000000-00-H\nroot 0 0\n<>\n1000 2\n-host_address 10.0.0.1.25\n"
                b"-some_future_thing value\n-body_linecount 1\nXX\n1\n"
                b"x@y owner@z 7,0#1\n\n010  Subject:\n")
        env = spoolformat.parse_header_file(data)
        self.assertEqual((env.session.sender_host_address, env.session.sender_host_port), ("10.0.0.1", 25))
        self.assertEqual(env.warning_count, 2)
        self.assertEqual(env.sender, "")
        self.assertEqual((env.recipients[0].address, env.recipients[0].errors_to), ("x@y", "owner@z"))
        self.assertEqual(env.spool_extra["some_future_thing"], "value")
        self.assertIn(b"-some_future_thing value\n", spoolformat.format_header_file(env))

    def test_bad_file_is_reported(self):
        """A -H file that is not one raises SpoolFormatError, not something random."""
        for data in (b"", b"garbage\n", b"1aaaaa-000000-00-H\nroot 0 0\n<>\n1 0\nXX\nx\n"):
            self.assertRaises(spoolformat.SpoolFormatError, spoolformat.parse_header_file, data)


class SpoolTests(TestCase):
    """Storing, reading, locking and removing messages."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="spool-test-")
        self.spool = Spool(self.dir)

    def store(self, spool=None, **kw):
        env = sample_envelope()
        env.message_id = None
        for k, v in kw.items():
            setattr(env, k, v)
        return (spool or self.spool).store(env, b"line one\nline two\n\0\n", "msglog line")

    def test_store_and_read(self):
        """store() writes <id>-D and <id>-H under input/; read() gives the envelope back."""
        message_id = self.store()
        names = sorted(os.listdir(os.path.join(self.dir, "input")))
        self.assertEqual(names, [message_id + "-D", message_id + "-H"])
        with open(os.path.join(self.dir, "input", message_id + "-D"), "rb") as f:
            self.assertEqual(f.read(), message_id.encode() + b"-D\nline one\nline two\n\0\n")
        self.assertEqual(self.spool.read_body(message_id), b"line one\nline two\n\0\n")
        env = self.spool.read(message_id)
        self.assertEqual(env.message_id, message_id)
        self.assertEqual(len(env.recipients), 4)
        with open(os.path.join(self.dir, "msglog", message_id)) as f:
            self.assertEqual(f.read(), "msglog line\n")
        self.assertEqual(oct(os.stat(os.path.join(self.dir, "input", message_id + "-H")).st_mode & 0o777),
                         "0o640")

    def test_msglog_received_line(self):
        """A spool made from a configuration starts each message's msglog as Exim does (message_logs)."""
        from exim_py import config as config_module
        path = os.path.join(self.dir, "exim.conf")
        with open(path, "w") as f:
            f.write("spool_directory = %s\nlog_file_path = %s/%%slog\n" % (self.dir, self.dir))
        spool = Spool.from_config(config_module.load(path))
        env = sample_envelope()
        env.message_id, env.size = None, 1234
        message_id = spool.store_batch([(env, b"x\n")])[0]
        with open(spool.msglog_path(message_id)) as f:
            self.assertRegex(f.read(), r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d Received from joe@example.org "
                                       r"H=client.example \(helo.example\) \[192.0.2.7\] P=esmtpsa .* S=1234\n$")
        with open(path, "a") as f:
            f.write("message_logs = false\n")
        env.message_id = None
        message_id = Spool.from_config(config_module.load(path)).store(env, b"x\n")
        self.assertFalse(os.path.exists(spool.msglog_path(message_id)))

    def test_split_spool_directory(self):
        """With split_spool_directory the files go to input/<sixth id character>/."""
        spool = Spool(self.dir, split=True)
        message_id = self.store(spool)
        self.assertTrue(os.path.exists(os.path.join(self.dir, "input", message_id[5], message_id + "-H")))
        self.assertEqual(list(spool.message_ids()), [message_id])
        self.assertEqual(spool.read(message_id).message_id, message_id)
        # A spool written split is still found when read unsplit, and vice versa.
        self.assertEqual(list(Spool(self.dir).message_ids()), [message_id])
        self.assertEqual(Spool(self.dir).read(message_id).message_id, message_id)

    def test_other_layout_lock_journal_and_remove(self):
        """A message written split is locked, its journal read and it is
        removed by an unsplit spool (and the reverse): each file is tried
        where the layout puts it, then in the other place."""
        for written, used in ((True, False), (False, True)):
            message_id = self.store(Spool(self.dir, split=written))
            spool = Spool(self.dir, split=used)
            Spool(self.dir, split=written).mark_delivered(message_id, "a@b.example")
            with spool.lock(message_id):
                self.assertTrue(Spool(self.dir, split=written).is_locked(message_id))
            self.assertEqual(spool.read(message_id).non_recipients, {"a@b.example"})
            spool.remove(message_id)
            self.assertEqual(list(Spool(self.dir, split=written).message_ids()), [])
            self.assertFalse(os.path.exists(Spool(self.dir, split=written).body_path(message_id)))
            self.assertRaises(MessageMissing, spool.read, message_id)
            self.assertRaises(MessageMissing, spool.lock, message_id)

    def test_message_ids_is_lazy(self):
        """message_ids() is a generator over the directory, not a list built first."""
        ids = {self.store() for _ in range(5)}
        it = self.spool.message_ids()
        self.assertIsInstance(it, types.GeneratorType)
        self.assertEqual(set(it), ids)

    def test_incomplete_messages_are_invisible(self):
        """A crash before the -H rename leaves a -D and hdr.<id>: no message is listed."""
        env = sample_envelope()
        env.message_id = None
        real_rename = os.rename

        def crash(src, dst):
            raise OSError("simulated crash")

        os.rename = crash
        try:
            self.assertRaises(OSError, self.spool.store, env, b"x\n")
        finally:
            os.rename = real_rename
        leftovers = sorted(os.listdir(os.path.join(self.dir, "input")))
        self.assertEqual(leftovers, ["%s-D" % env.message_id, "hdr.%s" % env.message_id])
        self.assertEqual(list(self.spool.message_ids()), [])

    def traced_store(self, statement):
        """Run ``statement`` (which prints ids) under strace; returns (ids, list of sync/rename events)."""
        strace = require_command("strace", "Debian package strace")
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        code = ("import sys; sys.path.insert(0, %r)\n"
                "from tests.test_spool import sample_envelope\n"
                "from exim_py.spool import Spool\n"
                "spool = Spool(%r)\n"
                "def env():\n    e = sample_envelope(); e.message_id = None; return e\n"
                "%s\n") % (root, self.dir, statement)
        out = subprocess.run([strace, "-f", "-e", "trace=openat,fsync,syncfs,rename,close", sys.executable,
                              "-c", code], capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr[-2000:])
        fds, events = {}, []
        for line in out.stderr.splitlines():
            m = re.search(r'openat\(AT_FDCWD, "([^"]+)".*= (\d+)$', line)
            if m:
                fds[m.group(2)] = os.path.basename(m.group(1))
            m = re.search(r"(fsync|syncfs)\((\d+)\)", line)
            if m:
                events.append("%s %s" % (m.group(1), fds.get(m.group(2), "?")))
            m = re.search(r'rename\("[^"]*/([^"/]+)", "[^"]*/([^"/]+)"\)', line)
            if m:
                events.append("rename %s %s" % m.groups())
        return out.stdout.split(), events

    def test_single_message_sync_order(self):
        """One message: -D and hdr.<id> are made durable by one syncfs before
        the rename to -H, and the directory is fsync'ed after it (strace)."""
        [message_id], events = self.traced_store("print(spool.store(env(), b'x\\n'))")
        self.assertEqual(events, ["syncfs input", "rename hdr.%s %s-H" % (message_id, message_id),
                                  "fsync input"])

    def test_fsync_order_without_syncfs(self):
        """Where syncfs does not exist, -D and hdr.<id> are each fsync'ed
        before the rename to -H, as Exim does (strace)."""
        [message_id], events = self.traced_store("import exim_py.spool.spool as s; s._syncfs = None\n"
                                                 "print(spool.store(env(), b'x\\n'))")
        self.assertEqual(events, ["fsync %s-D" % message_id, "fsync hdr.%s" % message_id,
                                  "rename hdr.%s %s-H" % (message_id, message_id), "fsync input"])

    def test_batch_sync_order(self):
        """store_batch makes every file durable with one syncfs before the first -H rename."""
        ids, events = self.traced_store("print(*spool.store_batch([(env(), b'x\\n') for _ in range(5)]))")
        self.assertEqual(len(ids), 5)
        self.assertEqual(events, ["syncfs input"] +
                         ["rename hdr.%s %s-H" % (i, i) for i in ids] + ["fsync input"])

    def test_killed_writer_loses_nothing_acknowledged(self):
        """SIGKILL a process while it stores: every id it reported is complete, nothing half-written is listed."""
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        code = ("import sys; sys.path.insert(0, %r)\n"
                "from tests.test_spool import sample_envelope\n"
                "from exim_py.spool import Spool\n"
                "spool = Spool(%r)\n"
                "def env():\n    e = sample_envelope(); e.message_id = None; return e\n"
                "while True:\n"
                "    print(spool.store(env(), b'x\\n' * 1000), flush=True)\n"
                "    print(*spool.store_batch([(env(), b'y\\n' * 1000) for _ in range(5)]), flush=True)\n"
                ) % (root, self.dir)
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        acknowledged = []
        while len(acknowledged) < 30:
            acknowledged.extend(proc.stdout.readline().split())
        proc.kill()
        acknowledged.extend(proc.stdout.read().split())
        proc.wait()
        listed = set(self.spool.message_ids())
        self.assertTrue(set(acknowledged) <= listed)
        for message_id in listed:
            env = self.spool.read(message_id)
            self.assertEqual(len(env.recipients), 4)
            self.assertIn(self.spool.read_body(message_id), (b"x\n" * 1000, b"y\n" * 1000))

    def test_store_batch_one_directory_sync(self):
        """store_batch stores every message and syncs the directory once."""
        envs = []
        for _ in range(10):
            env = sample_envelope()
            env.message_id = None
            envs.append((env, b"body\n"))
        import exim_py.spool.spool as spoolmodule
        calls = []
        real = spoolmodule._fsync_open_directory
        self.patch(spoolmodule, "_fsync_open_directory", lambda fd: (calls.append(fd), real(fd)))
        ids = self.spool.store_batch(envs)
        self.assertEqual(len(set(ids)), 10)
        self.assertEqual(set(self.spool.message_ids()), set(ids))
        self.assertEqual(len(calls), 1)

    def test_split_batch_syncs_each_directory(self):
        """With split_spool_directory a batch spans subdirectories: one
        syncfs covers the files, then every subdirectory is fsync'ed after
        its renames (strace)."""
        code = ("spool.split = True\n"
                "import time\n"
                "envs = []\n"
                "while len({e.message_id[5] for e in envs}) < 2:\n"
                "    e = env(); e.message_id = spool.new_message_id(); envs.append(e); time.sleep(0.3)\n"
                "print(*spool.store_batch([(e, b'x\\n') for e in envs]))")
        ids, events = self.traced_store(code)
        subdirs = sorted({i[5] for i in ids})
        self.assertEqual(events[0], "syncfs %s" % ids[0][5])
        self.assertEqual(events[1:len(ids) + 1], ["rename hdr.%s %s-H" % (i, i) for i in ids])
        self.assertEqual(sorted(events[len(ids) + 1:]), ["fsync %s" % d for d in subdirs])

    def test_lock_excludes_threads_and_processes(self):
        """One lock per message: a second lock in this process or another one fails."""
        message_id = self.store()
        lock = self.spool.lock(message_id)
        self.assertRaises(MessageLocked, self.spool.lock, message_id)
        self.assertTrue(self.spool.is_locked(message_id))
        # Exim takes a classic fcntl() lock on the first line of -D; ours must conflict with it.
        probe = ("import fcntl, os, sys\n"
                 "fd = os.open(sys.argv[1], os.O_RDWR)\n"
                 "try:\n    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 19, 0)\n"
                 "except OSError:\n    print('locked')\nelse:\n    print('free')\n")
        path = self.spool.body_path(message_id)

        def run():
            return subprocess.run([sys.executable, "-c", probe, path], capture_output=True,
                                  text=True).stdout.strip()

        self.assertEqual(run(), "locked")
        lock.release()
        self.assertEqual(run(), "free")
        with self.spool.lock(message_id):
            self.assertTrue(self.spool.is_locked(message_id))
        self.assertFalse(self.spool.is_locked(message_id))

    def test_lock_respects_exim_style_lock(self):
        """A message another process has locked as Exim does cannot be locked here."""
        message_id = self.store()
        path = self.spool.body_path(message_id)
        holder = subprocess.Popen(
            [sys.executable, "-c", "import fcntl, os, sys\nfd = os.open(sys.argv[1], os.O_RDWR)\n"
             "fcntl.lockf(fd, fcntl.LOCK_EX, 19, 0)\nprint('held', flush=True)\nsys.stdin.read()\n", path],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            self.assertEqual(holder.stdout.readline().strip(), "held")
            self.assertRaises(MessageLocked, self.spool.lock, message_id)
        finally:
            holder.stdin.close()
            holder.wait()
        self.spool.lock(message_id).release()

    def test_mark_delivered_and_journal(self):
        """Delivered addresses go to the -J journal at once; read() applies it, write_header() folds it in."""
        message_id = self.store()
        journal = os.path.join(self.dir, "input", message_id + "-J")
        self.spool.mark_delivered(message_id, "a@b.example")
        self.spool.mark_delivered(message_id, ["n@b.example", "p@b.example"])
        with open(journal) as f:
            self.assertEqual(f.read(), "a@b.example\nn@b.example\np@b.example\n")
        env = self.spool.read(message_id)
        self.assertEqual(env.non_recipients, {"a@b.example", "n@b.example", "p@b.example"})
        env.deliver_firsttime = False
        self.spool.write_header(env)
        self.assertFalse(os.path.exists(journal))
        with open(self.spool.header_path(message_id), "rb") as f:
            data = f.read()
        self.assertIn(b"\nYY n@b.example\nNN a@b.example\nNN p@b.example\n4\n", data)
        self.assertNotIn(b"-deliver_firsttime", data)

    def test_remove(self):
        """remove() takes -H, -D, -J and the msglog away."""
        message_id = self.store()
        self.spool.remove(message_id)
        self.assertEqual(os.listdir(os.path.join(self.dir, "input")), [])
        self.assertEqual(os.listdir(os.path.join(self.dir, "msglog")), [])
        self.assertRaises(MessageMissing, self.spool.read, message_id)
        self.assertRaises(MessageMissing, self.spool.lock, message_id)
