"""An upstream instance in its own process, so a test can kill it with SIGKILL for real.

`python -m tests.chaos.upstream_app --port P [--mode ok] [--delay-ms N]` serves every path
on 127.0.0.1:P; it prints `ready <port>` once listening. `GET /health` answers 200 unless
the mode says otherwise. The mode changes at run time with `POST /_control/mode/{mode}`
(optionally `?seconds=S` to fall back to `ok` after S seconds):

- `ok`: 200 with the instance's name;
- `fail`: 503 on every path, `/health` included (a sick instance);
- `flap`: `/health` alternates 200 and 503 on each probe, other paths answer 200;
- `slow`: like `ok` after `--slow-ms` more milliseconds.

`GET /_control/stats` returns `{"requests": n}` (control paths not counted). Nothing here
binds to anything but 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from aiohttp import web

MODES = ("ok", "fail", "flap", "slow")


class Behaviour:
    def __init__(self, name: str, mode: str, delay: float, slow: float) -> None:
        self.name = name
        self.mode = mode
        self.delay = delay
        self.slow = slow
        self.requests = 0
        self.probes = 0
        self._revert: asyncio.TimerHandle | None = None

    def set_mode(self, mode: str, seconds: float | None) -> None:
        if mode not in MODES:
            raise web.HTTPBadRequest(text=f"mode: must be one of {', '.join(MODES)}, got {mode!r}")
        self.mode = mode
        if self._revert is not None:
            self._revert.cancel()
            self._revert = None
        if seconds is not None:
            self._revert = asyncio.get_running_loop().call_later(seconds, self.set_mode, "ok", None)

    async def health(self, request: web.Request) -> web.Response:
        self.probes += 1
        if self.mode == "fail" or (self.mode == "flap" and self.probes % 2 == 0):
            return web.Response(status=503, text="unhealthy")
        return web.Response(text="healthy")

    async def serve(self, request: web.Request) -> web.Response:
        self.requests += 1
        await request.read()
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.mode == "fail":
            return web.Response(status=503, text=f"{self.name} failing")
        if self.mode == "slow":
            await asyncio.sleep(self.slow)
        return web.Response(text=self.name)

    async def control(self, request: web.Request) -> web.Response:
        raw = request.query.get("seconds")
        self.set_mode(request.match_info["mode"], float(raw) if raw else None)
        return web.json_response({"mode": self.mode})

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response({"requests": self.requests, "probes": self.probes, "mode": self.mode})


async def main(port: int, mode: str, delay_ms: float, slow_ms: float) -> None:
    behaviour = Behaviour(f"up-{port}", mode, delay_ms / 1000.0, slow_ms / 1000.0)
    app = web.Application()
    app.router.add_get("/health", behaviour.health)
    app.router.add_post("/_control/mode/{mode}", behaviour.control)
    app.router.add_get("/_control/stats", behaviour.stats)
    app.router.add_route("*", "/{tail:.*}", behaviour.serve)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, reuse_address=True).start()
    sys.stdout.write(f"ready {port}\n")
    sys.stdout.flush()
    await asyncio.Event().wait()  # until killed


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mode", choices=MODES, default="ok")
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--slow-ms", type=float, default=200.0)
    args = parser.parse_args()
    asyncio.run(main(args.port, args.mode, args.delay_ms, args.slow_ms))
