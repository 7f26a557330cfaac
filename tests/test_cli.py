"""The CLI through typer's CliRunner against a real control plane (a subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from meshkit.cli import app
from tests.support.plane import PlaneProcess, free_port, start_plane
from tests.support.servers import Upstream, start_upstream

runner = CliRunner()


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlaneProcess]:
    proc = start_plane(tmp_path_factory.mktemp("plane") / "data")
    yield proc
    proc.stop()


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("MESHKIT_URL", "MESHKIT_TOKEN", "MESHKIT_ADMIN_TOKEN", "MESHKIT_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no stray ~/.meshkit token


def cli(plane: PlaneProcess, *args: str, token: bool = True) -> tuple[int, str, str]:
    """Run `meshkit --url URL [--data-dir D] ARGS`; the token comes from the plane's data directory."""
    base = ["--url", plane.url] + (["--data-dir", str(plane.data_dir)] if token else [])
    result = runner.invoke(app, [*base, *args])
    return result.exit_code, result.stdout, result.stderr


def as_json(out: str) -> object:
    return json.loads(out)


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    """A real instance on its own loop thread, since CliRunner commands run their own event loops."""
    import asyncio
    import threading

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    up = asyncio.run_coroutine_threadsafe(start_upstream("cli-up"), loop).result(10)
    yield up
    asyncio.run_coroutine_threadsafe(up.stop(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


def test_register_discover_call_deregister(plane: PlaneProcess, upstream: Upstream) -> None:
    code, out, err = cli(
        plane,
        "register",
        "cli-svc",
        "127.0.0.1",
        str(upstream.port),
        "--tag",
        "v1",
        "--meta",
        "team=a",
        "--json",
    )
    assert code == 0, err
    sid = as_json(out)["service_id"]  # type: ignore[index]
    code, out, _ = cli(plane, "discover", "cli-svc", "--json")
    assert code == 0
    found = as_json(out)
    assert [i["id"] for i in found["instances"]] == [sid]  # type: ignore[index]
    code, out, _ = cli(plane, "discover", "cli-svc")
    assert code == 0 and sid in out and "1/1 healthy" in out
    code, out, _ = cli(plane, "call", "cli-svc", "/hello", "--json")
    assert code == 0
    reply = as_json(out)
    assert reply["status_code"] == 200 and reply["body"] == "cli-up"  # type: ignore[index]
    code, out, _ = cli(plane, "call", "cli-svc", "/hello")
    assert code == 0 and out.startswith("200 from " + sid) and "cli-up" in out
    code, out, _ = cli(plane, "topology")
    assert code == 0 and "cli-svc" in out
    code, out, _ = cli(plane, "deregister", sid)
    assert code == 0 and f"deregistered {sid}" in out
    code, _, err = cli(plane, "deregister", sid)
    assert code == 1
    assert err.startswith("error: control plane answered 404") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_register_from_a_file(plane: PlaneProcess, tmp_path: Path) -> None:
    entries = [{"service_name": "file-svc", "address": "127.0.0.1", "port": 7100 + i} for i in range(3)]
    path = tmp_path / "services.json"
    path.write_text(json.dumps(entries))
    code, out, err = cli(plane, "register", "--file", str(path), "--json")
    assert code == 0, err
    assert [r["service_id"] for r in as_json(out)] == [f"file-svc-127.0.0.1-{7100 + i}" for i in range(3)]  # type: ignore[attr-defined]
    code, out, _ = cli(plane, "discover", "file-svc", "--json")
    assert as_json(out)["total"] == 3  # type: ignore[index]
    path.write_text(json.dumps([{"service_name": "x"}]))
    code, _, err = cli(plane, "register", "--file", str(path))
    assert code == 1 and "entry 0 must be an object with service_name, address and port" in err


def test_health_config_and_tokens(plane: PlaneProcess) -> None:
    code, out, _ = cli(plane, "health", "--json")
    assert code == 0 and as_json(out)["status"] in ("healthy", "degraded", "unhealthy")  # type: ignore[index]
    code, out, _ = cli(plane, "config", "lb", "least_connections", "--json")
    assert code == 0 and as_json(out)["strategy"] == "least_connections"  # type: ignore[index]
    code, out, _ = cli(plane, "config", "breaker", "--failure-threshold", "9", "--json")
    assert code == 0 and as_json(out)["failure_threshold"] == 9  # type: ignore[index]
    code, out, _ = cli(plane, "config", "show")
    assert code == 0 and "least_connections" in out and "9" in out
    code, _, err = cli(plane, "config", "lb", "fastest")
    assert code == 1 and "error:" in err and "Traceback" not in err
    code, _, err = cli(plane, "config", "retry")
    assert code == 1 and "give at least one" in err
    code, out, _ = cli(plane, "token", "create", "cli-tok", "--service", "orders")
    assert code == 0 and "mks_" in out
    code, out, _ = cli(plane, "token", "list", "--json")
    assert "cli-tok" in [t["name"] for t in as_json(out)]  # type: ignore[attr-defined]
    code, out, _ = cli(plane, "token", "revoke", "cli-tok")
    assert code == 0 and "revoked cli-tok" in out


def test_traces_search_and_show_a_tree(plane: PlaneProcess, upstream: Upstream) -> None:
    code, out, _ = cli(plane, "register", "traced-cli", "127.0.0.1", str(upstream.port), "--json")
    sid = as_json(out)["service_id"]  # type: ignore[index]
    _, out, _ = cli(plane, "call", "traced-cli", "/t", "--json")
    trace_id = as_json(out)["trace_id"]  # type: ignore[index]
    for _ in range(50):
        code, out, _ = cli(plane, "traces", "show", trace_id)
        if code == 0:
            break
        time.sleep(0.1)
    assert code == 0, out
    assert (f"trace {trace_id}" in out and "└──" in out) or "──" in out
    code, out, _ = cli(plane, "traces", "search", "--limit", "50", "--json")
    assert trace_id in [t["trace_id"] for t in as_json(out)]  # type: ignore[attr-defined]
    cli(plane, "deregister", sid)


def test_errors_are_one_line_and_exit_1(plane: PlaneProcess) -> None:
    result = runner.invoke(app, ["--url", f"http://127.0.0.1:{free_port()}", "health"])
    assert result.exit_code == 1
    assert "unreachable" in result.stderr and "meshkit serve" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    code, _, err = cli(plane, "register", "x-svc", "127.0.0.1", "9", token=False)
    assert code == 1 and "401" in err and "no token found" in err
    code, _, err = cli(plane, "register", "x-svc")
    assert code == 1 and "register needs SERVICE ADDRESS PORT" in err


def test_token_from_environment(plane: PlaneProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESHKIT_URL", plane.url)
    monkeypatch.setenv("MESHKIT_ADMIN_TOKEN", plane.token)
    result = runner.invoke(app, ["token", "list", "--json"])
    assert result.exit_code == 0, result.stderr


def test_wait_for_the_plane(plane: PlaneProcess) -> None:
    code, out, _ = cli(plane, "wait", "--timeout", "5")
    assert code == 0 and "ready" in out
    code, _, err = cli(plane, "wait", "--service", "never-there", "--timeout", "0.5")
    assert code == 1 and "not ready after 0.5s" in err


def test_alerts_and_missing_kong() -> None:
    result = runner.invoke(app, ["alerts", "--prometheus-rules"])
    assert result.exit_code == 0
    assert result.stdout.startswith("groups:") and "alert: " in result.stdout
    kong = f"http://127.0.0.1:{free_port()}"
    result = runner.invoke(app, ["kong", "sync", "--dry-run", "--admin-url", kong])
    assert result.exit_code == 1
    assert result.stderr.startswith("error:") and "Traceback" not in result.stderr


def test_serve_runs_the_control_plane(tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "served"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHKIT_")}
    cmd = [sys.executable, "-m", "meshkit.cli", "serve", "--port", str(port), "--data-dir", str(data)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        result = runner.invoke(app, ["--url", f"http://127.0.0.1:{port}", "wait", "--timeout", "20"])
        assert result.exit_code == 0, result.stderr
        assert (data / "admin.token").exists()
        result = runner.invoke(
            app, ["--url", f"http://127.0.0.1:{port}", "--data-dir", str(data), "topology", "--json"]
        )
        assert result.exit_code == 0 and json.loads(result.stdout)["total_instances"] == 0
    finally:
        proc.terminate()
        proc.wait(10)


def test_serve_refuses_a_bad_port() -> None:
    result = runner.invoke(app, ["serve", "--port", "70000"])
    assert result.exit_code == 1 and "port" in result.stderr


def test_serve_refuses_a_bad_trace_sample_ratio(tmp_path: Path) -> None:
    data = tmp_path / "data"
    result = runner.invoke(app, ["serve", "--data-dir", str(data), "--trace-sample-ratio", "2"])
    assert result.exit_code == 1 and "trace_sample_ratio: must be a number in [0, 1]" in result.stderr
    result = runner.invoke(
        app, ["serve", "--data-dir", str(data)], env={"MESHKIT_TRACE_SAMPLE_RATIO": "-0.5"}
    )
    assert result.exit_code == 1 and "trace_sample_ratio" in result.stderr
    assert not data.exists()  # refused before the data directory was made
