"""The sidecar proxy: `http://127.0.0.1:PORT/<service>/<path>` through the meshkit client stack."""

from meshkit.proxy.framing import UnsafeFraming, check_framing
from meshkit.proxy.routing import BadRoute, split_target
from meshkit.proxy.server import DEFAULT_MAX_BODY, ProxyHandler, error_response, proxy_app
from meshkit.proxy.sidecar import SidecarProxy, parse_listen, run_proxy, serve_proxy, trace_sidecar_calls

__all__ = [
    "DEFAULT_MAX_BODY",
    "BadRoute",
    "ProxyHandler",
    "SidecarProxy",
    "UnsafeFraming",
    "check_framing",
    "error_response",
    "parse_listen",
    "proxy_app",
    "run_proxy",
    "serve_proxy",
    "split_target",
    "trace_sidecar_calls",
]
