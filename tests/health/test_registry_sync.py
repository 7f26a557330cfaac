"""RegistryHealthSync with a leadership: TTL reports reach the elected checker through whichever plane gets them.

Two syncs share one registry, as two control planes share one etcd; a fake leadership
decides which one checks. The registry is the in-memory embedded one plus the two calls
the etcd registry adds (`report_ttl` writes a report, `ttl_reports` follows those written
after it starts), so these tests need no etcd; tests/registry/etcd/test_reports.py holds
the etcd side and tests/e2e/test_planes_on_etcd.py the two real planes.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncGenerator, AsyncIterator, Callable

import pytest

from meshkit.clock import FakeClock
from meshkit.errors import RegistryUnavailable
from meshkit.health.registry_sync import RegistryHealthSync
from meshkit.registry import EmbeddedRegistry, UnknownInstance
from meshkit.types import HealthCheck, ServiceInstance, ServiceState

TTL = HealthCheck(kind="ttl", ttl=5.0)
HTTP = HealthCheck(kind="http", interval=10.0)


class FakeLeadership:
    """Elected or not, as the test says (`win`/`lose`)."""

    def __init__(self) -> None:
        self._elected = asyncio.Event()
        self._deposed = asyncio.Event()
        self._deposed.set()
        self.closed = False

    @property
    def is_leader(self) -> bool:
        return self._elected.is_set()

    def start(self) -> None:
        pass

    async def wait_for_leadership(self) -> None:
        await self._elected.wait()

    async def wait_for_loss(self) -> None:
        await self._deposed.wait()

    async def close(self, *, resign: bool = True) -> None:
        self.closed = True
        self.lose()

    def win(self) -> None:
        self._deposed.clear()
        self._elected.set()

    def lose(self) -> None:
        self._elected.clear()
        self._deposed.set()


class ReportingRegistry(EmbeddedRegistry):
    """The embedded registry with the etcd registry's TTL-report calls, kept in a list."""

    def __init__(self) -> None:
        super().__init__(None, clock=FakeClock())
        self.reports: list[tuple[str, str, str]] = []
        self.followers = 0
        self.failures = 0  # how many ttl_reports calls to refuse first
        self._written = asyncio.Condition()

    async def report_ttl(self, service_id: str, status: str, note: str = "") -> None:
        if await self.get(service_id) is None:
            raise UnknownInstance(service_id)
        await self.put_report(service_id, status, note)

    async def put_report(self, service_id: str, status: str, note: str = "") -> None:
        """A report as it would arrive from the registry, unchecked."""
        async with self._written:
            self.reports.append((service_id, status, note))
            self._written.notify_all()

    async def ttl_reports(self) -> AsyncGenerator[tuple[str, str, str], None]:
        if self.failures:
            self.failures -= 1
            raise RegistryUnavailable("etcd unavailable (test)")
        seen = len(self.reports)
        self.followers += 1
        try:
            while True:
                async with self._written:
                    while len(self.reports) <= seen:
                        await self._written.wait()
                while seen < len(self.reports):
                    seen += 1
                    yield self.reports[seen - 1]
        finally:
            self.followers -= 1


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(500):  # a guard against hanging (5 s), never a speed assertion
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met")


def instance(sid: str, check: HealthCheck) -> ServiceInstance:
    return ServiceInstance(sid, "svc", "127.0.0.1", 8001, check=check)


@pytest.fixture
async def registry() -> AsyncIterator[ReportingRegistry]:
    reg = ReportingRegistry()
    await reg.start()
    await reg.register(instance("ttl-1", TTL))
    await reg.register(instance("http-1", HTTP))
    yield reg
    await reg.close()


def plane(registry: EmbeddedRegistry, leadership: FakeLeadership | None) -> RegistryHealthSync:
    return RegistryHealthSync(
        registry, leadership=leadership, retry_delay=0.01, clock=FakeClock(), rng=random.Random(0)
    )


class Planes:
    def __init__(self, registry: ReportingRegistry) -> None:
        self.registry = registry
        self.a_lead, self.b_lead = FakeLeadership(), FakeLeadership()
        self.a, self.b = plane(registry, self.a_lead), plane(registry, self.b_lead)

    async def elect_a(self) -> None:
        """a checks (its checker has synced and its follower is running), b stands by."""
        self.a_lead.win()
        await until(lambda: "ttl-1" in self.a.checker and self.registry.followers == 1)


@pytest.fixture
async def planes(registry: ReportingRegistry) -> AsyncIterator[Planes]:
    group = Planes(registry)
    await group.a.start()
    await group.b.start()
    yield group
    await group.a.stop()
    await group.b.stop()
    assert group.a_lead.closed and group.b_lead.closed and registry.followers == 0


async def test_a_report_through_the_standby_reaches_the_elected_checker(planes: Planes) -> None:
    await planes.elect_a()
    assert planes.a.active and not planes.b.active
    await planes.b.report_ttl("ttl-1", "pass", "heartbeat")
    assert planes.registry.reports == [("ttl-1", "pass", "heartbeat")]  # a write, not b's own checker
    assert "ttl-1" not in planes.b.checker
    await until(lambda: planes.a.checker.state("ttl-1") is ServiceState.HEALTHY)
    assert planes.a.checker.history("ttl-1")[-1].detail == "ttl report pass: heartbeat"
    stored = await planes.registry.get("ttl-1")
    assert stored is not None and stored.state is ServiceState.HEALTHY  # written back for every plane
    await planes.b.report_ttl("ttl-1", "warn", "disk 91%")
    await until(lambda: planes.a.checker.state("ttl-1") is ServiceState.DEGRADED)


async def test_the_elected_plane_reports_to_its_own_checker(planes: Planes) -> None:
    await planes.elect_a()
    await planes.a.report_ttl("ttl-1", "fail", "db down")
    assert planes.a.checker.state("ttl-1") is ServiceState.UNHEALTHY
    assert planes.registry.reports == []
    with pytest.raises(ValueError, match=r"^status:"):
        await planes.a.report_ttl("ttl-1", "ok")


async def test_reports_the_checker_refuses_are_skipped_and_following_goes_on(planes: Planes) -> None:
    await planes.elect_a()
    await planes.registry.put_report("not-synced-yet", "pass")  # KeyError in the checker
    await planes.b.report_ttl("http-1", "pass")  # ValueError: an http check is probed, not reported
    await planes.registry.put_report("ttl-1", "sleepy")  # ValueError: a bad status
    await planes.b.report_ttl("ttl-1", "warn")
    await until(lambda: planes.a.checker.state("ttl-1") is ServiceState.DEGRADED)
    assert len(planes.a.checker.history("ttl-1")) == 1
    assert planes.a.checker.history("http-1") == []
    assert planes.registry.followers == 1


async def test_leadership_moves_and_the_reports_follow_it(planes: Planes) -> None:
    await planes.elect_a()
    planes.a_lead.lose()
    await until(lambda: planes.registry.followers == 0)
    planes.b_lead.win()
    await until(lambda: "ttl-1" in planes.b.checker and planes.registry.followers == 1)
    assert planes.b.active and not planes.a.active
    await planes.a.report_ttl("ttl-1", "fail", "via the old leader")  # now the standby: a write
    assert planes.registry.reports == [("ttl-1", "fail", "via the old leader")]
    await until(lambda: planes.b.checker.state("ttl-1") is ServiceState.UNHEALTHY)
    with pytest.raises(UnknownInstance):
        await planes.a.report_ttl("nobody", "pass")


async def test_a_registry_that_refuses_to_follow_is_retried(registry: ReportingRegistry) -> None:
    registry.failures = 3
    lead = FakeLeadership()
    sync = plane(registry, lead)
    await sync.start()
    try:
        lead.win()
        await until(lambda: registry.followers == 1)
        assert registry.failures == 0
        await registry.report_ttl("ttl-1", "pass")
        await until(lambda: sync.checker.state("ttl-1") is ServiceState.HEALTHY)
    finally:
        await sync.stop()


async def test_registries_without_reports_keep_reports_in_the_plane() -> None:
    registry = EmbeddedRegistry(None, clock=FakeClock())
    await registry.start()
    await registry.register(instance("ttl-1", TTL))
    alone = plane(registry, None)  # one plane, no leadership: always the active checker
    standby = plane(registry, FakeLeadership())  # nowhere to write: its own checker, which watches nothing
    await alone.start()
    await standby.start()
    try:
        assert alone.active and not standby.active
        await alone.report_ttl("ttl-1", "pass")
        assert alone.checker.state("ttl-1") is ServiceState.HEALTHY
        with pytest.raises(KeyError, match="instance_id"):
            await standby.report_ttl("ttl-1", "pass")
    finally:
        await alone.stop()
        await standby.stop()
        await registry.close()
