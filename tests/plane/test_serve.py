"""serve.py's pieces in process: the banner, the demo started once the API is ready, log redaction."""

from __future__ import annotations

import asyncio
import logging
import sys
import types
from pathlib import Path

import pytest
import uvicorn

from meshkit.plane.api import create_app
from meshkit.plane.plane import ControlPlane
from meshkit.plane.serve import banner, install_log_redaction, sample_ratio_from_env, with_demo
from tests.support.servers import free_port

TOKEN = "serve-test-admin-token-0123456789"


def test_banner_says_where_the_token_is_never_what(tmp_path: Path) -> None:
    plane = ControlPlane(data_dir=tmp_path, health_checks=False)
    token = plane.tokens.ensure_admin_token()
    text = banner(plane, "0.0.0.0", 8470, demo=True)
    assert "http://127.0.0.1:8470/api/v1/mesh/v2" in text and "/docs" in text and "/dashboard" in text
    assert str(tmp_path / "admin.token") in text and token not in text
    env = ControlPlane(admin_token=TOKEN, health_checks=False)
    assert "MESHKIT_ADMIN_TOKEN" in banner(env, "127.0.0.1", 1, demo=False) and TOKEN not in banner(
        env, "h", 1, False
    )


def test_banner_says_at_what_ratio_call_is_traced() -> None:
    every = ControlPlane(admin_token=TOKEN, health_checks=False)
    assert "/call traced at 100%" in banner(every, "127.0.0.1", 1, demo=False)
    some = ControlPlane(admin_token=TOKEN, health_checks=False, trace_sample_ratio=0.25)
    assert some.tracer.sample_ratio == 0.25
    assert "/call traced at 25%" in banner(some, "127.0.0.1", 1, demo=False)


@pytest.mark.parametrize("ratio", [-0.1, 1.5, float("nan"), True, "0.5", None])
def test_a_bad_trace_sample_ratio_is_refused_before_anything_is_written(
    tmp_path: Path, ratio: object
) -> None:
    with pytest.raises(ValueError, match=r"^trace_sample_ratio: must be a number in \[0, 1\]"):
        ControlPlane(data_dir=tmp_path / "data", health_checks=False, trace_sample_ratio=ratio)  # type: ignore[arg-type]
    assert not (tmp_path / "data").exists()


def test_the_sample_ratio_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MESHKIT_TRACE_SAMPLE_RATIO", raising=False)
    assert sample_ratio_from_env() == 1.0
    for raw, ratio in (("0.1", 0.1), (" 0 ", 0.0), ("1", 1.0), ("", 1.0)):
        monkeypatch.setenv("MESHKIT_TRACE_SAMPLE_RATIO", raw)
        assert sample_ratio_from_env() == ratio
    for raw in ("abc", "1.01", "-1", "nan", "inf"):
        monkeypatch.setenv("MESHKIT_TRACE_SAMPLE_RATIO", raw)
        with pytest.raises(ValueError, match=r"^MESHKIT_TRACE_SAMPLE_RATIO: must be a number in \[0, 1\]"):
            sample_ratio_from_env()


async def test_demo_runs_once_ready_and_is_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str, int]] = []
    stopped = asyncio.Event()

    async def run_demo(base_url: str, admin_token: str, stop: asyncio.Event) -> None:
        import aiohttp

        async with aiohttp.ClientSession() as s, s.get(base_url + "/api/v1/mesh/v2/health") as resp:
            calls.append((base_url, admin_token, resp.status))
        await stop.wait()
        stopped.set()

    monkeypatch.setitem(sys.modules, "meshkit.demo", types.SimpleNamespace(run_demo=run_demo))
    plane = ControlPlane(admin_token=TOKEN, health_checks=False)
    port = free_port()
    app = create_app(plane)
    with_demo(app, plane, f"http://127.0.0.1:{port}")
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    task = asyncio.create_task(server.serve())
    for _ in range(200):
        if calls:
            break
        await asyncio.sleep(0.02)
    server.should_exit = True
    await task
    assert calls == [(f"http://127.0.0.1:{port}", TOKEN, 200)]
    assert stopped.is_set()


async def test_missing_demo_is_logged_not_fatal(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "meshkit.demo", types.SimpleNamespace())
    from meshkit.plane.serve import run_demo_when_ready

    await run_demo_when_ready("http://127.0.0.1:1", TOKEN, asyncio.Event())
    assert "meshkit.demo.run_demo is not available" in caplog.text


def test_log_redaction_masks_tokens(capsys: pytest.CaptureFixture[str]) -> None:
    plane = ControlPlane(admin_token=TOKEN, health_checks=False)
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        access = logging.getLogger("uvicorn.access")
        access.disabled = True  # as a dictConfig elsewhere may leave it
        access.setLevel(logging.WARNING)  # as another in-process uvicorn.Config(log_level=...) may
        install_log_redaction(plane)
        logging.getLogger("uvicorn.access").info("GET /x?token=%s Authorization: Bearer %s", TOKEN, TOKEN)
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    err = capsys.readouterr().err
    assert "GET /x" in err and TOKEN not in err
