"""A client-stack layer that refuses unsafe forwarded calls before any byte is sent.

`/call` runs the ordinary client stack with this layer just above the transport (below the
balancer, so it sees the chosen instance): it normalises the path once, re-checks the
instance's address and caps the request body. Pair it with a transport whose connector is
a connect-time guard (`GuardedConnector`, or `H1Transport(connect_guard=...)`) and whose
`max_response_bytes` caps the answer. `check_address` is a pure function of the address, so
the addresses that passed it are remembered (a bounded set: a registry of many addresses
costs the full check again once it is full, never a wrong answer).
"""

from __future__ import annotations

from meshkit.plane.ssrf.address import check_address
from meshkit.plane.ssrf.path import normalize_path
from meshkit.service import Service
from meshkit.types import Request, Response

DEFAULT_MAX_BODY_BYTES = 1 << 20
MAX_REMEMBERED = 4096  # addresses known safe, per layer


class BodyTooLarge(ValueError):
    """The request body is over the configured cap (answer 413)."""


class SsrfGuardLayer:
    __slots__ = ("_safe", "inner", "max_body_bytes")

    def __init__(self, inner: Service, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        if isinstance(max_body_bytes, bool) or not isinstance(max_body_bytes, int) or max_body_bytes < 0:
            raise ValueError(f"max_body_bytes: must be an integer >= 0, got {max_body_bytes!r}")
        self.inner = inner
        self.max_body_bytes = max_body_bytes
        self._safe: set[str] = set()

    async def __call__(self, request: Request) -> Response:
        request.path = normalize_path(request.path)
        if request.body is not None and len(request.body) > self.max_body_bytes:
            raise BodyTooLarge(f"body: must be at most {self.max_body_bytes} bytes, got {len(request.body)}")
        instance = request.instance
        if instance is not None and instance.address not in self._safe:
            check_address(instance.address)  # raises UnsafeAddress
            if len(self._safe) >= MAX_REMEMBERED:
                self._safe.clear()
            self._safe.add(instance.address)
        return await self.inner(request)
