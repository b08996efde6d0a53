"""The redirect router: aliasing and forwarding (spec chapter "The redirect router").

The redirection data comes from ``data`` (expanded) or ``file`` (a path,
expanded, then read).  It is a list of items separated by commas or
newlines: addresses, ``|command`` pipes, ``/path`` files (``/path/`` a
directory), and the special items ``:blackhole:``, ``:fail:``, ``:defer:``,
``:unknown:`` and ``:include:``.  With ``allow_filter``, data whose first
line is "# Exim filter" is an Exim filter (exim_py.filter): what it sets up
becomes child addresses, pipes, files and autoreplies just as a list's
items do.  Sieve filters are not interpreted by exim_py: such data defers
the address with a message saying so.
"""

import grp
import os
import pwd

from exim_py.config.options import BOOL, OCTINT, STRING, LIST, Option, OptionTable
from exim_py.delivery.address import (Address, RouterResult, DECLINE, DEFER, FAIL,
                                      DISCARD, REROUTED)
from exim_py.delivery.addrparse import AddressSyntaxError, extract_address
from exim_py.errors import ExpansionError, ForcedFail
from exim_py.filter import filter_type
from exim_py.routers.base import RouterBase

_BOOLS = [
    ("allow_defer", False), ("allow_fail", False), ("allow_filter", False),
    ("allow_freeze", False), ("check_ancestor", False), ("check_group", False),
    ("check_owner", True), ("filter_prepend_home", True), ("forbid_blackhole", False),
    ("forbid_exim_filter", False), ("forbid_fail", False), ("forbid_file", False),
    ("forbid_filter_dlfunc", False), ("forbid_filter_existstest", False),
    ("forbid_filter_logwrite", False), ("forbid_filter_lookup", False),
    ("forbid_filter_perl", False), ("forbid_filter_readfile", False),
    ("forbid_filter_readsocket", False), ("forbid_filter_reply", False),
    ("forbid_filter_run", False), ("forbid_include", False), ("forbid_pipe", False),
    ("forbid_sieve_filter", False), ("forbid_smtp_code", False),
    ("hide_child_in_errmsg", False), ("ignore_eacces", False), ("ignore_enotdir", False),
    ("one_time", False), ("qualify_preserve_domain", False), ("repeat_use", True),
    ("rewrite", True), ("skip_syntax_errors", False),
]

OPTIONS = OptionTable(
    [Option(name, BOOL, default) for name, default in _BOOLS] + [
        Option("data", STRING, None, "the redirection list", expand=True),
        Option("directory_transport", STRING, None, "transport for /path/ items", expand=True),
        Option("file", STRING, None, "file holding the redirection list", expand=True),
        Option("file_transport", STRING, None, "transport for /path items", expand=True),
        Option("include_directory", STRING, None, "directory :include: files must be in"),
        Option("modemask", OCTINT, 0o022, "mode bits the file must not have"),
        Option("owners", LIST, None, "users who may own the file"),
        Option("owngroups", LIST, None, "groups that may own the file"),
        Option("pipe_transport", STRING, None, "transport for |command items", expand=True),
        Option("qualify_domain", STRING, None, "domain for unqualified addresses", expand=True),
        Option("reply_transport", STRING, None, "transport for filter replies", expand=True),
        Option("sieve_enotify_mailto_owner", STRING, None, "", expand=True),
        Option("sieve_inbox", STRING, "inbox", "", expand=True),
        Option("sieve_subaddress", STRING, None, "", expand=True),
        Option("sieve_useraddress", STRING, None, "", expand=True),
        Option("sieve_vacation_directory", STRING, None, "", expand=True),
        Option("syntax_errors_text", STRING, None, "text heading syntax error reports", expand=True),
        Option("syntax_errors_to", STRING, None, "where to report skipped syntax errors"),
    ])


def validate(dconf):
    """one_time excludes header changes and unseen (spec: one_time); a
    filter needs a user to run as (spec: allow_filter)."""
    from exim_py.errors import ConfigError
    opts = dconf.options
    if opts["allow_filter"] and opts["user"] is None and not opts["check_local_user"]:
        raise ConfigError('"user" or "check_local_user" must be set with "allow_filter"',
                          driver="%s router" % dconf.name)
    if opts["one_time"]:
        for name in ("headers_add", "headers_remove", "unseen"):
            if opts[name] not in (None, False):
                raise ConfigError('"%s" may not be set with "one_time" in the %s router'
                                  % (name, dconf.name), dconf.filename, dconf.line)


class _Special(Exception):
    """A :fail:, :defer:, :unknown: or not-permitted item ends list processing."""

    def __init__(self, result):
        super().__init__(result.message)
        self.result = result


def split_items(text):
    """Split redirection data into items at commas and newlines outside
    quotes, angle brackets and parentheses; '#' lines are comments."""
    lines = [ln for ln in text.split("\n") if not ln.lstrip().startswith("#")]
    text = "\n".join(lines)
    items, cur = [], []
    quote = False
    depth = angle = 0
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text) and quote:
            cur.append(text[i:i + 2])
            i += 2
            continue
        if c == '"' and depth == 0:
            quote = not quote
        elif not quote:
            if c == "(":
                depth += 1
            elif c == ")" and depth:
                depth -= 1
            elif c == "<":
                angle += 1
            elif c == ">" and angle:
                angle -= 1
            elif c in ",\n" and depth == 0 and angle == 0:
                items.append("".join(cur).strip())
                cur = []
                i += 1
                continue
        cur.append(c)
        i += 1
    items.append("".join(cur).strip())
    return [x for x in items if x]


def _ids(liststring, lookup, field):
    """The numeric ids in an owners / owngroups list (names or numbers)."""
    from exim_py.match import iter_list
    ids = set()
    for item in iter_list(liststring or ""):
        if item.isdigit():
            ids.add(int(item))
        else:
            try:
                ids.add(getattr(lookup(item), field))
            except KeyError:
                pass
    return ids


class Router(RouterBase):
    """driver = redirect"""

    def _data(self, addr, ctx):
        """The redirection text, or None to decline."""
        if self.options["data"] is not None:
            return self._expand_option("data", addr, ctx)
        if self.options["file"] is not None:
            path = self._expand_option("file", addr, ctx)
            if path is None:
                return None
            try:
                with open(path, encoding="utf-8", errors="surrogateescape") as f:
                    self._check_file(os.fstat(f.fileno()), path, addr)
                    return f.read()
            except FileNotFoundError:
                return None
            except NotADirectoryError:
                if self.options["ignore_enotdir"]:
                    return None
                raise ExpansionError("failed to open %s (error: Not a directory)" % path)
            except PermissionError:
                if self.options["ignore_eacces"]:
                    return None
                raise ExpansionError("failed to open %s (error: Permission denied)" % path)
        return None

    def _check_file(self, st, path, addr):
        """modemask, check_owner and check_group on the file (spec: those
        options); a file that fails defers the address."""
        opts = self.options
        bad = st.st_mode & opts["modemask"]
        if bad:
            raise ExpansionError("bad mode (0%o) for %s: 0%o bit(s) unexpected"
                                 % (st.st_mode, path, bad))
        user = addr.local_user if opts["check_local_user"] else None
        owners = _ids(opts["owners"], pwd.getpwnam, "pw_uid")
        groups = _ids(opts["owngroups"], grp.getgrnam, "gr_gid")
        if user is not None:
            owners.add(user.pw_uid)
            groups.add(user.pw_gid)
        check_owner = opts["check_owner"] if opts.is_set("check_owner") else \
            bool(user is not None or opts["owners"])
        if check_owner and st.st_uid not in owners:
            raise ExpansionError("bad owner for %s" % path)
        check_group = opts["check_group"] if opts.is_set("check_group") else \
            bool((user is not None and not opts["modemask"] & 0o020) or opts["owngroups"])
        if check_group and st.st_gid not in groups:
            raise ExpansionError("bad group for %s" % path)

    def _expand_option(self, name, addr, ctx):
        """data or file expanded (None for a forced failure); an error
        names the string, as Exim's does."""
        try:
            return ctx.expand(self.options[name], addr)
        except ForcedFail:
            return None
        except ExpansionError as e:
            raise ExpansionError('failed to expand "%s": %s' % (self.options[name], e))

    def route(self, addr, ctx):
        try:
            data = self._data(addr, ctx)
        except ExpansionError as e:
            return RouterResult(DEFER, str(e))
        if data is None or not data.strip():
            return RouterResult(DECLINE)
        # Without allow_filter a filter's first line is only a comment.
        kind = filter_type(data) if self.options["allow_filter"] else None
        if kind == "sieve":
            return RouterResult(DEFER, "Sieve filter files are not supported by exim_py "
                                "(%s router)" % self.name)
        if kind == "exim":
            if self.options["forbid_exim_filter"]:
                return RouterResult(DEFER, "error in filter file: Exim filtering not enabled")
            return self._filter(addr, ctx, data)
        return self._as_list(addr, ctx, data)

    def _filter(self, addr, ctx, data):
        """Run an Exim filter and turn its result into the router's."""
        # Imported here: loading a configuration needs only the option table.
        from exim_py.filter.interpreter import (DEFER as DEFER_FILTER, DELIVERED, ERROR,
                                                FAIL as FAIL_FILTER, FREEZE as FREEZE_FILTER,
                                                Interpreter, body_for_variables)
        opts = self.options
        ectx = ctx.expand_context(addr)
        ectx.body = body_for_variables(ctx.message, ectx.main_option("message_body_visible", 500))
        ectx.forbid = frozenset(name for name in ("run", "readfile", "readsocket", "lookup")
                                if opts["forbid_filter_" + name]) | \
            (frozenset(["exists"]) if opts["forbid_filter_existstest"] else frozenset())
        allowed = [name for name in ("defer", "fail", "freeze") if opts["allow_" + name]]
        message = ctx.message
        interpreter = Interpreter(
            ectx, allowed=allowed, real_log=ctx.mode == "deliver",
            forbid_logwrite=opts["forbid_filter_logwrite"],
            home=addr.home_dir if opts["filter_prepend_home"] else None,
            sn=getattr(message, "filter_numbers", None),
            message_id=message.id if message is not None else "",
            first_delivery=ctx.first_delivery, qualify=self._qualify_domain(addr, ctx))
        result = interpreter.run(data)
        if result.code == ERROR:
            return RouterResult(DEFER, "error in filter file: %s" % result.message)
        # An empty fail/defer/freeze text stays empty, as in Exim (not
        # "Unrouteable address").
        if result.code == FAIL_FILTER:
            return RouterResult(FAIL, result.message, user_message=result.message)
        if result.code in (DEFER_FILTER, FREEZE_FILTER):
            if result.code == FREEZE_FILTER:
                addr.special = "freeze"
            return RouterResult(DEFER, result.message)
        children = []
        for item in result.generated:
            child = self._generated_child(addr, ctx, item)
            child.ignore_error = child.ignore_error or item.noerror
            children.append(child)
        if result.code == DELIVERED:
            return RouterResult(REROUTED, new=children) if children else RouterResult(DISCARD)
        if not children:
            return RouterResult(DECLINE)
        # Nothing "seen": the address also goes on to the next router, as
        # with the generic unseen option.
        clone = Address(addr.address, parent=addr)
        clone.cc_local_part = addr.cc_local_part
        clone.start_router = [r.name for r in ctx.config.routers].index(self.name) + 1
        clone.unseen = True
        return RouterResult(REROUTED, new=[clone] + children)

    def _generated_child(self, addr, ctx, item):
        """The Address for one delivery a filter set up."""
        from exim_py.filter.transports import prepare
        if item.kind == "address":
            return Address(item.text, parent=addr, errors_to=item.errors_to)
        kind = item.kind
        if kind == "file" and item.text.endswith("/"):
            kind = "directory"
        child = self._pfr(addr, ctx, item.text, kind)
        if kind == "reply":
            child.forbidden = bool(self.options["forbid_filter_reply"])
        prepare(child, item, addr.home_dir)
        return child

    def _as_list(self, addr, ctx, data):
        children = []
        discard = False
        self._skipped = 0
        try:
            for item in self._expand_items(addr, ctx, data, depth=0):
                if item == ":blackhole:":
                    discard = True
                    continue
                child = self._child(addr, ctx, item)
                if child is None:
                    continue
                children.append(child)
        except _Special as special:
            return special.result
        if not children:
            if discard:
                return RouterResult(DISCARD)
            if self._skipped:
                return RouterResult(FAIL, "syntax error in redirection data")
            return RouterResult(DECLINE)
        return RouterResult(REROUTED, new=children)

    def _expand_items(self, addr, ctx, data, depth):
        """Items of the list, with :include: files read in and specials checked."""
        for item in split_items(data):
            low = item.lower()
            if low.startswith(":include:"):
                if self.options["forbid_include"]:
                    raise _Special(RouterResult(DEFER, "error in redirect data: included files "
                                                "not permitted"))
                path = item[len(":include:"):].strip()
                try:
                    with open(path, encoding="utf-8", errors="surrogateescape") as f:
                        text = f.read()
                except OSError as e:
                    raise _Special(RouterResult(DEFER, "error in redirect data: failed to open "
                                                "included file %s: %s" % (path, e.strerror)))
                if depth > 10:
                    raise _Special(RouterResult(DEFER, "too many nested :include: files"))
                yield from self._expand_items(addr, ctx, text, depth + 1)
                continue
            for word in (":fail:", ":defer:"):
                if low.startswith(word):
                    allowed = self.options["allow_fail" if word == ":fail:" else "allow_defer"]
                    if not allowed:
                        raise _Special(RouterResult(
                            DEFER, 'error in redirect data: "%s" is not permitted' % item))
                    text = item[len(word):].strip() or None
                    code = FAIL if word == ":fail:" else DEFER
                    raise _Special(RouterResult(code, text, user_message=text))
            if low.startswith(":unknown:"):
                raise _Special(RouterResult(DECLINE))
            if low == ":blackhole:":
                if self.options["forbid_blackhole"]:
                    raise _Special(RouterResult(
                        DEFER, 'error in redirect data: ":blackhole:" is not permitted'))
                yield ":blackhole:"
                continue
            yield item

    def _child(self, addr, ctx, item):
        """The Address for one list item (None for a skipped syntax error)."""
        text = item
        if len(text) >= 2 and text[0] == '"' and text[-1] == '"' and text[1] in "|/":
            text = text[1:-1]
        if text.startswith("|"):
            return self._pfr(addr, ctx, text, "pipe")
        if text.startswith("/"):
            return self._pfr(addr, ctx, text, "directory" if text.endswith("/") else "file")
        no_repeat = text.startswith("\\")
        if no_repeat:
            text = text[1:]
        try:
            address = extract_address(text)
        except AddressSyntaxError as e:
            if self.options["skip_syntax_errors"]:
                self._skipped += 1
                if ctx.logger is not None:
                    ctx.logger.main("%s router: syntax error in redirection data: %s in \"%s\""
                                    % (self.name, e, item))
                return None
            raise _Special(RouterResult(DEFER, 'error in redirect data: %s in "%s"' % (e, item)))
        if "@" not in address or address.endswith("@"):
            address = "%s@%s" % (address, self._qualify_domain(addr, ctx))
        if self.options["check_ancestor"]:
            lowered = address.lower()
            if any(a.address.lower() == lowered for a in addr.ancestors()):
                address = addr.address
        child = Address(address, parent=addr)
        if no_repeat:
            child.skip_routers.add(self.name)
        return child

    def _qualify_domain(self, addr, ctx):
        if self.options["qualify_preserve_domain"]:
            return addr.domain
        if self.options["qualify_domain"] is not None:
            return ctx.expand(self.options["qualify_domain"], addr)
        main = ctx.config.main
        return main.get("qualify_recipient") or main.get("qualify_domain") or \
            main.get("primary_hostname")

    def _pfr(self, addr, ctx, text, kind):
        """A pipe, file, directory or (from a filter) autoreply delivery
        generated by this router.

        A forbidden one is still generated, marked, and fails when its turn
        to be delivered comes ("delivery to pipe forbidden"), as in Exim.
        """
        child = Address(text, parent=addr)
        if kind != "reply":
            forbid = "forbid_pipe" if kind == "pipe" else "forbid_file"
            child.forbidden = bool(self.options[forbid] or self.options["one_time"])
        child.local_part = child.cc_local_part = text
        child.domain = addr.domain
        child.is_pipe = kind == "pipe"
        child.is_file = kind in ("file", "directory")
        child.is_reply = kind == "reply"
        child.directory = kind == "directory"
        child.router = self.name
        child.address_data = addr.address_data
        option = {"pipe": "pipe_transport", "file": "file_transport",
                  "directory": "directory_transport", "reply": "reply_transport"}[kind]
        child.setup_error = None
        if self.options[option] is None:
            child.setup_error = "%s unset in %s router" % (option, self.name)
            return child
        try:
            name = ctx.expand(self.options[option], child).strip()
            child.transport = ctx.transport(name)
        except ExpansionError as e:
            child.setup_error = "failed to expand %s in %s router: %s" % (option, self.name, e)
        except KeyError:
            child.setup_error = "%s transport %s not found in %s router" % (option, name, self.name)
        return child


__all__ = ["Router", "OPTIONS", "split_items"]
