"""Checks Exim makes once a section has been read (readconf.c, after the main
options; each driver's init function for the generic transport options;
auths_init for authenticators), with Exim's messages.

Each check calls ``fail(ConfigError)``, which raises or collects (for -bV).
"""

import importlib
import re

from exim_py.config.retry_rewrite import parse_rewrite
from exim_py.config.reader import LogicalLine
from exim_py.errors import ConfigError
from exim_py.expand.lists import split_list

_SYSLOG_FACILITIES = ("mail", "user", "news", "uucp", "local0", "local1", "local2", "local3",
                      "local4", "local5", "local6", "local7", "daemon")
_LOCALHOST_MAX = 16
_RATELIMIT = re.compile(r"\s*\d+\s*,\s*[0-9smhdw.]+\s*,\s*[0-9.]+\s*,\s*\S+\s*$")


def check_main(main, fail):
    """The main section's consistency rules (after readconf_main has read it)."""
    if main["local_sender_retain"] and main["local_from_check"]:
        fail(ConfigError("both local_from_check and local_sender_retain are set; "
                         "this combination is not allowed"))
    if main["retry_interval_max"] > 86400:
        main._store("retry_interval_max", 86400, given=main.is_set("retry_interval_max"))
    if main["remote_max_parallel"] <= 0:
        main._store("remote_max_parallel", 1, given=main.is_set("remote_max_parallel"))
    if main["smtp_accept_max"] == 0 and (main["smtp_accept_queue"] > 0
                                         or main["smtp_accept_max_per_host"] is not None):
        fail(ConfigError("smtp_accept_max must be set if smtp_accept_queue or "
                         "smtp_accept_max_per_host is set"))
    _check_log_file_path(main["log_file_path"] or "", fail)
    facility = main["syslog_facility"]
    if facility is not None:
        name = facility[4:] if facility[:4].lower() == "log_" else facility
        if name.lower() not in _SYSLOG_FACILITIES:
            fail(ConfigError('failed to interpret syslog_facility "%s"' % facility))
    for option in ("smtp_ratelimit_mail", "smtp_ratelimit_rcpt"):
        value = main[option]
        if value is not None and not _RATELIMIT.match(value):
            fail(ConfigError("malformed ratelimit data: %s" % value))
    reply_to = main["errors_reply_to"]
    if reply_to is not None and "$" not in reply_to and "@" not in reply_to:
        fail(ConfigError("errors_reply_to (%s) does not contain a domain" % reply_to))
    _check_localhost_number(main["localhost_number"], fail)
    # The names are log.py's; without its table only the syntax is checked.
    selectors = getattr(importlib.import_module("exim_py.log"), "SELECTORS", None)
    if main["log_selector"]:
        _check_log_selector(main["log_selector"], selectors, fail)


def _check_log_selector(value, selectors, fail):
    """+name / -name items, adjacent or spaced (readconf.c decode_bits), names from log.py."""
    pos = 0
    while True:
        while pos < len(value) and value[pos].isspace():
            pos += 1
        if pos >= len(value):
            return
        if value[pos] not in "+-":
            fail(ConfigError('malformed log_selector setting: + or - expected but found "%s"'
                             % value[pos:]))
            return
        m = re.compile(r"[A-Za-z0-9_]*").match(value, pos + 1)
        name = m.group(0)
        if name != "all" and selectors is not None and name not in selectors:
            fail(ConfigError("unknown log_selector setting: %s" % value[pos:m.end()]))
            return
        pos = m.end()


def _check_log_file_path(value, fail):
    """Each file name needs one %s, and may have one %D or %M besides."""
    if "$" in value:
        return          # checked once expanded, when the log is opened
    for path in value.split(":"):
        path = path.strip()
        if not path or path == "syslog":
            continue
        if "%s" not in path:
            fail(ConfigError('log_file_path "%s" does not contain "%%s"' % path))
        elif re.search(r"%(?![DM])|%[DM].*%", path.replace("%s", "", 1)):
            fail(ConfigError('log_file_path "%s" contains unexpected "%%" character' % value))


def _check_localhost_number(value, fail):
    if value is None or "$" in value:
        return
    text = value.strip()
    try:
        number = int(text, 0) if not re.match(r"0[0-7]+$", text) else int(text, 8)
    except ValueError:
        fail(ConfigError("localhost_number value is not a number: %s" % value))
        return
    if number > _LOCALHOST_MAX:
        fail(ConfigError("localhost_number is greater than the maximum allowed value (%d)"
                         % _LOCALHOST_MAX))


def check_headers_rewrite(value, filename, line):
    """A transport's headers_rewrite: rewrite rules that touch only headers."""
    for rule in split_list(value):
        parsed = parse_rewrite(LogicalLine(rule, filename, line))
        if set(parsed.flags) & set("EFTS"):
            raise ConfigError("rewrite rule specifies a non-header rewrite - not allowed at "
                              "transport time -", filename, line)


def check_transport(dconf, fail):
    """Rules Exim's transport init applies to every transport's generic options."""
    options = dconf.options
    if options["body_only"] and options["headers_only"]:
        fail(ConfigError("%s transport: body_only and headers_only are mutually exclusive"
                         % dconf.name))
    if isinstance(options["user"], int) and options["group"] is None:
        # A user given as a number has no passwd entry to take the group from.
        fail(ConfigError("user set without group for the %s transport" % dconf.name))


_SELF = ("freeze", "defer", "fail", "send", "pass")


def check_router(dconf, fail):
    """Rules Exim's router init applies to every router's generic options."""
    value = dconf.options["self"]
    if value not in _SELF and not value.startswith("reroute:"):
        fail(ConfigError("%s is not valid for the self option" % value,
                         driver="%s router" % dconf.name))


def _sides(dconf):
    """(server, client): whether an authenticator has server or client settings."""
    options = dconf.options
    server = options["server_condition"] is not None
    client = False
    for opt in options.table:
        if options.is_set(opt.name):
            server = server or (opt.name.startswith("server_") and opt.name not in
                                ("server_advertise_condition", "server_debug_print",
                                 "server_mail_auth_condition", "server_set_id"))
            client = client or (opt.name.startswith("client_") and opt.name not in
                                ("client_condition", "client_set_id"))
    return server, client


def check_authenticators(authenticators, fail):
    """Two server (or two client) authenticators may not share a public name."""
    sides = [_sides(a) for a in authenticators]
    for i, first in enumerate(authenticators):
        for j in range(i + 1, len(authenticators)):
            second = authenticators[j]
            if first.options["public_name"].lower() != second.options["public_name"].lower():
                continue
            both_client = sides[i][1] and sides[j][1]
            if both_client or (sides[i][0] and sides[j][0]):
                fail(ConfigError("two %s authenticators (%s and %s) have the same public name (%s)"
                                 % ("client" if both_client else "server", first.name,
                                    second.name, first.options["public_name"])))
                return
