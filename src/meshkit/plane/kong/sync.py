"""KongSync: keep Kong's Admin API configured as the registry says, round after round.

Each round reads the registry (desired state, plan.py) and Kong (actual state: the tagged
entities, plus the untagged names meshkit must not take), plans, and applies the changes
one by one. A change Kong refuses is reported (its `error` is set and it is logged) and
the round goes on; the next round plans from Kong's state again, so whatever failed is
simply planned again: the loop converges once Kong accepts the writes (reconciliation,
as Kubernetes controllers do it). `run()` repeats rounds every `interval`, and backs off
exponentially with full jitter while Kong or the registry is unreachable. A round never
deletes anything when the registry cannot be read.
"""

from __future__ import annotations

import logging
import random
from dataclasses import replace
from typing import Any

from meshkit.clock import SYSTEM_CLOCK, Clock
from meshkit.errors import RegistryUnavailable
from meshkit.plane.kong.client import KongAdmin, KongError, segment
from meshkit.plane.kong.plan import Change, KongState, desired_state, plan
from meshkit.registry.base import Registry

log = logging.getLogger(__name__)
COLLECTIONS = (("upstream", "/upstreams"), ("service", "/services"), ("route", "/routes"))


class KongSync:
    """Reconciles `registry` into Kong through `admin`; see the module docstring."""

    def __init__(
        self,
        registry: Registry,
        admin: KongAdmin,
        *,
        prefix: str = "",
        tag: str = "meshkit",
        clock: Clock = SYSTEM_CLOCK,
        rng: random.Random | None = None,
        max_backoff: float = 60.0,
    ) -> None:
        if not isinstance(tag, str) or not tag:
            raise ValueError(f"tag: must be a non-empty string, got {tag!r}")
        if not isinstance(prefix, str):
            raise ValueError(f"prefix: must be a string, got {prefix!r}")
        self.registry = registry
        self.admin = admin
        self.prefix = prefix
        self.tag = tag
        self._clock = clock
        self._rng = rng or random.Random()
        self._max_backoff = max_backoff
        self.last: list[Change] = []  # the last round's changes, failed ones with `error`

    async def desired(self) -> KongState:
        return desired_state(await self.registry.all_instances(), prefix=self.prefix, tag=self.tag)

    async def actual(self) -> KongState:
        state = KongState()
        names: dict[str, str] = {}  # service id -> name, to name a route's service
        for kind, path in COLLECTIONS:
            for entity in await self.admin.list(path):
                name = entity.get("name")
                if not name:
                    continue
                if kind == "service":
                    names[entity["id"]] = name
                if self.tag not in (entity.get("tags") or []):
                    state.foreign.add((kind, name))
                    continue
                if kind == "route":
                    service_id = (entity.get("service") or {}).get("id")
                    entity = {**entity, "service": {"name": names.get(str(service_id), str(service_id))}}
                getattr(state, f"{kind}s")[name] = entity
        for up in state.upstreams:
            targets = await self.admin.list(f"/upstreams/{segment(up)}/targets")
            state.targets[up] = {t["target"]: t for t in targets}
        return state

    async def sync(self, dry_run: bool = False) -> list[Change]:
        """One round: plan, and unless `dry_run`, apply; returns the changes, failed ones with `error`."""
        changes = plan(await self.desired(), await self.actual())
        if dry_run:
            return changes
        results = [await self._apply_one(c) if c.error is None else c for c in changes]
        for c in results:
            if c.error:
                log.warning("kong sync: %s %s %s failed: %s", c.action, c.kind, c.name, c.error)
        self.last = results
        return results

    async def run(self, interval: float = 10.0) -> None:
        """Sync every `interval` seconds until cancelled; back off while Kong or the registry is away."""
        failures = 0
        while True:
            try:
                results = await self.sync()
                failures = failures + 1 if any(c.error for c in results) else 0
            except (KongError, RegistryUnavailable, OSError) as e:
                failures += 1
                log.warning("kong sync round failed: %s", e)
            except Exception:
                failures += 1
                log.exception("kong sync round failed")
            delay = interval if failures == 0 else self.backoff(failures)
            await self._clock.sleep(delay)

    def backoff(self, failures: int) -> float:
        """Full jitter: uniform in [0, min(max_backoff, 1s * 2**failures)]."""
        return self._rng.uniform(0.0, min(self._max_backoff, 2.0 ** min(failures, 16)))

    async def _apply_one(self, change: Change) -> Change:
        try:
            await self._apply(change)
        except KongError as e:
            return replace(change, error=str(e))
        return change

    async def _apply(self, c: Change) -> None:
        body: dict[str, Any] = dict(c.body or {})
        name = segment(c.name)
        if c.kind == "target":
            targets = f"/upstreams/{segment(c.parent)}/targets"
            if c.action in ("update", "delete"):  # Kong 2.x cannot patch a target: replace it
                await self.admin.delete(f"{targets}/{segment(str((c.before or {}).get('id') or c.name))}")
            if c.action in ("create", "update"):
                await self.admin.post(targets, body)
        elif c.action == "delete":
            await self.admin.delete(f"/{c.kind}s/{name}")
        elif c.kind == "route":
            service = body.pop("service")["name"]
            await self.admin.put(f"/services/{segment(service)}/routes/{name}", body)
        else:
            await self.admin.put(f"/{c.kind}s/{name}", body)
