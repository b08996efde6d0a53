"""Delivery lines for the main log and the per-message log (spec chapter
"Log files": ``=>`` delivered, ``->`` another address in the same delivery,
``*>`` suppressed by -N, ``**`` failed, ``==`` deferred).

An address is shown as Exim's string_log_address shows it: the local part
alone for pipes, files and deliveries by routers with log_as_local (the
accept router), else the whole address; followed by the original recipient
in angle brackets when that differs, and for a pipe or file the address
that generated it in parentheses.
"""

import os
import threading


def log_address(addr, success):
    """The address part of a delivery log line."""
    top = addr.top
    router_local = False
    if success and addr.router and addr.transport is not None and not addr.transport.remote:
        router_local = bool(getattr(addr, "log_as_local", False))
    if addr.is_pfr or router_local:
        text = addr.local_part if not addr.is_pfr else addr.address
        if addr.is_file and not addr.address.startswith("/"):
            text = "save " + text
        add_top = True
    else:
        text = "%s@%s" % (addr.local_part_for_log, addr.domain) if addr.domain else addr.address
        add_top = addr.onetime_parent is not None or not (
            text.lower() == top.address.lower()
            and text.split("@")[0] == top.address.rsplit("@", 1)[0])
    if addr.is_pfr and addr.parent is not None and addr.parent is not top:
        text += " (%s)" % addr.parent.address
    if add_top:
        text += " <%s>" % (addr.onetime_parent or top.address)
    return text


class DeliveryLog:
    """Writes one message's delivery lines to the main log and its msglog."""

    def __init__(self, logger, spool, message_id, config, envelope=None):
        self.logger = logger
        self.spool = spool
        self.message_id = message_id
        self.sender = envelope.sender if envelope is not None else None
        self.received_time = envelope.received_time if envelope is not None else None
        self.keep_msglog = bool(config.main.get("message_logs", True))
        # The message log stays open for the whole attempt (one write per
        # line, no open and close each time); close() ends it.
        self._msglog_fd = None
        self._msglog_lock = threading.Lock()
        self._held = None             # lines kept back (hold), or None

    def main(self, text, msglog=True):
        self.logger.main(text, self.message_id)
        if msglog:
            self.msglog(text)

    def msglog(self, text):
        if not self.keep_msglog or self.spool is None:
            return
        line = ("%s %s\n" % (self.logger.timestamp(), text)).encode("utf-8", "surrogateescape")
        with self._msglog_lock:
            if self._held is not None:
                self._held.append(line)
                return
            self._write_msglog(line)

    def hold(self):
        """Keep message-log lines back until release()."""
        with self._msglog_lock:
            if self._held is None:
                self._held = []

    def release(self, drop=False):
        """Write the lines kept back since hold() in one write, or, with
        ``drop`` (the message and its log are being removed), forget them."""
        with self._msglog_lock:
            lines, self._held = self._held, None
            if lines and not drop:
                self._write_msglog(b"".join(lines))

    def _write_msglog(self, line):
        """Append to the message log (call with the lock held)."""
        if self._msglog_fd is None:
            path = self.spool.msglog_path(self.message_id)
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
            try:
                self._msglog_fd = os.open(path, flags, 0o666)
            except FileNotFoundError:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                self._msglog_fd = os.open(path, flags, 0o666)
        os.write(self._msglog_fd, line)

    def close(self):
        """Close the message log (at the end of the delivery attempt)."""
        with self._msglog_lock:
            if self._msglog_fd is not None:
                os.close(self._msglog_fd)
                self._msglog_fd = None

    def result(self, addr, first=True, routing=False):
        """Log the outcome of one address (after the spool records it).

        A failure or deferral decided by routing shows no transport, even
        when the router had chosen one (as Exim's lines do)."""
        if routing and addr.result.value != "OK" and addr.transport is not None \
                and not addr.is_pfr:
            saved, addr.transport = addr.transport, None
            try:
                return self.result(addr, first)
            finally:
                addr.transport = saved
        if addr.result.value == "OK":
            mark = "*>" if addr.suppressed else ("=>" if first else "->")
            text = log_address(addr, True) + self._delivery_fields(addr)
            self.logger.main("%s %s" % (mark, text), self.message_id)
            tname = addr.transport.name if addr.transport is not None else ""
            self.msglog("%s: %s transport succeeded" % (log_address(addr, True), tname))
            return
        if addr.retry_skipped and not self.logger.selector("retry_defer"):
            return
        if addr.result.value == "FAIL" and addr.timed_out_defer is not None:
            # Only the deferral now; timed_out() logs the failure later.
            message, errno_ = addr.timed_out_defer
            self._deferred(addr, message, errno_)
            return
        if addr.result.value == "FAIL":
            head = log_address(addr, False)
            if addr.router is None and addr.transport is None:
                body = head + _fields(addr) + _reason(addr)
                self.logger.main("** " + body, self.message_id)
                self.msglog("routing failed for " + body)
                return
            body = head + _router_transport(addr) + _fields(addr) + _reason(addr)
            self.main("** " + body)
            return
        if addr.routing_skipped:
            self._routing_skipped(addr)
            return
        self._deferred(addr, addr.message, addr.basic_errno)

    def timed_out(self, addr):
        """The failure of an address whose retry time ran out; Exim logs these
        when it applies the retry rules, after the attempt's other lines."""
        text = "%s: %s" % (log_address(addr, False), addr.message)
        self.logger.main("** " + text, self.message_id)
        self.msglog(text)

    def _routing_skipped(self, addr):
        body = "%s routing defer (%d): %s" % (log_address(addr, False), addr.basic_errno,
                                                addr.message)
        self.logger.main("== " + body, self.message_id)
        self.msglog(body)

    def _deferred(self, addr, message, errno_):
        # Exim's deferral_log: the errno's text comes straight after
        # "defer (N)", then the host fields, DT= and last the message.
        body = "%s%s defer (%d)" % (log_address(addr, False), _router_transport(addr),
                                    errno_ if errno_ is not None else 0)
        if errno_ is not None and errno_ > 0:
            body += ": " + os.strerror(errno_)
        body += _fields(addr)
        if self.logger.selector("deliver_time") and addr.delivery_started \
                and addr.delivery_time:
            body += " DT=%s" % print_time(addr.delivery_time - addr.delivery_started)
        if message:
            body += ": " + message
        self.logger.main("== " + body, self.message_id)
        self.msglog(body)

    def _delivery_fields(self, addr):
        """What follows the address on a delivery line, with the optional
        fields log_selector asks for (F=, P=, S=, QT=, DT=) where Exim puts them."""
        sel = self.logger.selector
        text = ""
        if sel("sender_on_delivery"):
            text += " F=<%s>" % (self.sender or "")
        if sel("return_path_on_delivery"):
            text += " P=<%s>" % (addr.return_path if addr.return_path is not None
                                 else self.sender or "")
        text += _router_transport(addr)
        if sel("delivery_size"):
            text += " S=%d" % (addr.transport_count or 0)
        if addr.transport is not None and not addr.transport.remote and addr.host_list:
            text += " H=%s" % addr.host_list[0].name
        text += _fields(addr)
        if sel("queue_time") and self.received_time is not None and addr.delivery_time:
            text += " QT=%s" % print_time(addr.delivery_time - self.received_time)
        if sel("deliver_time") and addr.delivery_started and addr.delivery_time:
            text += " DT=%s" % print_time(addr.delivery_time - addr.delivery_started)
        return text

    def discarded(self, addr):
        """A redirection to :blackhole: is logged as a delivery to it."""
        text = ":blackhole: <%s> R=%s" % (addr.address, addr.router)
        self.logger.main("=> " + text, self.message_id)
        self.msglog(text)


def print_time(seconds):
    """A duration as Exim prints times: 1w2d3h4m5s, zero parts left out, "0s" for none."""
    seconds = int(seconds)
    if seconds <= 0:
        return "0s"
    out = ""
    for name, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            out += "%d%s" % (seconds // size, name)
            seconds %= size
    return out


def _router_transport(addr):
    text = ""
    if addr.router:
        text += " R=%s" % addr.router
    if addr.transport is not None:
        text += " T=%s" % addr.transport.name
    return text


def _fields(addr):
    return "".join(" " + f for f in addr.log_fields)


def _reason(addr):
    text = ""
    if addr.basic_errno is not None and addr.basic_errno > 0:
        text += ": " + os.strerror(addr.basic_errno)
    if addr.message:
        text += ": " + addr.message
    return text
