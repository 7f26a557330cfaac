"""Resilience: circuit breakers, retries with backoff and a budget, and deadlines.

Where each sits in the client stack (outermost first): the deadline bounds the whole call,
retry sits above the balancer so every retry picks again (avoiding the instance that just
failed), and the breaker sits beneath the balancer, where the instance is known.
"""

from meshkit.resilience.backoff import backoff_ceiling, full_jitter
from meshkit.resilience.breaker import (
    BreakerLayer,
    BreakerPolicy,
    BreakerSet,
    BreakerState,
    CircuitBreaker,
    Permit,
)
from meshkit.resilience.budget import RetryBudget
from meshkit.resilience.deadline import (
    DeadlineLayer,
    DeadlineMiddleware,
    current_deadline,
    deadline_from_headers,
    deadline_middleware,
    deadline_scope,
)
from meshkit.resilience.outlier import OutlierDetector, OutlierLayer, OutlierPolicy
from meshkit.resilience.retry import IDEMPOTENT_METHODS, RetryLayer, RetryPolicy, is_idempotent

__all__ = [
    "IDEMPOTENT_METHODS",
    "BreakerLayer",
    "BreakerPolicy",
    "BreakerSet",
    "BreakerState",
    "CircuitBreaker",
    "DeadlineLayer",
    "DeadlineMiddleware",
    "OutlierDetector",
    "OutlierLayer",
    "OutlierPolicy",
    "Permit",
    "RetryBudget",
    "RetryLayer",
    "RetryPolicy",
    "backoff_ceiling",
    "current_deadline",
    "deadline_from_headers",
    "deadline_middleware",
    "deadline_scope",
    "full_jitter",
    "is_idempotent",
]
