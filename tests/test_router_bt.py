"""exim_py -bt / -bv against real Exim 4.96 on the same configurations.

The first configuration has redirect (aliases, :fail:, :defer:,
:blackhole:, :unknown:, :include:, pipes, files, backslashed addresses,
loops), manualroute (remote and local transports, ports, byname) and accept
(prefixes, cannot_route_message, no_more); the second exercises the generic
router options, the third the redirect router's own options.  Each is
given to both programs; for each address the
output and the exit status must be identical.
"""

import os

from twisted.trial import unittest

from tests.support.peers import RealExim, run_exim_py

ALIASES = """\
fl: :fail: nope
df: :defer: wait
pp: |/bin/cat
bh: :blackhole:
bad: a b c
bad2: user1, <<x
mix: user1, "Fred Bloggs" <user2>, user1 (comment)
unk: :unknown:
inc: :include:DIR/inc
self: self, user1
dir: /tmp/dir/
file: /tmp/somefile
two: user1, fl, user3
chain: two
remote: someone@remote.example, x@other.example
bs: \\user1, \\bs
quoted: "|/bin/echo hello"
deep: chain, remote
empty:
"""

CONFIG = """\
primary_hostname = myhost.test
qualify_domain = localdomain
keep_environment =
begin routers
alias:
  driver = redirect
  domains = localdomain
  local_parts = ! user1 : ! user2 : ! user3 : ! pfx-user1
  data = ${lookup{$local_part}lsearch{DIR/aliases}}
  allow_fail
  allow_defer
  pipe_transport = p
  file_transport = f
nopipes:
  driver = redirect
  domains = np.example
  data = |/bin/true, user1@localdomain
mr:
  driver = manualroute
  domains = remote.example : other.example : third.example
  route_list = remote.example 127.0.0.1:127.0.0.2 ; \\
               other.example "127.0.0.3::2525 : 127.0.0.4" ; \\
               third.example localhost byname
  transport = smtp
  self = send
mrlocal:
  driver = manualroute
  domains = local.example
  route_list = * "h1.example : h2.example::25"
  transport = lt
prefixed:
  driver = accept
  domains = localdomain
  local_part_prefix = pfx-
  transport = lt
local:
  driver = accept
  domains = localdomain
  local_parts = user1 : user2
  transport = lt
  cannot_route_message = no such user here
last:
  driver = accept
  domains = nomore.example
  condition = ${if eq{$local_part}{ok}}
  no_more
  transport = lt
begin transports
lt:
  driver = appendfile
  file = /tmp/mail/$local_part
p:
  driver = pipe
f:
  driver = appendfile
smtp:
  driver = smtp
"""

ADDRESSES = [
    "user1", "User1", "user1@LocalDomain", "fl", "df", "pp", "bh", "bad", "bad2", "mix",
    "unk", "inc", "self", "dir", "file", "two", "chain", "remote", "bs", "quoted", "deep",
    "empty", "x@remote.example", "y@other.example", "z@third.example", "q@local.example",
    "pfx-user1", "pfx-zz", "nobody", "ok@nomore.example", "no@nomore.example",
    "a@np.example", "a b@c", "<user1@localdomain>", '"quoted x"@localdomain',
    "Name <user2@localdomain>", "user1@localdomain (a comment)",
]


GENERIC_CONFIG = """\
primary_hostname = myhost.test
qualify_domain = localdomain
keep_environment =
begin routers
vonly:
  driver = accept
  domains = v.example
  verify_only
  transport = lt
notest:
  driver = accept
  domains = v.example : nt.example
  address_test = false
  transport = lt
unseen1:
  driver = accept
  domains = unseen.example
  transport = lt
  unseen
unseen2:
  driver = accept
  domains = unseen.example
  transport = lt2
suffixed:
  driver = accept
  domains = sfx.example
  local_part_suffix = -* : +*
  local_part_suffix_optional
  local_parts = bob
  transport = lt
files:
  driver = accept
  domains = rf.example
  require_files = /etc/passwd : !/nonexistent/file
  transport = lt
files2:
  driver = accept
  domains = rf2.example
  require_files = /nonexistent/file
  transport = lt
users:
  driver = accept
  domains = lu.example
  check_local_user
  transport = lt
caseful:
  driver = accept
  domains = cf.example
  caseful_local_part
  local_parts = Mixed
  transport = lt
selfish:
  driver = manualroute
  domains = self.example
  route_list = * 127.0.0.1
  transport = smtp
selfpass:
  driver = manualroute
  domains = selfpass.example
  route_list = * 127.0.0.1
  transport = smtp
  self = pass
  pass_router = passed
selffail:
  driver = manualroute
  domains = selffail.example
  route_list = * 127.0.0.1
  transport = smtp
  self = fail
hff:
  driver = manualroute
  domains = hff.example
  route_list = * no-such-host.invalid
  transport = smtp
  host_find_failed = decline
hffpass:
  driver = manualroute
  domains = hffpass.example
  route_list = * no-such-host.invalid
  transport = smtp
  host_find_failed = pass
  pass_router = passed
cond:
  driver = redirect
  domains = cond.example
  condition = ${if eq{$local_part}{yes}}
  data = ${local_part}@unseen.example
passed:
  driver = accept
  domains = selfpass.example : hffpass.example
  transport = lt2
catch:
  driver = accept
  domains = ! v.example
  transport = lt
begin transports
lt:
  driver = appendfile
  file = /tmp/mail/$local_part
lt2:
  driver = appendfile
  file = /tmp/mail2/$local_part
smtp:
  driver = smtp
"""

GENERIC_ADDRESSES = [
    "x@v.example", "x@nt.example", "x@unseen.example", "bob@sfx.example",
    "bob-foo@sfx.example", "bob+bar@sfx.example", "bob@SFX.example", "x@rf.example",
    "x@rf2.example", "root@lu.example", "nosuchuser@lu.example", "Mixed@cf.example",
    "mixed@cf.example", "x@self.example", "x@selfpass.example", "x@selffail.example",
    "x@hff.example", "x@hffpass.example", "yes@cond.example", "no@cond.example",
]


REDIRECT_CONFIG = """\
primary_hostname = myhost.test
qualify_domain = localdomain
keep_environment =
begin routers
nopipe:
  driver = redirect
  domains = np.example
  data = |/bin/true, user1@localdomain
  forbid_pipe
nofile:
  driver = redirect
  domains = nf.example
  data = /tmp/x, user1@localdomain
  forbid_file
noinc:
  driver = redirect
  domains = ni.example
  data = :include:/etc/hostname
  forbid_include
missinc:
  driver = redirect
  domains = mi.example
  data = :include:/nonexistent/file
preserve:
  driver = redirect
  domains = qp.example
  data = unqualified
  qualify_preserve_domain
qualify:
  driver = redirect
  domains = qd.example
  data = unq
  qualify_domain = other.example
skip:
  driver = redirect
  domains = sk.example
  data = user1@localdomain, bad address here, user2@localdomain
  skip_syntax_errors
skipall:
  driver = redirect
  domains = ska.example
  data = bad address here
  skip_syntax_errors
nofail:
  driver = redirect
  domains = nofail.example
  data = :fail: not allowed here
ancestor:
  driver = redirect
  domains = anc.example
  local_parts = a : b
  data = ${if eq{$local_part}{a}{b@anc.example}{a@anc.example, user1@localdomain}}
  check_ancestor
  allow_defer
named:
  driver = redirect
  domains = nm.example
  data = Some One <user1@localdomain>, "Other" <user2@localdomain>
empty:
  driver = redirect
  domains = em.example
  data = ${if eq{$local_part}{empty}{}{# only a comment}}
forced:
  driver = redirect
  domains = ff.example
  data = ${if eq{1}{1}{fail}{x}}
local:
  driver = accept
  domains = localdomain : other.example : qp.example : anc.example : em.example : ff.example
  transport = lt
begin transports
lt:
  driver = appendfile
  file = /tmp/mail/$local_part
"""

REDIRECT_ADDRESSES = [
    "x@np.example", "x@nf.example", "x@ni.example", "x@mi.example", "x@qp.example",
    "x@qd.example", "x@sk.example", "x@ska.example", "x@nofail.example", "a@anc.example",
    "b@anc.example", "x@nm.example", "empty@em.example", "other@em.example", "x@ff.example",
]


SENDERS_CONFIG = """\
qualify_domain = localdomain
keep_environment =
begin routers
s1:
  driver = accept
  senders = root@localdomain
  transport = t1
s2:
  driver = accept
  senders = *@x.example
  transport = t2
s3:
  driver = accept
  transport = t3
begin transports
t1:
  driver = appendfile
  file = /dev/null
t2:
  driver = appendfile
  file = /dev/null
t3:
  driver = appendfile
  file = /dev/null
"""


SELF_CONFIG = """\
primary_hostname = myhost.test
qualify_domain = localdomain
keep_environment =
begin routers
selfre:
  driver = manualroute
  domains = re.example
  route_list = * 127.0.0.1
  transport = smtp
  self = reroute:other.example
selfrw:
  driver = manualroute
  domains = rw.example
  route_list = * 127.0.0.1
  transport = smtp
  self = reroute:rewrite:other.example
selfdefer:
  driver = manualroute
  domains = def.example
  route_list = * "127.0.0.1 : 127.0.0.2"
  transport = smtp
  self = defer
second:
  driver = manualroute
  domains = second.example
  route_list = * "127.0.0.2 : 127.0.0.1 : 127.0.0.3"
  transport = smtp
mx:
  driver = manualroute
  domains = mxa.example
  route_list = * "localhost/MX"
  transport = smtp
sendall:
  driver = manualroute
  domains = sendall.example
  route_list = * "127.0.0.1 : 192.0.2.77 : localhost" byname
  transport = smtp
  self = send
rand:
  driver = manualroute
  domains = rand.example
  route_list = * "127.0.0.5:127.0.0.6:+:127.0.0.7" randomize
  transport = smtp
other:
  driver = accept
  domains = other.example
  transport = smtp
begin transports
smtp:
  driver = smtp
"""


# $domain_data and $local_part_data from the domains and local_parts
# preconditions, next to fixed lists that need no expansion context.
DATA_CONFIG = """\
qualify_domain = localdomain
keep_environment =
begin routers
fixed:
  driver = manualroute
  domains = fixed.example
  route_list = * 127.0.0.9
  transport = smtp
by_domain:
  driver = manualroute
  domains = lsearch;DIR/domains
  route_list = * $domain_data
  transport = smtp
by_user:
  driver = accept
  domains = users.example
  local_parts = lsearch;DIR/users
  transport = ${local_part_data}
begin transports
smtp:
  driver = smtp
lt:
  driver = appendfile
  file = /dev/null
"""


# debug_print whose expansion would fail: only looked at when debugging.
DEBUG_PRINT_CONFIG = """\
qualify_domain = localdomain
keep_environment =
begin routers
r1:
  driver = accept
  debug_print = R: $router_name ${lookup{x}lsearch{/nonexistent/file}}
  transport = t1
begin transports
t1:
  driver = appendfile
  file = /dev/null
"""


class AddressTestTests(unittest.TestCase):
    """-bt and -bv print what real Exim prints, address by address."""

    def setUp(self):
        self.exim = RealExim()
        self.addCleanup(self.exim.cleanup)
        d = self.exim.dir
        with open(os.path.join(d, "aliases"), "w") as f:
            f.write(ALIASES.replace("DIR", d))
        with open(os.path.join(d, "inc"), "w") as f:
            f.write("user2\n# comment\nuser1@localdomain\n")
        for name in ("aliases", "inc"):
            os.chmod(os.path.join(d, name), 0o644)
        self.conf = self.exim.write_config(CONFIG.replace("DIR", d))

    def compare(self, flag, address):
        real = self.exim.run(self.conf, [flag, address])
        ours = run_exim_py(["-C", self.conf, flag, address])
        self.assertEqual((ours.stdout, ours.returncode), (real.stdout, real.returncode),
                         "%s %s differs (stderr: %s)" % (flag, address, ours.stderr))

    def compare_all(self, args):
        real = self.exim.run(self.conf, args)
        ours = run_exim_py(["-C", self.conf] + args)
        self.assertEqual(ours.stdout.splitlines(), real.stdout.splitlines(), ours.stderr)
        self.assertEqual(ours.returncode, real.returncode)

    def test_bt_matches_real_exim(self):
        """Every address in ADDRESSES routes as in Exim (one run, addresses in turn)."""
        self.compare_all(["-bt"] + ADDRESSES)

    def test_bv_matches_real_exim(self):
        """-bv gives Exim's one-line verdicts, following a single redirection."""
        self.compare_all(["-bv", "user1", "fl", "chain", "bh", "nobody", "pp", "remote",
                          "x@remote.example", "pfx-zz", "df"])

    def test_generic_router_options(self):
        """verify_only, address_test, unseen, suffixes, require_files,
        check_local_user, caseful_local_part, self, pass_router,
        host_find_failed and condition route as in Exim."""
        self.conf = self.exim.write_config(GENERIC_CONFIG, "generic.conf")
        self.compare_all(["-bt"] + GENERIC_ADDRESSES)
        self.compare_all(["-bv", "x@v.example", "x@nt.example", "x@unseen.example"])

    def test_redirect_options(self):
        """forbid_pipe/file/include, missing :include: files, qualify_domain,
        qualify_preserve_domain, skip_syntax_errors, :fail: without allow_fail,
        check_ancestor, named addresses, empty and forced-fail data."""
        self.conf = self.exim.write_config(REDIRECT_CONFIG, "redirect.conf")
        self.compare_all(["-bt"] + REDIRECT_ADDRESSES)

    def test_senders_precondition(self):
        """-bt checks senders against the caller's address, or -f's."""
        self.conf = self.exim.write_config(SENDERS_CONFIG, "senders.conf")
        for extra in ([], ["-f", "a@x.example"], ["-f", "b@y.example"]):
            self.compare_all(extra + ["-bt", "u@z.example"])

    def test_self_options(self):
        """self = reroute:, reroute:rewrite:, defer, and the local host later in
        a host list (dropped with what follows it), unless the first host is
        local and self = send, which keeps the whole list."""
        self.conf = self.exim.write_config(SELF_CONFIG, "self.conf")
        self.compare_all(["-bt", "x@re.example", "x@rw.example", "x@def.example",
                          "x@second.example", "y@other.example", "x@sendall.example"])

    def test_precondition_data(self):
        """A domains or local_parts lookup sets $domain_data or
        $local_part_data for the router's options; a fixed list routes as
        before (and needs no expansion context)."""
        d = self.exim.dir
        for name, text in (("domains", "looked.example: 127.0.0.7\n"), ("users", "bob: lt\n")):
            with open(os.path.join(d, name), "w") as f:
                f.write(text)
            os.chmod(os.path.join(d, name), 0o644)
        self.conf = self.exim.write_config(DATA_CONFIG.replace("DIR", d), "data.conf")
        self.compare_all(["-bt", "x@fixed.example", "x@looked.example", "bob@users.example",
                          "eve@users.example"])
        self.assertIn("127.0.0.7", run_exim_py(["-C", self.conf, "-bt",
                                                "x@looked.example"]).stdout)

    def test_exit_status(self):
        """-bt exits 0 when routable, 2 when an address fails, 1 when one defers."""
        for address in ("user1", "fl", "df"):
            self.compare("-bt", address)

    def test_debug_print_ignored_without_debugging(self):
        """A router's debug_print is not expanded when debugging is off, so an
        expansion that would fail there does not defer the address."""
        self.conf = self.exim.write_config(DEBUG_PRINT_CONFIG, "debugprint.conf")
        self.compare_all(["-bt", "someone@localdomain"])
