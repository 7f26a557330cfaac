"""The control plane killed under registration load (issue "Proving it", item 5).

A real `meshkit serve` (embedded SQLite registry on a data directory) takes registrations
from 8 concurrent REST writers (as fast as it answers); every 200 is recorded. Meanwhile a `MeshClient` over
`CachedRegistry(RemoteRegistry(ControlPlaneClient))` calls a real upstream by service name
in an open loop (50/s). The plane is SIGKILLed mid-load, left dead for a moment, then
restarted on the same port and data directory. Asserted: every acknowledged registration is
there after the restart (none lost); every call succeeded, those during the outage included
(discovery answered from the cache, marked stale); afterwards the cache is connected and
fresh again, and an instance registered after the restart gets traffic.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from meshkit.client import MeshClient
from meshkit.registry.cache import CachedRegistry
from meshkit.registry.remote import RemoteRegistry
from meshkit.remote import ControlPlaneClient, ControlPlaneError
from tests.chaos.support import AttemptLog, at, open_loop, report
from tests.conftest import StartUpstream
from tests.support.plane import API, PlaneProcess, start_plane

RATE = 50.0  # calls per second through the client
DURATION = 9.0
KILL_AT = 2.0  # seconds into the load
DEAD_FOR = 1.0  # seconds the plane stays dead before it is restarted
WRITERS = 8
BOUND = 30.0  # a guard against hanging, never a speed assertion


def restart_on(port: int, data_dir: Path, timeout: float = 30.0) -> PlaneProcess:
    """The plane again on `port` (its clients know that address) and `data_dir`, once /health answers.

    `start_plane` always picks a new port, so this starts the same command on the old one.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHKIT_")}
    log_path = data_dir.parent / f"plane-{port}-restarted.log"
    cmd = [sys.executable, "-m", "meshkit.plane.serve", "--port", str(port), "--data-dir", str(data_dir)]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    plane = PlaneProcess(f"http://127.0.0.1:{port}", data_dir, proc, log_path)
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        if proc.poll() is not None:
            raise RuntimeError(f"control plane exited with {proc.returncode}:\n{plane.log()}")
        try:
            with urllib.request.urlopen(f"{plane.url}{API}/health", timeout=1) as resp:
                if resp.status == 200:
                    return plane
        except OSError:
            pass
        time.sleep(0.05)
    kill9(plane)
    raise RuntimeError(f"control plane did not come back within {timeout}s:\n{plane.log()}")


def kill9(plane: PlaneProcess) -> None:
    if plane.proc.poll() is None:
        os.kill(plane.proc.pid, signal.SIGKILL)
        plane.proc.wait(10)


async def test_no_acknowledged_registration_lost_and_clients_keep_calling(
    upstreams: StartUpstream, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    data_dir = tmp_path / "data"
    plane = await asyncio.to_thread(start_plane, data_dir)
    planes = [plane]
    try:
        await run(plane, planes, upstreams, record_property)
    finally:
        for p in planes:
            kill9(p)


async def run(
    plane: PlaneProcess,
    planes: list[PlaneProcess],
    upstreams: StartUpstream,
    record_property: Callable[[str, object], None],
) -> None:
    token = plane.token
    port = int(plane.url.rsplit(":", 1)[1])
    ups = [await upstreams(f"orders{i}") for i in range(3)]
    admin = ControlPlaneClient(plane.url, token, timeout=2.0)
    for up in ups[:2]:
        await admin.register("orders", up.host, up.port)
    cache = CachedRegistry(
        RemoteRegistry(
            ControlPlaneClient(plane.url, token, timeout=1.0), poll_interval=0.2, owns_client=True
        ),
        owns_registry=True,
        base_backoff=0.05,
        max_backoff=0.5,
        rng=random.Random(5),
    )
    client = MeshClient(cache, rng=random.Random(5))
    attempts = AttemptLog().install(client)
    newcomer = f"orders-{ups[2].host}-{ups[2].port}"
    acknowledged: list[str] = []
    refused: dict[str, int] = {}
    marks: dict[str, float] = {}
    seen: dict[str, Any] = {}
    stop_writing = asyncio.Event()

    async def call(i: int) -> str:
        response = await client.request("orders", "GET", f"/o/{i}")
        if response.status != 200:
            raise RuntimeError(f"status {response.status}")
        assert response.instance is not None
        return response.instance.service_id

    async def writer(w: int, http: ControlPlaneClient) -> None:
        n = 0
        while not stop_writing.is_set():
            sid = f"load-{w}-{n}"
            n += 1
            try:
                reply = await http.register("load", ups[0].host, ups[0].port, service_id=sid)
            except ControlPlaneError as exc:  # refused, reset or unreachable: not acknowledged
                key = type(exc).__name__ if exc.status == 0 else str(exc.status)
                refused[key] = refused.get(key, 0) + 1
                await asyncio.sleep(0.02)
                continue
            assert reply["service_id"] == sid
            acknowledged.append(sid)

    async def faults(start: float) -> None:
        await at(start, KILL_AT)
        await asyncio.to_thread(kill9, plane)
        marks["killed"] = asyncio.get_running_loop().time() - start
        await asyncio.sleep(DEAD_FOR / 2)
        seen["connected_during"] = cache.connected
        seen["stale_during"] = (await cache.discover("orders")).stale
        await asyncio.sleep(DEAD_FOR / 2)
        again = await asyncio.to_thread(restart_on, port, plane.data_dir)
        planes.append(again)
        marks["restarted"] = asyncio.get_running_loop().time() - start
        await asyncio.sleep(1.0)  # registrations continue into the restarted plane
        stop_writing.set()
        await admin.register("orders", ups[2].host, ups[2].port)
        marks["newcomer"] = asyncio.get_running_loop().time() - start

    await cache.start()
    writers = [ControlPlaneClient(plane.url, token, timeout=2.0) for _ in range(WRITERS)]
    try:
        assert len(await cache.resolve("orders")) == 2
        start = asyncio.get_running_loop().time()
        fault_task = asyncio.create_task(faults(start))
        write_tasks = [asyncio.create_task(writer(w, http)) for w, http in enumerate(writers)]
        load = await open_loop(call, rate=RATE, duration=DURATION)
        await asyncio.wait_for(fault_task, BOUND)
        await asyncio.wait_for(asyncio.gather(*write_tasks), BOUND)
        # On a slow restart the newcomer joins near the end of the load: a bounded number of
        # further calls through the same client and cache.
        for i in range(60):
            if attempts.times.get(newcomer):
                break
            await call(10_000 + i)
            await asyncio.sleep(0.05)
        connected_after = cache.connected
        stale_after = (await cache.discover("orders")).stale
        present = {i["id"] for i in (await admin.discover("load", use_cache=False))["instances"]}
        orders_after = {i["id"] for i in (await admin.discover("orders", use_cache=False))["instances"]}
    finally:
        stop_writing.set()
        for http in writers:
            await http.close()
        await admin.close()
        await client.aclose()
        await cache.close()

    lost = sorted(set(acknowledged) - present)
    outage = load.between(marks["killed"], marks["restarted"])
    reached = attempts.times.get(newcomer, [])
    report(
        "plane_killed",
        {
            "writers": WRITERS,
            "acknowledged": len(acknowledged),
            "lost": len(lost),
            "not_acknowledged": refused,
            "outage_s": round(marks["restarted"] - marks["killed"], 2),
            "calls": load.sent,
            "success_ratio": round(load.success_ratio(), 5),
            "calls_during_outage": len(outage),
            "success_during_outage": round(load.success_ratio(marks["killed"], marks["restarted"]), 5),
            "stale_during_outage": seen["stale_during"],
            "fresh_after": connected_after and not stale_after,
            "newcomer_requests": len(reached),
            "errors": load.errors(),
        },
        record_property,
    )
    assert acknowledged and sum(refused.values()) > 0, "the kill landed mid-load (some writes refused)"
    assert not lost, f"{len(lost)} acknowledged registrations lost: {lost[:10]}"
    assert len(outage) > 0 and load.success_ratio() == 1.0, load.errors()
    assert seen["connected_during"] is False and seen["stale_during"] is True
    assert connected_after and not stale_after
    assert newcomer in orders_after
    assert reached, "an instance registered after the restart got traffic: the client sees the registry again"
