"""The local transports in detail: pipe (command splitting, environment,
exit statuses, timeouts, output), appendfile (locking, directories,
check_string) and autoreply (the reply message, once, never_mail)."""

import mailbox
import os

from twisted.internet import defer
from twisted.trial import unittest

from exim_py.transports.pipe import split_command
from tests.test_delivery_engine import MailEnv

CONFIG = """\
primary_hostname = myhost.test
qualify_domain = localdomain
spool_directory = VAR/spool
log_file_path = VAR/log/%slog
begin routers
pipes:
  driver = accept
  local_parts = env : quoted : slow : output : shell
  transport = ${local_part}_pipe
reply:
  driver = accept
  local_parts = vacation
  transport = vacation
  unseen
shadowed:
  driver = accept
  local_parts = shadowed
  transport = shadowed_mbox
filtered:
  driver = accept
  local_parts = filtered : badfilter
  transport = ${local_part}_mbox
mbox:
  driver = accept
  transport = mbox
begin transports
filtered_mbox:
  driver = appendfile
  file = VAR/mail/$local_part
  transport_filter = /bin/sed -e "s/hello/HELLO/" -e "s/^Subject: .*/Subject: $local_part/"
shadowed_mbox:
  driver = appendfile
  file = VAR/mail/$local_part
  shadow_transport = shadow_copy
shadow_copy:
  driver = appendfile
  file = VAR/mail/shadow-copy
badfilter_mbox:
  driver = appendfile
  file = VAR/mail/$local_part
  transport_filter = /bin/false
env_pipe:
  driver = pipe
  command = /bin/sh -c "env > VAR/env.out; pwd >> VAR/env.out"
  environment = EXTRA=yes
  home_directory = VAR/home
  current_directory = VAR
quoted_pipe:
  driver = pipe
  command = VAR/args.sh "$local_part with spaces" 'literal $sender_address' $sender_address
slow_pipe:
  driver = pipe
  command = /bin/sleep 5
  timeout = 1s
output_pipe:
  driver = pipe
  command = /bin/echo some output
  return_output
shell_pipe:
  driver = pipe
  command = echo $local_part > VAR/shell.out
  use_shell
vacation:
  driver = autoreply
  to = $sender_address
  from = vacation@localdomain
  subject = Away: $h_subject:
  text = I am away.
  once = VAR/once.db
  never_mail = never@x.example
mbox:
  driver = appendfile
  file = VAR/mail/$local_part
  lock_retries = 2
  lock_interval = 0s
begin retry
* * F,1h,10m
"""

ARGS_SCRIPT = """#!/bin/sh
for a in "$@"; do echo "[$a]"; done > VAR/args.out
"""


class SplitCommandTests(unittest.TestCase):
    """Exim's argument splitting for pipe commands."""

    def test_quotes(self):
        """Double quotes allow escapes, single quotes are literal, spaces split."""
        self.assertEqual(split_command('/bin/x a "b c" \'d "e\' "f\\"g"'),
                         ["/bin/x", "a", "b c", 'd "e', 'f"g'])

    def test_adjacent_parts_join(self):
        """Quoted and unquoted parts with no space between make one argument."""
        self.assertEqual(split_command('a"b c"d'), ["ab cd"])


class PipeTests(unittest.TestCase):
    """The pipe transport running real commands."""

    def setUp(self):
        self.env = MailEnv(self, config_text=CONFIG, aliases="")
        with open(self.env.path("args.sh"), "w") as f:
            f.write(ARGS_SCRIPT.replace("VAR", self.env.dir))
        os.chmod(self.env.path("args.sh"), 0o755)

    @defer.inlineCallbacks
    def test_environment(self):
        """The command sees Exim's variables, the environment option,
        home_directory as $HOME and runs in current_directory."""
        mid = self.env.submit(["env"])
        yield self.env.deliver(mid)
        with open(self.env.path("env.out")) as f:
            lines = set(f.read().splitlines())
        for expected in ("LOCAL_PART=env", "DOMAIN=localdomain", "SENDER=sender@x.example",
                         "RECIPIENT=env@localdomain", "MESSAGE_ID=%s" % mid, "EXTRA=yes",
                         "HOME=%s" % self.env.path("home"), self.env.dir):
            self.assertIn(expected, lines)

    @defer.inlineCallbacks
    def test_arguments_expanded_one_by_one(self):
        """Each argument is expanded after splitting: a value never splits into
        two arguments, and a single-quoted argument is still expanded."""
        mid = self.env.submit(["quoted"])
        yield self.env.deliver(mid)
        with open(self.env.path("args.out")) as f:
            self.assertEqual(f.read().splitlines(),
                             ["[quoted with spaces]", "[literal sender@x.example]",
                              "[sender@x.example]"])

    @defer.inlineCallbacks
    def test_timeout_fails(self):
        """A command that runs past its timeout is killed and the address fails."""
        mid = self.env.submit(["slow"])
        outcome = yield self.env.deliver(mid, deliver_bounces=False)
        self.assertEqual(len(outcome.failed), 1)
        self.assertIn("pipe delivery process timed out", self.env.mainlog())

    @defer.inlineCallbacks
    def test_return_output_fails(self):
        """With return_output, any output makes the delivery fail, and the
        output goes back to the sender in the bounce."""
        mid = self.env.submit(["output"])
        outcome = yield self.env.deliver(mid, deliver_bounces=False)
        self.assertEqual(len(outcome.failed), 1)
        self.assertEqual(outcome.failed[0].message, "return message generated")
        _, report = self.env.read_queued(outcome.bounces[0])
        self.assertIn("\n------ output@localdomain ------\n\nsome output\n",
                      report.get_payload()[0].get_payload())

    @defer.inlineCallbacks
    def test_use_shell(self):
        """use_shell runs the expanded command through /bin/sh."""
        mid = self.env.submit(["shell"])
        yield self.env.deliver(mid)
        with open(self.env.path("shell.out")) as f:
            self.assertEqual(f.read(), "shell\n")


class AppendfileTests(unittest.TestCase):
    """appendfile's locking and escaping."""

    def setUp(self):
        self.env = MailEnv(self, config_text=CONFIG, aliases="")

    @defer.inlineCallbacks
    def test_fresh_lock_file_defers(self):
        """A fresh .lock file (someone else's) defers the delivery; it is not lost."""
        path = self.env.path("mail", "locked")
        with open(path + ".lock", "w"):
            pass
        mid = self.env.submit(["locked"])
        outcome = yield self.env.deliver(mid)
        self.assertEqual(len(outcome.deferred), 1)
        self.assertIn("failed to lock mailbox", self.env.mainlog())
        os.unlink(path + ".lock")
        outcome = yield self.env.deliver(mid, force=True)
        self.assertTrue(outcome.completed)
        self.assertEqual(len(mailbox.mbox(path)), 1)

    @defer.inlineCallbacks
    def test_concurrent_deliveries_to_one_mbox(self):
        """Ten deliveries to one mbox at once all land, each message intact."""
        ids = [self.env.submit(["shared"], subject="n%d" % i, body="line\n" * 200)
               for i in range(10)]
        outcomes = yield defer.gatherResults([self.env.deliver(mid) for mid in ids])
        self.assertTrue(all(o.completed for o in outcomes))
        box = mailbox.mbox(self.env.path("mail", "shared"))
        self.assertEqual(sorted(m["Subject"] for m in box), sorted("n%d" % i for i in range(10)))
        self.assertTrue(all(m.get_payload() == "line\n" * 200 for m in box))

    @defer.inlineCallbacks
    def test_shadow_transport(self):
        """A successful delivery also runs the shadow transport, logged as ST=."""
        mid = self.env.submit(["shadowed"])
        yield self.env.deliver(mid)
        self.assertEqual(len(mailbox.mbox(self.env.path("mail", "shadowed"))), 1)
        self.assertEqual(len(mailbox.mbox(self.env.path("mail", "shadow-copy"))), 1)
        self.assertIn("=> shadowed <shadowed@localdomain> R=shadowed T=shadowed_mbox "
                      "ST=shadow_copy", self.env.mainlog())

    @defer.inlineCallbacks
    def test_transport_filter(self):
        """transport_filter rewrites the message (headers and body) before it is
        written; its arguments are expanded."""
        mid = self.env.submit(["filtered"], body="hello world\n")
        yield self.env.deliver(mid)
        msg = mailbox.mbox(self.env.path("mail", "filtered"))[0]
        self.assertEqual(msg["Subject"], "filtered")
        self.assertEqual(msg.get_payload(), "HELLO world\n")

    @defer.inlineCallbacks
    def test_failing_transport_filter_defers(self):
        """A filter that exits non-zero defers the delivery; nothing is written."""
        mid = self.env.submit(["badfilter"])
        outcome = yield self.env.deliver(mid)
        self.assertEqual(len(outcome.deferred), 1)
        self.assertIn("transport filter process failed (1)", self.env.mainlog())
        self.assertFalse(os.path.exists(self.env.path("mail", "badfilter")))

    @defer.inlineCallbacks
    def test_from_lines_escaped(self):
        """Body lines starting "From " are written as ">From " in an mbox."""
        mid = self.env.submit(["plain"], body="From here\nnot From\n")
        yield self.env.deliver(mid)
        with open(self.env.path("mail", "plain")) as f:
            text = f.read()
        self.assertIn("\n>From here\nnot From\n", text)
        self.assertEqual(len(mailbox.mbox(self.env.path("mail", "plain"))), 1)


class AutoreplyTests(unittest.TestCase):
    """The autoreply transport."""

    def setUp(self):
        self.env = MailEnv(self, config_text=CONFIG, aliases="")

    @defer.inlineCallbacks
    def test_reply_sent_once(self):
        """A reply goes to the sender from <> with Auto-Submitted and References;
        a second message from the same sender gets none (once)."""
        mid = self.env.submit(["vacation"], subject="hello")
        outcome = yield self.env.deliver(mid, deliver_bounces=False)
        self.assertEqual(len(outcome.bounces), 1)
        env, reply = self.env.read_queued(outcome.bounces[0])
        self.assertEqual(env.sender, "")
        self.assertEqual([r.address for r in env.recipients], ["sender@x.example"])
        self.assertEqual(reply["Subject"], "Away: hello")
        self.assertEqual(reply["Auto-Submitted"], "auto-replied")
        self.assertEqual(reply["From"], "vacation@localdomain")
        self.assertTrue(reply["References"].startswith("<E%s@" % mid))
        self.assertEqual(reply.get_payload(), "I am away.\n")
        # unseen: the message is also delivered normally.
        self.assertEqual(len(mailbox.mbox(self.env.path("mail", "vacation"))), 1)
        mid2 = self.env.submit(["vacation"], subject="again")
        outcome = yield self.env.deliver(mid2, deliver_bounces=False)
        self.assertEqual(outcome.bounces, [])

    @defer.inlineCallbacks
    def test_never_mail(self):
        """A recipient in never_mail gets no reply."""
        mid = self.env.submit(["vacation"], sender="never@x.example")
        outcome = yield self.env.deliver(mid, deliver_bounces=False)
        self.assertEqual(outcome.bounces, [])


class RouterUserTests(unittest.TestCase):
    """A router's user option decides whose a delivered file is (as root)."""

    @defer.inlineCallbacks
    def test_router_user_owns_mailbox(self):
        """With user = nobody on the router, the new mbox belongs to nobody."""
        import pwd
        if os.geteuid() != 0:
            raise unittest.SkipTest("needs root to give files away")
        config = CONFIG.replace('''mbox:
  driver = accept
  transport = mbox''', '''mbox:
  driver = accept
  user = nobody
  transport = mbox''')
        env = MailEnv(self, config_text=config, aliases="")
        os.chmod(env.path("mail"), 0o777)
        mid = env.submit(["owned"])
        outcome = yield env.deliver(mid)
        self.assertTrue(outcome.completed)
        st = os.stat(env.path("mail", "owned"))
        self.assertEqual(st.st_uid, pwd.getpwnam("nobody").pw_uid)
