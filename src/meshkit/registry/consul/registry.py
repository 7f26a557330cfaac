"""ConsulRegistry: the `Registry` protocol over a Consul agent's HTTP API.

Writes go to the local agent (agent/service/register and deregister, agent/check/* for
TTL checks), which keeps them in sync with the servers, as Consul intends; reads go to
health/service (every instance with its checks, so unhealthy ones stay visible; the
`?passing` filter serves `passing()`, the fast path that wants only healthy ones) and
catalog/services. `watch` long-polls with blocking queries (see blocking.py). Consul's
agent runs each instance's HTTP/TCP check itself, so meshkit's health checker is not
needed in front of it; `set_state` reports states for TTL-checked instances and toggles
maintenance mode for the others.

Every failure raises `RegistryUnavailable` naming the agent's address. Put a
`CachedRegistry` in front for the seed's graceful degradation: reads are then served
from the last snapshot while Consul is away, writes are refused (503), and the cache's
follower reconnects with exponential backoff and full jitter, resyncing without a restart.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncGenerator, Hashable
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

from meshkit.clock import SYSTEM_CLOCK, Clock
from meshkit.errors import RegistryUnavailable
from meshkit.registry.base import AddressPolicy, Snapshot, UnknownInstance
from meshkit.registry.consul.blocking import PollBudget, client_timeout, next_index, parse_wait
from meshkit.registry.consul.codec import (
    check_id,
    decode_health,
    decode_service,
    encode_service,
    heartbeat_ttl,
)
from meshkit.registry.consul.http import ConsulHttp, Reply, path_part
from meshkit.registry.validation import admit
from meshkit.types import SERVICE_NAME_RE, ServiceInstance, ServiceState, validate_service_name

MIN_VERSION = (1, 7)  # SuccessBeforePassing / FailuresBeforeCritical on checks
TTL_VERB = {ServiceState.HEALTHY: "pass", ServiceState.DEGRADED: "warn", ServiceState.UNHEALTHY: "fail"}
SCHEMES = {"consul": "http", "consul+http": "http", "consul+https": "https"}


class ConsulRegistry:
    """A registry kept in Consul; see the module docstring."""

    def __init__(
        self,
        address: str = "127.0.0.1:8500",
        *,
        scheme: str = "http",
        token: str | None = None,
        clock: Clock = SYSTEM_CLOCK,
        timeout: float = 5.0,
        wait: str = "30s",
        rate_limit: float = 1.0,
        address_policy: AddressPolicy | None = None,
    ) -> None:
        if scheme not in ("http", "https"):
            raise ValueError(f"scheme: must be 'http' or 'https', got {scheme!r}")
        host, _, port = address.rpartition(":") if isinstance(address, str) else ("", "", "")
        if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(f"address: must be host:port of a Consul agent, got {address!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise ValueError(f"timeout: must be a number of seconds > 0, got {timeout!r}")
        self.address = address
        self.url = f"{scheme}://{address}"
        self._wait = wait
        self._wait_s = parse_wait(wait)
        self._block_timeout = client_timeout(self._wait_s, timeout)
        self._clock = clock
        self._rate_limit = rate_limit
        PollBudget(clock, rate_limit)  # validates rate_limit now, not at the first watch
        self._address_policy = address_policy
        self._http = ConsulHttp(self.url, token=token, timeout=timeout)
        self._open = False
        self.version = ""

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> ConsulRegistry:
        """`consul://host:port` (or consul+https://); the token defaults to $CONSUL_HTTP_TOKEN."""
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in SCHEMES or not parts.hostname or parts.path not in ("", "/"):
            raise ValueError(
                f"registry: expected consul://host[:port] or consul+https://host[:port], got {url!r}"
            )
        try:
            port = parts.port or 8500
        except ValueError:
            raise ValueError(f"registry: bad port in {url!r}") from None
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        kwargs.setdefault("token", os.environ.get("CONSUL_HTTP_TOKEN") or None)
        return cls(f"{host}:{port}", scheme=SCHEMES[parts.scheme], **kwargs)

    # -- lifecycle

    async def start(self) -> None:
        """Check that a Consul agent of a usable version, with a leader, answers at the address."""
        if self._open:
            return
        self._http.open()
        try:
            self.version = await self._check_agent()
        except BaseException:
            await self._http.close()
            raise
        self._open = True

    async def _check_agent(self) -> str:
        reply = await self._http.call("GET", "/v1/agent/self")
        config = reply.body.get("Config") if isinstance(reply.body, dict) else None
        if reply.status != 200 or not isinstance(config, dict):
            raise RegistryUnavailable(
                f"consul at {self.url}: /v1/agent/self did not answer as a Consul agent does "
                f"(status {reply.status}); is this Consul's HTTP address?"
            )
        version = str(config.get("Version", ""))
        numbers = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
        if numbers < MIN_VERSION:
            need = ".".join(map(str, MIN_VERSION))
            raise RegistryUnavailable(
                f"consul at {self.url}: version {version!r} is too old; meshkit needs >= {need}"
            )
        leader = await self._http.call("GET", "/v1/status/leader")
        if not leader.body:
            raise RegistryUnavailable(f"consul at {self.url}: the cluster has no leader")
        return version

    async def close(self) -> None:
        self._open = False
        await self._http.close()

    async def __aenter__(self) -> ConsulRegistry:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- writes, through the local agent

    async def register(
        self, instance: ServiceInstance, *, address_policy: AddressPolicy | None = None
    ) -> ServiceInstance:
        instance = admit(instance, address_policy or self._address_policy)
        body = encode_service(instance)
        query = {"replace-existing-checks": "true"}
        await self._call("PUT", "/v1/agent/service/register", query=query, body=body)
        return await self.get(instance.service_id) or replace(instance, connections=0)

    async def deregister(self, service_id: str) -> bool:
        reply = await self._call("PUT", f"/v1/agent/service/deregister/{path_part(service_id)}")
        return reply.status == 200

    async def heartbeat(self, service_id: str) -> None:
        """Pass the instance's TTL check; for a check the agent runs itself, nothing to report."""
        inst = await self.get(service_id)
        if inst is None:
            raise UnknownInstance(service_id)
        if heartbeat_ttl(inst) is not None:
            reply = await self._call("PUT", f"/v1/agent/check/pass/{path_part(check_id(service_id))}")
            if reply.status == 404:
                raise UnknownInstance(service_id)

    async def set_state(
        self, service_id: str, state: ServiceState, reason: str = ""
    ) -> ServiceInstance | None:
        try:
            state = ServiceState(state)
        except ValueError:
            allowed = ", ".join(s.value for s in ServiceState)
            raise ValueError(f"state: must be one of {allowed}, got {state!r}") from None
        inst = await self.get(service_id)
        if inst is None or inst.state == state:
            return inst
        sid = path_part(service_id)
        if heartbeat_ttl(inst) is not None and state in TTL_VERB:
            verb = TTL_VERB[state]
            await self._call(
                "PUT", f"/v1/agent/check/{verb}/{path_part(check_id(service_id))}", query={"note": reason}
            )
        elif heartbeat_ttl(inst) is None and state in (ServiceState.HEALTHY, ServiceState.UNHEALTHY):
            enable = "true" if state == ServiceState.UNHEALTHY else "false"
            query = {"enable": enable, "reason": reason or "meshkit set_state"}
            await self._call("PUT", f"/v1/agent/service/maintenance/{sid}", query=query)
        else:
            raise ValueError(
                f"state: with Consul, a TTL-checked instance can be set healthy, degraded or unhealthy, "
                f"and one whose checks the agent runs only healthy or unhealthy (maintenance); got {state.value!r}"
            )
        return await self.get(service_id)

    # -- reads

    async def get(self, service_id: str) -> ServiceInstance | None:
        """The instance as this agent knows it (meshkit registers through the local agent)."""
        path = f"/v1/agent/health/service/id/{path_part(service_id)}"
        reply = await self._call("GET", path, ok=(200, 429, 503))  # Consul codes the status
        if reply.status == 404 or not isinstance(reply.body, dict):
            return None
        return decode_service(reply.body.get("Service") or {}, reply.body.get("Checks") or [])

    async def instances(self, service_name: str) -> Snapshot:
        validate_service_name(service_name)
        return self._snapshot(service_name, await self._health(service_name, {}))

    async def passing(self, service_name: str) -> Snapshot:
        """Only the instances whose every check passes: Consul filters (health/service?passing)."""
        validate_service_name(service_name)
        return self._snapshot(service_name, await self._health(service_name, {"passing": "1"}))

    async def services(self) -> dict[str, int]:
        return {name: len(snap.instances) for name, snap in (await self._all()).items() if snap.instances}

    async def all_instances(self) -> list[ServiceInstance]:
        return [inst for snap in (await self._all()).values() for inst in snap.instances]

    async def watch(self, service_name: str | None = None) -> AsyncGenerator[Snapshot, None]:
        """The current snapshot, then one per change, by blocking queries; raises when Consul fails."""
        if service_name is not None:
            validate_service_name(service_name)
        self._check_open()
        budget = PollBudget(self._clock, self._rate_limit)
        last: Hashable = None
        if service_name is not None:
            index = 0
            while True:
                await budget.take()
                reply = await self._health(service_name, self._blocking(index))
                index = next_index(index, reply.index)
                snap = self._snapshot(service_name, reply)
                if (key := _fingerprint(snap.instances)) != last:
                    last = key
                    yield snap
        indexes = {"/v1/catalog/services": 0, "/v1/health/state/any": 0}
        while True:
            await budget.take()
            await self._block_any(indexes)
            instances = sorted(await self.all_instances(), key=lambda i: i.service_id)
            if (key := _fingerprint(instances)) != last:
                last = key
                yield Snapshot("", tuple(instances), max(indexes.values()))

    # -- helpers

    def _check_open(self) -> None:
        if not self._open:
            raise RegistryUnavailable(
                f"consul at {self.url}: registry is not running (closed or not started)"
            )

    async def _call(self, method: str, path: str, **kwargs: Any) -> Reply:
        self._check_open()
        return await self._http.call(method, path, **kwargs)

    def _blocking(self, index: int) -> dict[str, str]:
        return {"index": str(index), "wait": self._wait} if index > 0 else {}

    async def _health(self, name: str, query: dict[str, str]) -> Reply:
        seconds = self._block_timeout if "index" in query else None
        return await self._call("GET", f"/v1/health/service/{name}", query=query, seconds=seconds)

    def _snapshot(self, name: str, reply: Reply) -> Snapshot:
        entries = reply.body if isinstance(reply.body, list) else []
        return Snapshot(name, tuple(decode_health(entries)), reply.index)

    async def _all(self) -> dict[str, Snapshot]:
        reply = await self._call("GET", "/v1/catalog/services")
        names = sorted(n for n in (reply.body or {}) if SERVICE_NAME_RE.match(n) and n != "consul")
        snaps = await asyncio.gather(*(self.instances(n) for n in names))
        return dict(zip(names, snaps, strict=True))

    async def _block_any(self, indexes: dict[str, int]) -> None:
        """Wait until registrations (catalog) or check states (health) change, whichever first."""
        tasks = {
            asyncio.create_task(
                self._call("GET", path, query=self._blocking(i), seconds=self._block_timeout)
            ): path
            for path, i in indexes.items()
        }
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for task in done:
            indexes[tasks[task]] = next_index(indexes[tasks[task]], task.result().index)


def _fingerprint(instances: tuple[ServiceInstance, ...] | list[ServiceInstance]) -> Hashable:
    return tuple(
        (i.service_id, i.state, i.address, i.port, i.weight, i.zone, i.version, tuple(i.tags),
         tuple(sorted(i.metadata.items())), i.ttl, repr(i.check))
        for i in instances
    )  # fmt: skip
