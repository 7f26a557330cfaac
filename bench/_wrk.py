"""wrk as the load generator: run it (pinned to a core), and read its `--latency` report.

wrk (Will Glozer's, Debian's /usr/bin/wrk) keeps `connections` HTTP/1.1 keep-alive
connections busy from `threads` threads for `seconds`: a closed loop, so at saturation
latency is about connections / throughput (Little's law) and the percentiles say as
much about throughput as about any single request's cost. `run_wrk` runs it under
`taskset` when given CPUs and returns a `WrkResult` parsed from its text: req/s, the
latency distribution (50/75/90/99 %), and what went wrong (non-2xx answers, socket
errors). `post_script` writes the Lua script for a fixed POST with a JSON body.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from _processes import ensure_binary

WRK = "/usr/bin/wrk"
_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_PERCENTILE = re.compile(r"^\s*(\d+(?:\.\d+)?)%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.MULTILINE)
_REQUESTS = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h)", re.MULTILINE)
_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


def ensure_wrk() -> str:
    return ensure_binary(WRK, "wrk")


@dataclass(slots=True)
class WrkResult:
    """One wrk run, from its --latency report."""

    rps: float
    requests: int
    seconds: float
    p50_ms: float
    p75_ms: float
    p90_ms: float
    p99_ms: float
    non_2xx: int = 0
    socket_errors: int = 0

    @property
    def errors(self) -> int:
        return self.non_2xx + self.socket_errors

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def to_ms(value: str, unit: str) -> float:
    return float(value) * _UNITS_MS[unit]


def parse_wrk(text: str) -> WrkResult:
    """The figures of a `wrk --latency` report; ValueError naming what is missing."""
    percentiles = {float(q): to_ms(v, u) for q, v, u in _PERCENTILE.findall(text)}
    missing = [q for q in (50.0, 75.0, 90.0, 99.0) if q not in percentiles]
    requests = _REQUESTS.search(text)
    rps = _RPS.search(text)
    if missing or requests is None or rps is None:
        what = [f"{q:g}%" for q in missing] + (["requests"] if requests is None else [])
        what += ["Requests/sec"] if rps is None else []
        raise ValueError(f"wrk output: missing {', '.join(what)} (was --latency given?): {text[-500:]!r}")
    non_2xx = _NON_2XX.search(text)
    sockets = _SOCKET.search(text)
    return WrkResult(
        rps=float(rps.group(1)),
        requests=int(requests.group(1)),
        seconds=to_ms(requests.group(2), requests.group(3)) / 1000,
        p50_ms=percentiles[50.0],
        p75_ms=percentiles[75.0],
        p90_ms=percentiles[90.0],
        p99_ms=percentiles[99.0],
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(n) for n in sockets.groups()) if sockets else 0,
    )


def post_script(path: Path, body: Mapping[str, Any], headers: Mapping[str, str]) -> Path:
    """A wrk Lua script sending `POST` with `body` as JSON and `headers`; readable by us only."""
    lines = ['wrk.method = "POST"', f"wrk.body = {_lua_string(json.dumps(body, separators=(',', ':')))}"]
    lines.append('wrk.headers["Content-Type"] = "application/json"')
    lines += [f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}" for k, v in headers.items()]
    path.touch(mode=0o600)
    path.write_text("\n".join(lines) + "\n")
    return path


def _lua_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def run_wrk(
    url: str,
    *,
    connections: int,
    seconds: float,
    threads: int = 1,
    script: Path | None = None,
    cpus: set[int] | None = None,
    timeout_s: float = 5.0,
) -> WrkResult:
    """Run wrk against `url` (pinned to `cpus` with taskset) and parse its report."""
    if connections < threads:
        raise ValueError(f"connections: must be >= threads ({threads}), got {connections}")
    if not seconds >= 1:
        raise ValueError(f"seconds: wrk takes whole seconds >= 1, got {seconds}")
    argv = [ensure_wrk(), f"-t{threads}", f"-c{connections}", f"-d{math.ceil(seconds)}s"]
    argv += [f"--timeout={timeout_s:g}s", "--latency"]
    if script is not None:
        argv += ["-s", str(script)]
    argv.append(url)
    if cpus:
        argv = ["taskset", "-c", ",".join(str(c) for c in sorted(cpus)), *argv]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + timeout_s + 30)
    if done.returncode != 0:
        raise RuntimeError(f"wrk exited with {done.returncode}: {(done.stderr or done.stdout)[-500:]}")
    return parse_wrk(done.stdout)
