"""The JSON forms: ${extract json{...}}, ${extract jsons{...}}, forall_json...

Exim does not parse JSON fully: it strips the enclosing brackets and walks
the elements at the top nesting level (json_nextinlist and dewrap in
expand.c).  The same shallow reading is kept here so that results match.
"""

from exim_py.errors import ExpansionError
from exim_py.expand.conditions import ForEach

_SPACE = " \t\n\r\f\v"


def dewrap(s, wrap):
    """The text inside the ``wrap`` pair ('[]', '{}' or '""') that starts ``s``."""
    opener, closer = wrap
    quotes = opener == closer
    i = 0
    while i < len(s) and s[i] in _SPACE:
        i += 1
    if i < len(s) and s[i] == opener:
        start = i + 1
        depth = 0
        j = start
        while j < len(s):
            c = s[j]
            if c == "\\":
                j += 1
            elif not quotes and c == opener:
                depth += 1
            elif c == closer:
                if depth == 0:
                    return s[start:j]
                depth -= 1
            j += 1
        raise ExpansionError("missing '%s'" % closer)
    raise ExpansionError("missing '%s'" % opener)


def elements(s):
    """The top-level comma-separated elements of an array or object body."""
    out = []
    i = 0
    n = len(s)
    while True:
        while i < n and s[i] in _SPACE:
            i += 1
        start = i
        arrays = objects = 0
        while i < n and (s[i] != "," or arrays or objects):
            c = s[i]
            if c == "[":
                arrays += 1
            elif c == "]":
                arrays -= 1
            elif c == "{":
                objects += 1
            elif c == "}":
                objects -= 1
            i += 1
        if i == start:
            return out
        out.append(s[start:i])
        if i < n:
            i += 1


def extract_json(key, numbered, text, strings):
    """${extract json}: element N of an array, or the value for a key."""
    try:
        body = dewrap(text, "[]" if numbered else "{}")
    except ExpansionError as e:
        raise ExpansionError("%s wrapping %s for extract json"
                             % (e, "array" if numbered else "object"))
    value = None
    if numbered:
        n = int(key)
        if n <= 0:
            raise ExpansionError('first argument of "extract" must be greater than zero')
        items = elements(body)
        if n <= len(items):
            value = items[n - 1].rstrip(_SPACE)
    else:
        for item in elements(body):
            try:
                name = dewrap(item, '""')
            except ExpansionError as e:
                raise ExpansionError("%s wrapping string key for extract json" % e)
            if name == key:
                rest = item[item.index('"') + len(name) + 2:].lstrip(_SPACE)
                if not rest.startswith(":"):
                    raise ExpansionError("missing object value-separator for extract json")
                value = rest[1:].lstrip(_SPACE)
                break
    if strings and value is not None:
        try:
            value = dewrap(value, '""')
        except ExpansionError as e:
            raise ExpansionError("%s wrapping string result for extract jsons" % e)
    return value


class JsonForEach(ForEach):
    """forall_json / forany_json / the _jsons forms over a JSON array."""

    __slots__ = ()

    def items(self, ctx):
        for item in elements(dewrap(self.lst.ev(ctx), "[]")):
            if self.name.endswith("jsons"):
                try:
                    item = dewrap(item, '""')
                except ExpansionError as e:
                    raise ExpansionError("%s wrapping string result for extract jsons" % e)
            yield item
