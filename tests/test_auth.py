"""Server and client sides of the plaintext and cram_md5 authenticators.

Server exchanges run through ``Authenticator.server_start`` /
``server_step`` as the SMTP server drives them; the same dialogues go
through real Exim's ``-bh`` to compare replies and log lines, and the
cram_md5 client answers a challenge from real Exim.
"""

import base64
import subprocess

from twisted.trial import unittest

from exim_py.acl.context import session_variables
from exim_py.auths import base
from exim_py.auths.base import advertised, find_server, load_authenticators
from exim_py.auths.cram_md5 import cram_digest
from exim_py.config import load
from exim_py.expand import ExpandContext
from tests.support.acl import session, write_config
from tests.support.peers import RealExim

AUTH_CONF = """\
keep_environment =
host_lookup =
primary_hostname = test.example
tls_advertise_hosts =
{main}
begin authenticators
plain_server:
  driver = plaintext
  public_name = PLAIN
  server_prompts = :
  server_condition = ${{if and{{{{eq{{$auth2}}{{user}}}}{{eq{{$auth3}}{{secret}}}}}}}}
  server_set_id = $auth2
login_server:
  driver = plaintext
  public_name = LOGIN
  server_prompts = User Name : Password
  server_condition = ${{if and{{{{eq{{$auth1}}{{user}}}}{{eq{{$auth2}}{{secret}}}}}}}}
  server_set_id = $auth1
cram:
  driver = cram_md5
  public_name = CRAM-MD5
  server_secret = ${{if eq{{$auth1}}{{user}}{{secret}}fail}}
  server_set_id = $auth1
  client_name = user
  client_secret = secret
odd:
  driver = plaintext
  public_name = ODD
  server_prompts = :
  server_condition = ${{if eq{{$auth2}}{{user}}{{maybe}}{{${{lookup{{x}}lsearch{{/nonexistent/file}}}}}}}}
  server_set_id = $auth2
tlsonly:
  driver = plaintext
  public_name = TLSONLY
  server_condition = yes
  server_advertise_condition = ${{if def:tls_in_cipher}}
  server_mail_auth_condition = ${{if eq{{$authenticated_id}}{{trusted}}}}
client_plain:
  driver = plaintext
  public_name = XPLAIN
  client_send = ^user^sec^^ret
client_login:
  driver = plaintext
  public_name = XLOGIN
  client_send = : user : secret
"""


def b64(data):
    return base64.b64encode(data).decode("ascii")


def load_auths(testcase, main=""):
    path = write_config(testcase, AUTH_CONF.format(main=main))
    config = load(path)
    return config, {a.name: a for a in load_authenticators(config)}, path


def expand_ctx(config, sess=None):
    sess = sess if sess is not None else session()
    return ExpandContext(config=config, variables=session_variables(sess))


def exchange(auth, ctx, initial, answers=()):
    """Run a server exchange: (challenges sent, result)."""
    ex = auth.server_start(initial, ctx)
    challenges = []
    answers = list(answers)
    while ex.result is None:
        challenges.append(ex.challenge)
        ex.server_step(answers.pop(0))
    return challenges, ex.result


class PlaintextServerTests(unittest.TestCase):
    """PLAIN and LOGIN exchanges."""

    def setUp(self):
        self.config, self.auths, _ = load_auths(self)
        self.ctx = expand_ctx(self.config)

    def test_plain_initial_response(self):
        """PLAIN with the credentials on the AUTH command: 235 and the set_id."""
        _, result = exchange(self.auths["plain_server"], self.ctx, b64(b"\0user\0secret"))
        self.assertEqual((result.code, result.reply, result.authenticated_id),
                         (base.OK, "235 Authentication succeeded", "user"))
        self.assertEqual([self.ctx.get("auth%d" % i) for i in (1, 2, 3)], ["", "user", "secret"])
        self.assertIsNone(result.log_line("plain_server", "(x) [1.2.3.4]"))

    def test_plain_bad_password(self):
        """Wrong credentials: 535, and the log names the set_id."""
        _, result = exchange(self.auths["plain_server"], self.ctx, b64(b"\0user\0wrong"))
        self.assertEqual(result.reply, "535 Incorrect authentication data")
        self.assertEqual(result.log_line("plain_server", "(x) [1.2.3.4]"),
                         "plain_server authenticator failed for (x) [1.2.3.4]: "
                         "535 Incorrect authentication data (set_id=user)")

    def test_plain_with_empty_prompt(self):
        """PLAIN without initial data: one empty challenge, then the answer."""
        challenges, result = exchange(self.auths["plain_server"], self.ctx, None,
                                      [b64(b"\0user\0secret")])
        self.assertEqual((challenges, result.code), ([b""], base.OK))

    def test_equals_is_one_empty_item(self):
        """'=' as initial data is a single empty string, so $auth2 is unset."""
        _, result = exchange(self.auths["plain_server"], self.ctx, "=")
        self.assertEqual((result.code, self.ctx.get("auth1")), (base.FAIL, ""))

    def test_bad_base64(self):
        """Data that is not base64 gives 501 Invalid base64 data, initially or later."""
        _, first = exchange(self.auths["plain_server"], self.ctx, "!!!")
        _, later = exchange(self.auths["login_server"], self.ctx, None, ["%%%"])
        self.assertEqual((first.reply, later.reply),
                         ("501 Invalid base64 data", "501 Invalid base64 data"))
        self.assertEqual(first.log_line("plain_server", "(x) [1.2.3.4]"),
                         "plain_server authenticator failed for (x) [1.2.3.4]: "
                         "501 Invalid base64 data")

    def test_cancel(self):
        """A '*' answer cancels: 501 Authentication cancelled."""
        _, result = exchange(self.auths["login_server"], self.ctx, None, ["*"])
        self.assertEqual((result.code, result.reply),
                         (base.CANCELLED, "501 Authentication cancelled"))

    def test_login_prompts(self):
        """LOGIN sends each prompt in turn and collects $auth1, $auth2."""
        challenges, result = exchange(self.auths["login_server"], self.ctx, None,
                                      [b64(b"user"), b64(b"secret")])
        self.assertEqual((challenges, result.code, result.set_id),
                         ([b"User Name", b"Password"], base.OK, "user"))

    def test_login_initial_answers_first_prompt(self):
        """Initial data answers the first prompt; only the second is sent."""
        challenges, result = exchange(self.auths["login_server"], self.ctx, b64(b"user"),
                                      [b64(b"secret")])
        self.assertEqual((challenges, result.code), ([b"Password"], base.OK))

    def test_condition_defers(self):
        """A server_condition that is not a boolean defers and shows its text."""
        _, result = exchange(self.auths["odd"], self.ctx, b64(b"\0user\0x"))
        self.assertEqual(result.reply, "435 Unable to authenticate at present: maybe")
        self.assertEqual(result.log_line("odd", "(x) [1.2.3.4]"),
                         "odd authenticator failed for (x) [1.2.3.4]: 435 Unable to "
                         "authenticate at present (set_id=user): maybe")

    def test_condition_expansion_failure_defers(self):
        """An expansion failure defers; the reason is logged but not shown."""
        _, result = exchange(self.auths["odd"], self.ctx, b64(b"\0other\0x"))
        self.assertEqual(result.reply, "435 Unable to authenticate at present")
        self.assertIn("(set_id=other): ", result.log_line("odd", "h"))

    def test_apply_to_session(self):
        """Success records the authenticator and id in the session; failure the fail id."""
        sess = session()
        _, result = exchange(self.auths["plain_server"], self.ctx, b64(b"\0user\0wrong"))
        result.apply(sess, "plain_server")
        self.assertEqual((sess.authenticated_id, sess.authenticated_fail_id), (None, "user"))
        _, result = exchange(self.auths["plain_server"], self.ctx, b64(b"\0user\0secret"))
        result.apply(sess, "plain_server")
        self.assertEqual((sess.authenticated_id, sess.auth_mechanism), ("user", "plain_server"))


class CramServerTests(unittest.TestCase):
    """cram_md5 exchanges."""

    def setUp(self):
        self.config, self.auths, _ = load_auths(self)
        self.ctx = expand_ctx(self.config)
        self.cram = self.auths["cram"]

    def answer(self, name, secret, upper=False):
        def respond(challenge):
            digest = cram_digest(secret, challenge)
            return b64(("%s %s" % (name, digest.upper() if upper else digest)).encode())
        ex = self.cram.server_start(None, self.ctx)
        challenge = ex.challenge
        ex.server_step(respond(challenge))
        return challenge, ex.result

    def test_good_digest(self):
        """The right digest authenticates; the challenge is <pid.time@primary_hostname>."""
        challenge, result = self.answer("user", "secret")
        self.assertRegex(challenge.decode(), r"^<\d+\.\d+@test\.example>$")
        self.assertEqual((result.code, result.set_id), (base.OK, "user"))

    def test_wrong_secret(self):
        """A wrong digest fails with 535 and the set_id in the log."""
        _, result = self.answer("user", "other")
        self.assertEqual((result.code, result.log_line("cram", "h")),
                         (base.FAIL, "cram authenticator failed for h: 535 Incorrect "
                                     "authentication data (set_id=user)"))

    def test_unknown_user(self):
        """A forced failure of server_secret (no such user) fails."""
        _, result = self.answer("nobody", "secret")
        self.assertEqual(result.code, base.FAIL)

    def test_upper_case_digest(self):
        """Exim compares with lower-case hex only."""
        _, result = self.answer("user", "secret", upper=True)
        self.assertEqual(result.code, base.FAIL)

    def test_initial_data(self):
        """Data on the AUTH command: 553 Initial data not expected."""
        _, result = exchange(self.cram, self.ctx, "abc")
        self.assertEqual(result.reply, "553 Initial data not expected")


class AdvertiseAndClientTests(unittest.TestCase):
    """What is advertised, which server runs, and the client sides."""

    def setUp(self):
        self.config, self.auths, _ = load_auths(self)
        self.all = list(self.auths.values())

    def test_advertised_without_tls(self):
        """Every server mechanism is listed, except where server_advertise_condition says no."""
        sess = session()
        self.assertEqual(advertised(self.all, True, expand_ctx(self.config, sess)),
                         ["PLAIN", "LOGIN", "CRAM-MD5", "ODD"])
        sess.tls_cipher = "TLS1.3:TLS_AES_256_GCM_SHA384:256"
        self.assertIn("TLSONLY", advertised(self.all, True, expand_ctx(self.config, sess)))

    def test_not_advertised_to_excluded_hosts(self):
        """A host outside auth_advertise_hosts is offered nothing."""
        self.assertEqual(advertised(self.all, False, expand_ctx(self.config)), [])

    def test_find_server(self):
        """AUTH picks an advertised server mechanism, case-insensitively; else 504."""
        names = ["PLAIN", "LOGIN"]
        self.assertIs(find_server(self.all, "plain", names), self.auths["plain_server"])
        self.assertIsNone(find_server(self.all, "CRAM-MD5", names))
        self.assertEqual(base.unsupported_reply("FOO"),
                         "504 FOO authentication mechanism not supported")

    def test_mail_auth_condition(self):
        """server_mail_auth_condition decides whether AUTH= on MAIL is trusted; unset: yes."""
        sess = session()
        sess.authenticated_id = "trusted"
        self.assertTrue(self.auths["tlsonly"].mail_auth_allowed(expand_ctx(self.config, sess)))
        sess.authenticated_id = "someone"
        self.assertFalse(self.auths["tlsonly"].mail_auth_allowed(expand_ctx(self.config, sess)))
        self.assertTrue(self.auths["plain_server"].mail_auth_allowed(expand_ctx(self.config, sess)))

    def test_plaintext_client(self):
        """client_send: ^ is a binary zero, ^^ a caret; an empty first item sends no data."""
        ctx = expand_ctx(self.config)
        self.assertEqual(self.auths["client_plain"].client_items(ctx),
                         (b"\0user\0sec^ret", []))
        self.assertEqual(self.auths["client_login"].client_items(ctx),
                         (None, [b"user", b"secret"]))
        self.assertTrue(self.auths["client_login"].client_enabled)
        self.assertFalse(self.auths["client_login"].server_enabled)

    def test_cram_client_rfc2195(self):
        """The RFC 2195 example: tim / tanstaaftanstaaf."""
        self.assertEqual(cram_digest(b"tanstaaftanstaaf",
                                     b"<1896.697170952@postoffice.reston.mci.net>"),
                         "b913a602c7eda7a495b4e6e7334d3890")


class EximAuthTests(unittest.TestCase):
    """The same AUTH dialogues through real Exim (-bh)."""

    def setUp(self):
        self.exim = RealExim()
        self.addCleanup(self.exim.cleanup)
        self.config, self.auths, _ = load_auths(self)
        self.path = self.exim.write_config(AUTH_CONF.format(main=""))

    def test_replies_and_logs_match(self):
        """PLAIN and LOGIN: good, bad, bad base64, cancel, deferral — same replies and logs."""
        script = [("PLAIN", b64(b"\0user\0wrong"), []), ("PLAIN", "!!!", []),
                  ("PLAIN", None, ["*"]), ("ODD", b64(b"\0user\0x"), []),
                  ("LOGIN", None, [b64(b"user"), b64(b"secret")])]
        lines = ["EHLO x"]
        for mech, initial, answers in script:
            lines.append("AUTH %s%s" % (mech, " " + initial if initial else ""))
            lines.extend(answers)
        lines.append("QUIT")
        out = self.exim.run(self.path, ["-bh", "1.2.3.4"],
                            input="".join(l + "\r\n" for l in lines))
        theirs = [l for l in out.stdout.splitlines() if l[:3].isdigit() and l[3:4] == " "]
        their_logs = [l[5:] for l in out.stderr.splitlines()
                      if l.startswith("LOG: ") and "authenticator failed" in l]
        ours, our_logs = [], []
        for mech, initial, answers in script:
            auth = find_server(list(self.auths.values()), mech, [mech])
            ex = auth.server_start(initial, expand_ctx(self.config, session()))
            answers = list(answers)
            while ex.result is None:
                ours.append("334 " + b64(ex.challenge))
                ex.server_step(answers.pop(0))
            ours.append(ex.result.reply)
            line = ex.result.log_line(auth.name, "(x) [1.2.3.4]")
            if line:
                our_logs.append(line)
        self.assertEqual(ours, [l.rstrip("\r") for l in theirs[2:-1]])
        self.assertEqual(our_logs, their_logs)

    def test_cram_client_against_exim_server(self):
        """Our cram_md5 client answers a real Exim challenge and is accepted."""
        proc = subprocess.Popen([self.exim.binary, "-C", self.path, "-bh", "1.2.3.4"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
        self.addCleanup(proc.kill)

        def reply():
            while True:
                line = proc.stdout.readline()
                if not line or line[3:4] == " ":
                    return line.rstrip("\r\n")

        def send(text):
            proc.stdin.write(text + "\r\n")
            proc.stdin.flush()

        reply()
        send("EHLO x")
        reply()
        send("AUTH CRAM-MD5")
        challenge = reply()
        self.assertTrue(challenge.startswith("334 "), challenge)
        answer = self.auths["cram"].client_response(base64.b64decode(challenge[4:]),
                                                    expand_ctx(self.config))
        send(b64(answer))
        self.assertEqual(reply(), "235 Authentication succeeded")
        send("QUIT")
        proc.stdin.close()
        proc.wait(timeout=30)
