"""File and database lookups: the one entry point every other part calls.

``search(ltype, source, key, ctx)`` runs a lookup as ``${lookup}`` and the
list items ``lsearch;/file`` do (spec chapter "File and database lookups").
``ltype`` is the type as written, with its decorations: ``partial2-``,
``partial(.)``, a trailing ``*`` or ``*@`` default, and ``,opt=value``
options.  One module per lookup type implements the search itself; this
module adds what all single-key types share: partial matching, defaults,
``ret=key`` and the per-context result cache.

Errors are Exim's: a bad type or a file that cannot be opened raises
``ExpansionError`` with Exim's text (``${lookup}`` then fails, as Exim's
does); a lookup that cannot be completed now raises ``LookupDefer``.
"""

import functools
import re
from collections import namedtuple

from exim_py import registry
from exim_py.errors import ExpansionError, LookupDefer

__all__ = ["search", "search_wild", "quote", "is_query_style", "parse_type",
           "LookupType"]

# A parsed lookup type.  ``partial`` is the minimum number of non-wild
# components (None: no partial matching), ``affix`` the partial prefix,
# ``star`` is None, "*" or "*@", ``options`` the text after the first comma.
LookupType = namedtuple("LookupType", "name partial affix star options")

_instances = {}


def _ispunct(c):
    return "!" <= c <= "~" and not c.isalnum()


@functools.lru_cache(maxsize=2048)
def parse_type(text):
    """Parse a lookup type as written (``partial2-lsearch*@,ret=key``).

    Raises ``ExpansionError`` with Exim's message for a malformed or unknown
    type, or for partial matching / defaults on a query-style type.
    """
    s = text
    partial = None
    affix = None
    if s.startswith("partial"):
        s = s[7:]
        digits = re.match(r"\d*", s).group()
        partial = int(digits) if digits else 2
        s = s[len(digits):]
        if s.startswith("("):
            end = 1
            while end < len(s) and _ispunct(s[end]) and s[end] != ")":
                end += 1
            if end >= len(s) or s[end] != ")":
                raise ExpansionError('format error in lookup type "%s"' % text)
            affix = s[1:end]
            s = s[end + 1:]
        elif s.startswith("-"):
            affix = "*."
            s = s[1:]
        else:
            raise ExpansionError('format error in lookup type "%s"' % text)
    options = None
    name_end = len(s)
    star = None
    starpos = s.find("*")
    if starpos >= 0:
        name_end = starpos
        star = "*@" if s[starpos + 1:starpos + 2] == "@" else "*"
    comma = s.find(",", starpos if starpos >= 0 else 0)
    if comma >= 0:
        name_end = min(name_end, comma)
        options = s[comma + 1:]
    name = s[:name_end]
    module = registry.load("lookup", name)
    if module is None:
        raise ExpansionError('unknown lookup type "%s"' % name)
    if not module.Lookup.single_key:
        if partial is not None:
            raise ExpansionError('"partial" is not permitted for lookup type "%s"' % s)
        if star is not None:
            raise ExpansionError('defaults using "*" or "*@" are not permitted '
                                 'for lookup type "%s"' % s)
    return LookupType(name, partial, affix, star, options)


def _lookup(name):
    """The (shared, stateless) Lookup instance for type ``name``."""
    inst = _instances.get(name)
    if inst is None:
        module = registry.load("lookup", name)
        if module is None:
            raise ExpansionError('unknown lookup type "%s"' % name)
        inst = _instances[name] = module.Lookup()
    return inst


@functools.lru_cache(maxsize=256)
def is_query_style(name):
    """True when lookup type ``name`` (bare name) takes a query, not a file and key."""
    module = registry.load("lookup", name)
    return module is not None and not module.Lookup.single_key


def quote(name, s):
    """``${quote_NAME:s}``: quote ``s`` for a query of lookup type ``name``.

    Single-key types need no quoting (the key is never parsed), so they
    return ``s`` unchanged, as Exim does.
    """
    inst = _lookup(name)
    quoter = getattr(inst, "quote", None)
    return quoter(s) if quoter is not None else s


def parse_options(options):
    """``a=b,c=d`` → {"a": "b", "c": "d"}; a lookup's options after its name."""
    out = {}
    if options:
        for item in options.split(","):
            item = item.strip()
            if item:
                name, _, value = item.partition("=")
                out[name] = value
    return out


def _cached_find(ltype, source, key, ctx):
    """One real lookup of ``key``, through the context's result cache."""
    opts = parse_options(ltype.options)
    cache_opt = opts.get("cache", "")
    cache = getattr(ctx, "lookup_cache", None) if ctx is not None else None
    ckey = (ltype.name, source, key, ltype.options)
    if cache is not None and cache_opt not in ("no", "no_rd") and ckey in cache:
        return cache[ckey]
    result = _lookup(ltype.name).find(source, key, opts, ctx)
    if cache is not None and cache_opt not in ("no", "no_wr"):
        cache[ckey] = result
    return result


def search(ltype, source, key, ctx=None):
    """Look ``key`` up; the data found, or None when it is not there.

    ``ltype`` is the type as written (a ``LookupType`` is accepted too);
    ``source`` is the file (directory, database) for single-key types and
    None for query-style ones, whose ``key`` is the query.
    """
    return search_wild(ltype, source, key, ctx)[0]


def search_wild(ltype, source, key, ctx=None):
    """``search`` plus the wild and fixed parts of a partial or default match.

    Returns ``(data, parts)``: ``parts`` is ``(wild, fixed)`` after a match by
    a single-key type with partial matching or a default, for ``$1`` and
    ``$2`` in ``${lookup}`` (spec "Partial matching in single-key lookups"),
    and None otherwise.
    """
    if not isinstance(ltype, LookupType):
        ltype = parse_type(ltype)
    inst = _lookup(ltype.name)
    if not inst.single_key:
        return _cached_find(ltype, None, key, ctx), None
    # The key must be non-empty for a single-key lookup to succeed, but Exim
    # opens the file first, so a missing file is still an error.
    if key == "":
        check = getattr(inst, "open_check", None)
        if check is not None:
            check(source or "")
        return None, None
    if source is None:
        source = ""
    value, parts = _single_key(ltype, source, key, ctx)
    if value is not None and parse_options(ltype.options).get("ret") == "key":
        value = key
    return value, parts


def _single_key(ltype, source, key, ctx):
    """The key sequence of partial matching and defaults (Exim's search_find)."""
    value = _cached_find(ltype, source, key, ctx)
    if value is not None:
        return value, ("", key) if ltype.partial is not None else None
    if ltype.partial is not None:
        affix = ltype.affix
        if affix:
            value = _cached_find(ltype, source, affix + key, ctx)
            if value is not None:
                return value, ("", key)
        rest = key
        dots = key.count(".")
        while dots >= ltype.partial:
            dots -= 1
            dot = rest.find(".")
            if dot < 0:
                # partial0: the last try is the affix alone, less a final dot.
                if not affix:
                    break
                tail = affix[:-1] if len(affix) > 1 and affix.endswith(".") else affix
                trial = tail
                rest = ""
            else:
                rest = rest[dot + 1:]
                trial = affix + rest
            value = _cached_find(ltype, source, trial, ctx)
            if value is not None:
                wild = key[:max(len(key) - len(rest) - 1, 0)]
                return value, (wild, rest)
    if ltype.star == "*@":
        at = key.rfind("@")
        if at > 0:
            value = _cached_find(ltype, source, "*" + key[at:], ctx)
            if value is not None:
                return value, (key[:at], "")
    if ltype.star is not None:
        value = _cached_find(ltype, source, "*", ctx)
        if value is not None:
            return value, (key, "")
    return None, None


def open_error(path, what, err):
    """Exim's text for a lookup file that cannot be opened."""
    return ExpansionError("failed to open %s for %s: %s" % (path, what, err.strerror))


def defer(message):
    """A LookupDefer carrying Exim's text for a lookup that gave DEFER."""
    return LookupDefer(message)
