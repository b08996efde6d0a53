"""Running an ACL: verbs, the order of conditions and modifiers, and messages.

Entry point :func:`run_acl` (spec chapter "Access control lists").  An ACL is
a list of statements; each statement's conditions and modifiers are taken in
order until one condition is false.  What the verb then does with the outcome
(accept, defer, deny, discard, drop, require, warn; ``endpass``), when the
``message`` and ``log_message`` modifiers are expanded, and how a nested
``acl =`` result travels back up follow Exim's acl.c behaviour exactly, so
that replies and log lines come out the same (see replies.py).

Side effects that the caller must apply (delays, headers to add or remove,
controls) are collected in the result rather than applied here: the ACL
engine never touches a socket, so the server can run it in a thread and
apply a delay without blocking the reactor.
"""

import os

from exim_py.acl import conditions, modifiers
from exim_py.acl.parse import AclError, parse_acl_text
from exim_py.acl.phases import DENY_WHEN_UNSET, MESSAGE_WHERES, WHERE_NAMES, WHERES, CONDITIONS
from exim_py.acl.validate import compiled_statements
from exim_py.errors import ConfigError, ExpansionError, LookupDefer

# Outcomes, named after the verbs that produce them.
OK = "accept"
DISCARD = "discard"
FAIL = "deny"
FAIL_DROP = "drop"
DEFER = "defer"
ERROR = "error"

# For each verb, the outcomes of its conditions for which "message" and
# "log_message" are expanded (Exim's msgcond table).
_MESSAGE_WHEN = {
    "accept": (OK, FAIL, FAIL_DROP),
    "defer": (OK,),
    "deny": (OK,),
    "discard": (OK, FAIL, FAIL_DROP),
    "drop": (OK,),
    "require": (FAIL, FAIL_DROP),
    "warn": (OK,),
}

MAX_NESTING = 20

FAKE_REJECT_TEXT = ("Your message has been rejected but is being kept for evaluation.\n"
                    "If it was a legitimate message, it may still be delivered to the "
                    "target recipient(s).")


class Effects:
    """What an ACL run asks the caller to do besides answering."""

    def __init__(self):
        self.delay = 0                 # seconds, summed over every "delay" obeyed
        self.added_headers = []        # (position, text): position as in add_header
        self.removed_headers = []      # header names
        self.controls = []             # (name, options) for every "control" obeyed
        self.log_reject_target = ("main", "reject")
        self.queue = None              # "queue =" modifier: named queue

    def control(self, name):
        """The options of the last ``control = name`` obeyed, or None."""
        for cname, options in reversed(self.controls):
            if cname == name:
                return options
        return None

    @property
    def fake_response(self):
        """(FAIL or DEFER, text) after control = fakereject / fakedefer, else None.

        The message is accepted, but the client is told this instead (spec
        "control = fakereject"); the text is the control's option or Exim's
        default.
        """
        for cname, options in reversed(self.controls):
            if cname in ("fakereject", "fakedefer"):
                text = options[1:] if options.startswith("/") else FAKE_REJECT_TEXT
                return (FAIL if cname == "fakereject" else DEFER), text
        return None


class AclResult:
    """The outcome of :func:`run_acl`.

    ``rc``: one of OK ("accept"), DISCARD, FAIL ("deny"), FAIL_DROP ("drop"),
    DEFER, ERROR.  ``user_message``: text for the SMTP reply or None (may start
    with an SMTP code and contain newlines); ``log_message``: text for the log
    or None; ``temp_details``: a temporary rejection may show the user
    message (the ``defer`` verb, a callout defer); ``effects``: an
    :class:`Effects`.
    """

    def __init__(self, where, rc, user_message=None, log_message=None,
                 temp_details=False, effects=None, log_is_user=False):
        self.where = where
        self.rc = rc
        self.user_message = user_message
        self.log_message = log_message
        self.temp_details = temp_details
        self.effects = effects if effects is not None else Effects()
        # The log message is the user message itself (no log_message given):
        # a refused reply code is then corrected in the log too.
        self.log_is_user = log_is_user

    @property
    def accepted(self):
        return self.rc in (OK, DISCARD)

    @property
    def delay(self):
        return self.effects.delay

    def __repr__(self):
        return "AclResult(%r, %r, user=%r, log=%r)" % (
            self.where, self.rc, self.user_message, self.log_message)


class _Run:
    """The state of one top-level run, shared by nested ACLs."""

    def __init__(self, where, ctx):
        self.where = where
        self.ctx = ctx
        self.effects = Effects()
        self.level = 0
        self.user = None
        self.log = None
        self.temp_details = False
        self.verb = None
        self.narg = 0
        self.args = [""] * 9

    def expand(self, string):
        """Expand ``string``; text without ``$`` or ``\\`` is returned as it is."""
        if "$" not in string and "\\" not in string:
            return string
        return self.ctx.expand(string)


# -- finding the statements of an ACL --------------------------------------

_inline = {}
_files = {}


def find_acl(config, text):
    """Statements for an ACL spec: a name, a /file, or inline text; raises AclError.

    As Exim: a spec without a space is looked up by name among the
    configured ACLs, then read as a file if it starts with ``/``; anything
    else is ACL text.  Returns (label, statements), or (label, None) for a
    configured ACL with no statements.
    """
    text = text.lstrip()
    if " " not in text:
        acls = getattr(config, "acls", None) or {}
        if text in acls:
            acl = acls[text]
            return 'ACL "%s"' % text, (compiled_statements(acl) or None)
        if text.startswith("/"):
            if text not in _files:
                try:
                    with open(text) as f:
                        body = f.read()
                except OSError as e:
                    raise AclError('failed to open ACL file "%s": %s' % (text, os.strerror(e.errno)))
                _files[text] = parse_acl_text(body, text)
            return 'ACL "%s"' % text, _files[text]
    if text not in _inline:
        _inline[text] = parse_acl_text(text)
    return "inline ACL", _inline[text]


def accepts_at_once(config, acl_spec):
    """Whether ``acl_spec`` names a configured ACL whose first statement is a
    bare ``accept``: running it gives OK with nothing to log, set or control,
    so a caller may skip building the context a run needs (the server's DATA
    ACL is often just that)."""
    if not acl_spec or "$" in acl_spec or "\\" in acl_spec:
        return False
    try:
        _, statements = find_acl(config, acl_spec)
    except (AclError, ConfigError):
        return False
    return bool(statements) and statements[0].verb == "accept" and not statements[0].items


# -- running ---------------------------------------------------------------

def run_acl(where, acl_spec, ctx):
    """Run the ACL ``acl_spec`` (an option's raw value) for phase ``where``.

    ``where`` is one of :data:`phases.WHERES` ("connect", "helo", "mail",
    "rcpt", "predata", "data", "quit", "notquit", ...).  An unset spec
    (None or empty) refuses at rcpt, vrfy, expn and etrn and accepts
    elsewhere, as Exim does when the option is unset.  Never raises for a
    problem in the ACL: that is an ERROR result with Exim's log text.
    """
    if where not in WHERES:
        raise ValueError("unknown ACL phase %r" % (where,))
    run = _Run(where, ctx)
    if not acl_spec:
        rc = FAIL if where in DENY_WHEN_UNSET else OK
        return AclResult(where, rc, effects=run.effects)
    try:
        spec = run.expand(acl_spec)
    except ExpansionError as e:
        if e.forced:
            return AclResult(where, OK, effects=run.effects)
        return AclResult(where, ERROR, log_message='failed to expand ACL string "%s": %s'
                         % (acl_spec, e), effects=run.effects)
    except LookupDefer as e:
        return AclResult(where, DEFER, log_message='failed to expand ACL string "%s": %s'
                         % (acl_spec, e), effects=run.effects)
    # ${acl} in this ACL's expansions runs a nested ACL of the same run
    saved_runner = ctx.install_acl_runner(lambda name, args: eval_acl(run, name, args))
    try:
        rc = _check_internal(run, spec)
    finally:
        ctx.install_acl_runner(saved_runner)
    if rc == DISCARD and (where not in MESSAGE_WHERES or where == "predata"):
        ctx.write_log('"discard" verb not allowed in %s ACL' % WHERE_NAMES[where],
                      ("main", "panic"))
        rc = ERROR
    elif rc == FAIL_DROP and where == "mailauth":
        ctx.write_log('"drop" verb not allowed in %s ACL' % WHERE_NAMES[where],
                      ("main", "panic"))
        rc = ERROR
    log_is_user = run.log is not None and run.log is run.user
    return AclResult(where, rc, split_message(run.user), run.log, run.temp_details,
                     run.effects, log_is_user)


def _check_internal(run, spec):
    """Run one ACL (top level or nested); returns an outcome, messages in ``run``."""
    if run.level > MAX_NESTING:
        run.log = "ACL nested too deep: possible loop"
        return ERROR
    try:
        label, statements = find_acl(run.ctx.config, spec)
    except AclError as e:
        run.log = str(e)
        return ERROR
    except ConfigError as e:
        run.log = e.message
        return ERROR
    quit_check = run.level == 0 and run.where in ("quit", "notquit")
    for statement in statements or ():
        verb = statement.verb
        run.user = run.log = None
        run.temp_details = False
        cond, endpass = _check_condition(run, statement)
        if cond == DEFER:
            if verb != "warn":
                return DEFER
        elif cond == ERROR:
            return ERROR
        if verb == "accept":
            if cond in (OK, DISCARD):
                return cond
            if endpass:
                return cond
        elif verb in ("defer", "deny", "drop") and cond == OK:
            if quit_check:
                return _bad_quit(run, verb)
            if verb == "defer":
                run.temp_details = True
                return DEFER
            return FAIL if verb == "deny" else FAIL_DROP
        elif verb == "discard":
            if cond in (OK, DISCARD):
                if quit_check:
                    return _bad_quit(run, verb)
                return DISCARD
            if endpass:
                return cond
        elif verb == "require":
            if cond != OK:
                if quit_check:
                    return _bad_quit(run, verb)
                return cond
        elif verb == "warn":
            if cond == OK:
                _warn(run, run.user, run.log)
            elif cond == DEFER and run.ctx.log is not None and \
                    run.ctx.log.selector("acl_warn_skipped"):
                run.ctx.write_log("%s Warning: ACL \"warn\" statement skipped: condition test "
                                  "deferred%s" % (host_and_ident(run.ctx),
                                                  ": " + run.log if run.log else ""))
            run.user = run.log = None
    return FAIL


def _bad_quit(run, verb):
    run.log = ("QUIT or not-QUIT toplevel ACL may not fail ('%s' verb used incorrectly)"
               % verb)
    return ERROR


def _check_condition(run, statement):
    """Evaluate a statement's items in order; returns (outcome, endpass seen)."""
    verb = statement.verb
    user_message = log_message = None
    endpass = False
    rc = OK
    ctx = run.ctx
    for item in statement.items:
        name = item.name
        if name == "message":
            user_message = item.value
            continue
        if name == "log_message":
            log_message = item.value
            continue
        if name == "endpass":
            endpass = True
            continue
        arg = item.value
        if item.expand_at_top:
            try:
                arg = run.expand(arg)
            except ExpansionError as e:
                if e.forced:
                    continue
                run.log = 'failed to expand ACL string "%s": %s' % (item.value, e)
                return ERROR, endpass
            except LookupDefer as e:
                run.log = 'failed to expand ACL string "%s": %s' % (item.value, e)
                return DEFER, endpass
        if run.where in CONDITIONS[name][2]:
            run.log = "cannot %s %s condition in %s ACL" % (
                "use" if item.is_modifier else "test", name, WHERE_NAMES[run.where])
            return ERROR, endpass
        run.verb = verb
        if item.is_modifier:
            rc = modifiers.obey(run, item, arg)
            if rc == ERROR:
                return ERROR, endpass
            if rc != OK:
                break
            continue
        if name == "acl":
            rc = _nested(run, arg)
            if rc == DISCARD and verb not in ("accept", "discard"):
                run.log = ('nested ACL returned "discard" for "%s" command (only allowed '
                           'with "accept" or "discard")' % verb)
                return ERROR, endpass
        else:
            try:
                rc = conditions.check(run, item, arg)
            except LookupDefer as e:
                run.log = str(e)
                rc = DEFER
            except ExpansionError as e:
                run.log = str(e)
                rc = ERROR
        if item.negated:
            if rc == OK:
                rc = FAIL
            elif rc in (FAIL, FAIL_DROP):
                rc = OK
        if rc != OK:
            break

    if endpass and rc == OK:
        user_message = None
    if rc in _MESSAGE_WHEN[verb]:
        _set_messages(run, verb, rc, user_message, log_message)
    ctx.set_variable("acl_verify_message", "")
    return rc, endpass


def _set_messages(run, verb, rc, user_message, log_message):
    """Expand ``message`` / ``log_message`` now that the statement's outcome is known."""
    old_user = run.user
    old_log = run.log if run.log is not None else old_user
    if verb == "warn" or (rc == OK and verb in ("accept", "discard")):
        run.user = run.log = None
    if user_message is not None:
        text = _expand_message(run, user_message, old_user)
        if text:
            run.user = text
    if log_message is not None:
        text = _expand_message(run, log_message, old_log)
        if text:
            run.log = text if run.log is None else "%s: %s" % (text, run.log)
    if run.log is None:
        run.log = run.user


def _expand_message(run, text, verify_message):
    run.ctx.set_variable("acl_verify_message", verify_message or "")
    try:
        return run.expand(text)
    except (ExpansionError, LookupDefer) as e:
        if not getattr(e, "forced", False):
            run.ctx.write_log('failed to expand ACL message "%s": %s' % (text, e),
                              ("main", "panic"))
        return None


def _warn(run, user, log):
    """A "warn" statement whose conditions held: log once, add the message as a header."""
    ctx = run.ctx
    if log is not None and log != user:
        line = "%s Warning: %s" % (host_and_ident(ctx), modifiers.log_printing(run, log))
        # Exim logs each distinct warning once per message (per connection
        # before MAIL), whichever ACL run it comes from.
        holder = ctx.envelope if ctx.envelope is not None else ctx.session
        logged = getattr(holder, "acl_warn_logged", None)
        if logged is None:
            logged = holder.acl_warn_logged = set()
        if line not in logged:
            logged.add(line)
            ctx.write_log(line)
    if user is None:
        return
    if run.where not in MESSAGE_WHERES:
        ctx.write_log('ACL "warn" with "message" setting found in a non-message (%s) ACL: '
                      'cannot specify header lines here: message ignored'
                      % WHERE_NAMES[run.where], ("main", "panic"))
        return
    modifiers.add_headers(run, user)


def dequote_words(text):
    """Split ``NAME arg1 "arg 2"`` as Exim's string_dequote: quotes and backslashes."""
    words = []
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            break
        out = []
        if text[i] == '"':
            i += 1
            while i < n and text[i] != '"':
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                out.append(text[i])
                i += 1
            i += 1
        else:
            while i < n and not text[i].isspace():
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                out.append(text[i])
                i += 1
        words.append("".join(out))
    return words


def _nested(run, arg):
    """``acl = NAME arg1 ... arg9``: run a nested ACL with $acl_arg1..9 and $acl_narg."""
    words = dequote_words(arg)
    if not words:
        return FAIL
    # The name and each argument are expanded separately, after splitting.
    expanded = []
    for word in words[:10]:
        try:
            expanded.append(run.expand(word))
        except ExpansionError as e:
            if not e.forced:
                run.log = 'failed to expand ACL string "%s": %s' % (word, e)
            return ERROR
        except LookupDefer as e:
            run.log = 'failed to expand ACL string "%s": %s' % (word, e)
            return DEFER
    name, args = expanded[0], expanded[1:]
    saved = (run.narg, list(run.args))
    run.narg = len(args)
    run.args = args + [""] * (9 - len(args))
    _publish_args(run)
    run.level += 1
    try:
        return _check_internal(run, name)
    finally:
        run.level -= 1
        run.narg, run.args = saved
        _publish_args(run)


# rc_names[] in Exim: how ${acl} names an outcome in its error message
_RC_NAMES = {OK: "ok", FAIL: "fail", DEFER: "defer", ERROR: "error", DISCARD: "discard",
             FAIL_DROP: "fail_drop"}


def eval_acl(run, name, args):
    """Exim's eval_acl, for ``${acl{name}{arg}...}`` and the ``acl{{name}...}``
    condition: run ACL ``name`` one level down with ``$acl_arg1``.. set from
    ``args`` (at most nine), then restore the caller's arguments.  Returns
    (outcome name, user message); the caller's own messages are untouched."""
    args = list(args[:9])
    saved = (run.narg, list(run.args), run.user, run.log, run.temp_details)
    run.narg = len(args)
    run.args = args + [""] * (9 - len(args))
    _publish_args(run)
    run.level += 1
    try:
        rc = _check_internal(run, name)
        user = run.user
    finally:
        run.level -= 1
        run.narg, run.args, run.user, run.log, run.temp_details = saved
        _publish_args(run)
    return _RC_NAMES[rc], user


def install_acl_runner(expand_ctx, config, session=None):
    """Let expansions in ``expand_ctx`` outside any ACL (routers' conditions,
    -be) run ACLs with ``${acl}``, as Exim does with acl_where "unknown".

    The ACL context is made at the first ``${acl}``; it shares
    ``expand_ctx``, so the ACL sees the caller's variables."""
    if expand_ctx is None or getattr(expand_ctx, "acl_runner", None) is not None:
        return
    state = []

    def runner(name, args):
        if not state:
            from exim_py.acl.context import AclContext
            from exim_py.envelope import Session
            ctx = AclContext(config, session if session is not None else Session(),
                             expand_ctx=expand_ctx)
            state.append(_Run("unknown", ctx))
        return eval_acl(state[0], name, args)

    expand_ctx.acl_runner = runner


def _publish_args(run):
    run.ctx.set_variable("acl_narg", str(run.narg))
    for i, value in enumerate(run.args, 1):
        run.ctx.set_variable("acl_arg%d" % i, value)


def host_and_ident(ctx):
    """Exim's ``H=name (helo) [ip]`` (with ``U=ident``) prefix for log lines."""
    s = ctx.session
    if s.sender_host_address is None:
        return "U=%s" % (s.caller_name or s.sender_ident or "")
    parts = ["H="]
    if s.sender_host_name:
        parts.append(s.sender_host_name)
        if s.helo_name and s.helo_name != s.sender_host_name:
            parts.append(" (%s)" % s.helo_name)
        parts.append(" ")
    elif s.helo_name:
        parts.append("(%s) " % s.helo_name)
    parts.append("[%s]" % s.sender_host_address)
    if s.sender_ident:
        parts.append(" U=%s" % s.sender_ident)
    return "".join(parts)


def split_message(msg):
    """Fold a user message longer than 75 characters into lines, as Exim does."""
    if msg is None or len(msg) <= 75:
        return msg
    chars = list(msg)
    s = ss = 0
    n = len(chars)
    while True:
        i = 0
        while i < 75 and ss < n and chars[ss] != "\n":
            ss += 1
            i += 1
        if ss >= n:
            break
        if chars[ss] == "\n":
            ss += 1
            s = ss
            continue
        split = None
        t = ss + 1
        while True:
            t -= 1
            if t <= s + 35:
                break
            if t < n and chars[t] == " ":
                if chars[t - 1] == ":":
                    split = t
                    break
                if split is None:
                    split = t
        if split is None:
            t = ss + 1
            while t < n:
                if chars[t] in " \n":
                    split = t
                    break
                t += 1
        if split is None:
            break
        chars[split] = "\n"
        s = ss = split + 1
    return "".join(chars)
