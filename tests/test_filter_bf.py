"""exim_py -bf / -bF against real Exim: the same filter and message must
produce the same test output and exit status (Exim filter files)."""

import os
import re
import shutil
import tempfile

from twisted.trial import unittest

from tests.support.peers import RealExim, run_exim_py

CONFIG = """\
keep_environment =
qualify_domain = test.ex
primary_hostname = myhost.test.ex
begin routers
r:
  driver = accept
  transport = t
begin transports
t:
  driver = appendfile
  file = /dev/null
"""

MESSAGE = """\
From: Some One <some@one.example>
To: root@test.ex, Other <other@elsewhere.example>
Subject: Hello World
Message-Id: <abc@one.example>

First line of the body
second line
"""

LIST_MESSAGE = """\
From: list-owner@lists.example
To: root@test.ex
Subject: [list] news
List-Id: <news.lists.example>
Precedence: list

body
"""

# Message ids, and the times Exim puts into Date: lines, differ between runs.
_VOLATILE = [(re.compile(r"1[0-9A-Za-z]{5}-[0-9A-Za-z]{6}-[0-9A-Za-z]{2}"), "ID"),
             (re.compile(r"\d\d:\d\d:\d\d [+-]\d{4}"), "TIME")]


def _normal(text):
    for pattern, replacement in _VOLATILE:
        text = pattern.sub(replacement, text)
    return text


class FilterTestModeTests(unittest.TestCase):
    """-bf/-bF output compared line by line with /usr/sbin/exim4."""

    def setUp(self):
        self.exim = RealExim()
        self.addCleanup(self.exim.cleanup)
        self.config = self.exim.write_config(CONFIG)
        self.dir = tempfile.mkdtemp(prefix="filter-bf-")
        os.chmod(self.dir, 0o755)
        self.addCleanup(shutil.rmtree, self.dir, True)

    def compare(self, filter_text, message=MESSAGE, args=(), flag="-bf"):
        """Run both programs; assert identical output; return it."""
        path = os.path.join(self.dir, "filter")
        with open(path, "w") as f:
            f.write(filter_text)
        os.chmod(path, 0o644)
        argv = [flag, path] + list(args)
        real = self.exim.run(self.config, argv, input=message)
        ours = run_exim_py(["-C", self.config] + argv, input=message)
        self.assertEqual(_normal(ours.stdout), _normal(real.stdout))
        self.assertEqual(ours.returncode, real.returncode)
        return ours.stdout

    def test_conditions_case_variants(self):
        """is/contains/begins/ends/matches, their upper-case exact forms and
        "does not" / "is not" negations decide the same branches."""
        out = self.compare("""# Exim filter
if $h_subject: contains "world" then testprint c1 endif
if $h_subject: CONTAINS "world" then testprint c2 else testprint c2no endif
if $h_subject: begins "hello" and $h_subject: ends "WORLD" then testprint b1 endif
if $h_subject: BEGINS "hello" then testprint b2 else testprint b2no endif
if $h_subject: is "hello world" then testprint i1 endif
if $h_subject: IS "hello world" then testprint i2 else testprint i2no endif
if $h_subject: does not contain "xyz" then testprint dn endif
if $h_subject: is not "abc" then testprint isn endif
if $h_subject: does not END "World" then testprint de else testprint deno endif
""")
        self.assertIn("Testprint: c2no", out)

    def test_regex_numeric_variables(self):
        """matches sets $1..; MATCHES is case-sensitive; backslashes need
        doubling because the pattern is expanded."""
        out = self.compare(r"""# Exim filter
if $h_subject: matches "^(\\\\w+) (\\\\w+)\\$" then testprint "1=$1 2=$2 0=$0" endif
if $h_subject: MATCHES "^hello" then testprint yes else testprint no endif
if $h_from: matches "<([^@]+)@" then testprint "user=$1" endif
""")
        self.assertIn("Testprint: 1=Hello 2=World", out)

    def test_and_or_not_brackets(self):
        """"and" binds more tightly than "or"; "not" and brackets nest."""
        self.compare("""# Exim filter
if 1 is 2 and 1 is 1 or 3 is 3 then testprint a endif
if 1 is 1 or 2 is 1 and 3 is 4 then testprint b endif
if not (1 is 1 and 2 is 2) then testprint c else testprint notc endif
if (1 is 2 or 2 is 2) and not 3 is 4 then testprint d endif
if(1 is 1)then testprint e endif
""")

    def test_above_below_with_units(self):
        """above/below compare numbers with K and M suffixes."""
        self.compare("""# Exim filter
if $message_size below 10k then testprint small endif
if 2M above 2000k then testprint big endif
if 0x10 above 15 then testprint hex endif
if $message_body_size above 5 then testprint body endif
""")

    def test_bad_number_is_an_error(self):
        """A malformed number in above/below ends filtering with an error."""
        self.compare('# Exim filter\nif "12x" above 3 then testprint x endif\n')

    def test_add_and_n_variables(self):
        """add accumulates into $n0..$n9; $n0 inside expansions."""
        self.compare("""# Exim filter
add 1 to n3
add 3 to n4
add $n3 to n4
add -2 to n4
add 6 to n$n3
testprint "n1=$n1 n3=$n3 n4=$n4 ${eval:$n4*2}"
""")

    def test_deliver_save_pipe(self):
        """deliver (with errors_to), save (with mode, relative), pipe, with
        seen/unseen and noerror prefixes."""
        out = self.compare("""# Exim filter
deliver "Someone <someone@example.com>"
unseen deliver postmaster
save $home/mail/inbox 0640
noerror save folder
pipe "/usr/bin/procmail -d $local_part"
unseen pipe /bin/true
deliver root@test.ex errors_to root@test.ex
""")
        self.assertIn("No other deliveries will occur.", out)

    def test_errors_to_must_be_own_address(self):
        """In a user filter errors_to may only name the recipient itself."""
        self.compare("# Exim filter\ndeliver a@b.c errors_to x@y.z\n")

    def test_mail_command_arguments(self):
        """mail prints each argument it was given, expanded, in Exim's layout."""
        self.compare(r"""# Exim filter
mail to "$reply_address" cc "c@d.e" bcc b@c.d from "me@test.ex" reply_to r@t.ex \
  subject "Re: $h_subject:" extra_headers "X-One: 1\nX-Two: 2" \
  text "Thanks for\nyour message" once /tmp/once once_repeat 2d log /tmp/log \
  return message
seen mail subject "second" expand file /tmp/reply.txt
""")

    def test_vacation_defaults(self):
        """vacation supplies its default file, log, once, once_repeat and subject."""
        self.compare("# Exim filter\nif personal then vacation endif\n",
                     args=["-f", "someone@example.com"])

    def test_mail_ignored_for_null_sender(self):
        """mail/vacation do nothing when the return path is empty."""
        self.compare("# Exim filter\nmail text hello\nvacation\n", args=["-f", "<>"])

    def test_mail_header_newline_checked(self):
        """A header value with a newline not followed by space is an error."""
        self.compare('# Exim filter\nmail subject "a\\nb"\n')

    def test_personal_and_aliases(self):
        """personal looks at To:, From:, List- headers and Precedence:;
        alias adds addresses that count as the recipient."""
        self.compare("""# Exim filter
if personal then testprint p1 else testprint p1no endif
if personal alias other@elsewhere.example then testprint p2 endif
""", args=["-f", "some@one.example", "-bfl", "nobody"])
        self.compare("# Exim filter\nif personal then testprint p else testprint notp endif\n",
                     message=LIST_MESSAGE, args=["-f", "x@y.z"])
        self.compare("# Exim filter\nif personal then testprint p else testprint notp endif\n",
                     args=["-f", "x@y.z"])

    def test_foranyaddress(self):
        """foranyaddress walks an address list, setting $thisaddress."""
        self.compare("""# Exim filter
if foranyaddress $h_to: ($thisaddress ends "example") then
  testprint "found $thisaddress"
endif
if foranyaddress "a@b, c@d" ($thisaddress is x@y) then testprint bad else testprint none endif
""")

    def test_error_message_first_delivery_delivered(self):
        """error_message (null sender), first_delivery, manually_thawed and
        delivered in test mode."""
        text = """# Exim filter
if error_message then testprint em endif
if first_delivery then testprint fd endif
if manually_thawed then testprint mt else testprint notmt endif
if delivered then testprint d1 endif
save /tmp/x
if delivered then testprint d2 endif
"""
        self.compare(text, args=["-f", "<>"])
        self.compare(text, args=["-f", "a@b.c"])

    def test_finish_and_logging(self):
        """logfile/logwrite are shown, not written; finish stops the filter."""
        self.compare("""# Exim filter
logfile $home/filter.log 0644
logwrite "subject was $h_subject:"
unseen finish
testprint "not reached"
""")

    def test_fail_defer_freeze_disabled_in_user_filter(self):
        """Without permission fail, defer and freeze are errors with Exim's line number."""
        for command in ("fail", "defer", "freeze"):
            self.compare('# Exim filter\n\ntestprint x\n%s text "stop here"\n' % command)

    def test_system_filter_commands(self):
        """-bF: fail/defer/freeze end filtering; headers add/remove apply;
        no "# Exim filter" line is needed."""
        self.compare('if $h_subject: contains hello then fail text "no hellos" endif\n',
                     flag="-bF")
        self.compare('freeze "frozen for $h_from:"\n', flag="-bF")
        self.compare('defer\n', flag="-bF")
        self.compare('headers add "X-Filtered: yes"\nheaders remove subject\n'
                     'testprint "$h_x-filtered: [$h_subject:]"\nheaders charset UTF-8\n',
                     flag="-bF")

    def test_system_then_user_filter(self):
        """-bF with -bf: the system filter's header changes and $n values
        ($sn0..$sn9) are seen by the user's filter."""
        system = os.path.join(self.dir, "system")
        with open(system, "w") as f:
            f.write('add 3 to n1\nheaders add "X-S: 1"\n')
        out = self.compare('# Exim filter\ntestprint "sn1=$sn1 n1=$n1 xs=$h_x-s:"\n',
                           args=["-bF", system])
        self.assertIn("Testprint: sn1=3 n1=0 xs=1", out)

    def test_headers_charset(self):
        """headers charset changes how encoded words in header variables are
        decoded for the rest of the filter."""
        out = self.compare('# Exim filter\ntestprint "$h_subject:"\n'
                           'headers charset ISO-8859-1\ntestprint "$h_subject:"\n',
                           message="Subject: =?UTF-8?Q?caf=C3=A9?=\n\nbody\n")
        self.assertIn("Testprint: caf\\351", out)

    def test_headers_only_in_system_filter(self):
        """headers add in a user filter is a syntax error."""
        self.compare('# Exim filter\nheaders add "X-A: b"\n')

    def test_syntax_errors(self):
        """Exim's messages for unknown commands, missing endif/then, stray
        brackets, seen before if, and dangling seen/unseen."""
        for text in ("# Exim filter\nfrobnicate\n",
                     "# Exim filter\nif 1 is 1 then testprint a\n",
                     "# Exim filter\nif 1 is 1 testprint a endif\n",
                     "# Exim filter\nif (1 is 1 then testprint a endif\n",
                     "# Exim filter\nif 1 is 1) then testprint a endif\n",
                     "# Exim filter\nseen if 1 is 1 then save /x endif\n",
                     "# Exim filter\nif 1 is 1 then unseen endif\n",
                     "# Exim filter\nendif\n",
                     '# Exim filter\ntestprint "unterminated\n',
                     "# Exim filter\nif 1 frobs 1 then testprint a endif\n",
                     "# Exim filter\nadd 1 to x3\n",
                     "# Exim filter\nadd 1 n3\n"):
            self.compare(text)

    def test_nested_if_elif_else(self):
        """Nested if/elif/else, double "not", comments inside a condition."""
        self.compare("""# Exim filter
if $h_subject: is "x" then testprint 1
elif $h_subject: begins "hello" then
  if $h_from: contains "one" then testprint 2a
  elif $h_from: contains "two" then testprint 2b
  else testprint 2c
  endif
else testprint 3
endif
if not not $h_to: contains root then testprint nn endif
if ( $h_to: contains root or   # comment in condition
     $h_to: contains nobody ) and not ( 1 is 2 ) then testprint paren endif
""")

    def test_groups_delivered_and_noerror(self):
        """foranyaddress with group syntax and bad addresses; "delivered"
        after unseen and seen commands; noerror prefixes."""
        self.compare("""# Exim filter
if foranyaddress "friends: a@b.c, d@e.f; x@y.z" ($thisaddress is x@y.z) then testprint f endif
if foranyaddress "bad address here, <ok@x.y>" ($thisaddress ends "x.y") then
  testprint "ok $thisaddress"
endif
unseen deliver a@b.c
if delivered then testprint d1 endif
seen testprint hi
if delivered then testprint d2 endif
noerror deliver x@y.z
noerror unseen save /tmp/x
""")

    def test_recipient_options(self):
        """-bfl, -bfd, -bfp and -bfs set the recipient the filter sees."""
        self.compare('# Exim filter\ntestprint "$local_part@$domain $local_part_prefix '
                     '$local_part_suffix $original_local_part"\n',
                     args=["-bfl", "jim", "-bfd", "example.org", "-bfp", "list-",
                           "-bfs", "+box", "-f", "a@b.c"])

    def test_return_path_header(self):
        """A Return-path: header in the test message sets $return_path."""
        self.compare('# Exim filter\ntestprint "$return_path $sender_address $reply_address"\n',
                     message="Return-path: <rp@x.example>\nReply-To: r@x.example\n\nbody\n",
                     args=["-f", "s@x.example"])

    def test_no_headers_and_fixups(self):
        """An empty message gets Exim's warning and the From:/Date:/Message-Id:
        fixups of a local submission."""
        self.compare('# Exim filter\ntestprint "$h_from: $message_size [$message_body]"\n',
                     message="", args=["-f", "x@y.z"])

    def test_comments_quoting_and_escapes(self):
        """Comments anywhere, quoted strings with escapes and continued lines."""
        self.compare("""# Exim filter
# a comment line
testprint "tab\\there" # trailing comment
testprint "joined \\
   line"
testprint "octal \\101 hex \\x42 quote \\" end"
testprint unquoted_word
""")

    def test_expansion_failure(self):
        """A failed expansion in a command ends filtering with Exim's message."""
        self.compare('# Exim filter\ntestprint "${if eq{1}}"\n')
        self.compare('# Exim filter\nif ${lookup{x}lsearch{/nonexistent/file}} is "" '
                     'then testprint x endif\n')

    def test_forward_file_listing(self):
        """A file that is not a filter is listed as a forward file."""
        self.compare("someone@example.com, |/bin/cat\n/tmp/mbox\nlocaluser\n")

    def test_missing_file(self):
        """A filter file that cannot be opened: Exim's message, status 1."""
        argv = ["-bf", os.path.join(self.dir, "nonexistent")]
        real = self.exim.run(self.config, argv, input="")
        ours = run_exim_py(["-C", self.config] + argv, input="")
        self.assertEqual(ours.stderr.replace("exim_py", "exim"), real.stderr)
        self.assertEqual((ours.returncode, ours.stdout), (real.returncode, real.stdout))
