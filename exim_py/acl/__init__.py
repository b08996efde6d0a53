"""Access control lists: the engine, its conditions and modifiers, and replies.

``run_acl(where, acl_spec, ctx) -> AclResult`` runs an ACL;
``replies.rejection(result, ctx, command_data)`` gives Exim's SMTP reply and
log line for a result that is not an acceptance; ``acl_may_block(config,
acl_spec)`` tells whether an ACL may wait on DNS or disk;
``install_acl_runner(expand_ctx, config)`` lets expansions made outside an
ACL run ``${acl}``.  See HACKING.rst.
"""

from exim_py.acl.blocking import acl_may_block
from exim_py.acl.context import AclContext
from exim_py.acl.engine import (DEFER, DISCARD, ERROR, FAIL, FAIL_DROP, OK, AclResult,
                                install_acl_runner, run_acl)

__all__ = ["AclContext", "AclResult", "run_acl", "acl_may_block", "install_acl_runner",
           "OK", "DISCARD", "FAIL", "FAIL_DROP", "DEFER", "ERROR"]
