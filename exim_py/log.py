"""Exim's main, reject and panic logs: file names, line format and log_selector.

Spec chapter "Log files".  Every line starts with ``YYYY-MM-DD HH:MM:SS``
(``.mmm`` with the millisec selector, the zone with log_timezone, `` [pid]``
with the pid selector), then the message id when the line is about one
message.  Lines are appended with one write() on an O_APPEND descriptor, so
lines from threads and from other processes never interleave; before each
write the file's name is stat()ed and the file reopened when it was renamed
or removed (log cycling), as Exim does.
"""

import os
import re
import syslog
import threading
import time

from exim_py.errors import ConfigError
from exim_py.spool.owner import make_dirs

# Every log_selector name Exim 4.96 (Debian's build) accepts, with its default.
SELECTORS = {
    "8bitmime": False, "acl_warn_skipped": True, "address_rewrite": False,
    "all_parents": False, "arguments": False, "connection_reject": True,
    "delay_delivery": True, "deliver_time": False, "delivery_size": False,
    "dkim": True, "dkim_verbose": False, "dnslist_defer": True, "dnssec": False,
    "etrn": True, "host_lookup_failed": True, "ident_timeout": False,
    "incoming_interface": False, "incoming_port": False,
    "lost_incoming_connection": True, "millisec": False, "msg_id": True,
    "msg_id_created": False, "outgoing_interface": False, "outgoing_port": False,
    "pid": False, "pipelining": False, "protocol_detail": False, "proxy": False,
    "queue_run": True, "queue_time": False, "queue_time_exclusive": False,
    "queue_time_overall": False, "receive_time": False, "received_recipients": False,
    "received_sender": False, "rejected_header": True, "retry_defer": True,
    "return_path_on_delivery": False, "sender_on_delivery": False,
    "sender_verify_fail": True, "size_reject": True, "skip_delivery": True,
    "smtp_confirmation": True, "smtp_connection": False,
    "smtp_incomplete_transaction": False, "smtp_mailauth": False,
    "smtp_no_mail": False, "smtp_protocol_error": False, "smtp_syntax_error": False,
    # not in 4.96: Exim's current SPF items on <= lines (acl/spf.py)
    "spf": False, "spf_verbose": False,
    "subject": False, "tls_certificate_verified": True, "tls_cipher": True,
    "tls_peerdn": False, "tls_resumption": False, "tls_sni": False,
    "unknown_in_list": False,
}

_SYSLOG_PRIORITY = {"main": syslog.LOG_INFO, "reject": syslog.LOG_NOTICE, "panic": syslog.LOG_ALERT}
_SYSLOG_CHUNK = 870


def parse_selector(text, filename=None, line=None):
    """The set of selector names a log_selector value turns on."""
    chosen = {name for name, on in SELECTORS.items() if on}
    # Exim's decode_bits reads a name up to the first character that is not
    # alphanumeric or "_", so "+a+b" (no space) is two settings.
    for word in re.findall(r"[+-][A-Za-z0-9_]*|[^\s+-]\S*", text or ""):
        sign, name = word[:1], word[1:]
        if sign not in "+-" or not (name == "all" or name in SELECTORS):
            raise ConfigError("unknown log_selector setting: %s" % word, filename, line)
        names = set(SELECTORS) if name == "all" else {name}
        if sign == "+":
            chosen |= names
        else:
            chosen -= names
    return frozenset(chosen)


def _main_value(config, name, default=None):
    if config is None:
        return default
    try:
        value = config.main[name]
    except (KeyError, AttributeError):
        return default
    return default if value is None else value


def log_paths(template, spool_directory):
    """``log_file_path`` → (list of file templates with %s, use syslog?)."""
    items = [item.strip() for item in (template or "").split(":")] if template is not None else [""]
    files, use_syslog = [], False
    for item in items[:2]:
        if item == "syslog":
            use_syslog = True
        elif item == "":
            files.append(os.path.join(spool_directory or ".", "log", "%slog"))
        else:
            files.append(item)
    if not files and not use_syslog:
        files.append(os.path.join(spool_directory or ".", "log", "%slog"))
    return files, use_syslog


def file_name(template, which, now=None):
    """One log's file name: %s → main/reject/panic; %D/%M datestamps (never on the panic log)."""
    if "%D" not in template and "%M" not in template:
        return template.replace("%s", which)
    if which == "panic":
        # Drop the datestamp and one separator next to it (spec "Datestamped log files").
        template = re.sub(r"(?<=/)%[DM][^A-Za-z0-9]?|[^A-Za-z0-9/]?%[DM]", "", template)
    else:
        t = time.localtime(now)
        template = template.replace("%D", time.strftime("%Y%m%d", t)).replace("%M", time.strftime("%Y%m", t))
    return template.replace("%s", which)


class _LogFile:
    """One open log file, reopened when its name no longer points at it."""

    def __init__(self, path):
        self.path = path
        self.fd = None
        self.inode = None
        self.lock = threading.Lock()

    def write(self, data):
        with self.lock:
            try:
                st = os.stat(self.path)
                current = (st.st_dev, st.st_ino)
            except FileNotFoundError:
                current = None
            if self.fd is None or current != self.inode:
                if self.fd is not None:
                    os.close(self.fd)
                owner = make_dirs(os.path.dirname(self.path) or ".", 0o750)
                self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
                if current is None and owner is not None:
                    os.fchown(self.fd, *owner)   # Exim, running as its user, must append too
                st = os.fstat(self.fd)
                self.inode = (st.st_dev, st.st_ino)
            os.write(self.fd, data)

    def close(self):
        with self.lock:
            if self.fd is not None:
                os.close(self.fd)
                self.fd = None


def apply_timezone(config):
    """Set TZ from the timezone option, for every timestamp (spec: timezone); "" removes TZ."""
    zone = _main_value(config, "timezone")
    if zone is None or os.environ.get("TZ") == zone:
        return
    if zone == "":
        if "TZ" not in os.environ:
            return
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = zone
    time.tzset()


class Logger:
    """The three logs of one configuration; safe to use from several threads."""

    def __init__(self, config=None, log_file_path=None, log_selector=None, spool_directory=None,
                 clock=time.time):
        self.config = config
        apply_timezone(config)
        self.clock = clock
        spool_directory = spool_directory or _main_value(config, "spool_directory", ".")
        if log_file_path is None:
            log_file_path = _expand_path(_main_value(config, "log_file_path", ""), config, spool_directory)
        self.templates, self.use_syslog = log_paths(log_file_path, spool_directory)
        if log_selector is None:
            log_selector = _main_value(config, "log_selector", "")
        self.selectors = parse_selector(log_selector)
        self.log_timezone = bool(_main_value(config, "log_timezone", False))
        self.write_rejectlog = bool(_main_value(config, "write_rejectlog", True))
        self.syslog_timestamp = bool(_main_value(config, "syslog_timestamp", True))
        self.syslog_duplication = bool(_main_value(config, "syslog_duplication", True))
        self._syslog_ident = _main_value(config, "syslog_processname", "exim")
        self._syslog_pid = bool(_main_value(config, "syslog_pid", True))
        self._syslog_facility = _main_value(config, "syslog_facility", "mail")
        self._syslog_open = False
        self._files = {}
        self._files_lock = threading.Lock()
        self._recent = threading.local()
        self._second = (None, None, None, None)  # (second, time.tzname, its localtime, its text)

    def selector(self, name):
        """Whether log_selector turns ``name`` on."""
        return name in self.selectors

    # -- formatting ------------------------------------------------------------

    def timestamp(self, now=None):
        now = self.clock() if now is None else now
        # time.tzname is replaced by each time.tzset(), the only thing that
        # changes the zone localtime() uses (reading TZ costs more)
        second, zone = int(now), time.tzname
        cached = self._second
        if cached[0] == second and cached[1] is zone:
            t, text = cached[2], cached[3]
        else:
            # one conversion per second (and time zone), however many lines it logs
            t = time.localtime(now)
            text = time.strftime("%Y-%m-%d %H:%M:%S", t)
            self._second = (second, zone, t, text)
        if self.selector("millisec"):
            text += ".%03d" % int((now - int(now)) * 1000)
        if self.log_timezone:
            text += time.strftime(" %z", t)
        if self.selector("pid"):
            text += " [%d]" % os.getpid()
        return text

    def format(self, text, message_id=None, now=None):
        prefix = self.timestamp(now)
        if message_id:
            prefix += " " + message_id
        return "%s %s" % (prefix, text)

    # -- writing ---------------------------------------------------------------

    def _file(self, which, now):
        path = file_name(self.templates[0], which, now)
        with self._files_lock:
            f = self._files.get(path)
            if f is None:
                f = self._files[path] = _LogFile(path)
            return f

    def _emit(self, which, lines, now):
        """Write formatted ``lines`` to one log: a single write to its file."""
        if self.templates:
            self._file(which, now).write(("\n".join(lines) + "\n").encode("utf-8", "surrogateescape"))
        if self.use_syslog:
            for line in lines:
                self._syslog(which, line)

    def _syslog(self, which, line):
        if not self._syslog_open:
            facility = getattr(syslog, "LOG_" + str(self._syslog_facility).upper(), syslog.LOG_MAIL)
            options = syslog.LOG_CONS | (syslog.LOG_PID if self._syslog_pid else 0)
            syslog.openlog(self._syslog_ident, options, facility)
            self._syslog_open = True
        if not self.syslog_timestamp:
            line = line.split(" ", 2)[2] if line.count(" ") >= 2 else line
        # Split at newlines and after 870 characters, numbering the parts
        # [n/m] (length) or [n\m] (newline) so they can be put back together.
        pieces = []
        for i, part in enumerate(line.split("\n")):
            chunks = [part[j:j + _SYSLOG_CHUNK] for j in range(0, len(part), _SYSLOG_CHUNK)] or [""]
            for k, chunk in enumerate(chunks):
                pieces.append((chunk, "\\" if (i > 0 and k == 0) else "/"))
        for n, (chunk, sep) in enumerate(pieces, 1):
            text = chunk if len(pieces) == 1 else "[%d%s%d] %s" % (n, sep, len(pieces), chunk)
            syslog.syslog(_SYSLOG_PRIORITY[which], text)

    def main(self, text, message_id=None):
        """Write one line to the main log."""
        now = self.clock()
        self._emit("main", [self.format(text, message_id, now)], now)
        self._recent.line = (text, message_id)

    def main_many(self, entries):
        """Write several main log lines, ``(text, message_id)`` each, with one write."""
        now = self.clock()
        self._emit("main", [self.format(text, message_id, now) for text, message_id in entries], now)

    def _main_copy(self, text, message_id, line, now):
        """The main-log copy of a reject or panic line, unless this thread has just
        written that very line with main() (a caller doing Exim's LOG_MAIN|LOG_REJECT
        in two calls): Exim writes such a line to the main log once."""
        if getattr(self._recent, "line", None) == (text, message_id):
            self._recent.line = None
            return
        self._emit("main", [line], now)

    def reject(self, text, message_id=None, headers=None, sender=None, recipients=None,
               main=True):
        """A rejection: the main log line, then the same line and the headers on the reject log.

        With ``main`` false the main log does not get its copy (Exim's
        log_write with LOG_REJECT but not LOG_MAIN, as ``logwrite = :reject:``).
        ``headers`` are the message's Header objects (their original ones);
        they follow the line as Exim writes them, each with its flag letter,
        after the envelope addresses when known.
        """
        now = self.clock()
        line = self.format(text, message_id, now)
        if main:
            self._main_copy(text, message_id, line, now)
        if not self.write_rejectlog:
            return
        extra = []
        if headers is not None and self.selector("rejected_header"):
            if sender is not None:
                extra.append("Envelope-from: <%s>" % sender)
            for r in recipients or ():
                extra.append("Envelope-to: <%s>" % getattr(r, "address", r))
            for h in headers:
                extra.append("%s %s" % (h.flag or " ", h.text.rstrip("\n")))
        if self.templates:
            data = "\n".join([line] + extra) + "\n"
            self._file("reject", now).write(data.encode("utf-8", "surrogateescape"))
        if self.use_syslog and self.syslog_duplication:
            self._syslog("reject", "\n".join([line] + extra))

    def panic(self, text, message_id=None, main=True):
        """A serious error: written to the panic log and (unless ``main`` is
        false) to the main log."""
        now = self.clock()
        line = self.format(text, message_id, now)
        if main:
            self._main_copy(text, message_id, line, now)
        if self.templates:
            self._file("panic", now).write((line + "\n").encode("utf-8", "surrogateescape"))
        if self.use_syslog:
            self._syslog("panic", line)

    def close(self):
        with self._files_lock:
            for f in self._files.values():
                f.close()
            self._files.clear()


def _quoted(text):
    """A value in double quotes with \\ and \" escaped, as Exim logs T= and DN=."""
    return '"%s"' % text.replace("\\", "\\\\").replace('"', '\\"')


_C_ESCAPES = {10: "\\n", 13: "\\r", 8: "\\b", 11: "\\v", 12: "\\f"}


def printing(text, topbit=False):
    """Exim's string_printing(), for text on its way to a log: bytes outside
    32-126 become C escapes (\\n, \\r ...) or octal ones (\\ooo); a tab stays a
    tab.  Bytes above 127 are kept only with ``topbit`` (print_topbitchars,
    spec "Main configuration").  The bytes are the ones the log writer would
    write: the text's UTF-8 form, with surrogate escapes as raw bytes."""
    if text.isascii() and text.isprintable():
        return text
    out = []
    for byte in text.encode("utf-8", "surrogateescape"):
        if 32 <= byte < 127 or byte == 9 or (topbit and byte > 127):
            out.append(byte)
        else:
            out.extend(_C_ESCAPES.get(byte, "\\%03o" % byte).encode("ascii"))
    return bytes(out).decode("utf-8", "surrogateescape")


def received_fields(env, logger, incoming_port=None):
    """The fields of a message's ``<=`` line after the flag, in Exim's order.

    ``<= sender R= H= I= U= P= X= CV= DN= SNI= A= PRDR PRX= K S= M8S= RT=
    id= T= from <> for ...`` — each present only when it applies and its
    log_selector is on (spec "Logging message reception").
    """
    from exim_py.receive import host_strings
    s = env.session
    sel = logger.selectors.__contains__     # logger.selector, without a call per field
    port = sel("incoming_port") if incoming_port is None else incoming_port
    fullhost, _ = host_strings(s, port)
    out = [env.sender or "<>"]
    ref = env.spool_extra.get("message_reference")
    if ref:
        out.append("R=" + ref)
    if fullhost:
        out.append(("DS H=" if sel("dnssec") and "host_dnssec" in env.flags else "H=") + fullhost)
        if sel("incoming_interface") and s.interface_address:
            out.append("I=[%s]:%s" % (s.interface_address, s.interface_port))
    if s.sender_ident:
        out.append("U=" + s.sender_ident)
    if s.received_protocol:
        out.append("P=" + s.received_protocol)
    if sel("tls_cipher") and s.tls_cipher:
        out.append("X=" + s.tls_cipher)
    if sel("tls_certificate_verified") and s.tls_cipher:
        out.append("CV=" + ("yes" if s.tls_certificate_verified else "no"))
    if sel("tls_peerdn") and s.tls_peerdn:
        out.append("DN=" + _quoted(s.tls_peerdn))
    if sel("tls_sni") and s.tls_sni:
        out.append("SNI=" + _quoted(s.tls_sni))
    if s.auth_mechanism:
        auth = "A=" + s.auth_mechanism
        if s.authenticated_id:
            auth += ":" + s.authenticated_id
            if sel("smtp_mailauth") and env.auth_sender:
                auth += ":" + env.auth_sender
        out.append(auth)
    if env.prdr:
        out.append("PRDR")
    if sel("proxy") and s.proxy is not None:
        out.append("PRX=" + str(getattr(s.proxy, "local_address", s.proxy)))
    if "chunking" in env.flags:
        out.append("K")
    out.append("S=%d" % env.size)
    if sel("8bitmime"):
        out.append("M8S=%s" % {"7BIT": "7", "8BITMIME": "8"}.get((env.body_type or "").upper(), "0"))
    if sel("receive_time"):
        complete = float(env.spool_extra.get("received_time_complete", env.received_time))
        out.append("RT=%.3fs" % max(0.0, complete - env.received_time))
    if getattr(env, "spf", None):
        from exim_py.acl.spf import log_field
        field = log_field(env, sel)
        if field:
            out.append(field)
    msgid = _message_id(env)
    if msgid:
        created = "message_id_created" in env.flags
        if created and sel("msg_id_created"):
            out.append("id*=" + msgid)
        elif not created and sel("msg_id"):
            out.append("id=" + msgid)
    if sel("subject"):
        subjects = [h for h in env.headers if h.flag != "*" and h.name.lower() == "subject"]
        if subjects:
            out.append("T=" + printing(_quoted(subjects[0].value.lstrip().rstrip("\n"))))
    if sel("received_sender"):
        out.append("from <%s>" % (env.sender or ""))
    if sel("received_recipients"):
        out.append("for " + " ".join(r.address for r in env.recipients))
    return " ".join(out)


def _message_id(env):
    """The Message-ID (or Resent-Message-ID) value without its angle brackets."""
    found = {}
    for h in env.headers:
        # only names starting with m or r can be either (a header's name
        # costs more to work out than its first letter)
        if h.flag != "*" and h.text[:1] in "MmRr \t":
            name = h.name.lower()
            if name in ("resent-message-id", "message-id") and name not in found:
                found[name] = h
    h = found.get("resent-message-id") or found.get("message-id")
    if h is None:
        return None
    value = h.value.strip()
    return value[1:-1] if value.startswith("<") and value.endswith(">") else value


def received_line(env, logger):
    """The main log's ``<=`` text for an accepted message (without timestamp and id)."""
    return "<= " + received_fields(env, logger)


def msglog_received_line(env, logger, fields=None):
    """The first line of the per-message log: "Received from" and the same
    fields (``fields``: those already made for the <= line)."""
    if fields is None:
        fields = received_fields(env, logger)
    return "%s Received from %s" % (logger.timestamp(), fields)


def _expand_path(value, config, spool_directory):
    """log_file_path is expanded (spec: "Where the logs are written")."""
    if not value or "$" not in value:
        return value
    try:
        from exim_py.expand import ExpandContext, expand
    except ImportError:
        return value.replace("${spool_directory}", spool_directory).replace("$spool_directory", spool_directory)
    return expand(value, ExpandContext(config=config))
