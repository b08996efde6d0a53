"""Proxy Protocol (HAProxy's PROXY v1 and v2) in front of the SMTP server.

Spec section "Proxies" (inbound): for hosts in hosts_proxy the first bytes
of the connection are a PROXY header naming the real client; it must arrive
within proxy_protocol_timeout.  After it, $sender_host_address/_port are the
client's, $proxy_local_address/_port the proxy's as we saw it, and
$proxy_external_address/_port the address the client connected to.
"""

import ipaddress
import struct

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_MAX = 107                         # the longest v1 line, CRLF included


class ProxyError(ValueError):
    """A header that is not Proxy Protocol, or is malformed."""


def parse(buffer):
    """Look for a complete PROXY header at the start of ``buffer``.

    Returns None while more bytes are needed, else ``(consumed, info)`` where
    ``info`` is None for a header without addresses (v1 UNKNOWN, v2 LOCAL)
    or ``(source_address, source_port, destination_address, destination_port)``.
    Raises ProxyError for anything else.
    """
    if buffer[:len(V2_SIGNATURE)] == V2_SIGNATURE[:len(buffer)] and len(buffer) < 16:
        return None
    if buffer.startswith(V2_SIGNATURE):
        return _parse_v2(buffer)
    if b"PROXY "[:len(buffer)] == buffer[:6] and len(buffer) < 6:
        return None
    if buffer.startswith(b"PROXY "):
        return _parse_v1(buffer)
    raise ProxyError("not a PROXY header")


def _parse_v1(buffer):
    end = buffer.find(b"\r\n")
    if end < 0:
        if len(buffer) >= V1_MAX:
            raise ProxyError("PROXY v1 line too long")
        return None
    words = buffer[:end].decode("ascii", "replace").split(" ")
    if len(words) >= 2 and words[1] == "UNKNOWN":
        return end + 2, None
    if len(words) != 6 or words[1] not in ("TCP4", "TCP6"):
        raise ProxyError("bad PROXY v1 line")
    version = 4 if words[1] == "TCP4" else 6
    try:
        src, dst = ipaddress.ip_address(words[2]), ipaddress.ip_address(words[3])
        sport, dport = int(words[4]), int(words[5])
    except ValueError:
        raise ProxyError("bad PROXY v1 addresses")
    if src.version != version or dst.version != version or not (0 <= sport < 65536 and 0 <= dport < 65536):
        raise ProxyError("bad PROXY v1 addresses")
    return end + 2, (str(src), sport, str(dst), dport)


def _parse_v2(buffer):
    if len(buffer) < 16:
        return None
    version_command, family, length = struct.unpack("!BBH", buffer[12:16])
    if version_command >> 4 != 2:
        raise ProxyError("bad PROXY v2 version")
    if len(buffer) < 16 + length:
        return None
    body = buffer[16:16 + length]
    consumed = 16 + length
    command = version_command & 0x0F
    if command == 0:                 # LOCAL: the proxy's own connection
        return consumed, None
    if command != 1:
        raise ProxyError("bad PROXY v2 command")
    if family == 0x11 and length >= 12:
        src, dst = ipaddress.IPv4Address(body[0:4]), ipaddress.IPv4Address(body[4:8])
        sport, dport = struct.unpack("!HH", body[8:12])
    elif family == 0x21 and length >= 36:
        src, dst = ipaddress.IPv6Address(body[0:16]), ipaddress.IPv6Address(body[16:32])
        sport, dport = struct.unpack("!HH", body[32:36])
    elif family == 0x00:
        return consumed, None
    else:
        raise ProxyError("unsupported PROXY v2 address family")
    return consumed, (str(src), sport, str(dst), dport)


def apply(session, info):
    """Make the proxied client the session's host; remember the proxy's side."""
    proxy = {"session": True,
             "local_address": session.sender_host_address, "local_port": session.sender_host_port,
             "external_address": None, "external_port": None}
    if info is not None:
        src, sport, dst, dport = info
        if src != session.sender_host_address:
            # a name looked up for the proxy (a name item in hosts_proxy) is
            # not the client's: the client's is looked up when needed
            session.sender_host_name = None
            for attribute in ("host_lookup_failed", "host_lookup_deferred", "sender_host_aliases"):
                session.__dict__.pop(attribute, None)
        session.sender_host_address, session.sender_host_port = src, sport
        proxy["external_address"], proxy["external_port"] = dst, dport
    session.proxy = proxy


def variables(session):
    """$proxy_* for expansions."""
    proxy = session.proxy or {}
    return {
        "proxy_session": "yes" if proxy.get("session") else "",
        "proxy_local_address": proxy.get("local_address") or "",
        "proxy_local_port": str(proxy.get("local_port") or 0) if proxy else "0",
        "proxy_external_address": proxy.get("external_address") or "",
        "proxy_external_port": str(proxy.get("external_port") or 0) if proxy else "0",
    }
