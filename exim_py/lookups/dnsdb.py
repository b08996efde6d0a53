"""The dnsdb lookup: DNS records as data (spec "More about dnsdb").

A query is ``[>S[,F|;]] [modifiers,] [type=]domain-list``: ``>S`` sets the
separator between records (newline by default), ``,F`` the separator
between the fields of one record and ``;`` joins TXT strings with nothing.
Modifiers are ``defer_strict|lax|never``, ``dnssec_strict|lax|never``,
``retrans_TIME`` and ``retry_N``.  Types: a, a+, aaaa, cname, mx, mxh, ns,
ptr, soa, spf, srv, tlsa, txt (the default) and zns.  Data is formatted as
Exim's dnsdb.c formats it.
"""

import ipaddress
import re

from exim_py import dns as edns
from exim_py.config.options import read_time
from exim_py.lookups import defer

TYPES = ("a", "a+", "aaaa", "cname", "mx", "mxh", "ns", "ptr", "soa", "spf", "srv",
         "tlsa", "txt", "zns")
_SPACE = " \t\n\r\f\v"


def _strip(s):
    return s.lstrip(_SPACE)


def parse_query(query):
    """The parts of a dnsdb query: a dict of settings and the domain list."""
    q = query
    outsep, fieldsep = "\n", None
    if q.startswith(">"):
        outsep = q[1:2]
        q = q[2:]
        if q.startswith(","):
            fieldsep = q[1:2]
            q = q[2:]
        elif q.startswith(";"):
            fieldsep = ""
            q = q[1:]
        q = _strip(q)
    settings = {"defer": "lax", "dnssec": "lax", "retrans": None, "retry": None}
    while True:
        low = q.lower()
        if low.startswith("defer_") or low.startswith("dnssec_"):
            what, _, rest = q.partition("_")
            mode = next((m for m in ("strict", "lax", "never") if rest.lower().startswith(m)), None)
            if mode is None:
                raise defer("unsupported dnsdb %s behaviour" % what.lower())
            settings[what.lower()] = mode
            q = rest[len(mode):]
        elif low.startswith("retrans_"):
            value, _, _ = q[8:].partition(",")
            seconds = read_time(value.strip())
            if seconds <= 0:
                raise defer("unsupported dnsdb timeout value")
            settings["retrans"] = seconds
            q = q[8 + len(value):]
        elif low.startswith("retry_"):
            m = re.match(r"\d+", q[6:])
            if m is None:
                raise defer("unsupported dnsdb retry count")
            settings["retry"] = int(m.group())
            q = q[6 + len(m.group()):]
        else:
            break
        q = _strip(q)
        if not q.startswith(","):
            raise defer("dnsdb modifier syntax error")
        q = _strip(q[1:])
    rtype = "txt"
    equals = q.find("=")
    if equals >= 0:
        rtype = q[:equals].rstrip(_SPACE).lower()
        if rtype not in TYPES:
            raise defer("unsupported DNS record type")
        q = _strip(q[equals + 1:])
    if fieldsep is None:
        fieldsep = {"spf": "", "srv": " ", "mx": " ", "tlsa": " "}.get(rtype)
    settings.update(outsep=outsep, fieldsep=fieldsep, type=rtype)
    return settings, q


def _domains(rtype, text):
    """The domains (or addresses) of the query, split as an Exim list."""
    from exim_py.match import split_list
    # Back-compatibility: a lone IPv6 address for PTR is not split on colons.
    if rtype == "ptr" and not text.startswith("<"):
        try:
            if ipaddress.ip_address(text.strip()).version == 6:
                return [text.strip()]
        except ValueError:
            pass
    return split_list(text)


def _name(n):
    return n.to_text(omit_final_dot=True)


def _format(rtype, rdata, fieldsep):
    """One record as dnsdb text (A records are handled by the caller)."""
    if rtype in ("txt", "spf"):
        strings = [s.decode("utf-8", "surrogateescape") for s in rdata.strings]
        if fieldsep is None:
            return strings[0] if strings else ""
        return fieldsep.join(strings)
    if rtype == "mx":
        return "%d%s%s" % (rdata.preference, fieldsep, _name(rdata.exchange))
    if rtype == "mxh":
        return _name(rdata.exchange)
    if rtype == "srv":
        return "%d%s%d%s%d%s%s" % (rdata.priority, fieldsep, rdata.weight, fieldsep,
                                   rdata.port, fieldsep, _name(rdata.target))
    if rtype == "tlsa":
        return "%d%s%d%s%d%s%s" % (rdata.usage, fieldsep, rdata.selector, fieldsep,
                                   rdata.mtype, fieldsep, rdata.cert.hex())
    if rtype == "soa":
        if fieldsep is None:
            return _name(rdata.mname)
        return fieldsep.join([_name(rdata.mname), _name(rdata.rname)] +
                             ["%d" % v for v in (rdata.serial, rdata.refresh, rdata.retry,
                                                 rdata.expire, rdata.minimum)])
    # cname, ns, zns, ptr
    return _name(rdata.target)


class Lookup:
    single_key = False

    def find(self, source, query, options, ctx):
        settings, domains = parse_query(query)
        config = getattr(ctx, "config", None)
        resolver = edns.get_resolver(config, settings["retrans"], settings["retry"])
        rtype = settings["type"]
        dnssec = settings["dnssec"] != "never"
        out = []
        deferred = False
        secure_all = True
        for domain in _domains(rtype, domains):
            qtypes = {"a+": ["aaaa", "a"], "mxh": ["mx"], "zns": ["ns"]}.get(rtype, [rtype])
            for qtype in qtypes:
                name = domain
                if rtype == "ptr":
                    try:
                        name = edns.reverse_name(domain)
                    except Exception:
                        name = domain
                ans = self._ask(resolver, name, qtype, rtype, dnssec)
                if ans.status in (edns.NXDOMAIN, edns.NODATA):
                    continue
                secure_all = secure_all and ans.secure
                if ans.status != edns.FOUND or (settings["dnssec"] == "strict"
                                                and not ans.secure):
                    if settings["defer"] == "strict":
                        raise defer('dnsdb lookup of "%s" deferred' % domain)
                    if settings["defer"] == "lax":
                        deferred = True
                    continue
                for rdata in ans.records:
                    if qtype in ("a", "aaaa"):
                        out.append(rdata.address)
                    else:
                        out.append(_format(rtype, rdata, settings["fieldsep"]))
        if ctx is not None and hasattr(ctx, "set"):
            ctx.set("lookup_dnssec_authenticated",
                    None if not dnssec else ("yes" if secure_all and out else "no"))
        result = settings["outsep"].join(out)
        if not result:
            if deferred:
                raise defer('dnsdb lookup of "%s" deferred' % query)
            return None
        return result

    @staticmethod
    def _ask(resolver, name, qtype, rtype, dnssec):
        """One question; zns and soa walk up the tree until something answers."""
        while True:
            ans = resolver.query(name, qtype.upper(), dnssec=dnssec)
            if rtype not in ("zns", "soa") or ans.status not in (edns.NXDOMAIN, edns.NODATA):
                return ans
            if "." not in name:
                return ans
            name = name.split(".", 1)[1]
