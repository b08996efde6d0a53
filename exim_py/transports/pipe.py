"""The pipe transport: delivering a message to a command's standard input
(spec chapter "The pipe transport").

The command is split into arguments as Exim splits it (white space, with
single and double quotes) and each argument is expanded on its own, so a
variable's value can never become two arguments or reach a shell; only
``use_shell`` hands the whole expanded string to /bin/sh.  The command runs
in a thread-owned subprocess as the delivery's user, with Exim's
environment (LOCAL_PART, DOMAIN, SENDER, RECIPIENT ...).  Its exit status
decides the outcome: 0 is success, a status in ``temp_errors`` defers, any
other fails.
"""

import os
import signal
import subprocess

from exim_py.config.options import BOOL, INT, OCTINT, STRING, TIME, Option, OptionTable
from exim_py.delivery.address import OK, DEFER, FAIL
from exim_py.errors import ExpansionError, ForcedFail
from exim_py.transports import local
from exim_py.transports.base import TransportBase, split_command

OPTIONS = OptionTable([
    Option("allow_commands", STRING, None, "commands a pipe address may run", expand=True),
    Option("batch_id", STRING, None, "batch identifier", expand=True),
    Option("batch_max", INT, 1, "maximum addresses per delivery"),
    Option("check_string", STRING, None, "body lines starting with this are escaped"),
    Option("command", STRING, None, "the command to run", expand=True),
    Option("environment", STRING, None, "extra environment variables", expand=True),
    Option("escape_string", STRING, None, "replacement for check_string"),
    Option("force_command", BOOL, False, "use command even for pipe addresses"),
    Option("freeze_exec_fail", BOOL, False, "freeze when the command cannot be run"),
    Option("freeze_signal", BOOL, False, "freeze when the command is killed by a signal"),
    Option("ignore_status", BOOL, False, "treat every exit status as success"),
    Option("log_defer_output", BOOL, False, "log output on deferral"),
    Option("log_fail_output", BOOL, False, "log output on failure"),
    Option("log_output", BOOL, False, "log any output"),
    Option("max_output", INT, 20480, "maximum output kept"),
    Option("message_prefix", STRING, None, "text written before the message", expand=True),
    Option("message_suffix", STRING, None, "text written after the message", expand=True),
    Option("path", STRING, "/bin:/usr/bin", "PATH for the command", expand=True),
    Option("permit_coredump", BOOL, False, "allow the command to dump core"),
    Option("pipe_as_creator", BOOL, False, "run as the message's creator"),
    Option("restrict_to_path", BOOL, False, "commands must be found in path"),
    Option("return_fail_output", BOOL, False, "return output when the command fails"),
    Option("return_output", BOOL, False, "any output makes the delivery fail"),
    Option("temp_errors", STRING, "75:73", "exit statuses that mean try again later"),
    Option("timeout", TIME, 3600, "time limit for the command"),
    Option("timeout_defer", BOOL, False, "a timeout defers instead of failing"),
    Option("umask", OCTINT, 0o022, "umask for the command"),
    Option("use_bsmtp", BOOL, False, "write batched SMTP"),
    Option("use_classresources", BOOL, False, "use login class resources"),
    Option("use_crlf", BOOL, False, "end lines with CRLF"),
    Option("use_shell", BOOL, False, "run the command through /bin/sh"),
])

GENERIC_DEFAULTS = {"retry_use_local_part": True}

DEFAULT_PREFIX = "From ${if def:return_path{$return_path}{MAILER-DAEMON}} ${tod_bsdinbox}\n"


class Transport(TransportBase):
    """driver = pipe"""

    def deliver(self, message, addresses, ctx):
        from twisted.internet import threads     # Twisted only when delivering
        return threads.deferToThread(self.deliver_blocking, message, addresses, ctx)

    def _argv(self, addr, ctx):
        """The argument vector (expanded argument by argument) and its printable form."""
        opts = self.options
        if addr.is_pipe and not opts["force_command"]:
            text = addr.address[1:].strip()
            expand_args = False
        else:
            if opts["command"] is None:
                raise ExpansionError("no command specified for %s transport" % self.name)
            text = opts["command"]
            expand_args = True
        if opts["use_shell"]:
            command = ctx.expand(text, addr, transport=self) if expand_args else text
            return ["/bin/sh", "-c", command], command
        argv = split_command(text)
        if expand_args:
            argv = [ctx.expand(a, addr, transport=self) for a in argv]
        if not argv:
            raise ExpansionError("no command specified for %s transport" % self.name)
        if not argv[0].startswith("/"):
            # A relative command name is looked up in the path option.
            found = self._search_path(argv[0], addr, ctx)
            if found is None:
                raise ExpansionError('"%s" command not found for %s transport'
                                     % (argv[0], self.name))
            argv[0] = found
        return argv, " ".join(argv)

    def _search_path(self, name, addr, ctx):
        path = ctx.expand(self.options["path"], addr, transport=self)
        for d in path.split(":"):
            candidate = os.path.join(d, name)
            if os.access(candidate, os.X_OK):
                return candidate
        return None

    def _home(self, addr, ctx):
        """The transport's home_directory, else the router's (spec chapter
        "Environment for running local transports")."""
        return self.expand_opt("home_directory", addr, ctx) or addr.home_dir or ""

    def _cwd(self, addr, ctx):
        cwd = self.expand_opt("current_directory", addr, ctx) or addr.current_dir \
            or self._home(addr, ctx) or "/"
        return cwd if os.path.isdir(cwd) else "/"

    def _environment(self, message, addr, ctx, uid):
        import pwd
        main = ctx.config.main
        home = self._home(addr, ctx)
        env = {
            "LOCAL_PART": addr.local_part,
            "LOGNAME": addr.local_part,
            "USER": addr.local_part,
            "DOMAIN": addr.domain,
            "HOME": home,
            "MESSAGE_ID": message.id,
            "PATH": ctx.expand(self.options["path"], addr, transport=self),
            "QUALIFY_DOMAIN": main.get("qualify_domain") or "",
            "RECIPIENT": "%s@%s" % (addr.local_part, addr.domain),
            "SENDER": message.sender or "",
            "SHELL": "/bin/sh",
            "TZ": os.environ.get("TZ", main.get("timezone") or "") or "UTC",
            "LOCAL_PART_PREFIX": addr.prefix,
            "LOCAL_PART_SUFFIX": addr.suffix,
        }
        if uid is not None:
            try:
                pw = pwd.getpwuid(uid)
                env["LOGNAME"] = env["USER"] = pw.pw_name
                env["HOME"] = home or pw.pw_dir
            except KeyError:
                pass
        if self.options["environment"] is not None:
            extra = ctx.expand(self.options["environment"], addr, transport=self)
            for item in extra.split(":"):
                name, eq, value = item.strip().partition("=")
                if eq:
                    env[name] = value
        return env

    def deliver_blocking(self, message, addresses, ctx):
        addr = addresses[0]
        try:
            argv, shown = self._argv(addr, ctx)
            uid, gid = local.delivery_ids(self, addr, ctx)
            env = self._environment(message, addr, ctx, uid)
            data = self._input(message, addresses, ctx)
            cwd = self._cwd(addr, ctx)
        except ExpansionError as e:
            self.fail_all(addresses, DEFER, str(e))
            return
        for a in addresses:
            a.transport_count = len(data)
            a.return_path = self.return_path(message, a, ctx)
        outcome, text, errno_ = self._run(argv, shown, env, uid, gid, addr, data, cwd)
        for a in addresses:
            a.set_result(outcome, text, errno_)
            a.return_output = addr.return_output
            if outcome is DEFER:
                a.add_retry("T:%s@%s" % (a.local_part, a.domain), error="*", message=text)
            elif outcome is OK:
                a.add_retry("T:%s@%s" % (a.local_part, a.domain), delete=True)

    def _input(self, message, addresses, ctx):
        addr = addresses[0]
        rp = self.return_path(message, addr, ctx)
        parts = []
        for name, default in (("message_prefix", DEFAULT_PREFIX), ("message_suffix", "\n")):
            value = self.options[name] if self.options.is_set(name) else \
                (None if self.options["use_bsmtp"] else default)
            try:
                parts.append(b"" if value is None else ctx.expand(
                    value, addr, transport=self, extra={"return_path": rp}).encode(
                        "utf-8", "surrogateescape"))
            except ForcedFail:
                parts.append(b"")
        eol = b"\r\n" if self.options["use_crlf"] else b"\n"
        body = b"".join(self.message_chunks(message, addresses, ctx, eol=eol,
                                            check_string=self.options["check_string"],
                                            escape_string=self.options["escape_string"]))
        return parts[0] + body + parts[1]

    def _run(self, argv, shown, env, uid, gid, addr, data, cwd):
        """Run the command in ``cwd``; returns (Result, message, errno)."""
        opts = self.options
        kwargs = {}
        if uid is not None and os.geteuid() == 0:
            kwargs["user"] = uid
            kwargs["group"] = gid
            kwargs["extra_groups"] = []
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                    umask=opts["umask"], start_new_session=True, **kwargs)
        except OSError as e:
            result = DEFER if opts["freeze_exec_fail"] else FAIL
            addr.special = "freeze" if opts["freeze_exec_fail"] else None
            return result, "Failed to execute %s for %s transport: %s" % (
                argv[0], self.name, e.strerror), e.errno
        try:
            out, _ = proc.communicate(data, timeout=opts["timeout"] or None)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            result = DEFER if opts["timeout_defer"] else FAIL
            return result, "pipe delivery process timed out", None
        except BrokenPipeError:
            out, _ = proc.communicate()
        out = (out or b"")[:opts["max_output"]].decode("utf-8", "replace")
        status = proc.returncode
        if status == 0 or opts["ignore_status"]:
            if opts["return_output"] and out:
                # The output goes back to the sender in the bounce (Exim).
                addr.return_output = out
                return FAIL, "return message generated", None
            return OK, None, None
        if status < 0:
            text = "Child process of %s transport (running command \"%s\") was terminated " \
                   "by signal %d (%s)" % (self.name, shown, -status, signal.Signals(-status).name)
            if opts["freeze_signal"]:
                addr.special = "freeze"
                return DEFER, text, None
            return FAIL, text, None
        temp = [int(x) for x in str(opts["temp_errors"]).split(":") if x.strip().isdigit()]
        text = "Child process of %s transport returned %d%s from command: %s" % (
            self.name, status, _meaning(status), argv[0])
        if (opts["return_fail_output"] or opts["return_output"]) and out:
            addr.return_output = out
        if opts["temp_errors"] == "*" or status in temp:
            return DEFER, text, None
        return FAIL, text, None


def _meaning(status):
    """Exim adds what a sysexits.h status could mean."""
    meanings = {64: "usage or syntax error", 65: "error in input data",
                66: "input data missing", 67: "user nonexistent",
                68: "host nonexistent", 69: "service unavailable",
                70: "internal software error", 71: "internal OS error",
                72: "system file missing", 73: "cannot create output file",
                74: "input/output error", 75: "temporary error",
                76: "protocol error", 77: "permission denied",
                78: "configuration error"}
    if status in meanings:
        return " (could mean %s)" % meanings[status]
    return ""
