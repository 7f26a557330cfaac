"""The mesh client: the default stack, built in one place, over a resolver and a transport.

`MeshClient` is what a service embeds to call the others. Its stack is assembled by
`default_stack()` bottom-up, one comment per layer on why it sits where it does; users
change it through `client.stack` (replace, insert, remove) and the next call uses the
new stack. Time, randomness and the transport are injectable for tests.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from meshkit.balance import BalancerLayer, LoadLayer, LoadTracker, make_picker
from meshkit.clock import SYSTEM_CLOCK, Clock
from meshkit.discovery import DiscoveryLayer, Resolver, StaticResolver
from meshkit.events import EventBus
from meshkit.interceptors import Interceptors, RequestInterceptor, ResponseInterceptor, interceptor_layer
from meshkit.observe.metrics import MeshMetrics, MetricsLayer
from meshkit.observe.tracing import AttemptSpanLayer, CallSpanLayer, Tracer
from meshkit.resilience.breaker import BreakerLayer, BreakerPolicy, BreakerSet
from meshkit.resilience.budget import RetryBudget
from meshkit.resilience.deadline import DeadlineLayer
from meshkit.resilience.outlier import OutlierDetector, OutlierLayer, OutlierPolicy
from meshkit.resilience.retry import RetryLayer, RetryPolicy
from meshkit.service import Service
from meshkit.stack import Stack
from meshkit.transport import AiohttpTransport, Transport
from meshkit.types import LoadBalancerStrategy, Request, Response


@dataclass
class ClientParts:
    """The stateful pieces the layers share; the control plane reads them for topology."""

    clock: Clock
    rng: random.Random
    bus: EventBus
    load: LoadTracker
    breakers: BreakerSet
    outliers: OutlierDetector
    budget: RetryBudget
    interceptors: Interceptors = field(default_factory=Interceptors)


def _positive(value: float | None, field_name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"{field_name}: must be a number of seconds > 0, got {value!r}")
    return float(value)


def balancer_layer(parts: ClientParts, strategy: str | LoadBalancerStrategy, hash_header: str | None) -> Any:
    picker = make_picker(strategy, load=parts.load, rng=parts.rng, hash_header=hash_header)
    gates = (parts.breakers, parts.outliers)  # both count what they refuse, so idle ones are skipped
    return partial(
        BalancerLayer, picker=picker, gates=gates, reason=str(LoadBalancerStrategy.parse(strategy))
    )


def default_stack(
    resolver: Resolver,
    parts: ClientParts,
    *,
    strategy: str | LoadBalancerStrategy = LoadBalancerStrategy.P2C_EWMA,
    retry: RetryPolicy | None = None,
    timeout: float | None = 30.0,
    hash_header: str | None = None,
    tracer: Tracer | None = None,
    metrics: MeshMetrics | None = None,
) -> Stack:
    """The client stack, pushed bottom-up (each push wraps everything pushed before it)."""
    stack = Stack()
    # load: innermost, so the latency it feeds to the balancer is the instance's own.
    stack.push("load", partial(LoadLayer, tracker=parts.load), "in-flight and peak-EWMA latency per instance")
    if tracer is not None:
        # attempt span: one per try, beneath the balancer so it names the instance; it also
        # writes the trace headers for this attempt.
        stack.push("trace-attempt", partial(AttemptSpanLayer, tracer=tracer), "one span per attempt")
    # outlier: sees every attempt's outcome and ejects instances that keep failing.
    stack.push(
        "outlier", partial(OutlierLayer, detector=parts.outliers), "passive ejection of failing instances"
    )
    # breaker: per instance, beneath the balancer, so it guards exactly the instance picked.
    stack.push("breaker", partial(BreakerLayer, breakers=parts.breakers), "per-instance circuit breaker")
    # balancer: picks among healthy instances whose breaker and outlier gates allow them.
    stack.push("balancer", balancer_layer(parts, strategy, hash_header), f"load balancer ({strategy})")
    # retry: above the balancer, so a retry re-picks and goes to another instance.
    policy = retry or RetryPolicy()
    layer = partial(
        RetryLayer, policy=policy, budget=parts.budget, clock=parts.clock, rng=parts.rng, bus=parts.bus
    )
    stack.push("retry", layer, "budgeted retries with full-jitter backoff")
    # discovery: resolves the service name once per call, retries reuse the answer.
    stack.push("discovery", partial(DiscoveryLayer, resolver=resolver), "service name -> instances")
    # deadline: above retry and discovery, so one deadline bounds the whole call.
    stack.push(
        "deadline", partial(DeadlineLayer, default_timeout=timeout, clock=parts.clock), "call deadline"
    )
    # interceptors: outermost, so users see the request as given and the final response
    # (left out of the built service while none is registered; see meshkit.interceptors).
    stack.push(
        "interceptors", partial(interceptor_layer, interceptors=parts.interceptors), "user interceptors"
    )
    if tracer is not None:
        # call span: above everything but metrics, so it covers retries and interceptors.
        stack.push("trace", partial(CallSpanLayer, tracer=tracer), "one span per call")
    if metrics is not None:
        # metrics: outermost, so a call is counted once, with its final status and full time.
        stack.push("metrics", partial(MetricsLayer, metrics=metrics, clock=parts.clock), "Prometheus metrics")
    return stack


class MeshClient:
    """Calls services by name through the stack: `await client.call(Request(service="users"))`."""

    def __init__(
        self,
        resolver: Resolver,
        *,
        strategy: str | LoadBalancerStrategy = LoadBalancerStrategy.P2C_EWMA,
        transport: Transport | None = None,
        timeout: float | None = 30.0,
        retry: RetryPolicy | None = None,
        breaker: BreakerPolicy | None = None,
        outlier: OutlierPolicy | None = None,
        hash_header: str | None = None,
        clock: Clock = SYSTEM_CLOCK,
        rng: random.Random | None = None,
        bus: EventBus | None = None,
        tracer: Tracer | None = None,
        metrics: MeshMetrics | None = None,
    ) -> None:
        self.strategy = LoadBalancerStrategy.parse(strategy)
        self._timeout = _positive(timeout, "timeout")
        self._hash_header = hash_header
        bus = bus or EventBus()
        self.parts = ClientParts(
            clock=clock,
            rng=rng or random.Random(),
            bus=bus,
            load=LoadTracker(clock=clock),
            breakers=BreakerSet(breaker or BreakerPolicy(), clock=clock, bus=bus),
            outliers=OutlierDetector(outlier or OutlierPolicy(), clock=clock, bus=bus),
            budget=RetryBudget(clock=clock),
        )
        self.resolver = resolver
        self.transport = transport or AiohttpTransport(clock=clock)
        self.stack = default_stack(
            resolver,
            self.parts,
            strategy=self.strategy,
            retry=retry,
            timeout=self._timeout,
            hash_header=hash_header,
            tracer=tracer,
            metrics=metrics,
        )
        self.tracer = tracer
        self.metrics = metrics
        if metrics is not None:
            bus.subscribe(metrics.on_event)
        self._service: Service | None = None
        self._built_version = -1
        self.parts.interceptors.on_first(self._rebuild_on_next_call)

    @classmethod
    def static(cls, services: Mapping[str, Iterable[tuple[str, int]]], **kwargs: Any) -> MeshClient:
        """A client over a fixed list of addresses, for use before any registry exists."""
        return cls(StaticResolver.from_addresses(services), **kwargs)

    @property
    def bus(self) -> EventBus:
        return self.parts.bus

    def _rebuild_on_next_call(self) -> None:
        self._service = None

    def _build(self) -> Service:
        self._service = self.stack.build(self.transport)
        self._built_version = self.stack.version
        return self._service

    async def call(self, request: Request) -> Response:
        service = self._service
        if service is None or self._built_version != self.stack.version:
            service = self._build()
        return await service(request)

    async def request(self, service: str, method: str = "GET", path: str = "/", **kwargs: Any) -> Response:
        return await self.call(Request(method, path, service=service, **kwargs))

    def add_request_interceptor(self, fn: RequestInterceptor) -> None:
        self.parts.interceptors.add_request(fn)

    def add_response_interceptor(self, fn: ResponseInterceptor) -> None:
        self.parts.interceptors.add_response(fn)

    def set_strategy(self, strategy: str | LoadBalancerStrategy) -> None:
        parsed = LoadBalancerStrategy.parse(strategy)
        self.stack.replace(
            "balancer", balancer_layer(self.parts, parsed, self._hash_header), f"load balancer ({parsed})"
        )
        self.strategy = parsed

    def configure_breaker(self, policy: BreakerPolicy) -> None:
        self.parts.breakers.configure(policy)

    def describe(self) -> str:
        return self.stack.describe()

    async def aclose(self) -> None:
        await self.transport.aclose()

    async def __aenter__(self) -> MeshClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
