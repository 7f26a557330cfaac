"""Consistent hashing (`ip_hash`): the same key goes to the same instance, and when an
instance joins or leaves only the keys it owns move.

A ring hash (Karger et al., 1997; the Ketama layout, as Envoy's `RING_HASH`): every
instance puts `replicas * weight / 100` points on a 64-bit ring, and a key belongs to the
first point at or after its hash. An instance's points depend only on its own id and
weight, so when one of N instances leaves, the keys it owned (about 1/N) move to their next
point and no other key moves. Hashes are BLAKE2b, stable across processes, so every client
sends a key to the same instance.

The key is `request.hash_key` (the client address, set by whoever builds the request);
failing that, the value of the configured header; failing that, the request has nothing to
be sticky on and goes to the `fallback` picker (round robin unless one is given).

Rings are cached per membership (the ordered ids and weights), so a pick is one hash and
one binary search, O(log n). The endpoints are treated as immutable records: a tuple seen
before reuses its ring without re-reading weights, so change a weight by replacing the
instance, as a registry update does.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from hashlib import blake2b
from operator import attrgetter

from meshkit.balance.picker import Picker, nothing_to_pick
from meshkit.balance.round_robin import RoundRobin
from meshkit.types import Request, ServiceInstance

DEFAULT_REPLICAS = 160  # points per instance of weight 100 (Ketama uses 160 per server)
_MAX_RINGS = 16
Membership = tuple[tuple[str, ...], tuple[int, ...]]  # (ids, weights), in endpoint order
_id = attrgetter("service_id")
_weight = attrgetter("weight")


def hash64(key: str) -> int:
    return int.from_bytes(blake2b(key.encode(), digest_size=8).digest(), "big")


class HashRing:
    """Points on a 64-bit ring, each owned by the index of an endpoint."""

    __slots__ = ("hashes", "owners")

    def __init__(self, membership: Membership, replicas: int = DEFAULT_REPLICAS) -> None:
        points: list[tuple[int, int]] = []
        for index, (iid, weight) in enumerate(zip(*membership, strict=True)):
            if weight <= 0:
                continue
            for replica in range(max(1, round(replicas * weight / 100))):
                points.append((hash64(f"{iid}#{replica}"), index))
        points.sort()
        self.hashes = [h for h, _ in points]
        self.owners = [index for _, index in points]

    def owner(self, key_hash: int) -> int:
        """The index of the endpoint owning `key_hash` (the first point at or after it)."""
        i = bisect_left(self.hashes, key_hash)
        return self.owners[i if i < len(self.hashes) else 0]


class RingHash:
    __slots__ = ("_last", "_last_ring", "_rings", "fallback", "hash_header", "replicas")

    def __init__(
        self,
        hash_header: str | None = None,
        *,
        replicas: int = DEFAULT_REPLICAS,
        fallback: Picker | None = None,
    ) -> None:
        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
            raise ValueError(f"replicas: must be an integer >= 1, got {replicas!r}")
        if hash_header is not None and (not isinstance(hash_header, str) or not hash_header):
            raise ValueError(f"hash_header: must be a non-empty header name or None, got {hash_header!r}")
        self.hash_header = hash_header
        self.replicas = replicas
        self.fallback: Picker = fallback if fallback is not None else RoundRobin()
        self._rings: dict[Membership, HashRing] = {}
        self._last: Sequence[ServiceInstance] | None = None
        self._last_ring: HashRing | None = None

    def key_of(self, request: Request) -> str | None:
        if request.hash_key is not None:
            return request.hash_key
        if self.hash_header is not None:
            return request.headers.get(self.hash_header)
        return None

    def pick(self, endpoints: Sequence[ServiceInstance], request: Request) -> ServiceInstance:
        if not endpoints:
            raise nothing_to_pick(request)
        key = self.key_of(request)
        if key is None:
            return self.fallback.pick(endpoints, request)
        return endpoints[self.ring(endpoints).owner(hash64(key))]

    def ring(self, endpoints: Sequence[ServiceInstance]) -> HashRing:
        """The ring for this membership, built once and then reused."""
        if endpoints is self._last and self._last_ring is not None:
            return self._last_ring
        membership = (tuple(map(_id, endpoints)), tuple(map(_weight, endpoints)))
        ring = self._rings.get(membership)
        if ring is None:
            if len(self._rings) >= _MAX_RINGS:
                del self._rings[next(iter(self._rings))]
            ring = self._rings[membership] = HashRing(membership, self.replicas)
        if type(endpoints) is tuple:  # immutable: safe to recognise by identity next time
            self._last, self._last_ring = endpoints, ring
        return ring
