"""Does a server certificate belong to the host we meant to reach?

This is the check behind the smtp transport's ``tls_verify_cert_hostnames``
(spec chapter "The smtp transport"; the older experimental option was called
``tls_verify_cert_hostname``).  The name checked is the host name the router
produced (the MX target, or the head of a CNAME chain).  Exim's rules:

- the subjectAltName DNS names are used when the certificate has any; only
  when it has none is the subject's Common Name used instead;
- comparison ignores case;
- a wildcard is allowed only as the whole first label of a pattern that has
  at least three labels: ``*.example.com`` matches ``mx.example.com`` but not
  ``example.com`` nor ``a.mx.example.com``; ``*.com``, ``f*.example.com`` and
  ``mx.*.example.com`` match nothing.

The pattern rules are service-identity's (RFC 6125 section 6.4.3 as it
implements it), which agree with Exim's; the Common Name fallback is ours,
because service-identity deliberately no longer looks at the CN.
"""

import ipaddress

from cryptography import x509
from cryptography.x509.oid import NameOID
from service_identity import CertificateError, VerificationError
from service_identity.hazmat import (DNS_ID, DNSPattern, IPAddress_ID, IPAddressPattern,
                                     verify_service_identity)


def _dns_patterns(names):
    """DNSPatterns for the names that are well formed; malformed wildcards are dropped."""
    patterns = []
    for name in names:
        try:
            patterns.append(DNSPattern.from_bytes(name.rstrip(".").encode("ascii", "strict")))
        except (CertificateError, UnicodeEncodeError):
            # An unusable pattern (wildcard in the wrong place, too few
            # labels, non-ASCII) can never match, so it is simply left out.
            continue
    return patterns


def certificate_patterns(cert):
    """The name patterns ``cert`` vouches for, by Exim's precedence rule.

    ``cert`` is a ``cryptography`` certificate.  SAN DNS names (and IP
    addresses) win; without any SAN entries the subject CNs are used.
    """
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = None
    if san is not None:
        dns_names = san.get_values_for_type(x509.DNSName)
        ips = san.get_values_for_type(x509.IPAddress)
        if dns_names or ips:
            return _dns_patterns(dns_names) + [IPAddressPattern(ip) for ip in ips]
    cns = [attr.value for attr in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return _dns_patterns(cns)


def certificate_matches_name(cert, name):
    """True when ``cert`` (a ``cryptography`` certificate) is valid for host ``name``."""
    name = name.strip().rstrip(".")
    if not name:
        return False
    try:
        service_id = IPAddress_ID(ipaddress.ip_address(name))
    except ValueError:
        try:
            service_id = DNS_ID(name)
        except ValueError:
            return False
    patterns = certificate_patterns(cert)
    if not patterns:
        return False
    try:
        verify_service_identity(patterns, obligatory_ids=[service_id], optional_ids=[])
    except (VerificationError, CertificateError):
        return False
    return True
