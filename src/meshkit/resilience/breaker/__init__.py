"""Circuit breakers: the per-instance state machine (`machine`) and its client wiring (`layer`)."""

from meshkit.resilience.breaker.layer import BreakerLayer, BreakerSet
from meshkit.resilience.breaker.machine import (
    ORDINARY,
    BreakerPolicy,
    BreakerState,
    CircuitBreaker,
    Permit,
)

__all__ = [
    "ORDINARY",
    "BreakerLayer",
    "BreakerPolicy",
    "BreakerSet",
    "BreakerState",
    "CircuitBreaker",
    "Permit",
]
