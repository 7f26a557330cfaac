from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshkit.balance import HashRing, RingHash, RoundRobin
from meshkit.errors import NoHealthyInstances
from meshkit.types import ServiceInstance
from tests.balance.fleet import fleet, instance, request

KEYS = [f"10.0.{i // 256}.{i % 256}" for i in range(2000)]


def owners(picker: RingHash, endpoints: tuple[ServiceInstance, ...]) -> dict[str, str]:
    return {key: picker.pick(endpoints, request(hash_key=key)).id for key in KEYS}


def test_same_key_same_instance() -> None:
    picker = RingHash()
    endpoints = fleet(5)
    first = owners(picker, endpoints)
    assert owners(RingHash(), fleet(5)) == first  # a fresh picker (another client) agrees
    assert len(set(first.values())) == 5


def test_keys_spread_about_evenly() -> None:
    counts = Counter(owners(RingHash(), fleet(4)).values())
    assert all(350 <= c <= 650 for c in counts.values()), counts


def test_share_follows_weight() -> None:
    counts = Counter(owners(RingHash(), fleet(2, weights=[300, 100])).values())
    assert 1300 <= counts["i0"] <= 1700, counts


ids = st.lists(
    st.text("abcdefghij0123456789-", min_size=1, max_size=12), min_size=2, max_size=10, unique=True
)


@settings(derandomize=True, max_examples=40, deadline=None)
@given(ids=ids, data=st.data())
def test_removing_one_of_n_moves_only_its_keys(ids: list[str], data: st.DataObject) -> None:
    n = len(ids)
    gone = data.draw(st.integers(0, n - 1), label="removed")
    endpoints = tuple(instance(iid, port=8000 + k) for k, iid in enumerate(ids))
    survivors = endpoints[:gone] + endpoints[gone + 1 :]
    picker = RingHash()
    before, after = owners(picker, endpoints), owners(picker, survivors)
    moved = [key for key in KEYS if before[key] != after[key]]
    assert all(before[key] == ids[gone] for key in moved)  # surviving instances keep their keys
    assert len(moved) == sum(1 for key in KEYS if before[key] == ids[gone])
    assert len(moved) / len(KEYS) <= 1.5 / n  # about 1/N, no more


@settings(derandomize=True, max_examples=20, deadline=None)
@given(ids=ids)
def test_a_joining_instance_takes_keys_only_for_itself(ids: list[str]) -> None:
    endpoints = tuple(instance(iid, port=8000 + k) for k, iid in enumerate(ids))
    grown = (*endpoints, instance("newcomer", port=9000))
    picker = RingHash()
    before, after = owners(picker, endpoints), owners(picker, grown)
    moved = [key for key in KEYS if before[key] != after[key]]
    assert moved and all(after[key] == "newcomer" for key in moved)
    assert len(moved) / len(KEYS) <= 1.5 / len(grown)


def test_header_is_the_key_when_no_hash_key_is_set() -> None:
    picker = RingHash("X-User")
    endpoints = fleet(5)
    by_header = {picker.pick(endpoints, request(headers={"x-user": "u42"})).id for _ in range(10)}
    assert by_header == {picker.pick(endpoints, request(hash_key="u42")).id}


def test_without_a_key_falls_back_to_round_robin() -> None:
    picker = RingHash("X-User")
    picks = [picker.pick(fleet(3), request()).id for _ in range(6)]
    assert picks == ["i0", "i1", "i2", "i0", "i1", "i2"]
    assert isinstance(picker.fallback, RoundRobin)


def test_ring_is_built_once_per_membership() -> None:
    picker = RingHash()
    endpoints = fleet(4)
    ring = picker.ring(endpoints)
    assert picker.ring(endpoints) is ring
    assert picker.ring(list(endpoints)) is ring  # same membership, another sequence
    assert picker.ring(endpoints[:3]) is not ring
    assert picker.ring(fleet(4, weights=[100, 100, 100, 50])) is not ring


def test_ring_points_follow_weight() -> None:
    ring = HashRing((("a", "b", "c"), (100, 50, 0)), replicas=10)
    assert Counter(ring.owners) == {0: 10, 1: 5}


@pytest.mark.parametrize(
    ("field", "kwargs"), [("replicas", {"replicas": 0}), ("hash_header", {"hash_header": ""})]
)
def test_bad_configuration(field: str, kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=rf"^{field}: must be"):
        RingHash(**kwargs)  # type: ignore[arg-type]


def test_no_endpoints() -> None:
    with pytest.raises(NoHealthyInstances):
        RingHash().pick((), request(hash_key="k"))
