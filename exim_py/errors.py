"""Exceptions shared by every part of exim_py.

An error that can reach an SMTP client carries its reply (code, enhanced
status, text, temporary or permanent) and, separately, the cause for the log,
so that one place can map it to the wire, the retry decision and the log line.
"""


class EximError(Exception):
    """Base class for exim_py's own errors."""


class ConfigError(EximError):
    """A configuration problem, reported as Exim reports it.

    ``str()`` gives Exim's two-line form::

        configuration error in line 12 of /etc/exim.conf:
          main option "foo" unknown
    """

    def __init__(self, message, filename=None, line=None, driver=None):
        super().__init__(message)
        self.message = message
        self.filename = filename
        self.line = line
        self.driver = driver        # e.g. "r router": Exim's "configuration error for r router:"

    def __str__(self):
        if self.driver is not None:
            return "configuration error for %s:\n  %s" % (self.driver, self.message)
        if self.filename is not None and self.line is not None:
            return "configuration error in line %d of %s:\n  %s" % (
                self.line, self.filename, self.message)
        if self.filename is not None:
            return "configuration error in %s:\n  %s" % (self.filename, self.message)
        return "configuration error: %s" % (self.message,)


class ExpansionError(EximError):
    """A string expansion failed; ``str()`` is Exim's text for ``$expand_string_message``."""

    forced = False


class ForcedFail(ExpansionError):
    """An expansion failed because of a forced ``fail`` (``${if ...{}fail}`` and friends)."""

    forced = True


class LookupDefer(EximError):
    """A lookup could not be completed now (DNS temporary failure, unreachable server)."""


class SMTPError(EximError):
    """An error that carries the SMTP reply to give and the cause to log."""

    def __init__(self, code, text, enhanced=None, log=None):
        super().__init__(text)
        self.code = int(code)
        self.text = text
        self.enhanced = enhanced
        self.log = log if log is not None else text

    @property
    def temporary(self):
        return 400 <= self.code < 500

    def reply_lines(self):
        """The reply as Exim writes it: one line per text line, continuation marked with '-'."""
        lines = self.text.split("\n") or [""]
        out = []
        for i, line in enumerate(lines):
            sep = "-" if i < len(lines) - 1 else " "
            prefix = "%d%s" % (self.code, sep)
            if self.enhanced:
                prefix += self.enhanced + " "
            out.append(prefix + line)
        return out


class UsageError(EximError):
    """A command-line problem; the message is printed and exim_py exits non-zero."""
