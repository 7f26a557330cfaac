"""Exponential backoff with full jitter: how long to wait before retry number `attempt + 1`.

"Full jitter" from the AWS Architecture Blog, "Exponential Backoff and Jitter" (Marc
Brooker, 2015): sleep a uniformly random time in [0, min(cap, base * 2**attempt)]. Spreading
retries over the whole interval de-synchronises clients that failed together, which plain
exponential backoff does not; of the variants measured there it does the least work.

tenacity's `wait_random_exponential` is the same formula, but it draws from the global
`random` module and needs a `RetryCallState` per call, so tests could not fix its seed and
the hot path would allocate; this function is the whole algorithm instead.
"""

from __future__ import annotations

import math
import random

DEFAULT_CAP = 30.0


def backoff_ceiling(attempt: int, *, base: float, cap: float = DEFAULT_CAP) -> float:
    """The upper bound of the jittered delay: min(cap, base * 2**attempt), without overflow."""
    try:
        return min(cap, math.ldexp(base, attempt))  # base * 2**attempt, exact in binary
    except OverflowError:  # past the largest float, so past any cap (base > 0 here)
        return cap


def full_jitter(attempt: int, *, base: float, cap: float = DEFAULT_CAP, rng: random.Random) -> float:
    """A delay drawn uniformly from [0, min(cap, base * 2**attempt)]; `attempt` counts from 0."""
    if attempt < 0:
        raise ValueError(f"attempt: must be an integer >= 0, got {attempt!r}")
    if not base >= 0:
        raise ValueError(f"base: must be a number of seconds >= 0, got {base!r}")
    if not cap >= 0:
        raise ValueError(f"cap: must be a number of seconds >= 0, got {cap!r}")
    return rng.random() * backoff_ceiling(attempt, base=base, cap=cap)
