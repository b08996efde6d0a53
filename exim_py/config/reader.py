"""Physical lines of a configuration file → logical lines, as Exim reads them.

Spec chapter "The Exim runtime configuration file": comments, leading and
trailing white space, backslash continuations, macros (substituted anywhere
in a line, even inside words), ``.include`` / ``.include_if_exists``, the
``.ifdef`` family and ``begin`` lines that start a section.  Every logical
line keeps the file name and line number that Exim would put in an error.
"""

import os
import re

from exim_py.errors import ConfigError

_CONDITIONALS = ("ifdef", "ifndef", "elifdef", "elifndef", "else", "endif")
# Exim's state machine for conditionals: 0 reading, 1 skipping until .else or
# .elifdef, 2 skipping until .endif.  Columns: ifdef-true, ifdef-false,
# elifdef-true (or .else), elifdef-false.
_NEXT_STATE = ((0, 1, 2, 2), (2, 2, 0, 1), (2, 2, 2, 2))
_MAX_NESTING = 10
_CANDIDATE = re.compile(r"[A-Z]|_(?=[A-Z])")
_DRIVER_OPTION_MACRO = re.compile(r"_OPT_(ROUTER|TRANSPORT|AUTHENTICATOR)_")

SECTIONS = ("acls", "authenticators", "local_scans", "retrys", "rewrites", "routers", "transports")


class Macro:
    """A macro: its name, replacement, and whether -D (the command line) set it."""

    __slots__ = ("name", "value", "command_line", "builtin")

    def __init__(self, name, value, command_line=False, builtin=False):
        self.name = name
        self.value = value
        self.command_line = command_line
        self.builtin = builtin


class LogicalLine:
    """One logical line with where it came from (the last physical line read)."""

    __slots__ = ("text", "filename", "line")

    def __init__(self, text, filename, line):
        self.text = text
        self.filename = filename
        self.line = line

    def __repr__(self):
        return "LogicalLine(%r, %r, %d)" % (self.text, self.filename, self.line)


class Section:
    """Marks a ``begin NAME`` line: ``name`` is the canonical plural form."""

    __slots__ = ("name", "filename", "line")

    def __init__(self, name, filename, line):
        self.name = name
        self.filename = filename
        self.line = line


class Reader:
    """Yields LogicalLine and Section objects from a configuration file.

    The section readers call ``define_macro`` for a ``NAME = value`` line;
    the definition takes effect from the next line on, as in Exim.
    """

    def __init__(self, path, command_line_macros=None, builtin_macros=None, record=False):
        self.path = path
        # With ``record``, every logical line and "# N "file"" position mark
        # is kept in ``saved``, for -bP config (readconf.c save_config_line).
        self.saved = [] if record else None
        # Built-in macros come first (Exim prepends them), then -D macros,
        # then file macros in the order of definition: that order is the
        # order in which they are substituted.  Built-ins (a dict, or a
        # function returning one) are made only when a line could use them,
        # as Exim does, since finding them imports every driver.
        self._builtin_source = builtin_macros
        self._builtins = []
        self._builtins_full = False
        self._user = [Macro(name, value, command_line=True)
                      for name, value in (command_line_macros or {}).items()]
        self._stack = []           # (file object, filename, directory, line number)
        self._state = 0
        self._state_stack = []
        self._seen_sections = set()
        self.filename = path
        self.lineno = 0

    def _create_builtins(self, full=True):
        """Make the built-in macros (``full``: with the driver option ones, which
        need every driver module imported, so they are made only when a line
        could use them)."""
        if self._builtins_full or (self._builtins and not full):
            return
        source = self._builtin_source
        if callable(source):
            source = source(full)
        self._builtins = [Macro(n, v, builtin=True) for n, v in (source or {}).items()]
        self._builtins_full = full

    @property
    def macros(self):
        """Every macro made so far, in the order they are substituted."""
        return self._builtins + self._user

    def macro_dict(self):
        """Every macro, built-ins included, in substitution order."""
        self._create_builtins()
        return {m.name: m.value for m in self.macros}

    # -- macros ---------------------------------------------------------------

    def define_macro(self, logical):
        """Handle ``NAME = value`` / ``NAME == value`` (readconf.c macro_read_assignment)."""
        text = logical.text
        m = re.match(r"[A-Za-z0-9_]*", text)
        name = m.group(0)
        if len(name) > 63:
            raise ConfigError("macro name too long (maximum is 63 characters)",
                              logical.filename, logical.line)
        rest = text[m.end():].lstrip()
        if not rest.startswith("="):
            raise ConfigError("malformed macro definition", logical.filename, logical.line)
        rest = rest[1:]
        redefine = rest.startswith("=")
        if redefine:
            rest = rest[1:]
        value = rest.lstrip()
        existing = None
        for macro in self.macros:
            if macro.name == name:
                if not macro.command_line and not redefine:
                    raise ConfigError('macro "%s" is already defined (use "==" if you want to '
                                      'redefine it)' % name)
                existing = macro
                break
            if len(macro.name) < len(name) and macro.name in name:
                raise ConfigError('"%s" cannot be defined as a macro because previously '
                                  'defined macro "%s" is a substring' % (name, macro.name))
        if existing is not None and existing.command_line:
            return          # -D wins over the file
        if redefine:
            if existing is None:
                raise ConfigError("can't redefine an undefined macro \"%s\"" % name)
            existing.value = value
        else:
            self._user.append(Macro(name, value))

    @staticmethod
    def _candidate(text, pos):
        """Index of the next character that could start a macro name (upper case, or _ + upper)."""
        m = _CANDIDATE.search(text, pos)
        return m.start() if m else len(text)

    def _expand_macros(self, line, start_of_logical):
        """Substitute macros in one physical line; returns (line, any_found)."""
        body = line.lstrip()
        skip = 0
        if start_of_logical and body[:1].isupper():
            m = re.match(r"[A-Za-z0-9_]+\s*", body)
            if m and body[m.end():m.end() + 1] == "=":
                skip = m.end()          # do not substitute in the name being defined
        pos = self._candidate(body, skip)
        if pos >= len(body):
            return body, False
        # As Exim: built-ins are considered only when the first candidate is "_".
        if body[pos] == "_":
            self._create_builtins(_DRIVER_OPTION_MACRO.search(body) is not None)
            macros = self.macros
        else:
            macros = self._user
        found = False
        for macro in macros:
            if macro.name not in body:
                continue
            pos = self._candidate(body, pos)
            if pos >= len(body):
                break
            t = pos
            while True:
                p = body.find(macro.name, t)
                if p < 0:
                    break
                body = body[:p] + macro.value + body[p + len(macro.name):]
                t = self._candidate(body, p + len(macro.value))
                found = True
        return body.lstrip(), found

    # -- reading --------------------------------------------------------------

    def _open(self, path):
        return open(path, "r", encoding="utf-8", errors="surrogateescape")

    def __iter__(self):
        try:
            f = self._open(self.path)
        except FileNotFoundError:
            raise ConfigError("non-existent configuration file(s): %s" % self.path)
        except OSError as e:
            raise ConfigError("failed to open configuration file %s: %s"
                              % (self.path, e.strerror or e))
        directory = os.path.dirname(os.path.abspath(self.path))
        self._current = [f, self.path, directory]
        self.filename, self.lineno = self.path, 0
        try:
            yield from self._logical_lines()
        finally:
            self._current[0].close()
            for entry in self._stack:
                entry[0].close()

    def _error(self, message):
        return ConfigError(message, self.filename, self.lineno)

    def _physical(self):
        """The next physical line (without newline), following .include ends; None at EOF."""
        while True:
            raw = self._current[0].readline()
            if raw:
                self.lineno += 1
                if self.lineno == 1:
                    self._save_position()
                return raw.rstrip("\n")
            if not self._stack:
                return None
            self._current[0].close()
            f, name, directory, lineno = self._stack.pop()
            self._current = [f, name, directory]
            self.filename, self.lineno = name, lineno
            self._save_position()

    def _logical_lines(self):
        pending = ""       # the logical line read so far (continuations joined)
        while True:
            raw = self._physical()
            if raw is None:
                if self._state_stack:
                    raise self._error("Unexpected end of configuration file: .endif missing")
                if pending:
                    yield from self._finish(pending)
                return
            if self.lineno == 1 and raw.startswith("\ufeff") and not self._stack:
                raise self._error("found unexpected BOM (Byte Order Mark)")
            text, found = self._expand_macros(raw, not pending)
            if text.startswith("#"):
                continue
            if text.startswith(".") and self._conditional(text, found):
                continue
            if self._state != 0:
                continue
            if self._include(text):
                continue
            # As readconf.c: trailing white space goes from the whole line so
            # far, so a continuation that ends in an empty line loses the
            # spaces before its backslash.
            pending = (pending + text).rstrip()
            if pending.endswith("\\"):
                pending = pending[:-1]
                continue
            if pending:
                logical, pending = pending, ""
                yield from self._finish(logical)

    def _save_position(self):
        if self.saved is not None:
            self.saved.append('# %d "%s"' % (self.lineno, self.filename))

    def _finish(self, logical):
        if self.saved is not None:
            self.saved.append(logical)
        if logical[:6].lower() == "begin ":
            name = logical[6:].strip()[:22]
            plural = name if name[-1:].lower() == "s" else name + "s"
            if plural.lower() not in SECTIONS:
                raise self._error('"%s" is not a known configuration section name' % name)
            plural = plural.lower()
            if plural in self._seen_sections:
                raise self._error('"%s" section is repeated in the configuration file' % name)
            self._seen_sections.add(plural)
            yield Section(plural, self.filename, self.lineno)
        else:
            yield LogicalLine(logical, self.filename, self.lineno)

    def _conditional(self, text, found):
        """Handle .ifdef/.ifndef/.elifdef/.elifndef/.else/.endif; True when the line was one."""
        for word in _CONDITIONALS:
            if not text.startswith(word, 1):
                continue
            following = text[1 + len(word):2 + len(word)]
            if following not in ("", " ", "t"):
                # readconf.c accepts only a space (or, by a slip, the letter
                # t) after the word; any other line that starts with one of
                # these words is dropped without effect.  Do the same.
                return True
            if word in ("ifdef", "ifndef"):
                if len(self._state_stack) >= _MAX_NESTING:
                    raise self._error(".%s nested too deeply" % word)
                self._state_stack.append(self._state)
                true_col = 0 if word == "ifdef" else 1
                self._state = _NEXT_STATE[self._state][true_col if found else 1 - true_col]
            elif not self._state_stack:
                raise self._error(".%s without matching .ifdef" % word)
            elif word == "endif":
                self._state = self._state_stack.pop()
            elif word == "else":
                self._state = _NEXT_STATE[self._state][2]
            else:
                true_col = 2 if word == "elifdef" else 3
                self._state = _NEXT_STATE[self._state][true_col if found else 5 - true_col]
            return True
        return False

    def _include(self, text):
        m = re.match(r"\.include(_if_exists)?(?:\s+(.*))?$", text)
        if not m:
            return False
        path = (m.group(2) or "").strip()
        if len(path) > 1 and path.startswith('"') and path.endswith('"'):
            path = path[1:-1]
        if_exists = bool(m.group(1))
        if not path and not if_exists:
            return True         # Exim opens the directory itself, which reads as empty
        if not path.startswith("/"):
            if if_exists:
                raise self._error('.include specifies a non-absolute path "%s"' % path)
            path = os.path.join(self._current[2], path)
        if if_exists and not os.path.exists(path):
            return True
        try:
            f = self._open(path)
        except OSError:
            raise self._error("failed to open included configuration file %s" % path)
        self._save_position()
        self._stack.append((self._current[0], self._current[1], self._current[2], self.lineno))
        self._current = [f, path, os.path.dirname(path)]
        self.filename, self.lineno = path, 0
        return True
