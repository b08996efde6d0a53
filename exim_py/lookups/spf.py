"""The spf lookup: ``${lookup {sender} spf {ip}}`` gives the SPF result for
mail from ``sender`` sent by a client at ``ip`` (spec section "SPF (Sender
Policy Framework)"): pass, fail, softfail, neutral, none, temperror,
permerror or "(invalid)", as $spf_result would show it.  There is no HELO
name, so the null sender has no domain to check.  An ``ip`` that is not an
IP address makes the lookup fail, as Exim's does.
"""

import ipaddress

from exim_py import dns as edns
from exim_py.mailauth import spf


class Lookup:
    single_key = True

    def find(self, source, key, options, ctx):
        try:
            ipaddress.ip_address(source)
        except ValueError:
            return None
        config = getattr(ctx, "config", None)
        receiver = ""
        if config is not None:
            from exim_py.expand.variables import primary_hostname
            receiver = primary_hostname(ctx)
        request = spf.Request(source, key, "", receiver)
        query = spf.resolver_query(edns.get_resolver(config))
        return spf.check(request, query).result_text
