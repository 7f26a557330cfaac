"""The fast lane for `POST /api/v1/mesh/v2/call`: the route's answers at a fraction of its CPU.

`/call` is a data path (callers that are not Python send every request through it), and
FastAPI's middleware chain, routing, dependency solving and pydantic models cost several
times the call itself. `CallFastLane` answers exactly this route in plain ASGI: the framing
check and body cap of the middleware (`framing.py`, `limits.py`), the bearer token, an
orjson parse, `ControlPlane.call(...)` and an orjson answer in `CallResponse`'s shape.

It serves only requests it can prove valid by the route's own rules (`CallRequest`): a
JSON object with known fields of the right types and ranges, `Content-Type:
application/json` and a valid token. Anything else (no or bad token, bad JSON, a field
out of range or unknown, another content type, an integer orjson would read as a float)
is replayed to the FastAPI route, so every refusal of a request is the route's own. The
plane's errors are answered by the route's handlers (`errors.handler_for`). The route
stays registered, so /docs and the OpenAPI spec still document /call.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import PlainTextResponse

from meshkit.plane.api.errors import handler_for
from meshkit.plane.api.framing import FramingCheck, framing_problem
from meshkit.plane.api.limits import ASGIApp, Receive, Scope, Send, read_body, replaying
from meshkit.plane.api.models import check_text
from meshkit.plane.auth import parse_bearer
from meshkit.plane.calls import TRACE_HEADERS
from meshkit.plane.plane import ControlPlane
from meshkit.types import SERVICE_NAME_RE

_FIELDS = frozenset({"service_name", "method", "path", "headers", "body", "timeout", "retry_count"})
_BEYOND_U64 = re.compile(rb"\d{20}")  # orjson reads such an integer as a float, json.loads as an int
_TRACE_HEADERS = frozenset(name.encode("latin-1") for name in TRACE_HEADERS)
_JSON_HEADERS = (b"content-type", b"application/json")


def is_json(scope: Scope) -> bool:
    """True when the request's first Content-Type is exactly application/json (parameters allowed)."""
    for name, value in scope["headers"]:
        if name == b"content-type":
            return bool(value.split(b";", 1)[0].strip().lower() == b"application/json")
    return False


def _number(value: Any, low: float, high: float) -> bool:
    kind = type(value)
    return (kind is int or kind is float) and low <= value <= high


def call_fields(data: Any) -> dict[str, Any] | None:
    """`CallRequest`'s fields with its defaults when `data` surely passes it as it is, else None."""
    if type(data) is not dict or not _FIELDS.issuperset(data):
        return None
    name = data.get("service_name")
    method = data.get("method", "GET")
    path = data.get("path", "/")
    headers = data.get("headers", {})
    timeout = data.get("timeout", 30.0)
    retry_count = data.get("retry_count")
    if (
        type(name) is not str
        or SERVICE_NAME_RE.match(name) is None
        or type(method) is not str
        or not 1 <= len(method) <= 16
        or type(path) is not str
        or not 1 <= len(path) <= 8192
        or type(headers) is not dict
        or not _number(timeout, 1.0, 300.0)
        or (retry_count is not None and (type(retry_count) is not int or not 0 <= retry_count <= 10))
    ):
        return None
    for value in headers.values():
        if type(value) is not str:
            return None
    body = data.get("body")
    if isinstance(body, dict | list):
        try:
            check_text(body)  # only the nesting depth can fail: orjson refuses lone surrogates
        except ValueError:
            return None
    return {
        "service_name": name,
        "method": method,
        "path": path,
        "headers": headers,
        "body": body,
        "timeout": float(timeout),
        "retry_count": retry_count,
    }


def _parse(raw: bytes) -> dict[str, Any] | None:
    if _BEYOND_U64.search(raw) is not None:
        return None
    try:
        return call_fields(orjson.loads(raw))
    except orjson.JSONDecodeError:
        return None


class CallFastLane:
    """ASGI handler for `POST .../call`; `fallback` (the FastAPI app) gets every request it won't vouch for."""

    def __init__(self, plane: ControlPlane, fallback: ASGIApp, *, max_body_bytes: int) -> None:
        self.plane = plane
        self.fallback = fallback
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if framing_problem(scope) is not None:
            return await FramingCheck(self.fallback)(scope, receive, send)  # its 400, and the close
        raw = await read_body(scope, receive, send, self.max_body_bytes)
        if raw is None:
            return
        authorization: str | None = None
        trace: dict[str, str] = {}
        for name, value in scope["headers"]:
            if name == b"authorization":
                if authorization is None:
                    authorization = value.decode("latin-1")
            elif name in _TRACE_HEADERS:
                trace.setdefault(name.decode("latin-1"), value.decode("latin-1"))
        fields = _parse(raw) if is_json(scope) else None
        if fields is None:
            return await self.fallback(scope, replaying(raw, receive), send)
        token = parse_bearer(authorization)
        who = self.plane.tokens.authenticate(token)  # what `ControlPlane.authenticate` decides, parsed once
        if who is None:  # the route's 401
            return await self.fallback(scope, replaying(raw, receive), send)
        client = scope.get("client")
        try:
            result = await self.plane.call(
                who,
                **fields,
                request_headers=trace,
                caller_token=token,
                client_address=client[0] if client else None,
            )
        except Exception as exc:
            return await self._refuse(exc, scope, receive, send)
        await _answer(send, result)

    async def _refuse(self, exc: Exception, scope: Scope, receive: Receive, send: Send) -> None:
        """The route's answer to `exc`: its exception handler's, or Starlette's plain 500 (and re-raise)."""
        handler = handler_for(exc)
        if handler is None:
            await PlainTextResponse("Internal Server Error", status_code=500)(scope, receive, send)
            raise exc
        response = await handler(Request(scope, receive), exc)
        await response(scope, receive, send)


async def _answer(send: Send, result: dict[str, Any]) -> None:
    """`CallResponse`'s fields, in its order and types, as one JSON body."""
    shaped = {
        "status_code": int(result["status_code"]),
        "headers": result["headers"],
        "body": result["body"],
        "instance_id": result["instance_id"],
        "trace_id": result["trace_id"],
        "duration": float(result["duration"]),
    }
    try:
        body = orjson.dumps(shaped, option=orjson.OPT_NON_STR_KEYS)  # header names may be multidict's istr
    except TypeError:  # a value orjson cannot write (none is expected): pydantic's serializer
        from meshkit.plane.api.models import CallResponse

        body = CallResponse.model_validate(shaped).model_dump_json().encode()
    headers = [(b"content-length", str(len(body)).encode("latin-1")), _JSON_HEADERS]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
