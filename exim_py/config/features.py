"""The optional features this exim_py really implements.

Each entry becomes a built-in ``_HAVE_<NAME>`` macro (so that a
configuration can say ``.ifdef _HAVE_TLS``) and a word on ``-bV``'s
"Support for:" line, exactly as Exim derives both from its build options.
Add a line here when a feature works end to end, and not before: a
configuration that tests ``_HAVE_X`` relies on X being there.

    FEATURES["TLS"] = "TLS"         # name after _HAVE_ -> word shown by -bV

A word of None makes the macro without a word on -bV.
"""

FEATURES = {
    "TLS": "OpenSSL",                   # smtp/tls.py (server) and smtp/tls_client.py, on pyOpenSSL
    "OPENSSL": None,                    # Exim defines it beside _HAVE_TLS for OpenSSL builds
    "PIPE_CONNECT": "PIPECONNECT",      # smtp/server.py: PIPECONNECT (pipelining_connect_advertise_hosts)
    "PRDR": "PRDR",                     # smtp/server.py + acl_phase.py (server), smtp/client.py (client)
    "PROXY": "PROXY",                   # smtp/proxy.py: hosts_proxy (Proxy Protocol v1/v2)
    "OCSP": "OCSP",                     # tls_ocsp_file stapling (smtp/tls.py), client checks (tls_client.py)
    "SPF": "SPF",                       # acl/spf.py + mailauth/spf.py (libspf2's results and texts)
}
