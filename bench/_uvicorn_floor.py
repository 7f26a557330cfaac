"""The least a `/call` on uvicorn can spend: a bare ASGI app answering /call's JSON, no proxying.

`meshkit serve` runs on uvicorn (uvloop, httptools, one worker), so `POST /call` pays for
uvicorn's protocol and ASGI cycle before any mesh work. This app is that cost alone: it
reads the POSTed body, parses it with orjson and answers a `CallResponse`-shaped JSON
whose `body` is the upstream's, fetched once at start and held in memory; no routing,
middleware, token check, upstream request or span. Served with the plane's own uvicorn
settings. bench_proxy.py runs it as a floor beside `/call`: `/call` cannot go faster, so
its distance from nginx shows how much of `/call`'s target uvicorn alone takes. Run as
`python bench/_uvicorn_floor.py --port P --body-from http://127.0.0.1:U/`.
"""

from __future__ import annotations

import argparse
import urllib.request
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson
import uvicorn

from meshkit.plane.serve import UVICORN_OPTIONS

Message = MutableMapping[str, Any]
_HEAD = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"application/json")],
}


def floor_app(upstream_body: str) -> Callable[..., Awaitable[None]]:
    """A raw ASGI app: any request's body is read and parsed, the answer is /call's shape."""

    async def app(
        scope: Message, receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]]
    ) -> None:
        if scope["type"] != "http":  # lifespan: nothing to start or stop
            message = await receive()
            while message["type"] != "lifespan.shutdown":
                await send({"type": message["type"] + ".complete"})
                message = await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        chunks, more = [], True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        call = orjson.loads(b"".join(chunks))
        answer = {
            "status_code": 200,
            "headers": {"content-type": "text/plain"},
            "body": upstream_body,
            "instance_id": f"{call.get('service_name', '')}-0",
            "trace_id": "0" * 32,
            "duration": 0.0,
        }
        await send(_HEAD)
        await send({"type": "http.response.body", "body": orjson.dumps(answer)})

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="uvicorn floor for bench_proxy.py's /call")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--body-from", required=True, help="the upstream URL whose body every answer carries")
    args = parser.parse_args()
    with urllib.request.urlopen(args.body_from, timeout=10) as answer:
        body = answer.read().decode()
    uvicorn.run(floor_app(body), host="127.0.0.1", port=args.port, **UVICORN_OPTIONS)


if __name__ == "__main__":
    main()
