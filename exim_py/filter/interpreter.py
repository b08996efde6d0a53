"""Obeying a parsed Exim filter: conditions, variables and the actions it sets up.

The interpreter does not deliver anything itself.  It returns a
FilterResult whose ``generated`` list holds the deliveries the filter asked
for (addresses, files, pipes and autoreplies); the redirect router turns
them into child addresses exactly as it does the items of a forward file.
In test mode (``exim -bf``) each action is described on the test output
instead, in the words Exim uses.
"""

import os
import re

from exim_py.errors import ExpansionError
from exim_py.expand import expand_latin
from exim_py.expand.regex import compile_regex, set_numeric
from exim_py.expand.rfc822 import extract_address, find_address_end
from exim_py.expand.strings import printing as _printing
from exim_py.filter.parser import MAIL_ARGS, FilterSyntaxError, parse

DELIVERED = "delivered"        # a significant action was set up
NOTDELIVERED = "notdelivered"  # nothing significant: normal delivery goes on
DEFER, FAIL, FREEZE, ERROR = "defer", "fail", "freeze", "error"

# $n0..$n9 and $sn0..$sn9 exist only while a filter runs, so they are put
# into each string before the expansion engine sees it (they are integers:
# the substitution cannot make new expansion syntax).
_NVAR = re.compile(r"(?<!\\)\$(?:\{(s?n[0-9])\}|(s?n[0-9])(?![A-Za-z0-9_]))")

# Senders whose mail is not personal (besides the recipient itself).
_NOT_PERSONAL_FROM = ("^server@", "^daemon@", "^root@", "^listserv@", "^majordomo@",
                      "^.*?-request@", "^owner-[^@]+@")


def _shown(text):
    """Text as Exim shows it in test output (string_printing, tabs kept)."""
    return _printing(text, tab=True)


class Generated:
    """One delivery a filter set up.

    ``kind`` is "address", "file", "pipe" or "reply"; ``text`` the address,
    path or command; ``errors_to`` (deliver), ``mode`` (save), ``reply``
    (mail/vacation: keyword -> expanded value, plus ``expand_file`` and
    ``return_message``), ``thisaddress`` and ``numeric`` (pipe: values for
    expanding its arguments later), ``noerror``.
    """

    def __init__(self, kind, text, noerror=False):
        self.kind = kind
        self.text = text
        self.noerror = noerror
        self.errors_to = None
        self.mode = None
        self.reply = None
        self.thisaddress = None
        self.numeric = []


class FilterResult:
    """``code`` (DELIVERED, NOTDELIVERED, DEFER, FAIL, FREEZE, ERROR),
    ``message`` (the defer/fail/freeze text, or the error), ``generated``,
    and the final values of $n0..$n9 in ``numbers``."""

    def __init__(self, code, message=None, generated=(), numbers=None):
        self.code = code
        self.message = message
        self.generated = list(generated)
        self.numbers = numbers or [0] * 10


class _Stop(Exception):
    """finish, defer, fail, freeze or an error ends the filter."""

    def __init__(self, code, message=None):
        super().__init__(message)
        self.code = code
        self.message = message


class Interpreter:
    """Runs one filter against an ExpandContext.

    ``ctx`` must have $local_part, $domain (and prefix/suffix), the message's
    headers and the sender variables.  Keywords: ``system`` (a system
    filter), ``allowed`` (which of defer, fail, freeze may be used),
    ``test`` (a callable taking one output line: -bf mode), ``real_log``
    (logwrite really writes), ``forbid_logwrite`` (logwrite is an error),
    ``home`` (prepended to relative save paths),
    ``sn`` (the system filter's $n values, for $sn0..$sn9), ``message_id``
    (empty when no message is being delivered: address testing),
    ``manually_thawed``, ``first_delivery``, ``qualify`` (domain for
    unqualified addresses).
    """

    def __init__(self, ctx, system=False, allowed=(), test=None, real_log=False,
                 forbid_logwrite=False, home=None, sn=None, message_id="", manually_thawed=False,
                 first_delivery=True, qualify=None):
        self.ctx = ctx
        self.system = system
        self.allowed = allowed
        self.test = test
        self.real_log = real_log
        self.forbid_logwrite = forbid_logwrite
        self.home = home
        self.sn = list(sn or [0] * 10)
        self.n = [0] * 10
        self.message_id = message_id
        self.manually_thawed = manually_thawed
        self.first_delivery = first_delivery
        self.qualify = qualify
        self.delivered = False
        self.generated = []
        self.log_file = None
        self.log_mode = 0o600
        self.thisaddress = None

    # -- running -------------------------------------------------------

    def run(self, text):
        """Parse and obey filter ``text``: a FilterResult."""
        try:
            commands = parse(text, system=self.system, allowed=self.allowed)
        except FilterSyntaxError as e:
            return FilterResult(ERROR, str(e))
        try:
            self._obey(commands)
            code, message = (DELIVERED if self.delivered else NOTDELIVERED), None
        except _Stop as stop:
            code, message = stop.code, stop.message
        finally:
            # "headers charset" lasts only while the filter runs.
            self.ctx.__dict__.pop("main_option", None)
        generated = [] if code == ERROR else self.generated
        return FilterResult(code, message, generated, self.n)

    def _say(self, line):
        self.test(line)

    def _expand(self, string, what):
        def value(m):
            name = m.group(1) or m.group(2)
            numbers = self.sn if name.startswith("s") else self.n
            return str(numbers[int(name[-1])])
        try:
            return expand_latin(_NVAR.sub(value, string), self.ctx)
        except ExpansionError as e:
            raise _Stop(ERROR, 'failed to expand "%s" in %s: %s' % (string, what, e))

    def _obey(self, commands):
        for cmd in commands:
            if cmd.seen:
                self.delivered = True
            getattr(self, "_do_" + cmd.name)(cmd)

    def _expanded_args(self, cmd):
        return [self._expand(a, "%s command" % cmd.name) for a in cmd.args]

    # -- commands --------------------------------------------------------

    def _do_add(self, cmd):
        value, target = self._expanded_args(cmd)
        if len(target) != 2 or target[0] != "n" or not target[1].isdigit():
            raise _Stop(ERROR, 'unknown variable "%s" in "add" command' % target)
        while value.startswith("--"):
            value = value[2:]
        number = _c_integer(value)
        if number is None:
            raise _Stop(ERROR, 'malformed number "%s" in "add" command' % value)
        self.n[int(target[1])] += number
        if self.test:
            self._say("Add %d to n%s" % (number, target[1]))

    def _do_deliver(self, cmd):
        args = self._expanded_args(cmd)
        addresses = []
        for text in args:
            errors = []
            found = extract_address(text, errors=errors)
            if found is None:
                raise _Stop(ERROR, 'malformed address "%s" in filter file: %s'
                            % (text, errors[0] if errors else "syntax error"))
            address = found[0]
            if "@" not in address and self.qualify:
                address = "%s@%s" % (address, self.qualify)
            addresses.append(address)
        errors_to = addresses[1] if len(addresses) > 1 else None
        if errors_to is not None and not self.system:
            own = "%s@%s" % (self.ctx.get("local_part") or "", self.ctx.get("domain") or "")
            if own.lower() != errors_to.lower():
                raise _Stop(ERROR, "errors_to must point to the caller's address")
        if self.test:
            self._say("%seliver message to: %s%s%s" % (
                "D" if cmd.seen else "Unseen d", addresses[0],
                " (noerror)" if cmd.noerror else "",
                " errors_to %s" % errors_to if errors_to else ""))
            return
        item = Generated("address", addresses[0], cmd.noerror)
        item.errors_to = errors_to
        self.generated.append(item)

    def _do_save(self, cmd):
        (path,) = self._expanded_args(cmd)
        if self.test:
            self._say("%save message to: %s%s%s" % (
                "S" if cmd.seen else "Unseen s", path,
                "" if cmd.mode is None else " %04o" % cmd.mode,
                " (noerror)" if cmd.noerror else ""))
            return
        if not path.startswith("/") and self.home:
            path = "%s/%s" % (self.home, path)
        item = Generated("file", path, cmd.noerror)
        item.mode = cmd.mode
        self.generated.append(item)

    def _do_pipe(self, cmd):
        # The command is not expanded here: the pipe transport expands each
        # argument after splitting it, with $thisaddress and $0... as now.
        command = cmd.args[0]
        if self.test:
            self._say("%sipe message to: %s%s" % ("P" if cmd.seen else "Unseen p", command,
                                                  " (noerror)" if cmd.noerror else ""))
            return
        if not command.startswith("|"):
            command = "|" + command
        item = Generated("pipe", command, cmd.noerror)
        item.thisaddress = self.thisaddress or ""
        item.numeric = list(self.ctx.numeric)
        self.generated.append(item)

    def _do_logfile(self, cmd):
        (path,) = self._expanded_args(cmd)
        self.log_file = path
        self.log_mode = 0o600 if cmd.mode is None else cmd.mode
        if self.test:
            self._say("%sogfile %s" % ("Seen l" if cmd.seen else "L", path))

    def _do_logwrite(self, cmd):
        (text,) = self._expanded_args(cmd)
        if self.test:
            self._say('%sogwrite "%s"' % ("Seen l" if cmd.seen else "L", _shown(text)))
            return
        if self.forbid_logwrite:
            raise _Stop(ERROR, "logwrite command forbidden")
        if not self.real_log:
            return          # verification and address testing write nothing
        if self.log_file is None:
            raise _Stop(ERROR, 'attempt to obey "logwrite" command without a previous '
                        '"logfile"')
        try:
            fd = os.open(self.log_file, os.O_CREAT | os.O_APPEND | os.O_WRONLY, self.log_mode)
        except OSError as e:
            raise _Stop(ERROR, 'failed to open filter log file "%s": %s'
                        % (self.log_file, e.strerror))
        try:
            os.write(fd, text.encode("latin-1", "replace"))
        finally:
            os.close(fd)

    def _do_headers(self, cmd):
        value = self._expand(cmd.args[0], "headers command")
        what = cmd.args[1]
        if self.test:
            self._say('Headers %s "%s"' % (what, _shown(value)))
        if what == "charset":
            self._set_headers_charset(value)
        elif what == "add":
            self._add_header(value)
        elif what == "remove":
            from exim_py.match import iter_list
            for name in iter_list(value):
                self._remove_header(name)

    def _set_headers_charset(self, charset):
        """Header variables decode into ``charset`` from now on: the
        context's headers_charset option is shadowed for this filter."""
        ctx = self.ctx
        main_option = type(ctx).main_option

        def shadowed(name, default=None):
            return charset if name == "headers_charset" else main_option(ctx, name, default)
        ctx.main_option = shadowed

    def _add_header(self, text):
        from exim_py.envelope import Header
        from exim_py.expand.headers import header_type
        text = text.lstrip()
        if text:
            if not text.endswith("\n"):
                text += "\n"
            self.ctx.headers.append(Header(text, header_type(text.split(":", 1)[0].strip())))

    def _remove_header(self, name):
        name = name.rstrip(":").lower()
        for h in self.ctx.headers:
            if h.flag != "*" and h.text.split(":", 1)[0].strip().lower() == name:
                h.flag = "*"

    def _do_testprint(self, cmd):
        (text,) = self._expanded_args(cmd)
        if self.test:
            self._say("Testprint: %s" % _shown(text))

    def _do_finish(self, cmd):
        if self.test:
            self._say("%sinish" % ("Seen f" if cmd.seen else "F"))
        raise _Stop(DELIVERED if self.delivered else NOTDELIVERED)

    def _ending(self, cmd, code):
        (text,) = self._expanded_args(cmd)
        if len(text) > 1024:
            text = text[:1000] + " ... (truncated)"
        text = _shown(text)
        if self.test:
            self._say('%s text "%s"' % (cmd.name.capitalize(), text))
        raise _Stop(code, text)

    def _do_defer(self, cmd):
        self._ending(cmd, DEFER)

    def _do_fail(self, cmd):
        self._ending(cmd, FAIL)

    def _do_freeze(self, cmd):
        self._ending(cmd, FREEZE)

    def _do_if(self, cmd):
        saved = self.thisaddress
        for cond, body in cmd.branches:
            if cond is None or self._test(cond):
                self._obey(body)
                break
        self.thisaddress = saved
        self._set_thisaddress()

    def _do_mail(self, cmd):
        sender = self.ctx.get("return_path")
        if sender is None:
            sender = self.ctx.get("sender_address")
        if not sender:
            if self.test:
                self._say("%s command ignored because return_path is empty" % cmd.name)
            return
        values = {}
        for key in MAIL_ARGS:
            if key in cmd.mail:
                values[key] = self._check_mail_arg(
                    cmd, key, self._expand(cmd.mail[key], "%s command" % cmd.name))
        if self.test:
            self._say("%sail to: %s%s%s" % ("Seen m" if cmd.seen else "M",
                                          values.get("to", "<default>"),
                                          " (vacation)" if cmd.name == "vacation" else "",
                                          " (noerror)" if cmd.noerror else ""))
            for key in MAIL_ARGS[1:]:
                if key in values:
                    self._say("%7s: %s%s" % (key, _shown(values[key]),
                                             " (expanded)" if key == "file" and cmd.expand_file
                                             else ""))
            if cmd.return_message:
                self._say("Return original message")
            return
        to = values.get("to")
        if to is None:
            to = self._expand("$reply_address", "mail command")
        to = to.lstrip().replace("\n", " ")
        values["to"] = to
        if "once_repeat" in values:
            from exim_py.config.options import read_time
            try:
                seconds = read_time(values["once_repeat"])
            except Exception:
                seconds = -1
            if seconds < 0:
                raise _Stop(ERROR, 'Bad time value for "once_repeat" in mail or vacation '
                            'command: %s' % values["once_repeat"])
        item = Generated("reply", _reply_address(to), cmd.noerror)
        item.reply = dict(values, expand_file=cmd.expand_file,
                          return_message=cmd.return_message)
        self.generated.append(item)

    _do_vacation = _do_mail

    def _check_mail_arg(self, cmd, key, value):
        """Exim's checks on mail/vacation values: header values may only
        continue over lines, file names must be printable."""
        index = MAIL_ARGS.index(key)
        text_index = MAIL_ARGS.index("text")
        if index == text_index:
            return value
        for i, c in enumerate(value):
            if index > text_index:
                if not (c.isprintable() and c.isascii()):
                    raise _Stop(ERROR, 'non-printing character in "%s" in %s command'
                                % (_shown(value), cmd.name))
            elif c == "\n" and not value[i + 1:i + 2].isspace():
                if key != "extra_headers":
                    raise _Stop(ERROR, '\\n not followed by space in "%s" in %s command'
                                % (_shown(value)[:1024], cmd.name))
                if not re.match(r"[^\s:]+:", value[i + 1:]):
                    raise _Stop(ERROR, '\\n not followed by space or valid header name in '
                                '"%s" in %s command' % (_shown(value)[:1024], cmd.name))
        return value

    # -- conditions --------------------------------------------------------

    def _set_thisaddress(self):
        self.ctx.set("thisaddress", self.thisaddress)

    def _test(self, cond):
        kind = cond.kind
        if kind == "and":
            value = self._test(cond.left) and self._test(cond.right)
        elif kind == "or":
            value = self._test(cond.left) or self._test(cond.right)
        elif kind == "personal":
            value = not self.system and self._personal(cond.aliases)
        elif kind == "delivered":
            value = self.delivered
        elif kind == "error_message":
            value = bool(self.message_id) and not self.ctx.get("sender_address")
        elif kind == "first_delivery":
            value = bool(self.test) or not self.message_id or self.first_delivery
        elif kind == "manually_thawed":
            value = bool(self.message_id) and self.manually_thawed
        elif kind == "foranyaddress":
            value = self._for_any_address(cond)
        else:
            value = self._compare(kind, self._expand(cond.left, "filter file"),
                                  self._expand(cond.right, "filter file"))
        return value == cond.positive

    def _for_any_address(self, cond):
        text = self._expand(cond.left, "filter file")
        state = {"allow_group": True, "found_group": False}
        while text:
            end = find_address_end(text)
            found = extract_address(text[:end], state=state)
            if found is not None:
                self.thisaddress = found[0]
                self._set_thisaddress()
                if self._test(cond.right):
                    return True
            if end >= len(text):
                break
            text = text[end + 1:]
        return False

    def _compare(self, kind, left, right):
        low = kind.islower()
        if low:
            left_c, right_c = left.lower(), right.lower()
        else:
            left_c, right_c = left, right
        base = kind.lower()
        if base == "is":
            return left_c == right_c
        if base == "contains":
            return right_c in left_c
        if base == "begins":
            return left_c.startswith(right_c)
        if base == "ends":
            return left_c.endswith(right_c)
        if base == "matches":
            try:
                regex = compile_regex(("(?i)" if low else "") + right)
            except ExpansionError as e:
                raise _Stop(ERROR, 'error while compiling regular expression "%s": %s'
                            % (right, str(e).split('": ', 1)[-1]))
            m = regex.search(left)
            if m:
                set_numeric(self.ctx, m)
            return m is not None
        numbers = []
        for text in (left, right):
            value = _size_number(text)
            if value is None:
                raise _Stop(ERROR, 'malformed numerical string "%s"' % text)
            numbers.append(value)
        return numbers[0] > numbers[1] if base == "above" else numbers[0] < numbers[1]

    def _personal(self, aliases):
        """Exim's test for a message sent personally to this recipient."""
        headers = [h for h in self.ctx.headers if h.flag != "*"]
        if any(h.text[:5].lower() == "list-" for h in headers):
            return False
        lp = self.ctx.get("local_part") or ""
        domain = self.ctx.get("domain") or ""
        selves = ["%s@%s" % (lp, domain)]
        prefix = self.ctx.get("local_part_prefix") or ""
        suffix = self.ctx.get("local_part_suffix") or ""
        if prefix or suffix:
            selves.append("%s%s%s@%s" % (prefix, lp, suffix, domain))
        names = [self._expand(a, "filter file") for a in aliases] + selves
        sender = self.ctx.get("sender_address")
        return (self._header_has("to:", names, True)
                and not self._header_has("from:", names + list(_NOT_PERSONAL_FROM), True)
                and not self._header_has("auto-submitted:", ["auto-"], False)
                and not self._header_has("precedence:", ["bulk", "list", "junk"], False)
                and (sender is None or sender != ""))

    def _header_has(self, name, patterns, addresses):
        """Whether any ``name`` header matches one of ``patterns`` (a
        pattern starting with ^ is a caseless regex; others compare a whole
        address caselessly, or appear anywhere in a non-address header)."""
        for h in self.ctx.headers:
            if h.flag == "*" or h.text[:len(name)].lower() != name:
                continue
            value = h.text[len(name):]
            candidates = []
            if addresses:
                while value.strip():
                    end = find_address_end(value)
                    found = extract_address(value[:end].strip())
                    if found is None:
                        break
                    candidates.append(found[0])
                    value = value[end + 1:]
            else:
                candidates.append(value)
            for pattern in patterns:
                for text in candidates:
                    if pattern.startswith("^"):
                        if compile_regex("(?i)" + pattern).search(text):
                            return True
                    elif addresses and text.lower() == pattern.lower():
                        return True
                    elif not addresses and pattern.lower() in text.lower():
                        return True
        return False


def body_for_variables(message, visible):
    """Enough of ``message``'s body for $message_body and $message_body_end
    (its first and last ``visible`` bytes), as text, read from the -D file."""
    if message is None or message.body_path is None:
        return None
    with message.open_body() as f:
        head = f.read(visible)
        size = message.body_size()
        if size > 2 * visible:
            f.seek(-visible, os.SEEK_END)
        tail = f.read()
    return (head + tail).decode("latin-1")


def _reply_address(to):
    """The address an autoreply is logged as: ">" and the recipients it
    goes to, comma-separated (cut short after 256 characters), or
    ">**bad-reply**" when there are none, as Exim names it."""
    recipients = []
    length = 0
    while to:
        end = find_address_end(to)
        found = extract_address(to[:end])
        if found is not None and found[0]:
            recipients.append(found[0])
            length += len(found[0]) + 1
            if length > 256:
                return ">" + ",".join(recipients) + ", ..."
        to = to[end + 1:].lstrip()
    return ">" + ",".join(recipients) if recipients else ">**bad-reply**"


def _c_integer(text):
    """strtol(text, 0): decimal, 0x hex or 0 octal, with an optional sign."""
    m = re.match(r"\s*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)$", text)
    if not m:
        return None
    digits = m.group(2)
    value = int(digits, 16) if digits[:2].lower() == "0x" else \
        int(digits, 8) if digits.startswith("0") else int(digits)
    return -value if m.group(1) == "-" else value


def _size_number(text):
    """A number for above/below: an integer with an optional K or M."""
    m = re.match(r"\s*([+-]?(?:0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*))([kK]?)([mM]?)\s*$", text)
    if not m:
        return None
    value = _c_integer(m.group(1))
    if m.group(2):
        value *= 1024
    if m.group(3):
        value *= 1024 * 1024
    return value

