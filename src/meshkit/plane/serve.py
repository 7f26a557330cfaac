"""`meshkit serve`: the control plane on uvicorn (uvloop, httptools), one worker, one command.

`run_serve(...)` builds the `ControlPlane` and its app, prints where everything is (the
API, /docs, /dashboard, /metrics, and where the admin token can be read, never the token
itself), and serves until interrupted. Every log handler gets `RedactTokensFilter`, so a
token that reaches a log line (an access log, a traceback) is masked. With `demo`, once the
API answers, `meshkit.demo.run_demo` runs beside it. `trace_sample_ratio` (the
`--trace-sample-ratio` option, or `MESHKIT_TRACE_SAMPLE_RATIO`) is the share of new traces
the calls the plane forwards keep (default 1: every one). `python -m meshkit.plane.serve
--port N --data-dir D` runs the same without the CLI.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import os
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import uvicorn
from fastapi import FastAPI

from meshkit.errors import RegistryUnavailable
from meshkit.plane.api import V2_PREFIX, create_app
from meshkit.plane.auth import RedactTokensFilter
from meshkit.plane.dashboard import dashboard_router
from meshkit.plane.plane import ControlPlane

log = logging.getLogger("meshkit.serve")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_DATA_DIR = Path.home() / ".meshkit"
HEALTH_PATH = f"{V2_PREFIX}/health"
SAMPLE_RATIO_ENV = "MESHKIT_TRACE_SAMPLE_RATIO"
# How uvicorn serves the plane (bench/_uvicorn_floor.py serves its floor the same way).
UVICORN_OPTIONS: dict[str, Any] = {
    "loop": "uvloop",
    "http": "httptools",
    "workers": 1,
    "log_config": None,  # the plane's own handler (install_log_redaction)
    "access_log": False,
    "server_header": False,
}


def _url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else f"[{host}]" if ":" in host and host != "::" else host
    shown = "[::1]" if host == "::" else shown
    return f"http://{shown}:{port}"


def sample_ratio_from_env() -> float:
    """`MESHKIT_TRACE_SAMPLE_RATIO` as a number (1.0 when unset); ValueError naming it otherwise."""
    raw = os.environ.get(SAMPLE_RATIO_ENV, "").strip()
    if not raw:
        return 1.0
    try:
        ratio = float(raw)
    except ValueError:
        ratio = math.nan
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"{SAMPLE_RATIO_ENV}: must be a number in [0, 1], got {raw[:40]!r}")
    return ratio


def banner(plane: ControlPlane, host: str, port: int, demo: bool) -> str:
    base = _url(host, port)
    source = plane.tokens.admin_token_source()
    lines = [
        f"meshkit control plane on {base}",
        f"  API        {base}{V2_PREFIX}",
        f"  OpenAPI    {base}/docs",
        f"  dashboard  {base}/dashboard",
        f"  metrics    {base}/metrics",
        f"  traces     {base}/v1/traces (OTLP/HTTP); /call traced at {plane.tracer.sample_ratio:.0%}",
        f"  registry   {plane.registry_description}",
        f"  admin token: read it from {source}",
    ]
    if plane.public_read:
        lines.append("  read-only endpoints are public (--public-read)")
    if demo:
        lines.append("  demo: starting sample services once the API is ready")
    return "\n".join(lines)


def install_log_redaction(plane: ControlPlane, level: int = logging.INFO) -> None:
    """One stderr handler on the root logger, filtered; uvicorn's loggers propagate to it."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactTokensFilter(plane.tokens))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
        logger.disabled = False  # a logging.config.dictConfig elsewhere may have disabled it
        logger.setLevel(logging.NOTSET)  # and another uvicorn.Config may have raised its level


async def wait_ready(base_url: str, stop: asyncio.Event, interval: float = 0.05) -> bool:
    """Poll the health endpoint until it answers 200 (True), or until `stop` is set (False)."""
    async with aiohttp.ClientSession() as session:
        while not stop.is_set():
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with session.get(base_url + HEALTH_PATH) as resp:
                    if resp.status == 200:
                        return True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
    return False


def _demo_runner() -> Callable[..., Any] | None:
    try:
        from meshkit.demo import run_demo  # type: ignore[attr-defined]
    except ImportError as exc:
        log.error("--demo: meshkit.demo.run_demo is not available (%s); serving without the demo", exc)
        return None
    runner: Callable[..., Any] = run_demo
    return runner


async def run_demo_when_ready(base_url: str, admin_token: str, stop: asyncio.Event) -> None:
    run_demo = _demo_runner()
    if run_demo is None or not await wait_ready(base_url, stop):
        return
    try:
        await run_demo(base_url, admin_token, stop)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("the demo failed; the control plane keeps serving")


def with_demo(app: FastAPI, plane: ControlPlane, base_url: str) -> None:
    """Wrap the app's lifespan so the demo starts after the plane and stops before it."""
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app_: FastAPI) -> AsyncIterator[Any]:
        async with inner(app_) as state:
            stop = asyncio.Event()
            token = plane.tokens.ensure_admin_token()
            task = asyncio.create_task(run_demo_when_ready(base_url, token, stop), name="meshkit-demo")
            try:
                yield state
            finally:
                stop.set()
                with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(task, 5.0)
                if not task.done():
                    task.cancel()

    app.router.lifespan_context = lifespan


async def preflight(registry: str | None, data_dir: Path) -> None:
    """Reach a distributed backend once before serving, so a wrong address is one clear line.

    Raises `RegistryUnavailable` naming the address (unreachable, or the wrong version).
    """
    if registry in (None, "embedded", "memory"):
        return
    from meshkit.registry.factory import open_registry

    backend = open_registry(registry, data_dir=data_dir)
    await backend.start()
    await backend.close()


def run_serve(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    data_dir: str | Path | None = None,
    registry: str | None = None,
    redis_url: str | None = None,
    public_read: bool = False,
    demo: bool = False,
    trace_sample_ratio: float | None = None,
) -> None:
    """Serve the control plane until interrupted (blocking). See the module docstring."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port: must be an integer in 0-65535, got {port!r}")
    if trace_sample_ratio is None:
        trace_sample_ratio = sample_ratio_from_env()
    directory = Path(data_dir).expanduser() if data_dir is not None else DEFAULT_DATA_DIR
    plane = ControlPlane(
        data_dir=directory,
        registry=registry,
        redis_url=redis_url or os.environ.get("MESHKIT_REDIS_URL") or None,
        public_read=public_read,
        admin_token=os.environ.get("MESHKIT_ADMIN_TOKEN") or None,
        trace_sample_ratio=trace_sample_ratio,
    )
    install_log_redaction(plane)
    asyncio.run(preflight(registry, directory))
    plane.tokens.ensure_admin_token()  # created now, so the banner's path exists
    app = create_app(plane, extra_routers=[dashboard_router(plane)])
    if demo:
        with_demo(app, plane, _url(host, port))
    print(banner(plane, host, port, demo), flush=True)
    uvicorn.Server(uvicorn.Config(app, host=host, port=port, **UVICORN_OPTIONS)).run()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m meshkit.plane.serve", description="Run the control plane."
    )
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--data-dir", default=None, help=f"default: {DEFAULT_DATA_DIR}")
    parser.add_argument(
        "--registry", default=None, help="embedded (default), etcd://host:port, consul://host:port"
    )
    parser.add_argument("--redis-url", default=None, help="for the legacy queue (or MESHKIT_REDIS_URL)")
    parser.add_argument("--public-read", action="store_true", help="read-only endpoints without a token")
    parser.add_argument("--demo", action="store_true", help="start sample services once ready")
    parser.add_argument(
        "--trace-sample-ratio", type=float, default=None,
        help=f"share of new traces /call keeps, 0 to 1 (or {SAMPLE_RATIO_ENV}; default 1)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    try:
        run_serve(
            args.host, args.port, args.data_dir, args.registry, args.redis_url, args.public_read, args.demo,
            args.trace_sample_ratio,
        )  # fmt: skip
    except (ValueError, RegistryUnavailable) as exc:
        parser.exit(2, f"error: {exc}\n")


if __name__ == "__main__":
    main()
