"""Domain, host, address and local part lists: is this subject in the list?

Spec chapter "Domain, host, address, and local part lists".  Each public
function expands the list, walks it (exim_py.match.engine), and answers
True or False, raising ``LookupDefer`` for Exim's DEFER (a lookup or DNS
query that could not be answered, an unknown named list).  On a match the
data of the matching item is stored in the context variable the caller
names (``$domain_data``, ``$local_part_data``, ``$host_data`` by default;
``$sender_data`` / ``$recipient_data`` for address lists in ACLs).

``match_list`` returns a ``Match`` carrying that data and the numeric
variables ($0, $1 …) for callers such as ``${if match_domain}`` that need
them.  ``split_list`` is Exim's list splitting, for any list option.
"""

from exim_py.match.engine import check_list
from exim_py.match.hosts import HostMatcher, host_names, ip_and_mask
from exim_py.match.items import (AddressMatcher, LocalPartMatcher, StringMatcher,
                                 match_string_item)
from exim_py.match.lists import iter_list, join_list, list_separator, split_list

__all__ = ["match_domain", "match_host", "match_address", "match_localpart",
           "match_list", "match_string_item", "in_list", "split_list", "iter_list",
           "join_list", "list_separator", "Match", "host_names"]


class Match:
    """The outcome of one list check: truthy when the subject is in the list."""

    __slots__ = ("matched", "value", "numeric")

    def __init__(self, matched, value=None, numeric=None):
        self.matched = matched
        self.value = value
        self.numeric = numeric

    def __bool__(self):
        return self.matched

    def __repr__(self):
        return "Match(%r, value=%r)" % (self.matched, self.value)


def _matcher(kind, subject, ctx, caseless):
    if kind == "domain":
        return StringMatcher("domain", subject, ctx)
    if kind == "host":
        return HostMatcher(subject, ctx)
    if kind == "address":
        return AddressMatcher(subject, ctx, caseless=caseless)
    if kind == "localpart":
        return LocalPartMatcher(subject, ctx, caseless=caseless)
    raise ValueError("unknown list kind %r" % kind)


def match_list(kind, subject, liststring, ctx, caseless=True, expand=True):
    """Check ``subject`` against list ``liststring`` of ``kind``.

    ``kind`` is "domain", "host" (subject: an object with ``.address`` and
    ``.name``), "address" or "localpart".  Returns a ``Match``; raises
    ``LookupDefer`` for DEFER.  ``expand=False`` takes the list as it is.
    """
    key = None
    if kind in _STATIC_KINDS and liststring and _is_static(kind, liststring):
        # The same few lists are checked against the same few subjects at
        # every RCPT of every message: a list whose answer cannot change
        # is answered from memory.
        key = (kind, liststring, caseless,
               getattr(subject, "address", None) if kind == "host" else subject)
        known = _answers.get(key)
        if known is not None:
            matched, value, numeric = known
            return Match(matched, value, list(numeric) if numeric is not None else None)
    m = _matcher(kind, subject, ctx, caseless)
    matched = check_list(liststring, m, expand=expand)
    result = Match(matched, m.value if matched else None, m.numeric if matched else None)
    if key is not None:
        if len(_answers) >= _MAX_ANSWERS:
            _answers.clear()
        _answers[key] = (result.matched, result.value,
                         list(result.numeric) if result.numeric is not None else None)
    return result


def match_static(kind, subject, liststring, caseless=True):
    """match_list's Match for a list that needs no expansion context (see
    _is_static: literal domains, IP addresses and networks), or None when
    the list may need one.  Lets a caller skip making the context."""
    if kind in _STATIC_KINDS and liststring and _is_static(kind, liststring):
        return match_list(kind, subject, liststring, None, caseless)
    return None


# Lists whose answer depends only on the subject (see _is_static), and the
# answers they gave: (kind, list, caseless, subject) -> (matched, value, numeric).
_STATIC_KINDS = ("domain", "host")
_static = {}
_answers = {}
_MAX_ANSWERS = 10000


def _is_static(kind, liststring):
    """Whether every item of ``liststring`` is compared with the subject
    alone: no expansion, named list, file, lookup, ``@`` item, +flag, or (in
    host lists) host name needing the DNS.  Such a list gives the same
    answer for the same subject every time."""
    answer = _static.get((kind, liststring))
    if answer is None:
        answer = "$" not in liststring and "\\" not in liststring and all(
            _static_item(kind, item) for item in iter_list(liststring))
        if len(_static) >= _MAX_ANSWERS:
            _static.clear()
        _static[(kind, liststring)] = answer
    return answer


def _static_item(kind, item):
    pattern = item[1:].lstrip(" \t\n\r\f\v") if item.startswith("!") else item
    if pattern[:1] in ("@", "/", "+") or ";" in pattern:
        return False
    if kind == "host":
        return pattern in ("", "*") or ip_and_mask(pattern) is not None
    return True


def _set_data(ctx, variable, result):
    if result and variable and ctx is not None and hasattr(ctx, "set"):
        ctx.set(variable, result.value)


def match_domain(domain, liststring, ctx, data_variable="domain_data"):
    """Whether ``domain`` is in domain list ``liststring`` (always caseless)."""
    result = match_list("domain", domain, liststring, ctx)
    _set_data(ctx, data_variable, result)
    return result.matched


def match_host(host, liststring, ctx, data_variable="host_data"):
    """Whether ``host`` (``.address``, ``.name`` or None) is in host list ``liststring``.

    ``host.address`` None or "" means no remote host (local submission):
    only the empty item and ``*`` match it.  ``host.name`` "" restricts
    matching to addresses (``${if match_ip}``).
    """
    result = match_list("host", host, liststring, ctx)
    _set_data(ctx, data_variable, result)
    return result.matched


def match_address(address, liststring, ctx, caseless=True, data_variable=None):
    """Whether ``address`` (possibly empty, the bounce sender) is in address list ``liststring``.

    The address is lower-cased first unless ``caseless`` is false (only the
    domain then); ``+caseful`` in the list restores the local part's case.
    """
    result = match_list("address", address, liststring, ctx, caseless=caseless)
    _set_data(ctx, data_variable, result)
    return result.matched


def match_localpart(lp, liststring, ctx, caseless=False, data_variable="local_part_data"):
    """Whether local part ``lp`` is in local part list ``liststring``.

    Comparisons respect case unless ``caseless`` (a router without
    ``caseful_local_part`` passes True); ``+caseful`` switches back.
    """
    result = match_list("localpart", lp, liststring, ctx, caseless=caseless)
    _set_data(ctx, data_variable, result)
    return result.matched


def in_list(subject, liststring, caseless=False):
    """``${if inlist}``: is ``subject`` equal to an item of plain list ``liststring``?"""
    if caseless:
        subject = subject.lower()
        return any(item.lower() == subject for item in iter_list(liststring))
    return any(item == subject for item in iter_list(liststring))
