"""The redirect router with Exim filter files (allow_filter): what a filter
sets up is routed and delivered as a forward file's items would be.

Routing is compared with real exim4's -bt output; deliveries are checked in
the mailboxes, files and logs they produce.
"""

import mailbox
import os

from twisted.internet import defer
from twisted.trial import unittest

from tests.support.peers import RealExim, run_exim_py
from tests.test_delivery_engine import MailEnv

FILTER_CONFIG = """\
primary_hostname = myhost.test
qualify_domain = localdomain
spool_directory = VAR/spool
log_file_path = VAR/log/%slog
never_users =
begin routers
userfilter:
  driver = redirect
  domains = localdomain
  local_parts = dsearch;VAR/filters
  file = VAR/filters/$local_part_data
  allow_filter
  allow_fail
  allow_defer
  allow_freeze
  user = nobody
  pipe_transport = pipe
  file_transport = file
  reply_transport = reply
mbox_users:
  driver = accept
  domains = localdomain
  transport = mbox
begin transports
mbox:
  driver = appendfile
  file = VAR/mail/${local_part}
pipe:
  driver = pipe
file:
  driver = appendfile
reply:
  driver = autoreply
begin retry
* * F,1h,10m
"""


class FilterMail:
    """A mixin for trial tests: a private configuration ``CONFIG`` (VAR its
    directory), users' filter files, mailboxes read back, deliveries."""

    CONFIG = FILTER_CONFIG

    def setUp(self):
        self.env = MailEnv(self, self.CONFIG, aliases="")
        os.makedirs(self.env.path("filters"))
        # Filters' files and pipes run as "nobody".
        os.chmod(self.env.dir, 0o777)

    def filter(self, user, text):
        with open(self.env.path("filters", user), "w") as f:
            f.write(text.replace("VAR", self.env.dir))

    def messages(self, name):
        path = self.env.path("mail", name)
        if not os.path.exists(path):
            return []
        return list(mailbox.mbox(path))

    def mbox(self, name):
        """The subjects of the messages in mailbox ``name``."""
        return [m["Subject"] for m in self.messages(name)]

    @defer.inlineCallbacks
    def deliver(self, recipients, subject="test"):
        if isinstance(recipients, str):
            recipients = [recipients]
        message_id = self.env.submit(recipients, subject=subject)
        outcome = yield self.env.deliver(message_id)
        return message_id, outcome


class FilterDeliveryTests(FilterMail, unittest.TestCase):
    """Messages delivered through a user's Exim filter."""

    @defer.inlineCallbacks
    def test_no_significant_action_means_normal_delivery(self):
        """A filter that sets up nothing "seen" lets the next router deliver."""
        self.filter("jim", '# Exim filter\nif $h_subject: contains "urgent" then\n'
                    '  save VAR/urgent.mbox\nendif\n')
        yield self.deliver("jim", subject="routine")
        self.assertEqual(self.mbox("jim"), ["routine"])
        self.assertFalse(os.path.exists(self.env.path("urgent.mbox")))

    @defer.inlineCallbacks
    def test_save_replaces_normal_delivery(self):
        """save is significant: the message goes to the file only."""
        self.filter("jim", '# Exim filter\nif $h_subject: contains "urgent" then\n'
                    '  save VAR/urgent.mbox\nendif\n')
        yield self.deliver("jim", subject="very URGENT")
        self.assertEqual(self.mbox("jim"), [])
        saved = [m["Subject"] for m in mailbox.mbox(self.env.path("urgent.mbox"))]
        self.assertEqual(saved, ["very URGENT"])
        self.assertIn("=> VAR/urgent.mbox <jim@localdomain> R=userfilter T=file".replace(
            "VAR", self.env.dir), self.env.mainlog())

    @defer.inlineCallbacks
    def test_save_mode(self):
        """save's mode argument is the mode of the file it creates."""
        self.filter("jim", "# Exim filter\nsave VAR/folder 0640\nsave VAR/plain\n")
        yield self.deliver("jim")
        self.assertEqual(os.stat(self.env.path("folder")).st_mode & 0o777, 0o640)
        self.assertEqual(os.stat(self.env.path("plain")).st_mode & 0o777, 0o600)

    @defer.inlineCallbacks
    def test_deliver_and_unseen_deliver(self):
        """deliver forwards; unseen deliver forwards a copy and delivery goes on."""
        self.filter("jim", "# Exim filter\ndeliver mb2@localdomain\n")
        self.filter("ann", "# Exim filter\nunseen deliver mb1\n")
        yield self.deliver("jim", subject="one")
        yield self.deliver("ann", subject="two")
        self.assertEqual(self.mbox("jim"), [])
        self.assertEqual(self.mbox("mb2"), ["one"])
        self.assertEqual(self.mbox("mb1"), ["two"])
        self.assertEqual(self.mbox("ann"), ["two"])

    @defer.inlineCallbacks
    def test_pipe(self):
        """pipe runs the command through the router's pipe_transport."""
        self.filter("jim", "# Exim filter\npipe \"/bin/sh -c 'cat > VAR/piped.out'\"\n")
        yield self.deliver("jim", subject="piped")
        with open(self.env.path("piped.out")) as f:
            self.assertIn("Subject: piped", f.read())
        self.assertEqual(self.mbox("jim"), [])

    @defer.inlineCallbacks
    def test_pipe_arguments_are_expanded(self):
        """A filter's pipe command is expanded argument by argument when it
        runs, with $thisaddress and $1 as the filter left them."""
        self.filter("jim", '# Exim filter\n'
                    'if foranyaddress $h_to: ($thisaddress matches "^(\\\\\\\\w+)") then\n'
                    '  pipe "/bin/sh -c \'echo $local_part $thisaddress $1 > VAR/args.out\'"\n'
                    'endif\n')
        yield self.deliver("jim")
        with open(self.env.path("args.out")) as f:
            self.assertEqual(f.read(), "jim jim jim\n")

    @defer.inlineCallbacks
    def test_fail_bounces_with_filter_text(self):
        """fail ends delivery with the filter's text in the log and bounce."""
        self.filter("jim", '# Exim filter\nfail text "jim has left ($h_subject:)"\n')
        _, outcome = yield self.deliver("jim", subject="hello")
        self.assertEqual([a.address for a in outcome.failed], ["jim@localdomain"])
        self.assertIn("** jim@localdomain R=userfilter: jim has left (hello)",
                      self.env.mainlog())

    @defer.inlineCallbacks
    def test_defer_keeps_message(self):
        """defer leaves the message on the queue with the filter's reason."""
        self.filter("jim", '# Exim filter\ndefer text "not today"\n')
        _, outcome = yield self.deliver("jim")
        self.assertEqual([a.address for a in outcome.deferred], ["jim@localdomain"])
        self.assertIn("== jim@localdomain R=userfilter defer (-1): not today",
                      self.env.mainlog())

    @defer.inlineCallbacks
    def test_logwrite_writes_during_delivery(self):
        """logfile/logwrite append to the filter's own log when delivering."""
        self.filter("jim", '# Exim filter\nlogfile VAR/filter.log\n'
                    'logwrite "got $h_subject:"\n')
        yield self.deliver("jim", subject="logged")
        with open(self.env.path("filter.log")) as f:
            self.assertEqual(f.read(), "got logged\n")
        self.assertEqual(self.mbox("jim"), ["logged"])

    @defer.inlineCallbacks
    def test_mail_sends_an_autoreply(self):
        """mail queues a reply built from the filter's values through the
        router's reply_transport; the original is still delivered (unseen)."""
        self.filter("jim", '# Exim filter\nmail to mb2@localdomain subject "Re: $h_subject:" '
                    'text "Away until Monday\\n" extra_headers "X-Filter: jim"\n')
        yield self.deliver("jim", subject="lunch?")
        (reply,) = self.messages("mb2")
        self.assertEqual((reply["Subject"], reply["X-Filter"], reply["Auto-Submitted"]),
                         ("Re: lunch?", "jim", "auto-replied"))
        self.assertEqual(reply.get_payload(), "Away until Monday\n")
        self.assertEqual(self.mbox("jim"), ["lunch?"])

    @defer.inlineCallbacks
    def test_vacation_once(self):
        """vacation answers once per sender (its once file), with the text of
        its file expanded, and returns the message when asked."""
        with open(self.env.path("vacation.txt"), "w") as f:
            f.write("I am away (re: $h_subject:).\n")
        self.filter("jim", "# Exim filter\nvacation to mb2@localdomain expand file VAR/vacation.txt "
                    "once VAR/once.db return message\n")
        yield self.deliver("jim", subject="first")
        yield self.deliver("jim", subject="second")
        (reply,) = self.messages("mb2")
        self.assertEqual(reply["Subject"], "On vacation")
        body = reply.get_payload()
        self.assertIn("I am away (re: first).", body)
        self.assertIn("Subject: first", body)
        self.assertEqual(self.mbox("jim"), ["first", "second"])

    @defer.inlineCallbacks
    def test_filter_error_defers(self):
        """A filter with a syntax error defers the address and says why."""
        self.filter("jim", "# Exim filter\nif 1 is 1 then save /x\n")
        yield self.deliver("jim")
        self.assertIn('error in filter file: "endif" missing at end of filter file',
                      self.env.mainlog())


BT_CONFIG = """\
keep_environment =
qualify_domain = test.ex
primary_hostname = myhost.test.ex
begin routers
filt:
  driver = redirect
  domains = test.ex
  local_parts = !b : !c : !q
  file = FILTER
  allow_filter
  allow_fail
  allow_defer
  allow_freeze
  check_owner = false
  user = nobody
  file_transport = tf
  pipe_transport = tp
  reply_transport = tr
  OPTIONS
last:
  driver = accept
  transport = t
begin transports
t:
  driver = appendfile
  file = /dev/null
tf:
  driver = appendfile
tp:
  driver = pipe
tr:
  driver = autoreply
"""

BT_FILTER = """\
# Exim filter
if $local_part is "a" then
  deliver b@test.ex
  save /tmp/folder 0640
  pipe "/bin/cat $local_part"
elif $local_part is "u" then
  unseen deliver c@test.ex
elif $local_part is "n" then
  testprint nothing
elif $local_part is "s" then
  seen finish
elif $local_part is "f" then
  fail text "go away $local_part"
elif $local_part is "d" then
  defer text "later"
elif $local_part is "z" then
  freeze text "cold"
elif $local_part is "e" then
  deliver "<bad"
elif $local_part is "l" then
  logfile /tmp/never-written
  logwrite "hello"
  deliver q@test.ex
endif
"""


class FilterRoutingTests(unittest.TestCase):
    """-bt through a filter, compared with real exim4."""

    def compare(self, options="", text=BT_FILTER, local_parts="a u n s f d z e l"):
        exim = RealExim()
        self.addCleanup(exim.cleanup)
        path = os.path.join(exim.dir, "filter")
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o644)
        config = exim.write_config(BT_CONFIG.replace("FILTER", path).replace("OPTIONS", options))
        for lp in local_parts.split():
            argv = ["-bt", lp + "@test.ex"]
            real = exim.run(config, argv)
            ours = run_exim_py(["-C", config] + argv)
            self.assertEqual((ours.stdout, ours.returncode), (real.stdout, real.returncode), lp)

    def test_bt_matches_exim(self):
        """Files, pipes, forwarding, unseen, finish, fail, defer, freeze and
        filter errors route as in Exim."""
        self.compare()

    def test_autoreply_shown_as_mail(self):
        """A mail command's generated autoreply address is shown by -bt as
        "mail <recipients>", as Exim prints it."""
        self.compare(text='# Exim filter\nmail to bob@example.com subject "hi" text "x"\n',
                     local_parts="a")

    def test_forbid_options(self):
        """forbid_filter_logwrite makes logwrite an error; forbid_exim_filter
        refuses the filter."""
        self.compare("forbid_filter_logwrite")
        self.compare("forbid_exim_filter")

    def test_forbidden_expansions(self):
        """forbid_filter_run and forbid_filter_readfile refuse those
        expansion items inside the filter, with Exim's messages."""
        text = ('# Exim filter\nif "${run{/bin/echo hi}}" is hi then deliver b@test.ex endif\n'
                'if "${readfile{/etc/hostname}}" is x then deliver c@test.ex endif\n')
        self.compare("forbid_filter_run\n  forbid_filter_readfile", text, "a")
        self.compare("forbid_filter_readfile", text, "a")

    def test_filter_needs_a_user(self):
        """allow_filter without user or check_local_user is Exim's
        configuration error, and both programs refuse to route."""
        exim = RealExim()
        self.addCleanup(exim.cleanup)
        config = exim.write_config(BT_CONFIG.replace("FILTER", "/dev/null")
                                   .replace("  user = nobody\n", "").replace("OPTIONS", ""))
        real = exim.run(config, ["-bt", "a@test.ex"])
        ours = run_exim_py(["-C", config, "-bt", "a@test.ex"])
        message = '"user" or "check_local_user" must be set with "allow_filter"'
        self.assertIn(message, real.stderr)
        self.assertIn("configuration error for filt router:\n  " + message, ours.stderr)
        self.assertEqual(ours.returncode, real.returncode)

    def test_sieve_filter_defers_clearly(self):
        """Sieve filters are not interpreted by exim_py: the address defers
        with a message that says so."""
        exim = RealExim()
        self.addCleanup(exim.cleanup)
        path = os.path.join(exim.dir, "sieve")
        with open(path, "w") as f:
            f.write("# Sieve filter\nkeep;\n")
        config = exim.write_config(BT_CONFIG.replace("FILTER", path).replace("OPTIONS", ""))
        ours = run_exim_py(["-C", config, "-bt", "a@test.ex"])
        self.assertEqual(ours.stdout, "a@test.ex cannot be resolved at this time: Sieve filter "
                         "files are not supported by exim_py (filt router)\n")
        self.assertEqual(ours.returncode, 1)


FILE_CHECK_CONFIG = """\
keep_environment =
qualify_domain = test.ex
begin routers
forward:
  driver = redirect
  file = FILE
  allow_filter
  check_local_user
  file_transport = tf
  reply_transport = tr
  OPTIONS
begin transports
tf:
  driver = appendfile
tr:
  driver = autoreply
"""


class RedirectFileCheckTests(unittest.TestCase):
    """modemask, check_owner and check_group on a redirect file, and a
    filter's relative save paths under the user's home, against exim4."""

    def test_mode_owner_group(self):
        """A file with forbidden mode bits, a wrong owner or a wrong group
        defers with Exim's message; a good one is used."""
        import grp
        import pwd
        exim = RealExim()
        self.addCleanup(exim.cleanup)
        path = os.path.join(exim.dir, "forward")
        with open(path, "w") as f:
            f.write("# Exim filter\nsave inbox\n")
        nobody = pwd.getpwnam("nobody")
        other_group = grp.getgrnam("daemon").gr_gid
        for options in ("", "modemask = 0002", "no_check_owner"):
            config = exim.write_config(FILE_CHECK_CONFIG.replace("FILE", path)
                                       .replace("OPTIONS", options))
            for mode, uid, gid in ((0o644, 0, 0), (0o664, nobody.pw_uid, other_group),
                                   (0o666, nobody.pw_uid, nobody.pw_gid),
                                   (0o644, nobody.pw_uid, nobody.pw_gid)):
                os.chmod(path, mode)
                os.chown(path, uid, gid)
                argv = ["-bt", "nobody@test.ex"]
                real = exim.run(config, argv)
                ours = run_exim_py(["-C", config] + argv)
                self.assertEqual((ours.stdout, ours.returncode),
                                 (real.stdout, real.returncode), (options, oct(mode)))
