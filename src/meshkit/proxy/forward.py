"""One sidecar request through the mesh, whichever HTTP server received it.

Both sidecar engines (aiohttp's server in `meshkit.proxy.server`, the httptools one in
`meshkit.proxy.h1server`) parse, check the framing, split the target and read a capped
body their own way, then hand the same five things here: method, service, path, the
caller's headers and body. This is the mapping they share: the caller's hop-by-hop and
`X-Meshkit-*` headers dropped (its deadline read from them first), the `MeshClient`
called, mesh decisions turned into JSON errors (503 when no instance could serve the
call, 504 when the deadline passed) and the answer's hop-by-hop headers dropped. The h1
engine sorts the caller's fields while parsing and calls `call_service` with the two
halves, saving the copies `forward` makes; its answer's fields are filtered as written.
"""

from __future__ import annotations

import json

from multidict import CIMultiDict, MultiMapping, istr

from meshkit.client import MeshClient
from meshkit.errors import DeadlineExceeded, MeshError, RequestTimeout
from meshkit.plane.headers import HOP_BY_HOP, INTERNAL_PREFIX, SET_BY_TRANSPORT
from meshkit.resilience.deadline import deadline_from_headers
from meshkit.transport.base import DEADLINE_HEADER
from meshkit.types import Request, Response

# strip_hop_by_hop's list (meshkit.plane.headers), as istr: multidict looks them up without case-folding
_DROPPED = tuple(istr(name) for name in sorted(HOP_BY_HOP | SET_BY_TRANSPORT))
_CONNECTION = istr("connection")
_DEADLINE = istr(DEADLINE_HEADER)


def without_hop_by_hop(headers: MultiMapping[str]) -> CIMultiDict[str]:
    """`strip_hop_by_hop`'s result, by a C-level copy and lookups: only what is present is removed."""
    kept = CIMultiDict(headers)
    named = kept.getall(_CONNECTION, ())
    for name in _DROPPED:
        if name in kept:
            kept.popall(name)
    for value in named:
        for token in value.split(","):
            kept.popall(token.strip(), None)
    return kept


def outgoing_headers(headers: MultiMapping[str]) -> CIMultiDict[str]:
    """The caller's headers without hop-by-hop and internal (`X-Meshkit-*`) ones."""
    kept = without_hop_by_hop(headers)
    if INTERNAL_PREFIX in "\n".join(kept).lower():  # one C pass; usually there are none
        internal = [n for n in kept if n[:10].lower() == INTERNAL_PREFIX]
        for name in internal:
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
    answer = await call_service(
        client, method, service, path, outgoing_headers(headers), headers, body, remote
    )
    return Response(answer.status, without_hop_by_hop(answer.headers), answer.body)


async def call_service(
    client: MeshClient,
    method: str,
    service: str,
    path: str,
    outgoing: CIMultiDict[str],
    internal: MultiMapping[str],
    body: bytes | None,
    remote: str | None,
) -> Response:
    """`forward` for a server that filtered the caller's headers itself: `outgoing` is what goes
    upstream, `internal` has the caller's `X-Meshkit-*` fields (its deadline). The answer keeps
    its hop-by-hop fields; the server drops them as it writes the answer."""
    call = Request(method, path, outgoing, body, service=service)
    call.hash_key = remote
    if _DEADLINE in internal:
        deadline = deadline_from_headers(internal, client.parts.clock)
        if deadline is not None:
            call.deadline = deadline
    try:
        return await client.call(call)
    except (DeadlineExceeded, RequestTimeout) as exc:
        return error_reply(504, type(exc).__name__, str(exc))
    except MeshError as exc:
        return error_reply(503, type(exc).__name__, str(exc))
