"""Header checks for the DATA ACL: verify = header_syntax, not_blind, header_names_ascii.

``header_syntax`` reads every address in From:, Reply-To:, Sender:, To:,
Cc: and Bcc: with a parser that follows Exim's (parse.c), so that a failure
is described in Exim's words: "malformed address: X may not follow Y",
"'>' missing at end of address", "unqualified address not permitted" ...,
followed by ``: failing address in "To:" header is: ...``.
"""

import re

from exim_py.log import printing

OK, FAIL = "accept", "deny"

_CHECKED = ("from", "reply-to", "sender", "to", "cc", "bcc")
_SENDER_HEADERS = ("from", "sender")
_SPECIALS = '()<>@,;:\\".[]'
_HEADER_NAME = re.compile(r"^[\x21-\x39\x3b-\x7e]+$")


class _Bad(Exception):
    """An address that does not parse; the message is Exim's."""


def _skip(s, i):
    """Skip white space and (nested) comments."""
    n = len(s)
    while i < n:
        if s[i].isspace():
            i += 1
        elif s[i] == "(":
            depth = 0
            while i < n:
                if s[i] == "\\":
                    i += 1
                elif s[i] == "(":
                    depth += 1
                elif s[i] == ")":
                    depth -= 1
                    if depth == 0:
                        break
                i += 1
            i += 1
        else:
            break
    return i


def _word(s, i):
    """An atom or a quoted string at ``i``: (text, new index); "" if neither."""
    n = len(s)
    if i < n and s[i] == '"':
        j = i + 1
        while j < n and s[j] != '"':
            j += 2 if s[j] == "\\" else 1
        if j >= n:
            raise _Bad("unmatched doublequote in local part")
        return s[i:j + 1], j + 1
    j = i
    while j < n and not s[j].isspace() and s[j] not in _SPECIALS and ord(s[j]) >= 32:
        j += 1
    return s[i:j], j


def _local_part(s, i):
    parts = []
    while True:
        i = _skip(s, i)
        word, i = _word(s, i)
        if not word:
            break
        parts.append(word)
        i = _skip(s, i)
        if i < len(s) and s[i] == ".":
            parts.append(".")
            i += 1
            continue
        break
    return "".join(parts), i


def _domain(s, i):
    i = _skip(s, i)
    n = len(s)
    if i < n and s[i] == "[":
        j = s.find("]", i)
        if j < 0:
            raise _Bad("domain missing or malformed")
        return s[i:j + 1], j + 1
    atoms = []
    while True:
        i = _skip(s, i)
        word, i = _word(s, i)
        if not word or word.startswith('"'):
            raise _Bad("domain missing or malformed")
        atoms.append(word)
        i = _skip(s, i)
        if i < n and s[i] == ".":
            i += 1
            continue
        return ".".join(atoms), i


def _route_addr(s, i):
    """``<local@domain>`` starting at the ``<``; returns (address, qualified, index)."""
    i = _skip(s, i + 1)
    if i < len(s) and s[i] == "@":          # a source route, @a,@b: — skipped
        colon = s.find(":", i)
        i = colon + 1 if colon >= 0 else len(s)
    local, i = _local_part(s, i)
    if not local:
        raise _Bad("missing or malformed local part")
    qualified = False
    domain = ""
    i = _skip(s, i)
    if i < len(s) and s[i] == "@":
        domain, i = _domain(s, i + 1)
        qualified = True
    i = _skip(s, i)
    if i >= len(s) or s[i] != ">":
        raise _Bad("'>' missing at end of address")
    return local + ("@" + domain if qualified else ""), qualified, i + 1


def extract(s, in_group=False):
    """Exim's parse_extract_address for one header item: (address or None, qualified).

    None means an empty item (allowed).  Raises _Bad with Exim's message.
    Returns also whether a group started, for the items that follow.
    """
    n = len(s)
    i = _skip(s, 0)
    if i >= n:
        return None, True, in_group
    # Group syntax: "phrase:" starts a group, ";" ends it.
    m = re.match(r'[^<>@,;:"()\[\]]*:', s[i:])
    if m and not s[i:].startswith(":"):
        in_group = True
        i = _skip(s, i + m.end())
        if i >= n or s[i] == ";":
            return None, True, in_group
    start = i
    if s[i] == "@":
        raise _Bad("no local part")
    if s[i] == "<":
        address, qualified, i = _route_addr(s, i)
    else:
        local, i = _local_part(s, i)
        i = _skip(s, i)
        if i < n and s[i] == "@":
            domain, i = _domain(s, i + 1)
            address, qualified = local + "@" + domain, True
        elif i < n and (s[i] == "<" or s[i] not in _SPECIALS):
            # The words so far were a display name: a route-addr must follow.
            while i < n and s[i] != "<":
                word, j = _word(s, i)
                if j == i and s[i] != ".":
                    break
                i = _skip(s, max(j, i + (s[i] == ".")))
            if i >= n or s[i] != "<":
                raise _Bad('missing or malformed local part (expected word or "<")')
            address, qualified, i = _route_addr(s, i)
        else:
            if not local:
                raise _Bad('missing or malformed local part (expected word or "<")')
            address, qualified = local, False
    i = _skip(s, i)
    if in_group and i < n and s[i] == ";":
        i = _skip(s, i + 1)
        in_group = False
    if i < n:
        raise _Bad("malformed address: %s may not follow %s" % (s[i:i + 32], s[start:i]))
    return address, qualified, in_group


def split_items(value):
    """Split a header value at the commas that separate addresses."""
    items, depth, angle, quote, start = [], 0, 0, False, 0
    i = 0
    while i < len(value):
        c = value[i]
        if c == "\\":
            i += 2
            continue
        if quote:
            quote = c != '"'
        elif c == '"':
            quote = True
        elif c == "(":
            depth += 1
        elif c == ")" and depth:
            depth -= 1
        elif depth == 0 and c == "<":
            angle += 1
        elif depth == 0 and c == ">" and angle:
            angle -= 1
        elif depth == 0 and angle == 0 and c == ",":
            items.append(value[start:i])
            start = i + 1
        i += 1
    items.append(value[start:])
    return items


def _live(envelope):
    return [h for h in (envelope.headers if envelope is not None else []) if h.flag != "*"]


def header_syntax(run):
    """verify = header_syntax: Exim's check and failure text (in ``run.log``)."""
    env = run.ctx.envelope
    local = run.ctx.session.local
    for header in _live(env):
        name, _, value = header.text.partition(":")
        if name.strip().lower() not in _CHECKED:
            continue
        allow_unqualified = local
        value = value.lstrip()
        in_group = False
        for item in split_items(value):
            try:
                address, qualified, in_group = extract(item, in_group)
                if address is not None and not qualified and not allow_unqualified:
                    raise _Bad("unqualified address not permitted")
            except _Bad as e:
                run.log = printing('%s: failing address in "%s:" header is: %s'
                                   % (e, name.rstrip(), item.lstrip().rstrip()))
                run.ctx.set_variable("acl_verify_message", run.log)
                return FAIL
    return OK


def header_names_ascii(run):
    for header in _live(run.ctx.envelope):
        if not _HEADER_NAME.match(header.name):
            run.log = 'Invalid character in header "%s" found' % header.name
            return FAIL
    return OK


def not_blind(run, options):
    """Every envelope recipient must be in To: or Cc: (or Resent- ones)."""
    env = run.ctx.envelope
    if env is None:
        return OK
    caseless = "case_insensitive" in options
    found = set()
    for header in _live(env):
        if header.name.lower() in ("to", "cc", "resent-to", "resent-cc"):
            for item in split_items(header.value.strip()):
                try:
                    address, _, _ = extract(item)
                except _Bad:
                    continue
                if address:
                    found.add(address.lower() if caseless else address)
    for recipient in env.recipients:
        address = recipient.address.lower() if caseless else recipient.address
        if address not in found:
            run.log = "bcc recipient detected"
            return FAIL
    return OK


_SENDER_ORDER = ("sender", "reply-to", "from")


def header_sender(run, verify):
    """verify = header_sender: some address in Sender:, Reply-To: or From: (in that
    order of headers) must verify as a sender; ``verify(address)`` routes one.

    A syntax error in one of those headers fails at once, with Exim's text.
    """
    env = run.ctx.envelope
    qualify = qualify_domain(run.ctx.config)
    deferred = False
    for wanted in _SENDER_ORDER:
        for header in _live(env):
            name, _, value = header.text.partition(":")
            if name.strip().lower() != wanted:
                continue
            in_group = False
            for item in split_items(value):
                text = item.strip()
                if not text:
                    continue
                try:
                    address, qualified, in_group = extract(text, in_group)
                except _Bad as e:
                    run.log = printing("syntax error in '%s:' header when scanning for sender: "
                                       "%s in \"%s\"" % (name, e, text))
                    return FAIL
                if address is None:
                    continue
                if not qualified:
                    address = "%s@%s" % (address, qualify)
                rc = verify(address)
                if rc == OK:
                    return OK
                deferred = deferred or rc == "defer"
    if deferred:
        run.log = "all attempts to verify a sender in a header line deferred"
        return "defer"
    run.log = "there is no valid sender in any header line"
    return FAIL


def qualify_domain(config):
    for option in ("qualify_domain", "primary_hostname"):
        try:
            value = config.main[option]
        except (KeyError, TypeError, AttributeError):
            value = None
        if value:
            return value
    return "localhost"
