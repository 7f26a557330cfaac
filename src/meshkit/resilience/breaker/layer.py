"""Breakers for a whole client: one per instance (`BreakerSet`) and the layer that consults them.

`BreakerSet.allows(instance)` is the balancer's gate (a dict lookup; an instance never seen
is closed), skipped while every breaker is closed (`refusing == 0`). `BreakerLayer` sits beneath the balancer, where `request.instance` is known:
it asks the instance's breaker for a permit, calls on, and records the classified outcome.
"""

from __future__ import annotations

from collections.abc import Callable

from meshkit.clock import Clock
from meshkit.errors import CircuitOpen
from meshkit.events import BreakerTransition, EventBus
from meshkit.outcome import Outcome, classify
from meshkit.resilience.breaker.machine import BreakerPolicy, BreakerState, CircuitBreaker, TransitionHook
from meshkit.service import Service
from meshkit.types import Request, Response, ServiceInstance

Classifier = Callable[[Response | BaseException], Outcome]
_SUCCESS = Outcome.SUCCESS  # a global: reading it through the Enum class costs ~1,000 instructions
_CLOSED = BreakerState.CLOSED.value

STATE_KEY = "breaker.state"  # request.context: the chosen instance's breaker state (for the attempt span)


class BreakerSet:
    """One breaker per instance id, created on first use, all under one policy.

    It is the balancer's gate (`breakers(instance)`, or `breakers.allows(instance)`), and
    keeps `refusing`, the number of its breakers that are not closed: while that is 0 it
    refuses no instance, and the balancer skips asking it about each candidate.
    """

    __slots__ = ("_breakers", "_emit", "_not_closed", "clock", "policy", "refusing")

    reason = "circuit open"  # how eligible() names this gate

    def __init__(
        self, policy: BreakerPolicy | None = None, *, clock: Clock, bus: EventBus | None = None
    ) -> None:
        self.policy = policy or BreakerPolicy()
        self.clock = clock
        self._emit: TransitionHook | None = bus.emit if bus is not None else None
        self._breakers: dict[str, CircuitBreaker] = {}
        self._not_closed: set[str] = set()
        self.refusing = 0

    def get(self, instance_id: str) -> CircuitBreaker:
        breaker = self._breakers.get(instance_id)
        if breaker is None:
            breaker = CircuitBreaker(
                instance_id, self.policy, clock=self.clock, on_transition=self._on_transition
            )
            self._breakers[instance_id] = breaker
        return breaker

    def _on_transition(self, event: BreakerTransition) -> None:
        if event.new == _CLOSED:
            self._not_closed.discard(event.instance_id)
        else:
            self._not_closed.add(event.instance_id)
        self.refusing = len(self._not_closed)
        if self._emit is not None:
            self._emit(event)

    def allows(self, instance: ServiceInstance) -> bool:
        """The balancer's gate: an instance without a breaker has never failed, so it is allowed."""
        breaker = self._breakers.get(instance.service_id)
        return breaker is None or breaker.allows()

    allows.reason = "circuit open"  # type: ignore[attr-defined]  # how eligible() names this gate
    __call__ = allows

    def states(self) -> dict[str, str]:
        return {instance_id: b.state.value for instance_id, b in self._breakers.items()}

    def configure(self, policy: BreakerPolicy) -> None:
        """Use `policy` from now on, for the breakers that exist as well as new ones."""
        self.policy = policy
        for breaker in self._breakers.values():
            breaker.configure(policy)

    def forget(self, instance_id: str) -> None:
        self._breakers.pop(instance_id, None)
        self._not_closed.discard(instance_id)
        self.refusing = len(self._not_closed)

    def __contains__(self, instance_id: object) -> bool:
        return instance_id in self._breakers

    def __len__(self) -> int:
        return len(self._breakers)


class BreakerLayer:
    """Beneath the balancer: refuses calls to an open instance, records every outcome.

    A refused call raises `CircuitOpen` before anything is sent, so the retry layer above
    may try another instance. A cancelled call gives back its probe slot unrecorded.
    """

    __slots__ = ("breakers", "classifier", "inner")

    def __init__(self, inner: Service, *, breakers: BreakerSet, classifier: Classifier = classify) -> None:
        self.inner = inner
        self.breakers = breakers
        self.classifier = classifier

    async def __call__(self, request: Request) -> Response:
        instance = request.instance
        if instance is None:
            return await self.inner(request)  # nothing to guard; the transport will say so
        breakers = self.breakers
        breaker = breakers._breakers.get(instance.service_id) or breakers.get(instance.service_id)
        permit = breaker.try_acquire()
        if permit is None:
            raise CircuitOpen(instance.service_id, breaker.retry_after())
        # as admitted (try_acquire brought it up to date); the member is its str (a StrEnum), and
        # `.value` is a Python-level descriptor (enum.property), about 1 us per call
        request.context[STATE_KEY] = breaker._state
        try:
            response = await self.inner(request)
        except Exception as exc:
            breaker.record(self.classifier(exc), permit)
            raise
        except BaseException:
            breaker.release(permit)
            raise
        classifier = self.classifier
        if classifier is classify and response.status < 500:  # classify(), inlined for the usual case
            breaker.record(_SUCCESS, permit)
        else:
            breaker.record(classifier(response), permit)
        return response
