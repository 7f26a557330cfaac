"""One sidecar request through the mesh, whichever HTTP server received it.

Both sidecar engines (aiohttp's server in `meshkit.proxy.server`, the httptools one in
`meshkit.proxy.h1server`) parse, check the framing, split the target and read a capped
body their own way, then hand the same five things here: method, service, path, the
caller's headers and body. This is the mapping they share: the caller's hop-by-hop and
`X-Meshkit-*` headers dropped (its deadline read from them first), the `MeshClient`
called, mesh decisions turned into JSON errors (503 when no instance could serve the
call, 504 when the deadline passed) and the answer's hop-by-hop headers dropped.
"""

from __future__ import annotations

import json

from multidict import CIMultiDict, MultiMapping

from meshkit.client import MeshClient
from meshkit.errors import DeadlineExceeded, MeshError, RequestTimeout
from meshkit.plane.headers import INTERNAL_PREFIX, strip_hop_by_hop
from meshkit.resilience.deadline import deadline_from_headers
from meshkit.types import Request, Response


def outgoing_headers(headers: MultiMapping[str]) -> CIMultiDict[str]:
    """The caller's headers without hop-by-hop and internal (`X-Meshkit-*`) ones."""
    kept = strip_hop_by_hop(headers)
    for name in [n for n in kept if n[:10].lower() == INTERNAL_PREFIX]:
        kept.popall(name, None)
    return kept


def error_reply(status: int, error: str, detail: str) -> Response:
    """A JSON error the sidecar answers itself, named in `X-Meshkit-Error`."""
    headers = CIMultiDict({"Content-Type": "application/json; charset=utf-8", "X-Meshkit-Error": error})
    return Response(status, headers, json.dumps({"detail": detail, "error": error}).encode())


async def forward(
    client: MeshClient,
    method: str,
    service: str,
    path: str,
    headers: MultiMapping[str],
    body: bytes | None,
    remote: str | None,
) -> Response:
    """Call `service` at `path` through `client`; the answer to send back, never an exception."""
    call = Request(method, path, outgoing_headers(headers), body, service=service)
    call.hash_key = remote
    deadline = deadline_from_headers(headers, client.parts.clock)
    if deadline is not None:
        call.deadline = deadline
    try:
        response = await client.call(call)
    except (DeadlineExceeded, RequestTimeout) as exc:
        return error_reply(504, type(exc).__name__, str(exc))
    except MeshError as exc:
        return error_reply(503, type(exc).__name__, str(exc))
    return Response(response.status, strip_hop_by_hop(response.headers), response.body)
