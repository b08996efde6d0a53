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
        add_top = top.onetime_parent is not None or not (
            text.lower() == top.address.lower()
            and text.split("@")[0] == top.address.rsplit("@", 1)[0])
    if addr.is_pfr and addr.parent is not None and addr.parent is not top:
        text += " (%s)" % addr.parent.address
    if add_top:
        text += " <%s>" % (top.onetime_parent or top.address)
    return text


class DeliveryLog:
    """Writes one message's delivery lines to the main log and its msglog."""

    def __init__(self, logger, spool, message_id, config):
        self.logger = logger
        self.spool = spool
        self.message_id = message_id
        self.keep_msglog = bool(config.main.get("message_logs", True))

    def main(self, text, msglog=True):
        self.logger.main(text, self.message_id)
        if msglog:
            self.msglog(text)

    def msglog(self, text):
        if not self.keep_msglog or self.spool is None:
            return
        path = self.spool.msglog_path(self.message_id)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "ab") as f:
            f.write(("%s %s\n" % (self.logger.timestamp(), text)).encode("utf-8", "surrogateescape"))

    def result(self, addr, first=True):
        """Log the outcome of one address (after the spool records it)."""
        if addr.result.value == "OK":
            mark = "*>" if addr.suppressed else ("=>" if first else "->")
            text = log_address(addr, True) + _router_transport(addr) + _fields(addr)
            self.logger.main("%s %s" % (mark, text), self.message_id)
            tname = addr.transport.name if addr.transport is not None else ""
            self.msglog("%s: %s transport succeeded" % (log_address(addr, True), tname))
            return
        if addr.retry_skipped and not self.logger.selector("retry_defer"):
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
        errno_ = addr.basic_errno if addr.basic_errno is not None else 0
        body = "%s%s defer (%d)%s%s" % (log_address(addr, False), _router_transport(addr), errno_,
                                         _fields(addr), _reason(addr))
        self.logger.main("== " + body, self.message_id)
        self.msglog(body)

    def discarded(self, addr):
        """A redirection to :blackhole: is logged as a delivery to it."""
        text = ":blackhole: <%s> R=%s" % (addr.address, addr.router)
        self.logger.main("=> " + text, self.message_id)
        self.msglog(text)


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
