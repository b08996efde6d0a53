"""Whether an ACL may block: the server runs the others inline on the reactor.

An ACL "may block" when evaluating it can wait on the network or the disk:
DNS lists, address and host verification, rate limit hints, delays, UDP
sends, ACL files, lookups (``${lookup``, ``name;`` list items), host names
in host lists (forward lookups, or the reverse lookup that ``$sender_host_name``
and ``@`` need) and ``@mx_*`` domain items.  The answer errs on the side of
"may block": a wrong True only costs a thread hand-off.
"""

import ipaddress

from exim_py.acl.engine import dequote_words, find_acl
from exim_py.acl.parse import AclError
from exim_py.errors import ConfigError
from exim_py.match import split_list

_BLOCKING_CONDITIONS = ("dnslists", "ratelimit", "delay", "udpsend", "spf", "spf_guess")
_NON_BLOCKING_VERIFIES = ("certificate", "header_syntax", "not_blind", "header_names_ascii")
_BLOCKING_TEXT = ("${lookup", "${run", "${readsocket", "${readfile", "${acl", "${perl",
                  "${dlfunc", "${prvscheck", "${imapfolder", "$sender_host_name",
                  "${sender_host_name", "def:sender_host_name", "$host_data")
_LIST_KINDS = {"hosts": "host", "domains": "domain", "sender_domains": "domain",
               "local_parts": "localpart", "senders": "address", "recipients": "address"}


def acl_may_block(config, acl_spec, _seen=None):
    """True if running ``acl_spec`` may wait on the network or the disk."""
    if not acl_spec:
        return False
    _seen = set() if _seen is None else _seen
    spec = acl_spec.strip()
    if spec in _seen:
        return False
    _seen.add(spec)
    if (spec.startswith("/") and " " not in spec) or _text_blocks(spec):
        return True
    try:
        _, statements = find_acl(config, spec)
    except (AclError, ConfigError):
        return False
    return any(_item_blocks(config, item, _seen)
               for statement in statements or () for item in statement.items)


def _text_blocks(text):
    return any(token in text for token in _BLOCKING_TEXT)


def _item_blocks(config, item, seen):
    value = item.value or ""
    if item.name in _BLOCKING_CONDITIONS or _text_blocks(value):
        return True
    if item.name == "verify":
        return not value.strip().lower().startswith(_NON_BLOCKING_VERIFIES)
    if item.name == "acl":
        words = dequote_words(value)
        return bool(words) and acl_may_block(config, words[0], seen)
    kind = _LIST_KINDS.get(item.name)
    return kind is not None and _list_blocks(config, kind, value, set())


def _list_blocks(config, kind, value, seen):
    for item in split_list(value):
        item = item.lstrip("!").strip()
        if not item:
            continue
        if ";" in item:
            return True                              # a lookup
        if item.startswith("+"):
            name = item[1:]
            named = (getattr(config, "named_lists", None) or {}).get(kind, {}).get(name)
            if named is None or name in seen:
                continue
            seen.add(name)
            if _list_blocks(config, kind, named.value or "", seen):
                return True
        elif kind == "host" and not _literal_host_item(item):
            return True
        elif kind == "domain" and item.startswith("@mx_"):
            return True
        elif item.startswith("/"):
            return True                              # a file of items
    return False


def _literal_host_item(item):
    """Host list items that need no DNS: addresses, networks, * and @[]."""
    if item in ("*", "@[]"):
        return True
    try:
        ipaddress.ip_network(item, strict=False)
        return True
    except ValueError:
        return False
