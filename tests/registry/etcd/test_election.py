"""LeaderElection on a real etcd: one leader among candidates, takeover when it stops, step-down when cut off."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from meshkit.registry.election import LeaderElection
from meshkit.registry.etcd import EtcdRegistry
from tests.registry.etcd.cluster import EtcdCluster

TTL = 1.0
BOUND = TTL + 5.0  # seconds: a guard against hanging, never a speed assertion


async def settle(elections: list[LeaderElection]) -> None:
    await asyncio.wait_for(
        asyncio.wait([asyncio.ensure_future(e.wait_for_leadership()) for e in elections],
                     return_when=asyncio.FIRST_COMPLETED),
        BOUND,
    )  # fmt: skip
    await asyncio.sleep(0.2)  # time for a wrongly double-elected candidate to show itself


async def test_two_candidates_one_leader_and_takeover_when_its_keepalive_stops(
    single: EtcdCluster, prefix: str
) -> None:
    registry = EtcdRegistry(single.endpoints, prefix=prefix, reap_interval=None)
    await registry.start()
    a = LeaderElection(registry, "health-checker", ttl=TTL, candidate="a")
    b = LeaderElection(
        registry.client, "health-checker", ttl=TTL, candidate="b", prefix=prefix
    )  # a bare client
    a.start()
    b.start()
    try:
        await settle([a, b])
        assert [a.is_leader, b.is_leader].count(True) == 1
        leader, other = (a, b) if a.is_leader else (b, a)
        assert await leader.leader() == leader.candidate

        await leader.close(resign=False)  # its keepalive dies; etcd expires the lease after the ttl
        await asyncio.wait_for(other.wait_for_leadership(), BOUND)
        assert other.is_leader and not leader.is_leader
        assert await other.leader() == other.candidate
    finally:
        await a.close()
        await b.close()
        await registry.close()


async def test_resign_hands_over_and_the_old_leader_can_win_again(single: EtcdCluster, prefix: str) -> None:
    registry = EtcdRegistry(single.endpoints, prefix=prefix, reap_interval=None)
    await registry.start()
    a = LeaderElection(registry, "reaper", ttl=5.0, candidate="a")
    b = LeaderElection(registry, "reaper", ttl=5.0, candidate="b")
    try:
        await a.wait_for_leadership()
        b.start()
        await asyncio.sleep(0.2)
        assert a.is_leader and not b.is_leader
        await a.resign()  # the lease is revoked: b need not wait out the 5 s ttl
        await asyncio.wait_for(b.wait_for_leadership(), 3.0)
        await a.wait_for_loss()
        assert await a.leader() == "b"
        await b.resign()
        await asyncio.wait_for(a.wait_for_leadership(), 3.0)
    finally:
        await a.close()
        await b.close()
        await registry.close()


@pytest.fixture
def lonely(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    cluster = EtcdCluster(tmp_path_factory.mktemp("etcd-lonely"), size=1)
    try:
        yield cluster.start()
    finally:
        cluster.close()


async def test_leader_steps_down_when_etcd_is_unreachable_and_returns_after(lonely: EtcdCluster) -> None:
    registry = EtcdRegistry(lonely.endpoints, timeout=0.5, reap_interval=None)
    await registry.start()
    election = LeaderElection(registry, "health-checker", ttl=TTL)
    try:
        await asyncio.wait_for(election.wait_for_leadership(), BOUND)
        lonely.members[0].kill()
        await asyncio.wait_for(election.wait_for_loss(), BOUND)  # keepalives fail: it stops leading
        assert not election.is_leader
        lonely.restart(lonely.members[0])
        await asyncio.to_thread(lonely.wait_healthy)
        await asyncio.wait_for(election.wait_for_leadership(), BOUND + TTL)
    finally:
        await election.close()
        await registry.close()


def test_bad_arguments_name_the_field() -> None:
    registry = EtcdRegistry("127.0.0.1:2379")
    with pytest.raises(ValueError, match=r"^name:"):
        LeaderElection(registry, "Not Valid")
    with pytest.raises(ValueError, match=r"^ttl:"):
        LeaderElection(registry, "ok", ttl=0.5)
