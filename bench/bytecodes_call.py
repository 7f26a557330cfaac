"""Python bytecodes per `/call`, by function: a deterministic count of the plane's own work.

`/call`'s CPU per request moves by 20-40% between runs of bench_proxy.py on a shared
machine; the bytecodes the event loop's thread executes per call do not move at all, so a
change to the `/call` path can be judged by them. A `ControlPlane` is served by uvicorn
(httptools, the plane's settings) in this process, over a local nginx (1 KB); `--calls`
POSTs of `/call` are sent on one keep-alive connection from a thread, after a warm-up, with
`sys.settrace` counting opcode events on the loop's thread only (uvicorn, the fast lane, the
plane, the client stack and the HTTP client; not the span export or the store's writer,
which run on their own threads). C code (uvloop, httptools, orjson, SQLite) is not counted.

    .venv/bin/python bench/bytecodes_call.py                      # every call traced (the default)
    .venv/bin/python bench/bytecodes_call.py --sample-ratio 0     # untraced
    .venv/bin/python bench/bytecodes_call.py --top 40
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import socket
import sys
import urllib.request
from types import FrameType
from typing import Any

from _nginx import LocalNginx, free_port

TOKEN = "bytecodes-call-token-0123456789abcdef"
V2 = "/api/v1/mesh/v2"
WARMUP = 50


def _post(port: int, path: str, body: dict[str, Any]) -> bytes:
    return (
        f"POST {V2}{path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {TOKEN}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(json.dumps(body))}\r\n\r\n{json.dumps(body)}"
    ).encode()


def _calls(port: int, count: int) -> None:
    """`count` POSTs of /call on one keep-alive connection, each answer read whole and checked."""
    request = _post(port, "/call", {"service_name": "bench", "method": "GET", "path": "/"})
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock, sock.makefile("rb") as answers:
        for _ in range(count):
            sock.sendall(request)
            status, length = answers.readline(), 0
            while (line := answers.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            answer = json.loads(answers.read(length))
            if not status.startswith(b"HTTP/1.1 200") or answer.get("status_code") != 200:
                raise RuntimeError(f"/call answered {status!r} {str(answer)[:200]}")


async def _count(upstream_port: int, calls: int, ratio: float) -> collections.Counter[tuple[str, str]]:
    import uvicorn

    from meshkit.plane.api import create_app
    from meshkit.plane.plane import ControlPlane
    from meshkit.plane.serve import UVICORN_OPTIONS

    plane = ControlPlane(admin_token=TOKEN, health_checks=False, trace_sample_ratio=ratio)
    port = free_port()
    options = {**UVICORN_OPTIONS, "loop": "none", "lifespan": "on"}  # the plane's, on this loop
    config = uvicorn.Config(create_app(plane), host="127.0.0.1", port=port, **options)
    server = uvicorn.Server(config)
    serving = asyncio.ensure_future(server.serve())
    while not server.started:  # noqa: ASYNC110  (uvicorn has a flag for this, no event)
        await asyncio.sleep(0.02)
    loop = asyncio.get_running_loop()
    registration = json.dumps({"service_name": "bench", "address": "127.0.0.1", "port": upstream_port})
    register = urllib.request.Request(
        f"http://127.0.0.1:{port}{V2}/register", data=registration.encode(), method="POST",
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )  # fmt: skip
    await loop.run_in_executor(None, lambda: urllib.request.urlopen(register, timeout=10).read())
    await loop.run_in_executor(None, _calls, port, WARMUP)
    counts: collections.Counter[tuple[str, str]] = collections.Counter()

    names: dict[object, tuple[str, str]] = {}  # code object -> (folder/file, function)

    def trace(frame: FrameType, event: str, arg: object) -> Any:
        if event == "call":
            frame.f_trace_opcodes = True
            frame.f_trace_lines = False
        elif event == "opcode":
            code = frame.f_code
            name = names.get(code)
            if name is None:
                name = names[code] = ("/".join(code.co_filename.split("/")[-2:]), code.co_name)
            counts[name] += 1
        return trace

    sys.settrace(trace)
    try:
        await loop.run_in_executor(None, _calls, port, calls)
    finally:
        sys.settrace(None)
    server.should_exit = True
    await serving
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=300, help="counted calls (default 300)")
    parser.add_argument("--sample-ratio", type=float, default=1.0, help="the plane's --trace-sample-ratio")
    parser.add_argument("--top", type=int, default=25, help="functions listed (default 25)")
    args = parser.parse_args()
    if args.calls < 1:
        raise SystemExit(f"calls: must be >= 1, got {args.calls}")
    if not 0.0 <= args.sample_ratio <= 1.0:
        raise SystemExit(f"sample-ratio: must be in [0, 1], got {args.sample_ratio}")
    import uvloop

    with LocalNginx(body_bytes=1024) as nginx:
        counts = uvloop.run(_count(nginx.ports[0], args.calls, args.sample_ratio))
    total = sum(counts.values()) / args.calls
    print(f"/call, trace sample ratio {args.sample_ratio:g}: {total:,.0f} bytecodes per call "
          f"on the event loop's thread ({args.calls} calls)")  # fmt: skip
    files: collections.Counter[str] = collections.Counter()
    for (path, _), n in counts.items():
        files[path] += n
    print("\nby file:")
    for path, n in files.most_common(args.top):
        print(f"{n / args.calls:9.1f}  {path}")
    print("\nby function:")
    for (path, name), n in counts.most_common(args.top):
        print(f"{n / args.calls:9.1f}  {path}:{name}")


if __name__ == "__main__":
    main()
