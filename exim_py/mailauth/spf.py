"""SPF (RFC 7208) evaluation with the results and texts of libspf2 1.2.10.

Exim's SPF support (spec section "SPF (Sender Policy Framework)") hands
the work to libspf2 and shows its answers unchanged: the result name, the
header comment, the Received-SPF: text and the SMTP comment.  This module
evaluates a sender's record the same way and words the outcome the same
way, quirks included, as Debian's exim4 (libspf2 1.2.10) shows them:

- a client on the loopback network always passes ("localhost is always
  allowed."), whatever the record says;
- a record that does not compile (an unknown mechanism, a bad address or
  prefix length, an unknown macro letter) gives the result "(invalid)" and
  no texts at all, where RFC 7208 would say permerror;
- unknown modifiers are ignored and ``exp=`` is not fetched: the SMTP
  comment is always ``spf_smtp_comment_template`` and the reason;
- there is no limit on the number of DNS-querying terms; only a chain of
  include:/redirect= deeper than libspf2 follows is a permerror.

One deliberate difference: when the sender domain's own TXT lookup fails
temporarily (SERVFAIL, timeout) the result is temperror, as Exim's test
suite and its specification expect; Debian's libspf2 leaves "(invalid)".

DNS goes through a ``query(name, rdtype) -> (status, records)`` callable
(``exim_py.dns`` statuses; TXT records as joined strings, MX as
``(preference, host)``, PTR as names, A/AAAA as address strings), so the
caller chooses the resolver and the cache.  Blocking: run it in a thread.
"""

import ipaddress
import time
import urllib.parse

# libspf2's result codes, in its order: $spf_result's words and the names
# the spf ACL condition compares with ("(invalid)" prints for code 0).
RESULTS = ("invalid", "neutral", "pass", "fail", "softfail", "none", "temperror", "permerror")
_QUALIFIERS = {"+": "pass", "-": "fail", "~": "softfail", "?": "neutral"}
_MECHANISMS = ("all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists")
_NEEDS_DOMAIN = ("include", "exists")
_MACRO_LETTERS = "slodiphcrtvSLODIPHCRTV"
# exim_py.dns's AGAIN and FAIL statuses, named here so that importing this
# module does not load dnspython
_DEFERRED = ("again", "fail")
# libspf2 follows include:/redirect= this deep before it calls it a loop.
_MAX_DEPTH = 20
_MAX_VOIDS = 10
# SPF_strerror() texts shown in a permerror's header comment.
_E_MULTIPLE = "Multiple SPF or TXT records for domain."
_E_NOT_FOUND = "Could not find a valid SPF record"
_E_RECURSIVE = "include: or redirect= caused unlimited recursion"
_E_BIG_DNS = "Mechanisms used too many DNS lookups"


class _Invalid(Exception):
    """The record does not compile: libspf2's "(invalid)" result."""


class _Outcome(Exception):
    """Evaluation stops with ``result`` (temperror, permerror) and an error text."""

    def __init__(self, result, error=None):
        super().__init__(result)
        self.result = result
        self.error = error


class Response:
    """What a check found: ``result`` (one of RESULTS), ``reason`` (libspf2's
    "mechanism", "default", "localhost" or None) and ``error`` (the text of
    a permerror), with the request's facts the texts are made from."""

    def __init__(self, request, result, reason=None, error=None, domain=None):
        self.request = request
        self.result = result
        self.reason = reason
        self.error = error
        self.domain = domain            # whose record decided: %{d} in the explanation

    @property
    def result_text(self):
        """$spf_result: the result's name, "(invalid)" for an invalid record."""
        return "(invalid)" if self.result == "invalid" else self.result

    def header_comment(self):
        """$spf_header_comment, as libspf2 words it (and truncates it)."""
        if self.result == "invalid":
            return ""
        req = self.request
        source = "domain of %s" % req.sender_domain
        ip = req.ip_text
        text = {
            "pass": "%s designates %s as permitted sender" % (source, ip),
            "fail": "%s does not designate %s as permitted sender" % (source, ip),
            "softfail": "transitioning %s does not designate %s as permitted sender"
                        % (source, ip),
            "neutral": "%s is neither permitted nor denied by %s" % (ip, source),
            "none": "%s does not provide an SPF record" % source,
            "temperror": "encountered temporary error during SPF processing of %s" % source,
            "permerror": "error in processing during lookup of %s: %s" % (source, self.error),
        }[self.result]
        if self.reason == "localhost":
            text = "localhost is always allowed."
        # libspf2 writes into a buffer sized from these three strings plus 80
        limit = len(req.receiver) + len(source) + len(ip) + 79
        return ("%s: %s" % (req.receiver, text))[:limit]

    def received(self):
        """$spf_received: a whole Received-SPF: header line."""
        if self.result == "invalid":
            return ""
        req = self.request
        return "Received-SPF: %s (%s) client-ip=%s; envelope-from=%s; helo=%s;" % (
            self.result, self.header_comment(), req.ip_text, req.envelope_from, req.helo)

    def smtp_comment(self, explanation):
        """$spf_smtp_comment: the explanation and the reason, for the
        results that deny or doubt the client; empty for the others."""
        if self.result not in ("fail", "softfail", "neutral"):
            return ""
        text = expand_macros(explanation, self.request, domain=self.domain, explanation=True)
        return "%s : Reason: %s" % (text, self.reason)


class Request:
    """The facts one check is about: client address, HELO name, envelope
    sender (libspf2 uses postmaster@<HELO name> for the null sender) and
    the receiving host's name."""

    def __init__(self, ip, sender, helo, receiver):
        address = ipaddress.ip_address(ip)
        if address.version == 6 and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        self.ip = address
        self.ip_text = str(ipaddress.ip_address(ip))
        self.helo = helo or ""
        sender = sender or self.helo
        if "@" in sender[1:]:
            local, domain = sender.rsplit("@", 1)
        else:
            local, domain = "postmaster", sender.lstrip("@")
        self.local_part = local
        self.sender_domain = domain
        self.envelope_from = "%s@%s" % (local, domain)
        self.receiver = receiver or ""

    def is_loopback(self):
        return self.ip.is_loopback


def check(request, query, record=None):
    """Evaluate the sender domain's SPF record (or ``record`` itself, for
    the best-guess fallback) for ``request``; returns a Response."""
    if request.is_loopback():
        return Response(request, "pass", "localhost")
    ev = _Evaluation(request, query)
    try:
        result, reason = ev.run(request.sender_domain, record, 0, top=True)
    except _Invalid:
        return Response(request, "invalid")
    except _Outcome as o:
        return Response(request, o.result, None, o.error)
    return Response(request, result, reason, domain=ev.decided)


class _Evaluation:
    """One check: the request, the DNS and the include:/redirect= depth."""

    def __init__(self, request, query):
        self.request = request
        self.query = query
        self.voids = 0
        self.decided = None

    def _ask(self, name, rdtype):
        status, records = self.query(name, rdtype)
        if status in _DEFERRED:
            raise _Outcome("temperror")
        return records

    def record_of(self, domain):
        """The one SPF record at ``domain``; None when there is none."""
        status, records = self.query(domain, "TXT")
        if status in _DEFERRED:
            raise _Outcome("temperror")
        # Exim's DNS layer keeps the TXT records starting "v=spf1" in any
        # case; libspf2 wants the version tag whole.
        spf = [r for r in records if r[:6].lower() == "v=spf1" and r[6:7] in ("", " ")]
        if len(spf) > 1:
            raise _Outcome("permerror", _E_MULTIPLE)
        return spf[0] if spf else None

    def run(self, domain, record, depth, top=False):
        """(result, reason) of ``record`` (fetched from ``domain`` when None)."""
        if depth > _MAX_DEPTH:
            raise _Outcome("permerror", _E_RECURSIVE)
        if record is None:
            record = self.record_of(domain)
            if record is None:
                if top:
                    return "none", None
                raise _Outcome("permerror", _E_NOT_FOUND)
        terms, redirect = parse_record(record)
        outer_voids, self.voids = self.voids, 0
        try:
            for qualifier, name, arg, cidr in terms:
                if self.matches(name, arg, cidr, domain, depth):
                    self.decided = domain
                    return _QUALIFIERS[qualifier], "mechanism"
        finally:
            self.voids = outer_voids
        if redirect is not None:
            target = self.expand(redirect, domain)
            return self.run(target, None, depth + 1)
        self.decided = domain
        return "neutral", "default"

    def expand(self, spec, domain):
        return expand_macros(spec, self.request, domain=domain)

    def matches(self, name, arg, cidr, domain, depth):
        ip = self.request.ip
        if name == "all":
            return True
        if name in ("ip4", "ip6"):
            return ip in arg
        target = self.expand(arg, domain) if arg else domain
        if name == "include":
            result, _ = self.run(target, None, depth + 1)
            if result == "temperror":
                raise _Outcome("temperror")
            return result == "pass"
        if name == "exists":
            return bool(self._void(self._ask(target, "A")))
        if name == "a":
            return self._in_networks(self._addresses(target), cidr)
        if name == "mx":
            hosts = sorted(self._void(self._ask(target, "MX")))
            return any(self._in_networks(self._addresses(host), cidr) for _, host in hosts)
        return self._ptr_matches(target)

    def _void(self, records):
        """Count a lookup that found nothing: libspf2 1.2.10 gives up on a
        record after ten of them (its take on RFC 7208 4.6.4's limits; a
        record's include:s count on their own)."""
        if not records:
            self.voids += 1
            if self.voids > _MAX_VOIDS:
                raise _Outcome("permerror", _E_BIG_DNS)
        return records

    def _addresses(self, name):
        return self._void(self._ask(name, "A" if self.request.ip.version == 4 else "AAAA"))

    def _in_networks(self, addresses, cidr):
        ip = self.request.ip
        prefix = cidr[0] if ip.version == 4 else cidr[1]
        for text in addresses:
            try:
                if ip in ipaddress.ip_network("%s/%d" % (text, prefix), strict=False):
                    return True
            except ValueError:
                continue
        return False

    def _ptr_matches(self, target):
        """ptr: a name of the client, confirmed by a forward lookup, that is
        ``target`` or ends with ``.target`` (RFC 7208 5.5)."""
        ip = self.request.ip
        _, names = self.query(ip.reverse_pointer, "PTR")
        target = target.lower().rstrip(".")
        for name in names[:10]:
            name = name.lower().rstrip(".")
            if name != target and not name.endswith("." + target):
                continue
            _, addresses = self.query(name, "A" if ip.version == 4 else "AAAA")
            if str(ip) in addresses:
                return True
        return False


def parse_record(record):
    """The terms of a record ``[(qualifier, name, arg, (cidr4, cidr6))]``
    and its redirect= domain-spec; raises _Invalid where libspf2 would not
    compile it."""
    terms, redirect = [], None
    for word in record.split()[1:]:
        if "=" in word.split(":", 1)[0]:
            key, value = word.split("=", 1)
            if key.lower() == "redirect":
                _check_macros(value)
                redirect = value
            # exp= and unknown modifiers: ignored
            continue
        qualifier = word[0] if word[0] in _QUALIFIERS else "+"
        body = word[1:] if word[0] in _QUALIFIERS else word
        name, _, arg = body.partition(":")
        arg = arg if ":" in body else None
        name, slash, rest = name.lower().partition("/")
        cidr = (32, 128)
        if name in ("a", "mx") and arg is not None and "/" in arg:
            arg, slash, rest = arg.partition("/")
        if slash:
            if name not in ("a", "mx"):
                raise _Invalid(word)
            cidr = _dual_cidr("/" + rest)
        if name not in _MECHANISMS:
            raise _Invalid(word)
        if name in ("ip4", "ip6"):
            arg = _network(name, arg)
        elif name in _NEEDS_DOMAIN and not arg:
            raise _Invalid(word)
        elif arg:
            _check_macros(arg)
        terms.append((qualifier, name, arg, cidr))
    return terms, redirect


def _dual_cidr(text):
    """"/24", "//64" or "/24//64" as (ipv4 prefix, ipv6 prefix)."""
    v4, _, v6 = text[1:].partition("//") if not text.startswith("//") else ("", "", text[2:])
    try:
        p4 = int(v4) if v4 else 32
        p6 = int(v6) if v6 else 128
    except ValueError:
        raise _Invalid(text)
    if not 0 <= p4 <= 32 or not 0 <= p6 <= 128:
        raise _Invalid(text)
    return p4, p6


def _network(name, arg):
    try:
        net = ipaddress.ip_network(arg or "", strict=False)
    except ValueError:
        raise _Invalid("%s:%s" % (name, arg))
    if net.version != (4 if name == "ip4" else 6):
        raise _Invalid("%s:%s" % (name, arg))
    return net


def _check_macros(spec):
    """Reject a domain-spec whose macros libspf2 does not know."""
    i = 0
    while True:
        i = spec.find("%", i)
        if i < 0:
            return
        nxt = spec[i + 1:i + 2]
        if nxt in ("%", "_", "-"):
            i += 2
            continue
        if nxt != "{" or "}" not in spec[i:] or spec[i + 2:i + 3] not in _MACRO_LETTERS \
                or not spec[i + 2:i + 3]:
            raise _Invalid(spec)
        i = spec.index("}", i) + 1


def expand_macros(spec, request, domain=None, explanation=False):
    """RFC 7208 section 7 macros in ``spec`` for ``request``: %{s}, %{l},
    %{o}, %{d}, %{i}, %{p}, %{v}, %{h} (and in an explanation %{c}, %{r},
    %{t}); digits and "r" transform, an upper-case letter URL-escapes."""
    out, i = [], 0
    while i < len(spec):
        c = spec[i]
        if c != "%":
            out.append(c)
            i += 1
            continue
        nxt = spec[i + 1:i + 2]
        if nxt in ("%", "_", "-"):
            out.append({"%": "%", "_": " ", "-": "%20"}[nxt])
            i += 2
            continue
        end = spec.find("}", i)
        if nxt != "{" or end < 0:
            out.append(c)
            i += 1
            continue
        out.append(_macro(spec[i + 2:end], request, domain, explanation))
        i = end + 1
    return "".join(out)


def _macro(body, request, domain, explanation):
    letter, rest = body[:1], body[1:]
    value = _macro_value(letter.lower(), request, domain)
    digits = ""
    while rest[:1].isdigit():
        digits, rest = digits + rest[0], rest[1:]
    reverse = rest[:1].lower() == "r"
    delimiters = rest[1:] if reverse else rest
    if digits or reverse or delimiters:
        parts = value
        for d in delimiters or ".":
            parts = parts.replace(d, "\0")
        parts = parts.split("\0")
        if reverse:
            parts.reverse()
        if digits and int(digits):
            parts = parts[-int(digits):]
        value = ".".join(parts)
    if letter.isupper():
        value = urllib.parse.quote(value, safe="")
    return value


def _macro_value(letter, request, domain):
    ip = request.ip
    if letter == "s":
        return request.envelope_from
    if letter == "l":
        return request.local_part
    if letter == "o":
        return request.sender_domain
    if letter == "d":
        return domain or request.sender_domain
    if letter == "i":
        if ip.version == 4:
            return str(ip)
        return ".".join(ip.exploded.replace(":", ""))
    if letter == "c":
        return str(ip)
    if letter == "p":
        return "unknown"
    if letter == "v":
        return "in-addr" if ip.version == 4 else "ip6"
    if letter == "h":
        return request.helo
    if letter == "r":
        return request.receiver
    if letter == "t":
        return str(int(time.time()))
    return ""


def resolver_query(resolver, cache=None):
    """A ``query`` callable for check() over an exim_py.dns Resolver,
    answers kept in ``cache`` (a dict) when one is given."""
    def query(name, rdtype):
        key = ("spf", name.lower(), rdtype)
        if cache is not None and key in cache:
            return cache[key]
        ans = resolver.query(name, rdtype)
        records = [_record_text(rdtype, r) for r in ans.records]
        answer = (ans.status, records)
        if cache is not None:
            cache[key] = answer
        return answer
    return query


def _record_text(rdtype, record):
    if rdtype == "TXT":
        return b"".join(record.strings).decode("latin-1")
    if rdtype == "MX":
        return (record.preference, record.exchange.to_text(omit_final_dot=True))
    if rdtype == "PTR":
        return record.target.to_text(omit_final_dot=True)
    return record.address
