"""Retries: try again, elsewhere, a little later, only when it is safe and affordable.

A retry is made only when all of these hold (Linkerd's and Envoy's rules):
- the failure is worth retrying: a connect error or an open circuit (nothing was sent)
  always; a timeout, a reset connection or a 502/503/504 (any 5xx with `retry_all_5xx`)
  only for idempotent requests (GET HEAD OPTIONS PUT DELETE TRACE, or any request carrying
  an `Idempotency-Key` header), since the instance may have acted on it;
- attempts remain (`max_attempts` counts the first try);
- the full-jitter backoff delay ends before `request.deadline`;
- the `RetryBudget` has a retry to spare.
The layer sits above the balancer: before a retry it adds the failed instance to
`request.excluded` and clears `request.instance`, so the balancer picks another instance
when there is one. When no retry is made the last result is surfaced as it was: the last
5xx response is returned, the last exception re-raised unchanged (so callers can still
tell a `ConnectError` from a `RequestTimeout`); when the budget refused, the exception
carries a note saying so and `request.context["retry_budget_exhausted"]` is True. A retry
that finds no instance to go to (`NoHealthyInstances`, e.g. the only instance's breaker
just opened) also surfaces the previous result rather than that error.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from meshkit.clock import Clock
from meshkit.errors import CircuitOpen, ConnectError, ConnectionReset, NoHealthyInstances, RequestTimeout
from meshkit.events import EventBus, RetryAttempt
from meshkit.resilience.backoff import full_jitter
from meshkit.resilience.budget import RetryBudget
from meshkit.service import Service
from meshkit.types import Request, Response

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
IDEMPOTENCY_KEY = "Idempotency-Key"


def is_idempotent(request: Request) -> bool:
    """May the request be sent twice? By its method, or by the caller's `Idempotency-Key`."""
    return request.method in IDEMPOTENT_METHODS or IDEMPOTENCY_KEY in request.headers


def _seconds(name: str, value: object, *, allow_zero: bool) -> None:
    if (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and (value > 0 or (allow_zero and value == 0))
    ):
        return
    op = ">=" if allow_zero else ">"
    raise ValueError(f"{name}: must be a finite number of seconds {op} 0, got {value!r}")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 3  # total tries, the first included; 1 disables retries
    base_delay: float = 0.05  # seconds; the backoff ceiling doubles from here
    max_delay: float = 30.0  # seconds; the backoff ceiling never passes this
    retry_statuses: frozenset[int] = frozenset({502, 503, 504})
    retry_all_5xx: bool = False

    def __post_init__(self) -> None:
        n = self.max_attempts
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"max_attempts: must be an integer >= 1 (1 means no retry), got {n!r}")
        _seconds("base_delay", self.base_delay, allow_zero=True)
        _seconds("max_delay", self.max_delay, allow_zero=False)
        statuses = frozenset(self.retry_statuses)
        bad = sorted(
            s for s in statuses if isinstance(s, bool) or not isinstance(s, int) or not 100 <= s <= 599
        )
        if bad:
            raise ValueError(f"retry_statuses: must be HTTP status codes in 100-599, got {bad!r}")
        object.__setattr__(self, "retry_statuses", statuses)
        if not isinstance(self.retry_all_5xx, bool):
            raise ValueError(f"retry_all_5xx: must be True or False, got {self.retry_all_5xx!r}")

    def retries_status(self, status: int) -> bool:
        return status in self.retry_statuses or (self.retry_all_5xx and status >= 500)


MAX_ATTEMPTS_KEY = (
    "retry.max_attempts"  # request.context override: this call's attempts (the seed's retry_count + 1)
)


class RetryLayer:
    __slots__ = ("budget", "bus", "clock", "inner", "policy", "rng")

    def __init__(
        self,
        inner: Service,
        *,
        policy: RetryPolicy | None = None,
        budget: RetryBudget,
        clock: Clock,
        rng: random.Random,
        bus: EventBus | None = None,
    ) -> None:
        self.inner = inner
        self.policy = policy or RetryPolicy()
        self.budget = budget
        self.clock = clock
        self.rng = rng
        self.bus = bus

    async def __call__(self, request: Request) -> Response:
        self.budget.deposit()
        last: Response | Exception | None = None  # the result a retry is trying to improve on
        while True:
            try:
                response = await self.inner(request)
            except NoHealthyInstances:
                if last is None:
                    raise
                return _surface(last)  # the retry found nowhere to go: the real failure says more
            except (ConnectError, CircuitOpen) as exc:
                if not await self._may_retry(request, type(exc).__name__, exc):
                    raise
                last = exc
                continue
            except (RequestTimeout, ConnectionReset) as exc:
                if not is_idempotent(request) or not await self._may_retry(request, type(exc).__name__, exc):
                    raise
                last = exc
                continue
            status = response.status
            policy = self.policy  # policy.retries_status(status), inlined: this runs on every call
            if status not in policy.retry_statuses and not (policy.retry_all_5xx and status >= 500):
                return response
            if not is_idempotent(request):
                return response
            if not await self._may_retry(request, f"status {response.status}", None):
                return response
            last = response

    async def _may_retry(self, request: Request, reason: str, exc: BaseException | None) -> bool:
        """Decide on one more attempt; if yes, prepare the request for it and wait the backoff."""
        policy = self.policy
        attempt = request.attempt
        if attempt + 1 >= request.context.get(MAX_ATTEMPTS_KEY, policy.max_attempts):
            return False
        delay = full_jitter(attempt, base=policy.base_delay, cap=policy.max_delay, rng=self.rng)
        if request.deadline is not None and self.clock.monotonic() + delay >= request.deadline:
            return False
        if not self.budget.try_withdraw():
            request.context["retry_budget_exhausted"] = True
            if exc is not None:
                exc.add_note(f"meshkit: not retried, the retry budget is exhausted ({self.budget!r})")
            return False
        failed = request.instance.service_id if request.instance is not None else _instance_id(exc)
        if failed is not None:
            request.excluded = request.excluded | {failed}
        request.instance = None
        request.attempt = attempt + 1
        request.context["retries"] = attempt + 1
        if self.bus is not None:
            event = RetryAttempt(request.service, attempt + 1, reason, delay, at=self.clock.time())
            self.bus.emit(event)
        await self.clock.sleep(delay)
        return True


def _surface(result: Response | Exception) -> Response:
    if isinstance(result, Response):
        return result
    raise result


def _instance_id(exc: BaseException | None) -> str | None:
    return getattr(exc, "instance_id", None)
