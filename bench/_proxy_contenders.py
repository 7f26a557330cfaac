"""The proxies bench_proxy.py compares, each a server process in front of the same upstream.

A `ProxyContender` knows how to start its process(es) pinned to the proxy core, the URL
(and wrk Lua script) to load it with, and how to check one answer really is the
upstream's body, so a contender that answers errors fast is never counted. The
contenders: the upstream alone (the ceiling), nginx `proxy_pass` (one worker, upstream
keep-alive 64), HAProxy (one thread, `http-reuse always`), the bare aiohttp
pass-through, a protocol-level Python pass-through (asyncio+httptools: the least a Python
proxy spends), the meshkit sidecar (`meshkit proxy`, discovering the upstream as
service `bench` through a control plane; with its default engine, and with
`--engine h1` named "meshkit proxy (h1)") and the control plane's `POST /call`.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from _haproxy import LocalHAProxy
from _nginx import LocalNginx, free_port
from _processes import BackgroundProcess, pinned_to, tree_cpu_seconds
from _wrk import post_script

BENCH_DIR = Path(__file__).resolve().parent
V2 = "/api/v1/mesh/v2"
SERVICE = "bench"

_PROXY_PASS = """\
daemon off;
master_process on;
worker_processes {workers};
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    keepalive_requests 100000;
    upstream bench_upstream {{
        server {backend};
        keepalive 64;
    }}
    server {{
{listens}
        location / {{
            proxy_pass http://bench_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


class NginxProxyPass(LocalNginx):
    """nginx `proxy_pass` to `backend` with one worker and a keep-alive upstream pool of 64."""

    def __init__(self, backend: tuple[str, int], *, workers: int = 1) -> None:
        super().__init__(workers=workers)
        self.backend = f"{backend[0]}:{backend[1]}"

    def config(self, tmp: Path, ports: Any) -> str:
        listens = "\n".join(f"        listen 127.0.0.1:{port} backlog=4096;" for port in ports)
        return _PROXY_PASS.format(workers=self._workers, tmp=tmp, backend=self.backend, listens=listens)


def http(method: str, url: str, body: Any = None, token: str | None = None, timeout: float = 10.0) -> Any:
    """One request with urllib; the decoded JSON answer, or the raw bytes when it is not JSON."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        raw = answer.read()
    try:
        return json.loads(raw)
    except ValueError:
        return raw


class ProxyContender:
    """One way of serving the upstream's answer; `start()` before loading `url`, `stop()` after."""

    def __init__(self, name: str, note: str, expected: bytes) -> None:
        self.name = name
        self.note = note
        self.expected = expected
        self.url = ""
        self.script: Path | None = None
        self.processes: list[Any] = []
        self.measured: list[int] = []  # the processes whose CPU time is the proxy's cost

    def start(self, cpus: set[int] | None) -> None:
        raise NotImplementedError

    def answer(self) -> bytes:
        """The body one request through this contender gets back."""
        got = http("GET", self.url)
        return got if isinstance(got, bytes) else json.dumps(got).encode()

    def verify(self, within: float = 10.0) -> None:
        """Raise unless a request answers the upstream's body (retrying while discovery settles)."""
        deadline = time.monotonic() + within
        while True:
            try:
                got = self.answer()
                if got == self.expected:
                    return
                problem = f"answered {got[:200]!r}, not the upstream's {len(self.expected)} B body"
            except Exception as exc:  # reported below, with the contender's name
                problem = f"{type(exc).__name__}: {exc}"
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: {problem}")
            time.sleep(0.2)

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.stop()
            if isinstance(proc, BackgroundProcess):
                proc.cleanup()
        self.processes.clear()
        self.measured.clear()

    def cpu_seconds(self) -> float:
        return sum(tree_cpu_seconds(pid) for pid in self.measured)


class Direct(ProxyContender):
    def __init__(self, upstream: LocalNginx) -> None:
        super().__init__("upstream direct", "nginx return 200, no proxy (ceiling)", upstream.body)
        self.url = upstream.urls[0]
        self.upstream = upstream

    def start(self, cpus: set[int] | None) -> None:
        process = getattr(self.upstream, "_proc", None)
        self.measured = [process.pid] if process is not None else []


class NginxContender(ProxyContender):
    def __init__(self, upstream: LocalNginx) -> None:
        super().__init__("nginx proxy_pass", "1 worker, keepalive 64, HTTP/1.1", upstream.body)
        self.backend = upstream.addresses[0]

    def start(self, cpus: set[int] | None) -> None:
        nginx = NginxProxyPass(self.backend)
        with pinned_to(cpus):
            nginx.start()
        self.processes.append(nginx)
        self.url = nginx.urls[0]
        process = getattr(nginx, "_proc", None)
        self.measured = [process.pid] if process is not None else []


class HAProxyContender(ProxyContender):
    def __init__(self, upstream: LocalNginx) -> None:
        super().__init__("haproxy", "nbthread 1, mode http, http-reuse always", upstream.body)
        self.backend = upstream.addresses[0]

    def start(self, cpus: set[int] | None) -> None:
        haproxy = LocalHAProxy(self.backend, threads=1, cpus=cpus)
        self.processes.append(haproxy)
        haproxy.start()
        self.url = haproxy.url
        self.measured = [haproxy.pid] if haproxy.pid is not None else []


class AiohttpContender(ProxyContender):
    def __init__(self, upstream: LocalNginx, profile: Path | None = None) -> None:
        super().__init__("aiohttp pass-through", "1 ClientSession, uvloop, no mesh", upstream.body)
        self.upstream = upstream.urls[0]
        self.profile = profile

    def start(self, cpus: set[int] | None) -> None:
        port = free_port()
        argv = [sys.executable, str(BENCH_DIR / "_passthrough.py"), "--port", str(port)]
        if self.profile is not None:
            argv[1:1] = [str(BENCH_DIR / "_cprofile_run.py"), str(self.profile)]
        proc = BackgroundProcess("aiohttp-passthrough", [*argv, "--upstream", self.upstream], port, cpus=cpus)
        self.processes.append(proc)
        proc.start()
        self.url = f"http://127.0.0.1:{port}/"
        self.measured = [proc.pid] if proc.pid is not None else []


class RawProtocolContender(ProxyContender):
    """The protocol-level Python pass-through (`_rawproxy.py`): the floor for a Python proxy."""

    def __init__(self, upstream: LocalNginx) -> None:
        note = "reference: asyncio Protocol + httptools, no aiohttp"
        super().__init__("asyncio+httptools", note, upstream.body)
        self.upstream = "{}:{}".format(*upstream.addresses[0])

    def start(self, cpus: set[int] | None) -> None:
        port = free_port()
        argv = [
            sys.executable,
            str(BENCH_DIR / "_rawproxy.py"),
            "--port",
            str(port),
            "--upstream",
            self.upstream,
        ]
        proc = BackgroundProcess("raw-protocol-proxy", argv, port, cpus=cpus)
        self.processes.append(proc)
        proc.start()
        self.url = f"http://127.0.0.1:{port}/"
        self.measured = [proc.pid] if proc.pid is not None else []


class UvicornFloorContender(ProxyContender):
    """`_uvicorn_floor.py`: /call's JSON answered by a bare ASGI app on uvicorn, no proxying."""

    def __init__(self, upstream: LocalNginx) -> None:
        note = "floor for /call: uvicorn + bare ASGI, answer from memory"
        super().__init__("uvicorn floor", note, upstream.body)
        self.upstream = upstream.urls[0]
        self.call = {"service_name": SERVICE, "method": "GET", "path": "/"}

    def start(self, cpus: set[int] | None) -> None:
        port = free_port()
        argv = [sys.executable, str(BENCH_DIR / "_uvicorn_floor.py"), "--port", str(port)]
        proc = BackgroundProcess("uvicorn-floor", [*argv, "--body-from", self.upstream], port, cpus=cpus)
        self.processes.append(proc)
        proc.start()
        self.url = f"http://127.0.0.1:{port}{V2}/call"
        self.measured = [proc.pid] if proc.pid is not None else []
        token = {"Authorization": f"Bearer {secrets.token_urlsafe(32)}"}  # parsed as /call's is
        self.script = post_script(proc.tmp / "call.lua", self.call, token)

    def answer(self) -> bytes:
        return call_body(http("POST", self.url, self.call))


def call_body(got: Any) -> bytes:
    """The upstream body inside a /call answer, or what came back instead (for the error)."""
    if not isinstance(got, dict) or got.get("status_code") != 200:
        return json.dumps(got).encode()[:300]
    body = got.get("body")
    return body.encode() if isinstance(body, str) else json.dumps(body).encode()


class ControlPlane:
    """`python -m meshkit.plane.serve` on a free port with a fresh data dir and admin token."""

    def __init__(self, *options: str) -> None:
        self.token = secrets.token_urlsafe(32)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = Path(tempfile.mkdtemp(prefix="meshkit-bench-plane-"))
        env = dict(os.environ, MESHKIT_ADMIN_TOKEN=self.token)
        argv = [sys.executable, "-m", "meshkit.plane.serve", "--port", str(self.port), *options]
        self.process = BackgroundProcess(
            "control-plane", [*argv, "--data-dir", str(self.data_dir)], self.port, env=env
        )

    def start(self, cpus: set[int] | None, upstream: tuple[str, int]) -> None:
        self.process.cpus = cpus
        self.process.start(timeout=30)
        address, port = upstream
        registration = {"service_name": SERVICE, "address": address, "port": port}
        http("POST", f"{self.url}{V2}/register", registration, token=self.token)

    def stop(self) -> None:
        self.process.cleanup()
        shutil.rmtree(self.data_dir, ignore_errors=True)


def meshkit_command() -> list[str]:
    """How to start the sidecar here: `python -m meshkit.proxy` when it exists, else `meshkit proxy`."""
    import importlib.util

    if importlib.util.find_spec("meshkit.proxy.__main__") is not None:
        return [sys.executable, "-m", "meshkit.proxy"]
    cli = Path(sys.executable).with_name("meshkit")
    if not cli.exists():
        raise RuntimeError(f"neither `python -m meshkit.proxy` nor {cli} exists")
    return [str(cli), "proxy"]


class MeshkitProxyContender(ProxyContender):
    """The sidecar on the proxy core; its control plane shares the other core with wrk."""

    def __init__(
        self,
        upstream: LocalNginx,
        plane_cpus: set[int] | None,
        profile: Path | None = None,
        engine: str | None = None,
    ) -> None:
        name = "meshkit proxy" if engine is None else f"meshkit proxy ({engine})"
        note = "sidecar, default stack, p2c_ewma" + (f", --engine {engine}" if engine else "")
        super().__init__(name, note, upstream.body)
        self.upstream = upstream.addresses[0]
        self.plane_cpus = plane_cpus
        self.profile = profile
        self.engine = engine

    def start(self, cpus: set[int] | None) -> None:
        plane = ControlPlane()
        self.processes.append(plane)
        plane.start(self.plane_cpus, self.upstream)
        port = free_port()
        command = meshkit_command()
        if self.profile is not None:  # under cProfile with a CPU clock (see _cprofile_run.py)
            script = command[1:] if command[0] == sys.executable else command  # -m MODULE, or the script
            command = [sys.executable, str(BENCH_DIR / "_cprofile_run.py"), str(self.profile), *script]
        argv = [*command, "--listen", f"127.0.0.1:{port}", "--control-plane", plane.url]
        if self.engine is not None:
            argv += ["--engine", self.engine]
        env = dict(os.environ, MESHKIT_TOKEN=plane.token)
        proc = BackgroundProcess("meshkit-proxy", argv, port, cpus=cpus, env=env)
        self.processes.append(proc)
        proc.start(timeout=30)
        self.url = f"http://127.0.0.1:{port}/{SERVICE}/"
        self.measured = [proc.pid] if proc.pid is not None else []


class MeshkitCallContender(ProxyContender):
    """The control plane's `POST /call` on the proxy core, loaded by a wrk Lua script.

    With `sample_ratio`, the plane runs with `--trace-sample-ratio` (default: every call
    traced into its collector, as `meshkit serve` does)."""

    def __init__(self, upstream: LocalNginx, sample_ratio: float | None = None) -> None:
        name, note = "meshkit /call", "control plane POST /call (JSON in and out)"
        if sample_ratio is not None:
            name, note = (
                f"meshkit /call ({sample_ratio:.0%} traced)",
                f"{note}, --trace-sample-ratio {sample_ratio:g}",
            )
        super().__init__(name, note, upstream.body)
        self.upstream = upstream.addresses[0]
        self.call = {"service_name": SERVICE, "method": "GET", "path": "/"}
        self.options = () if sample_ratio is None else ("--trace-sample-ratio", f"{sample_ratio:g}")

    def start(self, cpus: set[int] | None) -> None:
        plane = ControlPlane(*self.options)
        self.processes.append(plane)
        plane.start(cpus, self.upstream)
        self.url = f"{plane.url}{V2}/call"
        self.measured = [plane.process.pid] if plane.process.pid is not None else []
        self.token = plane.token
        self.script = post_script(
            plane.data_dir / "call.lua", self.call, {"Authorization": f"Bearer {self.token}"}
        )

    def answer(self) -> bytes:
        return call_body(http("POST", self.url, self.call, token=self.token))
