"""Items of domain, local part and address lists (Exim's check_string, check_address).

A domain or local part item is, in order of recognition (spec sections
"Domain lists" and "Local part lists"):

- in domain lists only: ``@`` (the primary host name), ``@[]`` (a domain
  literal holding one of our IP addresses), ``@mx_any``, ``@mx_primary``,
  ``@mx_secondary`` with an optional ``/ignore=<host list>``;
- ``*suffix``: the subject ends with ``suffix`` (no dot needed);
- ``^regex``: a regular expression, caseless unless ``(?-i)``;
- ``type;data``: a lookup — single-key types look the subject up in file
  ``data`` (partial matching allowed), query-style types run query ``data``;
- anything else is compared literally.

Address items add ``local@domain-item``, ``*suffix@domain-item``, ``@@lookup``
(the domain's data is a list of local-part patterns) and whole-address
lookups and regexes (spec section "Address lists").
"""

import socket

from exim_py import lookups
from exim_py.errors import LookupDefer
from exim_py.match.engine import Matcher, check_list
from exim_py.match.lists import iter_list

_SPACE = " \t\n\r\f\v"


def primary_hostname(ctx):
    """``primary_hostname``, or the system's host name when it is unset."""
    name = ctx.main_option("primary_hostname") if hasattr(ctx, "main_option") else None
    return name or socket.gethostname()


def regex_match(pattern, subject, caseless):
    """The re match of PCRE ``pattern`` on ``subject``, or None.

    Lists match regexes caselessly; a pattern can turn that off with
    ``(?-i)``, which Python spells as a scoped group, so the rest of the
    pattern after it becomes ``(?-i:…)``.
    """
    from exim_py.expand.regex import compile_regex
    if caseless:
        head, sep, tail = pattern.partition("(?-i)")
        pattern = "(?i)" + head + ("(?-i:%s)" % tail if sep else "")
    return compile_regex(pattern).search(subject)


def _lower(s):
    """ASCII-only lower case, as C's tolower."""
    return s.translate(_LOWER)


_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}


class StringMatcher(Matcher):
    """Matching one string: a domain, a local part, a host name or a plain string."""

    def __init__(self, kind, subject, ctx, caseless=True, use_partial=True):
        super().__init__(kind, ctx, subject)
        self.origsubject = subject
        self.subject = _lower(subject) if caseless else subject
        self.caseless = caseless
        self.use_partial = use_partial
        self.at_is_special = kind == "domain"

    def caseful(self):
        self.subject = self.origsubject
        self.caseless = False

    def check(self, pattern):
        s = self.subject
        if self.at_is_special and pattern.startswith("@"):
            if pattern == "@":
                pattern = primary_hostname(self.ctx)
            elif pattern == "@[]":
                from exim_py.match.hosts import local_addresses
                if not (s.startswith("[") and s.endswith("]")):
                    return False
                if _strip_v6_tag(s[1:-1]) in local_addresses(self.ctx):
                    self.value = pattern
                    return True
                return False
            elif pattern.lower().startswith("@mx_"):
                from exim_py.match.hosts import check_mx
                result = check_mx(s, pattern, self.ctx)
                if result is not None:
                    if result:
                        self.value = pattern
                    return result
        return self.check_pattern(pattern)

    def check_pattern(self, pattern):
        """The part of check_string shared by every kind of string item."""
        s = self.subject
        if pattern.startswith("*"):
            suffix = pattern[1:]
            tail = s[len(s) - len(suffix):] if len(suffix) <= len(s) else None
            if tail is None or (_lower(tail) != _lower(suffix) if self.caseless
                                else tail != suffix):
                return False
            self.value = pattern
            self.numeric = [s, s[:len(s) - len(suffix)]]
            return True
        if pattern.startswith("^"):
            # Exim matches regexes against the subject as given (caselessly
            # unless +caseful or (?-i)), but everything else against its
            # lower-cased copy: ${if match_domain{X.C.D}{^x\.(c)} sets $1 to "C".
            found = regex_match(pattern, self.origsubject, self.caseless)
            if found is None:
                return False
            self.value = pattern
            self.numeric = [found.group(0)] + [g or "" for g in found.groups()]
            return True
        semicolon = pattern.find(";")
        if semicolon < 0:
            if (_lower(s) != _lower(pattern)) if self.caseless else (s != pattern):
                return False
            self.value = pattern
            self.numeric = [s]
            return True
        return self.check_lookup(pattern[:semicolon], pattern[semicolon + 1:], s)

    def check_lookup(self, typetext, data, key):
        """A ``type;data`` item: does ``key`` (or the query ``data``) find something?"""
        ltype = lookups.parse_type(typetext)
        if not self.use_partial and ltype.partial is not None:
            ltype = ltype._replace(partial=None)
        if lookups.is_query_style(ltype.name):
            value, parts = lookups.search_wild(ltype, None, data, self.ctx)
        else:
            value, parts = lookups.search_wild(ltype, data, key, self.ctx)
        if value is None:
            return False
        self.value = value
        self.numeric = [key] + list(parts) if parts else [key]
        return True


def _strip_v6_tag(literal):
    """``IPv6:addr`` in a domain literal is the address ``addr``."""
    return literal[5:] if literal[:5].lower() == "ipv6:" else literal


def match_string_item(subject, pattern, ctx, expand=False):
    """Whether ``subject`` matches one wildlsearch-style key ``pattern``.

    The pattern is one item of a string list (``*x``, ``^re``, ``type;x``,
    a literal, ``!`` negation), compared caselessly; with ``expand`` it is
    string-expanded first.
    """
    m = StringMatcher("string", subject, ctx)
    return check_list(pattern, m, expand=expand, named=False, whole=True)


class AddressMatcher(Matcher):
    """Matching one email address (or the empty sender) against address items."""

    def __init__(self, address, ctx, caseless=True):
        super().__init__("address", ctx, address)
        self.origaddress = address
        at = address.rfind("@")
        if caseless:
            self.address = _lower(address)
        elif at >= 0:
            self.address = address[:at] + _lower(address[at:])
        else:
            self.address = address
        self.subject = self.address
        self.caseless = caseless

    def caseful(self):
        at = self.origaddress.rfind("@")
        if at >= 0:
            self.address = self.origaddress[:at] + self.address[at:]
        self.subject = self.address
        self.caseless = False

    def _string(self, subject, caseless, use_partial=True):
        return StringMatcher("string", subject, self.ctx, caseless=caseless,
                             use_partial=use_partial)

    def check(self, pattern):
        subject = self.address
        at = subject.rfind("@")
        if at < 0 and subject:
            # Exim logs this to the panic log: a non-empty subject needs a domain.
            return False
        if pattern.startswith("^"):
            # Exim keeps neither a value nor $1… from a whole-address regex.
            return self._string(subject, self.caseless).check_pattern(pattern)
        # A lookup of the whole address: type name, optional * or *@, then ";".
        i = 0
        while i < len(pattern) and (pattern[i].isalnum() or pattern[i] == "-"):
            i += 1
        if pattern[i:i + 1] == "*":
            i += 1
        if pattern[i:i + 1] == "@":
            i += 1
        if pattern[i:i + 1] == ";":
            # Partial matching makes no sense for whole addresses; Exim ignores it.
            m = self._string(subject, self.caseless, use_partial=False)
            if not m.check_pattern(pattern):
                return False
            self.value = m.value
            return True
        if not subject:
            return not pattern
        if pattern.startswith("@@"):
            return self._check_split(pattern[2:], subject, at)
        return self._check_parts(pattern, subject, at)

    def _check_split(self, lookup_item, subject, at):
        """``@@type;file``: the domain's data lists the local parts that match."""
        local = subject[:at]
        key = subject[at + 1:]
        for _ in range(50):
            m = self._string(key, False)
            semicolon = lookup_item.find(";")
            if semicolon < 0 or not m.check_lookup(lookup_item[:semicolon],
                                                   lookup_item[semicolon + 1:], key):
                return False
            data = m.value
            last_colon = data.rfind(":")
            last = data[last_colon + 1:].lstrip(_SPACE)
            if last.startswith(">"):
                key = last[1:].lstrip(_SPACE)
                data = data[:len(data) - len(last)]
            else:
                key = None
            for item in iter_list(data):
                positive = True
                if item.startswith("!"):
                    positive = False
                    item = item[1:].lstrip(_SPACE)
                lm = self._string(local, self.caseless)
                if lm.check_pattern(item):
                    self.value = lm.value
                    return positive
            if key is None:
                return False
        raise LookupDefer("Loop detected in lookup of local part of %s in @@%s"
                          % (subject, lookup_item))

    def _check_parts(self, pattern, subject, at):
        """``local@domain`` and friends; a pattern without @ is ``*@pattern``."""
        pat_at = pattern.rfind("@")
        plocal = ""
        if pat_at >= 0:
            # "x@@", "x@@[]", "x@@mx_any" …: the domain item is "@", "@[]" …
            if pat_at > 0 and pattern[pat_at - 1] == "@" and pattern[pat_at + 1:] in (
                    "", "[]", "mx_any", "mx_primary", "mx_secondary"):
                pat_at -= 1
            plocal = pattern[:pat_at]
            slocal = subject[:at]
            fold = _lower if self.caseless else (lambda x: x)
            if plocal.startswith("*"):
                suffix = plocal[1:]
                if len(slocal) < len(suffix) or fold(slocal[len(slocal) - len(suffix):]) \
                        != fold(suffix):
                    return False
            elif fold(slocal) != fold(plocal):
                return False
            domain_item = pattern[pat_at + 1:]
        else:
            domain_item = pattern
        dm = StringMatcher("domain", subject[at + 1:], self.ctx)
        if not check_list(domain_item, dm, expand=False, whole=True):
            return False
        # The value is the local part as the pattern wrote it, "@", and the
        # domain item's value: "*@*.example", "a@<looked-up data>".
        self.value = "%s@%s" % (plocal, dm.value or "")
        return True


class LocalPartMatcher(StringMatcher):
    """Local part lists: string items without the local-host ``@`` specials."""

    def __init__(self, local_part, ctx, caseless=False):
        super().__init__("localpart", local_part, ctx, caseless=caseless)
        self.at_is_special = False
