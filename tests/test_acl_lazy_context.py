"""An ACL run makes its expansion context only when something needs it: an
ACL of literal host and domain lists expands nothing, and costs no context."""

from twisted.trial import unittest

from exim_py.acl import FAIL, OK
from exim_py.acl.context import session_variables
from exim_py.expand import ExpandContext
from tests.support.acl import config_from, run


class LazyContextTests(unittest.TestCase):

    def setUp(self):
        self.config = config_from(self, """
literal:
  accept hosts   = 1.2.3.4 : 10.0.0.0/8
         domains = y.example : *.z.example
  deny   message = relay not permitted
expanding:
  accept domains = y.example
         condition = ${if eq{[$domain_data][$local_part][$acl_c0]}{[y.example][u][x]}}
  deny
nested:
  accept acl = literal
setting:
  warn   set acl_m_seen = $domain/$local_part
  accept
""")
        self.made = []

    def make(self, sess, env):
        def factory():
            self.made.append(1)
            return ExpandContext(config=self.config, variables=session_variables(sess, env),
                                 headers=[])
        return factory

    def check(self, spec, recipient, address="1.2.3.4"):
        from tests.support.acl import envelope, session
        sess = session(address)
        sess.acl_c["acl_c0"] = "x"
        env = envelope(sess)
        result, ctx = run(self.config, "rcpt", spec, sess=sess, env=env, recipient=recipient,
                          make_expand_ctx=self.make(sess, env))
        return result, ctx, env

    def test_literal_lists_make_no_context(self):
        """hosts and domains with literal items decide without an expansion context,
        accepting and refusing as before."""
        result, _, _ = self.check("literal", "u@y.example")
        self.assertEqual(result.rc, OK)
        result, _, _ = self.check("literal", "u@other.example")
        self.assertEqual(result.rc, FAIL)
        self.assertEqual(result.user_message, "relay not permitted")
        result, _, _ = self.check("literal", "u@a.z.example", address="10.1.2.3")
        self.assertEqual(result.rc, OK)
        self.assertEqual(self.made, [])

    def test_context_made_once_with_what_was_set(self):
        """When a condition expands, the context is made once, and sees $domain,
        $local_part and the $domain_data (the item matched) a literal list set before it."""
        result, ctx, _ = self.check("expanding", "U@y.example")
        self.assertEqual(result.rc, OK)
        self.assertEqual(self.made, [1])
        self.assertEqual(ctx.expand_ctx.get("local_part"), "u")

    def test_nested_acl_and_set(self):
        """acl = nesting still works without a context; set makes one and
        stores acl_m variables from the pending $domain and $local_part."""
        result, _, _ = self.check("nested", "u@y.example")
        self.assertEqual(result.rc, OK)
        self.assertEqual(self.made, [])
        result, _, env = self.check("setting", "U@Y.example")
        self.assertEqual(result.rc, OK)
        self.assertEqual(env.acl_m["acl_m_seen"], "y.example/u")
