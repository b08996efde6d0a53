"""Local delivery compared with real Exim 4.96: the same message to the same
recipients under the same configuration must give the same main log
lines, in the same order, and the same bounce message.

Exim runs as Debian-exim with a -C configuration, so its spool, log and
mail directories belong to that user, and the transports run as it.
"""

import os
import pwd
import re

from twisted.trial import unittest

from tests.support.peers import RealExim, run_exim_py

HEAD = """\
primary_hostname = myhost.test
qualify_domain = localdomain
keep_environment =
spool_directory = DIR/spool
log_file_path = DIR/log/%slog
"""

TEMPLATE = HEAD + """\
begin routers
alias:
  driver = redirect
  domains = localdomain
  local_parts = ! user1 : ! user2 : ! user3
  data = ${lookup{$local_part}lsearch{DIR/aliases}}
  allow_fail
  allow_defer
  pipe_transport = p
  file_transport = f
local:
  driver = accept
  domains = localdomain
  local_parts = user1 : user2
  transport = lt
begin transports
lt:
  driver = appendfile
  file = DIR/mail/$local_part_data
  user = Debian-exim
p:
  driver = pipe
  user = Debian-exim
f:
  driver = appendfile
  user = Debian-exim
begin retry
* * F,1h,10m
"""

ALIASES = """\
fl: :fail: nope
df: :defer: wait
two: user1, fl, user3
pp: |/bin/cat
pf: |/bin/false
ff: DIR/mail/ff
bh: :blackhole:
both: user1, user2
"""

RECIPIENTS = ["user1", "two", "df", "pp", "pf", "ff", "bh", "both", "user2"]
MESSAGE = "Subject: hi\n\nbody\n"
_ID = re.compile(r"[0-9A-Za-z]{6}-[0-9A-Za-z]{6}-[0-9A-Za-z]{2}\b")


class _EximComparison(unittest.TestCase):
    """Helpers: a private directory per MTA, owned as Exim needs it."""

    def setUp(self):
        self.exim = RealExim()
        self.addCleanup(self.exim.cleanup)
        try:
            self.exim_user = pwd.getpwnam("Debian-exim")
        except KeyError:
            raise unittest.SkipTest("no Debian-exim user")

    def prepare(self, name):
        d = os.path.join(self.exim.dir, name)
        for sub in ("spool", "log", "mail", "maildir"):
            os.makedirs(os.path.join(d, sub))
            os.chown(os.path.join(d, sub), self.exim_user.pw_uid, self.exim_user.pw_gid)
        os.chmod(d, 0o755)
        with open(os.path.join(d, "aliases"), "w") as f:
            f.write(ALIASES.replace("DIR", d))
        os.chmod(os.path.join(d, "aliases"), 0o644)
        return d, self.exim.write_config(TEMPLATE.replace("DIR", d), name + ".conf")

    @staticmethod
    def log_lines(d):
        with open(os.path.join(d, "log", "mainlog")) as f:
            lines = [ln[20:].rstrip("\n") for ln in f if "lost privilege" not in ln]
        return [_ID.sub("ID", ln).replace(d, "DIR") for ln in lines]

    @staticmethod
    def bounce_body(d):
        inp = os.path.join(d, "spool", "input")
        for name in sorted(os.listdir(inp)):
            if name.endswith("-H"):
                with open(os.path.join(inp, name)) as f:
                    if "\n<>\n" not in f.read():
                        continue
                with open(os.path.join(inp, name[:-2] + "-D")) as f:
                    text = f.read()
                text = _ID.sub("ID", text).replace(d, "DIR")
                text = re.sub(r"\d+-eximdsn-\d+", "BOUNDARY", text)
                return re.sub(r"\d\d:\d\d:\d\d [+-]\d{4}", "TIME", text)
        return None

    @staticmethod
    def mailbox(d, name):
        """A delivered mbox with ids and times normalised."""
        with open(os.path.join(d, "mail", name)) as f:
            text = _ID.sub("ID", f.read()).replace(d, "DIR")
        return re.sub(r"\d\d:\d\d:\d\d", "TIME", text)


    def run_both(self, template, args, tag, input=MESSAGE):
        """Run ``args`` through exim4 and exim_py, each with ``template`` in its
        own directory; returns ([exim4 lines, exim_py lines], [bounces], [dirs])
        with the <= line's U= and S= fields normalised."""
        logs, bounces, dirs = [], [], []
        for name in ("ex", "py"):
            d, _ = self.prepare(name)
            conf = self.exim.write_config(template.replace("DIR", d), "%s-%s.conf" % (name, tag))
            if name == "ex":
                self.exim.run(conf, args, input=input)
            else:
                run_exim_py(["-C", conf] + args, input=input)
            logs.append([re.sub(r" U=\S+ P=local S=\d+", " U=* P=local S=*", ln)
                         for ln in self.log_lines(d)])
            bounces.append(self.bounce_body(d))
            dirs.append(d)
        return logs, bounces, dirs

class DifferentialDeliveryTests(_EximComparison):
    """exim_py and exim4 deliver one message the same way."""

    def test_same_log_and_bounce(self):
        """Log lines (=>, **, ==, <= of the bounce, Frozen) come out as Exim's,
        in Exim's order; the bounce body and the mbox files are Exim's byte
        for byte."""
        ex_dir, ex_conf = self.prepare("ex")
        py_dir, py_conf = self.prepare("py")
        args = ["-odi", "-f", "sender@x.example"] + RECIPIENTS
        real = self.exim.run(ex_conf, args, input=MESSAGE)
        self.assertEqual(real.returncode, 0, real.stderr)
        ours = run_exim_py(["-C", py_conf] + args, input=MESSAGE)
        self.assertEqual(ours.returncode, 0, ours.stderr)
        norm = [re.sub(r" U=\S+ P=local S=\d+", " U=* P=local S=*", ln)
                for ln in self.log_lines(ex_dir)]
        mine = [re.sub(r" U=\S+ P=local S=\d+", " U=* P=local S=*", ln)
                for ln in self.log_lines(py_dir)]
        self.assertEqual(mine, norm)
        self.assertEqual(self.bounce_body(py_dir), self.bounce_body(ex_dir))
        for mailbox_name in ("user1", "user2", "ff"):
            self.assertEqual(self.mailbox(py_dir, mailbox_name),
                             self.mailbox(ex_dir, mailbox_name))



RETRY_TEMPLATE = HEAD + """\
begin routers
r:
  driver = accept
  transport = p
begin transports
p:
  driver = pipe
  command = /bin/sh -c "exit 75"
  user = Debian-exim
begin retry
* * F,1h,10m
"""


ROUTING_RETRY_TEMPLATE = HEAD + """\
begin routers
r1:
  driver = redirect
  local_parts = tf
  allow_defer
  data = :defer: not now
begin retry
* * F,1h,10m
"""


class DifferentialRetryTests(_EximComparison):
    """A temporary failure, a queue run before its retry time, and -M."""

    def test_routing_retry_log_lines(self):
        """A routing deferral, then "routing defer (-52): retry time not
        reached" in a queue run, then a forced -M attempt, as Exim logs them."""
        self.check_sequence(ROUTING_RETRY_TEMPLATE)

    def test_retry_log_lines(self):
        """defer (0) with the pipe's exit text, then defer (-53) "Retry time not
        yet reached" in a queue run, then a forced -M attempt, as Exim logs them."""
        self.check_sequence(RETRY_TEMPLATE)

    def check_sequence(self, template):
        results = []
        for name in ("ex", "py"):
            d = os.path.join(self.exim.dir, name)
            for sub in ("spool", "log"):
                os.makedirs(os.path.join(d, sub))
                os.chown(os.path.join(d, sub), self.exim_user.pw_uid, self.exim_user.pw_gid)
            os.chmod(d, 0o755)
            conf = self.exim.write_config(template.replace("DIR", d), name + ".conf")
            if name == "ex":
                def run(args, input=None, conf=conf):
                    return self.exim.run(conf, args, input=input)
            else:
                def run(args, input=None, conf=conf):
                    return run_exim_py(["-C", conf] + args, input=input)
            run(["-odi", "-f", "sender@x.example", "tf"], input=MESSAGE)
            run(["-q"])
            ids = [n[:-2] for n in os.listdir(os.path.join(d, "spool", "input"))
                   if n.endswith("-H")]
            run(["-M"] + ids)
            results.append([re.sub(r"pid=\d+", "pid=N", ln) for ln in self.log_lines(d)])
        self.assertEqual(results[1], results[0])


FORBID_TEMPLATE = HEAD + """\
begin routers
nopipe:
  driver = redirect
  local_parts = np
  data = |/bin/true, DIR/mail/file
  forbid_pipe
  forbid_file
  pipe_transport = p
  file_transport = f
begin transports
p:
  driver = pipe
  user = Debian-exim
f:
  driver = appendfile
  user = Debian-exim
"""


class DifferentialForbiddenTests(_EximComparison):
    """Forbidden pipes and files fail at delivery, bounce, then Completed."""

    def test_forbidden_pipe_and_file(self):
        """The ** lines, the bounce's own delivery before "Completed", and the
        bounce text (no reason shown for a local failure) match exim4."""
        logs, bounces, _ = self.run_both(FORBID_TEMPLATE,
                                         ["-odi", "-f", "sender@x.example", "np"], "f")
        self.assertEqual(logs[1], logs[0])
        self.assertEqual(bounces[1], bounces[0])


SELECTOR_TEMPLATE = HEAD + """\
log_selector = +delivery_size +sender_on_delivery +return_path_on_delivery
begin routers
viahost:
  driver = manualroute
  local_parts = viahost
  route_list = * "h1.example : h2.example"
  transport = lt
alias:
  driver = redirect
  local_parts = ff
  data = DIR/mail/ff
  file_transport = f
  errors_to = user1@localdomain
local:
  driver = accept
  local_parts = user1 : user2
  transport = lt
begin transports
lt:
  driver = appendfile
  file = DIR/mail/$local_part_data
  user = Debian-exim
f:
  driver = appendfile
  user = Debian-exim
"""


class DifferentialSelectorTests(_EximComparison):
    """Optional delivery-line fields, for a local transport with a host list too."""

    def test_optional_fields(self):
        """S=, F=, P= and a local delivery's H= appear as in Exim's lines."""
        logs, _, _ = self.run_both(SELECTOR_TEMPLATE, ["-odi", "-f", "sender@x.example",
                                                       "viahost", "ff", "user2"], "s")
        self.assertEqual(logs[1], logs[0])


NORETRY_TEMPLATE = HEAD + """\
begin routers
local:
  driver = accept
  transport = lt
begin transports
lt:
  driver = appendfile
  file = DIR/mail/$local_part_data
  user = Debian-exim
"""


DEFER_TEMPLATE = HEAD + """\
begin routers
r1:
  driver = redirect
  local_parts = a : b
  allow_defer
  data = :defer: not now
"""


class DifferentialNoRetryRuleTests(_EximComparison):
    """With no retry rules a temporary error is final at once."""

    def test_deferral_without_rules(self):
        """The deferral is logged, then "retry timeout exceeded"; the bounce
        meets the same error and is given up ("error ignored"), as in Exim."""
        logs, _, _ = self.run_both(NORETRY_TEMPLATE,
                                   ["-odi", "-f", "sender@x.example", "user2"], "n")
        self.assertEqual(logs[1], logs[0])
        self.assertIn("ID sender@x.example: error ignored", logs[0])

    def test_several_time_outs(self):
        """Deferrals first, then the time-outs in Exim's order; the bounce text
        keeps the :defer: text with "retry timeout exceeded" added."""
        logs, bounces, _ = self.run_both(DEFER_TEMPLATE,
                                         ["-odi", "-f", "sender@x.example", "a", "b"], "d")
        self.assertEqual(logs[1], logs[0])
        self.assertEqual(bounces[1], bounces[0])


REMOTE_TEMPLATE = HEAD + """\
host_lookup =
begin routers
r:
  driver = manualroute
  route_list = * 127.0.0.1::PORT
  self = send
  transport = t
begin transports
t:
  driver = smtp
  allow_localhost
  hosts_avoid_tls = *
begin retry
* * F,1h,10m
"""


class DifferentialRemoteBounceTests(_EximComparison):
    """A remote 550 to RCPT: the ** line and the bounce (Remote-MTA,
    Diagnostic-Code, the SMTP error in the text) as exim4 sends them."""

    def test_remote_rejection_bounce(self):
        """Both senders deliver to the same receiving exim4; the one good
        recipient is delivered, the rejected one bounced identically."""
        from tests.support.exim_peer import EximPeer
        peer = EximPeer(dsn=False).start()
        self.addCleanup(peer.stop)
        logs, bounces = [], []
        for name in ("ex", "py"):
            d, _ = self.prepare(name)
            conf = self.exim.write_config(
                REMOTE_TEMPLATE.replace("DIR", d).replace("PORT", str(peer.port)),
                name + "-r.conf")
            args = ["-odi", "-f", "sender@x.example", "reject1@test.example",
                    "good@test.example"]
            if name == "ex":
                self.exim.run(conf, args, input=MESSAGE)
            else:
                run_exim_py(["-C", conf] + args, input=MESSAGE)
            lines = [re.sub(r" U=\S+ P=local S=\d+", " U=* P=local S=*", ln)
                     for ln in self.log_lines(d)]
            logs.append([re.sub(r'C="[^"]*"', 'C="..."', ln) for ln in lines])
            # The bounce goes through the same router: it is on the peer's queue.
            found = [body for header, body in peer.messages()
                     if "\n<>\n" in header and body not in bounces]
            self.assertEqual(len(found), 1, peer.mainlog())
            bounces.append(found[0])
        self.assertEqual(logs[1], logs[0])
        self.assertEqual(self.normalise(bounces[1]), self.normalise(bounces[0]))

    @staticmethod
    def normalise(body):
        text = _ID.sub("ID", body.decode("utf-8", "replace"))
        text = re.sub(r"\d+-eximdsn-\d+", "BOUNDARY", text)
        text = re.sub(r"\d\d:\d\d:\d\d [+-]\d{4}", "TIME", text)
        return re.sub(r"127\.0\.0\.1\]:\d+|port \d+", "PORT", text)


SELF_TEMPLATE = HEAD + """\
begin routers
selfish:
  driver = manualroute
  route_list = * 127.0.0.1
  transport = smtp
begin transports
smtp:
  driver = smtp
begin retry
* * F,1h,10m
"""


class DifferentialFreezeTests(_EximComparison):
    """A router's self = freeze: the reason, the deferral (no T=), Frozen."""

    def test_self_freeze(self):
        """The lines match exim4's and the message is left frozen."""
        logs, _, dirs = self.run_both(SELF_TEMPLATE, ["-odi", "-f", "sender@x.example",
                                                      "x@self.example"], "z")
        self.assertEqual(logs[1], logs[0])
        for d in dirs:
            listing = run_exim_py(["-C", os.path.join(self.exim.dir, os.path.basename(d)
                                                      + "-z.conf"), "-bp"]).stdout
            self.assertIn("*** frozen ***", listing)


GENERIC_TEMPLATE = HEAD + """\
begin routers
copy:
  driver = accept
  local_parts = user1
  headers_add = X-Copy: yes
  headers_remove = Subject
  transport = archive
  unseen
hidden:
  driver = redirect
  local_parts = hidden
  data = user2@localdomain
  headers_add = X-Hidden: $local_part
local:
  driver = accept
  local_parts = user1 : user2
  transport = lt
begin transports
lt:
  driver = appendfile
  file = DIR/mail/$local_part_data
  user = Debian-exim
  envelope_to_add
  return_path_add
archive:
  driver = appendfile
  file = DIR/mail/archive
  user = Debian-exim
  headers_add = X-Archived: $local_part
"""


class DifferentialGenericTests(_EximComparison):
    """unseen, headers_add / headers_remove on routers and transports."""

    def test_unseen_and_headers(self):
        """The unseen copy and the normal delivery, with their added and
        removed headers, are logged and written as exim4 does."""
        logs, _, dirs = self.run_both(GENERIC_TEMPLATE, ["-odi", "-f", "sender@x.example",
                                                         "user1", "hidden"], "g")
        self.assertEqual(logs[1], logs[0])
        boxes = [[self.mailbox(d, n) for n in ("user1", "user2", "archive")] for d in dirs]
        self.assertEqual(boxes[1], boxes[0])



OUTPUT_TEMPLATE = HEAD + """\
begin routers
r1:
  driver = accept
  local_parts = out
  transport = out_p
r2:
  driver = accept
  local_parts = fout
  transport = fout_p
begin transports
out_p:
  driver = pipe
  command = /bin/echo some output text
  return_output
  user = Debian-exim
fout_p:
  driver = pipe
  command = /bin/sh -c "echo failing text; exit 1"
  return_fail_output
  user = Debian-exim
begin retry
* * F,1h,10m
"""


class DifferentialPipeOutputTests(_EximComparison):
    """Pipe output returned to the sender (return_output, return_fail_output)."""

    def test_pipe_output_in_bounce(self):
        """The ** lines and the bounce, with its "text was generated during
        the delivery attempts" section, match exim4's."""
        logs, bounces, _ = self.run_both(OUTPUT_TEMPLATE, ["-odi", "-f", "sender@x.example",
                                                           "out", "fout"], "o")
        self.assertEqual(logs[1], logs[0])
        self.assertEqual(bounces[1], bounces[0])

ONE_TIME_TEMPLATE = HEAD + """\
begin routers
club:
  driver = redirect
  local_parts = club
  data = user1@localdomain, later@localdomain
  one_time
later:
  driver = redirect
  local_parts = later
  allow_defer
  data = ${if exists{DIR/ok}{user2@localdomain}{:defer: not yet}}
local:
  driver = accept
  local_parts = user1 : user2
  transport = lt
begin transports
lt:
  driver = appendfile
  file = DIR/mail/$local_part_data
  user = Debian-exim
begin retry
* * F,1h,10m
"""


class DifferentialOneTimeTests(_EximComparison):
    """redirect's one_time across two delivery attempts."""

    def test_one_time(self):
        """The pending child becomes a recipient; the next attempt routes it
        alone and logs it as exim4 does."""
        logs = []
        for name in ("ex", "py"):
            d, _ = self.prepare(name)
            conf = self.exim.write_config(ONE_TIME_TEMPLATE.replace("DIR", d), name + "-1.conf")
            if name == "ex":
                def run(args, input=None, conf=conf):
                    return self.exim.run(conf, args, input=input)
            else:
                def run(args, input=None, conf=conf):
                    return run_exim_py(["-C", conf] + args, input=input)
            run(["-odi", "-f", "sender@x.example", "club"], input=MESSAGE)
            with open(os.path.join(d, "ok"), "w"):
                pass
            run(["-qf"])
            logs.append([re.sub(r"pid=\d+", "pid=N", ln) for ln in self.log_lines(d)])
        self.assertEqual(logs[1], logs[0])
        self.assertIn("ID => user2 <later@localdomain> R=local T=lt", logs[0])


MAILDIR_TEMPLATE = HEAD + """\
begin routers
q:
  driver = accept
  local_parts = quota
  transport = qt
md:
  driver = accept
  local_parts = md
  transport = mdt
begin transports
qt:
  driver = appendfile
  file = DIR/mail/$local_part_data
  quota = 10
  user = Debian-exim
mdt:
  driver = appendfile
  directory = DIR/maildir/$local_part_data
  maildir_format
  user = Debian-exim
  delivery_date_add
  envelope_to_add
  return_path_add
begin retry
* * F,1h,10m
"""


class DifferentialMaildirQuotaTests(_EximComparison):
    """A maildir delivery and a quota deferral."""

    def test_maildir_and_quota(self):
        """The lines match exim4's; the maildir file has Exim's name pattern
        and the same content."""
        logs, _, dirs = self.run_both(MAILDIR_TEMPLATE, ["-odi", "-f", "sender@x.example",
                                                         "quota", "md"], "m")
        self.assertEqual(logs[1], logs[0])
        contents = []
        for d in dirs:
            new = os.path.join(d, "maildir", "md", "new")
            names = os.listdir(new)
            self.assertEqual(len(names), 1)
            self.assertRegex(names[0], r"^\d+\.M\d+P\d+\.myhost\.test$")
            with open(os.path.join(new, names[0])) as f:
                text = _ID.sub("ID", f.read())
            contents.append(re.sub(r"\d\d:\d\d:\d\d", "TIME", text))
        self.assertEqual(contents[1], contents[0])


class MessageActionTests(_EximComparison):
    """-M actions on a message that is not there answer as exim4 does."""

    def test_missing_message(self):
        """Output and exit status of -Mf, -Mt, -Mrm, -Mvh, -Mvb, -Mvl."""
        confs = {}
        for name in ("ex", "py"):
            d, _ = self.prepare(name)
            confs[name] = self.exim.write_config(RETRY_TEMPLATE.replace("DIR", d),
                                                 name + "-a.conf")
        for flag in ("-Mf", "-Mt", "-Mrm", "-Mvh", "-Mvb", "-Mvl"):
            real = self.exim.run(confs["ex"], [flag, "1xUqED-0001zz-0v"])
            ours = run_exim_py(["-C", confs["py"], flag, "1xUqED-0001zz-0v"])
            self.assertEqual((ours.stdout, ours.returncode), (real.stdout, real.returncode),
                             flag)


NEVER_USERS_TEMPLATE = HEAD + """\
never_users = nobody
begin routers
cl:
  driver = accept
  local_parts = root : nobody
  check_local_user
  transport = lt
ru:
  driver = accept
  local_parts = ru
  transport = rt
begin transports
lt:
  driver = appendfile
  file = DIR/mail/$local_part_data
rt:
  driver = appendfile
  file = DIR/mail/ru
  user = root
begin retry
* * F,1h,10m
"""


class DifferentialNeverUsersTests(_EximComparison):
    """Local deliveries never run as root, nor as a user on never_users."""

    def test_refused_users(self):
        """root found by check_local_user, user = root on a transport and a
        never_users entry: each is deferred with Exim's "User N set for T
        transport is on the ... list" (-29), also written to the panic log,
        and nothing is delivered."""
        logs, _, dirs = self.run_both(NEVER_USERS_TEMPLATE, ["-odi", "-f", "sender@x.example",
                                                             "root", "ru", "nobody"], "u")
        self.assertEqual(logs[1], logs[0])
        self.assertIn("ID == root@localdomain R=cl T=lt defer (-29): User 0 set for lt "
                      "transport is on the fixed_never_users list", logs[1])
        self.assertIn("ID == nobody@localdomain R=cl T=lt defer (-29): User %d set for lt "
                      "transport is on the never_users list" % pwd.getpwnam("nobody").pw_uid,
                      logs[1])
        self.assertEqual(os.listdir(os.path.join(dirs[1], "mail")), [])
        with open(os.path.join(dirs[1], "log", "paniclog")) as f:
            self.assertIn("User 0 set for rt transport is on the fixed_never_users list",
                          f.read())
