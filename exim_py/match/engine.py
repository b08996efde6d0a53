"""Walking a domain, host, address or local-part list (Exim's match_check_list).

Spec chapter "Domain, host, address, and local part lists":

- the list is expanded first; a forced failure means "not in the list",
  any other expansion failure is a DEFER;
- items are tried left to right and the first that matches decides: in
  the set for a positive item, not in it for a ``!`` item;
- when nothing matches, the subject is in the set exactly when the last
  item tried was negative (a list ending in ``!x`` behaves as ``!x : *``);
- ``+name`` refers to a named list of the same kind; its result is cached
  per subject when the list cannot change (no ``$`` in it or any list it
  refers to, or it was defined with ``domainlist_cache`` and friends);
- an absolute file name stands for the items in the file (comments and
  blank lines skipped), ``!/file`` inverting every item read from it;
- host lists recognise ``+include_unknown``, ``+ignore_unknown``,
  ``+include_defer`` and ``+ignore_defer``; address and local part lists
  ``+caseful``.

An item checker is ``check(item) -> bool``; it raises ``LookupDefer`` for a
DEFER and ``Unknown`` when a host name or address cannot be found.
"""

import re

from exim_py.errors import ExpansionError, LookupDefer
from exim_py.match.lists import iter_list

_SPACE = " \t\n\r\f\v"
_KIND_WORDS = {"domain": " domain", "host": " host", "address": " address",
               "localpart": " local part"}
_HOST_FLAGS = ("+include_unknown", "+ignore_unknown", "+include_defer", "+ignore_defer")
_NAMED_REF = re.compile(r"\+([A-Za-z0-9_]+)")


class Unknown(Exception):
    """A host item needed a name or address that cannot be found (Exim's ERROR)."""


def expand_list(text, ctx, kind=None, subject=None):
    """The list after expansion, or None after a forced failure.

    A string without ``$`` or ``\\`` expands to itself, so the expander is
    not needed for it.  While a domain (local part) list is expanded,
    ``$domain`` (``$local_part``) is the subject if it was unset, as in Exim.
    """
    if "$" not in text and "\\" not in text:
        return text
    from exim_py.expand import expand
    var = {"domain": "domain", "localpart": "local_part"}.get(kind)
    restore = False
    if var is not None and ctx is not None and ctx.get(var) is None and subject is not None:
        ctx.set(var, subject)
        restore = True
    try:
        return expand(text, ctx)
    except ExpansionError as e:
        if e.forced:
            return None
        raise LookupDefer('failed to expand "%s" while checking a list: %s' % (text, e))
    finally:
        if restore:
            ctx.unset(var) if hasattr(ctx, "unset") else ctx.set(var, None)


def _named_lists(ctx, kind):
    config = getattr(ctx, "config", None)
    lists = getattr(config, "named_lists", None) if config is not None else None
    return (lists or {}).get(kind, {})


def _cacheable(ctx, kind, name, seen=()):
    """Whether named list ``name``'s result may be reused for the same subject."""
    nl = _named_lists(ctx, kind).get(name)
    if nl is None or name in seen:
        return False
    if "$" in (nl.value or "") and not nl.cache:
        return False
    return all(_cacheable(ctx, kind, ref, seen + (name,))
               for ref in _NAMED_REF.findall(nl.value or ""))


def _cache(ctx):
    """The per-context named-list cache: {(kind, name, key): (result, value)}."""
    cache = getattr(ctx, "match_cache", None)
    if cache is None and ctx is not None:
        cache = {}
        try:
            ctx.match_cache = cache
        except AttributeError:
            return None
    return cache


class Matcher:
    """One list check in progress: what is matched and how, and its result data.

    ``kind`` is "domain", "host", "address", "localpart" or "string";
    ``check(item)`` tests one item; ``value`` receives the data of the item
    that matched (``$domain_data`` and friends); ``numeric`` the $0, $1 …
    it set; ``cache_key`` identifies the subject for named-list caching.
    """

    def __init__(self, kind, ctx, cache_key):
        self.kind = kind
        self.ctx = ctx
        self.cache_key = cache_key
        self.value = None
        self.numeric = None

    def check(self, item):
        raise NotImplementedError

    def caseful(self):
        """``+caseful`` was seen (address and local part lists)."""


def check_list(text, m, expand=True, named=True, whole=False):
    """Whether ``m``'s subject is in list ``text``; LookupDefer for DEFER.

    ``whole`` treats ``text`` as one item (no splitting), as Exim does for
    the domain part of an address pattern and the keys of nwildlsearch.
    """
    if text is None:
        return False
    original = text
    if expand:
        text = expand_list(text, m.ctx, m.kind, getattr(m, "subject", None))
        if text is None:
            return False
    items = [text] if whole else iter_list(text)
    positive = True
    unknown = defer = None      # "include" / "ignore" after the + items
    for item in items:
        if item == "+caseful" and m.kind in ("address", "localpart"):
            m.caseful()
            continue
        if m.kind == "host" and item in _HOST_FLAGS:
            what, which = item[1:].split("_")
            if which == "unknown":
                unknown = what
            else:
                defer = what
            continue
        if item.startswith("!"):
            positive = False
            pattern = item[1:].lstrip(_SPACE)
        else:
            positive = True
            pattern = item
        if pattern.startswith("/"):
            outcome, positive = _check_file(pattern, m, positive, unknown, defer, original)
            if outcome is not None:
                return outcome
            continue
        if pattern.startswith("+") and named:
            if _check_named(pattern[1:], m):
                return positive
            continue
        outcome = _check_item(pattern, m, positive, unknown, defer)
        if outcome is not None:
            return outcome
    return not positive


def _check_item(pattern, m, positive, unknown, defer):
    """``positive`` if the item matches, the +include/+ignore verdict on a
    failure to find, or None to go on with the next item."""
    try:
        if m.check(pattern):
            return positive
    except LookupDefer:
        if defer == "ignore":
            return None
        if defer == "include":
            return True
        raise
    except Unknown:
        if unknown == "ignore":
            return None
        return unknown == "include"
    except ExpansionError as e:
        raise LookupDefer(str(e))
    return None


def _check_named(name, m):
    """Whether the subject is in named list ``name``, through the cache."""
    nl = _named_lists(m.ctx, m.kind).get(name)
    if nl is None:
        raise LookupDefer('unknown named%s list "+%s"' % (_KIND_WORDS.get(m.kind, ""), name))
    cache = _cache(m.ctx) if _cacheable(m.ctx, m.kind, name) else None
    key = (m.kind, name, m.cache_key)
    if cache is not None and key in cache:
        result, m.value = cache[key]
        return result
    result = check_list(nl.value, m)
    if cache is not None:
        cache[key] = (result, m.value)
    return result


def _check_file(filename, m, positive, unknown, defer, listtext):
    """Items read from ``filename``: (verdict or None, the negation in force)."""
    try:
        with open(filename, "rb") as f:
            lines = f.read().decode("utf-8", "surrogateescape").split("\n")
    except OSError as e:
        raise LookupDefer('failed to open %s when checking "%s": %s'
                          % (filename, listtext, e.strerror))
    file_positive = positive
    for line in lines:
        line = _strip_comment(line, m.kind in ("address", "localpart")).strip(_SPACE)
        if not line:
            continue
        file_positive = positive
        if line.startswith("!"):
            file_positive = not positive
            line = line[1:].lstrip(_SPACE)
        outcome = _check_item(line, m, file_positive, unknown, defer)
        if outcome is not None:
            return outcome, file_positive
    return None, file_positive


def _strip_comment(line, needs_space):
    """Drop a # comment; in address and local part files only after white space."""
    if not needs_space:
        return line.split("#", 1)[0]
    start = 0
    while True:
        i = line.find("#", start)
        if i < 0:
            return line
        if i == 0 or line[i - 1] in _SPACE:
            return line[:i]
        start = i + 1
