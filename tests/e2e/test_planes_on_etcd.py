"""Growing past one machine: two `meshkit serve` processes on one real etcd act as one control plane.

- A registration made through one plane is discovered through the other within 1 s (timed
  from the acknowledgement; a new service, and a new instance of a service the other plane
  already serves from its cache).
- Either plane can be killed with SIGKILL without losing anything: everything registered
  through both is read back through the survivor, after the dead plane's leases expired.
- Health checks are not doubled: an instance whose HTTP check counts its probes is probed at
  one checker's rate while both planes run (only the elected plane checks, its instance view
  is the only one with a check history); when that plane is killed, the other takes over.
- A TTL check's heartbeats sent through the standby plane keep the instance healthy: the
  standby writes each report to etcd (`EtcdRegistry.report_ttl`) and the elected plane's
  checker follows them (`ttl_reports`), as a Consul TTL update is a write the check's owner sees.

The planes share one admin token: `start_plane` clears MESHKIT_* variables, so the same token
is written into each plane's data directory, which the plane reads exactly like
MESHKIT_ADMIN_TOKEN.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from meshkit.remote import ControlPlaneClient
from tests.registry.etcd.cluster import ETCD, EtcdCluster
from tests.support.plane import PlaneProcess, free_port, start_plane

pytestmark = pytest.mark.skipif(not Path(ETCD).exists(), reason="etcd-server is not installed")

PROBE_INTERVAL = 0.2  # seconds between one checker's probes of the counted instance
LEADER_TTL = 5.0  # LeaderElection's default lease: how long a dead leader keeps the election


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[EtcdCluster]:
    cluster = EtcdCluster(tmp_path / "etcd", size=1)
    try:
        yield cluster.start()
    finally:
        cluster.close()


class Planes:
    """Planes on one etcd with one admin token; every process is killed at the end."""

    def __init__(self, root: Path, etcd: EtcdCluster) -> None:
        self.root = root
        self.etcd = etcd
        self.token = secrets.token_urlsafe(32)
        self.started: list[PlaneProcess] = []

    def start(self, name: str) -> PlaneProcess:
        data_dir = self.root / name / "data"
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        token_file = data_dir / "admin.token"
        if not token_file.exists():
            fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(self.token + "\n")
        plane = start_plane(data_dir, "--registry", self.etcd.url)
        self.started.append(plane)
        return plane

    def client(self, plane: PlaneProcess) -> ControlPlaneClient:
        return ControlPlaneClient(plane.url, self.token, timeout=5.0)

    @staticmethod
    def kill(plane: PlaneProcess) -> None:
        """SIGKILL: no deregistration, no lease revoked, no goodbye."""
        if plane.proc.poll() is None:
            os.kill(plane.proc.pid, signal.SIGKILL)
            plane.proc.wait(10)

    def close(self) -> None:
        for plane in self.started:
            self.kill(plane)


@pytest.fixture
def planes(tmp_path: Path, etcd: EtcdCluster) -> Iterator[Planes]:
    group = Planes(tmp_path, etcd)
    try:
        yield group
    finally:
        group.close()


class ProbeCounter:
    """A real upstream that timestamps every GET /health it receives."""

    def __init__(self) -> None:
        self.probes: list[float] = []
        self.port = free_port()

    def count(self, since: float, until: float = float("inf")) -> int:
        return sum(since <= t < until for t in self.probes)

    async def health(self, request: web.Request) -> web.Response:
        self.probes.append(time.monotonic())
        return web.Response(text="ok")


@pytest.fixture
async def upstream() -> AsyncIterator[ProbeCounter]:
    counter = ProbeCounter()
    app = web.Application()
    app.router.add_get("/health", counter.health)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", counter.port).start()
    try:
        yield counter
    finally:
        await runner.cleanup()


async def until(check: Callable[[], Any], within: float, interval: float = 0.02) -> Any:
    loop = asyncio.get_running_loop()
    give_up = loop.time() + within
    last: Any = None
    while loop.time() < give_up:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"not within {within}s; last: {last!r}")


async def ids(client: ControlPlaneClient, service: str) -> set[str]:
    return {i["id"] for i in (await client.discover(service))["instances"]}


async def all_ids(client: ControlPlaneClient) -> set[str]:
    topology = await client.topology()
    return {i["id"] for s in topology["services"].values() for i in s["instances"]}


async def seen_within(client: ControlPlaneClient, service: str, sid: str, within: float) -> float:
    """Seconds until `sid` is discovered through `client` (the plane's default, cached read)."""
    start = time.monotonic()

    async def found() -> bool:
        return sid in await ids(client, service)

    await until(found, within)
    return time.monotonic() - start


async def test_registrations_shared_within_a_second_and_kept_when_either_plane_dies(
    planes: Planes, upstream: ProbeCounter
) -> None:
    p1, p2 = await asyncio.gather(
        asyncio.to_thread(planes.start, "p1"), asyncio.to_thread(planes.start, "p2")
    )
    c1, c2 = planes.client(p1), planes.client(p2)
    try:
        # A new service, registered through p1, discovered through p2.
        reply = await c1.register("orders", "127.0.0.1", upstream.port, service_id="orders-1")
        new_service = await seen_within(c2, "orders", reply["service_id"], within=1.0)
        # A second instance of a service p2 already serves from its cache: its watch must carry it.
        assert await ids(c2, "orders") == {"orders-1"}
        await c1.register("orders", "127.0.0.1", upstream.port, service_id="orders-2")
        cached_service = await seen_within(c2, "orders", "orders-2", within=1.0)
        # And the other way round.
        await c2.register("orders", "127.0.0.1", upstream.port, service_id="orders-3")
        other_way = await seen_within(c1, "orders", "orders-3", within=1.0)

        registered = {"orders-1", "orders-2", "orders-3"}
        for n in range(20):  # more through both planes, then kill one, then the other
            via = c1 if n % 2 else c2
            registered.add(
                (await via.register("billing", "127.0.0.1", upstream.port, service_id=f"b-{n}"))["service_id"]
            )
        assert await all_ids(c1) == await all_ids(c2) == registered

        await asyncio.to_thread(planes.kill, p1)
        await asyncio.sleep(LEADER_TTL + 1.0)  # anything tied to p1's leases would be gone by now
        after_p1 = await all_ids(c2)
        assert after_p1 == registered

        p1b = await asyncio.to_thread(planes.start, "p1")  # back on its data dir (a new port)
        c1b = planes.client(p1b)
        try:
            await c1b.register("billing", "127.0.0.1", upstream.port, service_id="b-after")
            registered.add("b-after")
            await asyncio.to_thread(planes.kill, p2)
            await asyncio.sleep(LEADER_TTL + 1.0)
            after_p2 = await all_ids(c1b)
        finally:
            await c1b.close()
        assert after_p2 == registered
        print(
            f"\n[figures] planes_on_etcd: seen_by_other_plane new_service={new_service * 1000:.0f}ms "
            f"cached_service={cached_service * 1000:.0f}ms other_way={other_way * 1000:.0f}ms "
            f"registered={len(registered)} lost_after_kill_p1={len(registered - after_p1 - {'b-after'})} "
            f"lost_after_kill_p2={len(registered - after_p2)}"
        )
    finally:
        await c1.close()
        await c2.close()


async def instance_checks(client: ControlPlaneClient, sid: str) -> int:
    """How many probe results this plane's own checker holds for `sid` (0 on a standby)."""
    return len((await client.instance(sid))["checks"])


async def test_one_plane_probes_and_the_other_takes_over_when_it_dies(
    planes: Planes, upstream: ProbeCounter
) -> None:
    p1, p2 = await asyncio.gather(
        asyncio.to_thread(planes.start, "p1"), asyncio.to_thread(planes.start, "p2")
    )
    c1, c2 = planes.client(p1), planes.client(p2)
    try:
        check = {"kind": "http", "path": "/health", "interval": PROBE_INTERVAL, "timeout": 1.0}
        check |= {"healthy_threshold": 1, "unhealthy_threshold": 1}
        sid = (await c1.register("counted", "127.0.0.1", upstream.port, check=check))["service_id"]

        async def healthy() -> bool:
            return bool((await c2.discover("counted", use_cache=False))["healthy"] == 1)

        await until(healthy, within=10.0)
        window = 3.0
        start = time.monotonic()
        await asyncio.sleep(window)
        both_running = upstream.count(start, start + window)
        one_checker = window / PROBE_INTERVAL
        held = {"p1": await instance_checks(c1, sid), "p2": await instance_checks(c2, sid)}
        print(
            f"\n[figures] planes_on_etcd: probes_in_{window:g}s={both_running} "
            f"one_checker_expects~{one_checker:.0f} check_history={held}"
        )
        assert both_running <= 1.5 * one_checker, f"{both_running} probes: more than one checker is probing"
        assert both_running >= 0.3 * one_checker, f"{both_running} probes: is anyone probing?"
        assert sorted(held.values())[0] == 0 < sorted(held.values())[1], held  # exactly one plane checks

        leader, survivor, client = (p1, p2, c2) if held["p1"] else (p2, p1, c1)
        await asyncio.to_thread(planes.kill, leader)
        killed = time.monotonic()
        await until(lambda: instance_checks(client, sid), within=LEADER_TTL * 3)
        taken_over = time.monotonic() - killed
        resumed = time.monotonic()
        await asyncio.sleep(window)
        after = upstream.count(resumed, resumed + window)
        print(
            f"[figures] planes_on_etcd: takeover_after={taken_over:.2f}s "
            f"probes_after_takeover_in_{window:g}s={after}"
        )
        assert 0.3 * one_checker <= after <= 1.5 * one_checker, after
        assert survivor.proc.poll() is None
    finally:
        await c1.close()
        await c2.close()


async def test_ttl_heartbeats_through_the_standby_plane_keep_an_instance_healthy(
    planes: Planes, upstream: ProbeCounter
) -> None:
    p1, p2 = await asyncio.gather(
        asyncio.to_thread(planes.start, "p1"), asyncio.to_thread(planes.start, "p2")
    )
    c1, c2 = planes.client(p1), planes.client(p2)
    try:
        marker = {"kind": "http", "path": "/health", "interval": PROBE_INTERVAL, "timeout": 1.0}
        probed = (await c1.register("marker", "127.0.0.1", upstream.port, check=marker))["service_id"]

        async def leader_known() -> bool:
            return (await instance_checks(c1, probed) > 0) != (await instance_checks(c2, probed) > 0)

        await until(leader_known, within=LEADER_TTL * 3)
        standby = c2 if await instance_checks(c1, probed) else c1
        ttl = {"kind": "ttl", "ttl": 1.0, "healthy_threshold": 1, "unhealthy_threshold": 1}
        sid = (await standby.register("reporting", "127.0.0.1", upstream.port, check=ttl))["service_id"]
        states: list[str] = []
        for _ in range(12):  # 3 s of heartbeats every 0.25 s, well inside the 1 s ttl
            await standby.heartbeat(sid)
            await asyncio.sleep(0.25)
            states.append((await c1.instance(sid))["state"])
        print(f"\n[figures] planes_on_etcd: ttl_instance_states_via_standby={states}")
        assert states[-4:] == ["healthy"] * 4, states
    finally:
        await c1.close()
        await c2.close()
