"""Which addresses a service may be registered at and called on.

Link-local (169.254.0.0/16, fe80::/10), cloud metadata (169.254.169.254, fd00:ec2::254,
100.100.100.200 and the like), unspecified, multicast, broadcast and reserved addresses are
refused, also when embedded in IPv6 (IPv4-mapped, 6to4, Teredo, NAT64) or spelled the ways
C's inet_aton accepts (`2852039166`, `0xa9fea9fe`, `0251.0376.0251.0376`, `169.254.43518`).
Loopback and private addresses stay allowed: that is where services live.
"""

from __future__ import annotations

import ipaddress
import re

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_HOSTNAME_LENGTH = 253

# Cloud metadata and platform endpoints: AWS (IMDS, IPv6 IMDS, ECS task metadata, DNS),
# GCP and Azure (169.254.169.254), Azure WireServer, Alibaba, Oracle Cloud.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",
        "169.254.170.2",
        "169.254.169.253",
        "fd00:ec2::254",
        "fd00:ec2::23",
        "168.63.129.16",
        "100.100.100.200",
        "192.0.0.192",
    )
)
METADATA_HOSTNAMES = frozenset(
    {"metadata", "metadata.google.internal", "metadata.goog", "instance-data", "instance-data.ec2.internal"}
)
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_LABEL_RE = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
_NUMERIC_PART_RE = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")


class UnsafeAddress(ValueError):
    """An address that a service may not be registered at or called on."""


def parse_inet_aton(text: str) -> ipaddress.IPv4Address | None:
    """Parse `text` the way C's inet_aton does (1-4 parts, decimal, 0x hex or 0-led octal)."""
    parts = text.lower().split(".")
    if not 1 <= len(parts) <= 4 or not all(_NUMERIC_PART_RE.match(p) for p in parts):
        return None
    values: list[int] = []
    for p in parts:
        if p.startswith("0x"):
            values.append(int(p[2:] or "0", 16))
        elif len(p) > 1 and p.startswith("0"):
            if any(c in "89" for c in p):
                return None
            values.append(int(p, 8))
        else:
            values.append(int(p))
    *head, last = values
    if any(v > 255 for v in head) or last >= 256 ** (5 - len(values)):
        return None
    number = last
    for i, v in enumerate(head):
        number |= v << (24 - 8 * i)
    return ipaddress.IPv4Address(number)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if int(ip) >> 32 == 0 and int(ip) > 1:  # deprecated IPv4-compatible ::a.b.c.d
        return ipaddress.IPv4Address(int(ip))
    return None


def unsafe_ip_reason(ip: IPAddress) -> str | None:
    """Why `ip` may not be dialled, or None when it may (public, private and loopback are fine)."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None:
            reason = unsafe_ip_reason(inner)
            return f"{reason} ({inner} embedded in {ip})" if reason else None
    if ip in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_unspecified or (isinstance(ip, ipaddress.IPv4Address) and ip in _THIS_NETWORK):
        return "an unspecified ('this network') address"
    if ip.is_multicast:
        return "a multicast address"
    if isinstance(ip, ipaddress.IPv4Address) and ip == ipaddress.IPv4Address("255.255.255.255"):
        return "the broadcast address"
    if ip.is_reserved and not ip.is_loopback:
        return "a reserved address"
    return None


def check_ip(ip: IPAddress, shown: str | None = None) -> None:
    reason = unsafe_ip_reason(ip)
    if reason is not None:
        spelled = f" (= {ip})" if shown is not None and shown != str(ip) else ""
        raise UnsafeAddress(f"address: {shown or str(ip)!r}{spelled} is {reason}")


def check_address(address: str) -> None:
    """Refuse an address a service may not be registered at; raise `UnsafeAddress` saying why."""
    if not isinstance(address, str) or not address:
        raise UnsafeAddress(f"address: must be a non-empty host name or IP, got {address!r}")
    host = address[1:-1] if address.startswith("[") and address.endswith("]") else address
    if "%" in host:
        raise UnsafeAddress(f"address: scoped IPv6 addresses (zone ids) are not allowed, got {address!r}")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is not None:
        check_ip(ip, address)
        return
    legacy = parse_inet_aton(host)
    if legacy is not None:
        check_ip(legacy, address)
        raise UnsafeAddress(
            f"address: {address!r} is a non-canonical spelling of {legacy}; register {legacy}"
        )
    name = host.lower()
    labels = name.split(".")
    if len(name) > MAX_HOSTNAME_LENGTH or not all(_LABEL_RE.match(label) for label in labels):
        raise UnsafeAddress(
            f"address: must be an IP address or a host name of letters, digits, '-' and '_' "
            f"labels (1-63 each, {MAX_HOSTNAME_LENGTH} in all), got {address!r}"
        )
    if _NUMERIC_PART_RE.match(labels[-1]):
        raise UnsafeAddress(f"address: a host name may not end in a numeric label, got {address!r}")
    if name in METADATA_HOSTNAMES:
        raise UnsafeAddress(f"address: {address!r} is a cloud metadata host name")
