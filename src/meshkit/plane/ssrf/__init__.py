"""SSRF guards for `/call`, the control plane's forwarding proxy.

A forwarding proxy is a request-forgery engine unless every piece of the URL it builds is
checked (OWASP SSRF Prevention Cheat Sheet). The host comes only from the registry and is
checked twice: `check_address` at registration, and `GuardedConnector` at connect time on
the IP actually dialled, so a name that later resolves to 169.254.169.254 (DNS rebinding)
is still refused. The path is normalised once by `normalize_path`. `SsrfGuardLayer` applies
the checks in the client stack; `meshkit.plane.headers` decides which headers travel.
"""

from meshkit.plane.ssrf.address import (
    METADATA_ADDRESSES,
    METADATA_HOSTNAMES,
    UnsafeAddress,
    check_address,
    check_ip,
    parse_inet_aton,
    unsafe_ip_reason,
)
from meshkit.plane.ssrf.connect import (
    GuardedConnector,
    GuardedResolver,
    UnsafeConnect,
    guarded_connector,
    guarded_socket,
    is_unsafe_connect,
    refuse_unsafe_ip,
)
from meshkit.plane.ssrf.layer import BodyTooLarge, SsrfGuardLayer
from meshkit.plane.ssrf.path import MAX_PATH_LENGTH, UnsafePath, normalize_path

__all__ = [
    "MAX_PATH_LENGTH",
    "METADATA_ADDRESSES",
    "METADATA_HOSTNAMES",
    "BodyTooLarge",
    "GuardedConnector",
    "GuardedResolver",
    "SsrfGuardLayer",
    "UnsafeAddress",
    "UnsafeConnect",
    "UnsafePath",
    "check_address",
    "check_ip",
    "guarded_connector",
    "guarded_socket",
    "is_unsafe_connect",
    "normalize_path",
    "parse_inet_aton",
    "refuse_unsafe_ip",
    "unsafe_ip_reason",
]
