"""The sqlite lookup: an SQL query run on an SQLite database file.

The file is the ``file=`` option, else the first word of the query when it
starts with ``/``, else the ``sqlite_dbfile`` main option (spec "More about
SQLite").  The result is formatted as Exim formats SQL results: one column
gives its values, one row per line; several columns give ``name=value``
pairs, each followed by a space, values quoted when empty, holding white
space or starting with a double quote.  NULL is ``<NULL>``.  A failing
statement is "not found", as in Exim.
"""

import sqlite3

from exim_py.errors import ExpansionError

_SPACE = " \t\n\r"


def _text(value):
    if value is None:
        return "<NULL>"
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return repr(value) if isinstance(value, float) else str(value)


def field(name, value):
    """Exim's lf_quote: ``name=value `` with the value quoted when needed."""
    if value == "" or value.startswith('"') or any(c in value for c in _SPACE):
        value = '"%s"' % value.replace("\\", "\\\\").replace('"', '\\"')
    return "%s=%s " % (name, value)


class Lookup:
    single_key = False

    def find(self, source, query, options, ctx):
        path = options.get("file")
        if path is None and query.startswith("/"):
            path, _, query = query.partition(" ")
            query = query.lstrip()
        if path is None and ctx is not None and hasattr(ctx, "main_option"):
            dbfile = ctx.main_option("sqlite_dbfile")
            if dbfile:
                from exim_py.expand import expand
                path = expand(dbfile, ctx)
        if not path or not path.startswith("/"):
            raise ExpansionError('absolute file name expected for "sqlite" lookup')
        timeout = ctx.main_option("sqlite_lock_timeout", 5) if hasattr(ctx, "main_option") else 5
        try:
            conn = sqlite3.connect(path, timeout=timeout)
        except sqlite3.Error as e:
            raise ExpansionError("sqlite3_open(%s) failed: %s" % (path, e))
        try:
            cursor = conn.execute(query)
            names = [d[0] for d in cursor.description or ()]
            rows = cursor.fetchall()
        except sqlite3.Error:
            return None
        finally:
            conn.close()
        if not rows:
            return None
        if len(names) == 1:
            return "\n".join(_text(row[0]) for row in rows)
        return "\n".join("".join(field(n, _text(v)) for n, v in zip(names, row)) for row in rows)

    @staticmethod
    def quote(s):
        """``${quote_sqlite:s}``: single quotes doubled."""
        return s.replace("'", "''")
