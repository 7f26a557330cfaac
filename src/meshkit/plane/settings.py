"""The control plane's tunable settings, validated, and kept in a JSON file in the data directory.

Four groups, each set by one `configure/*` endpoint and applied to every instance at once
(existing ones too): the balancer strategy, the circuit breaker (the seed's two knobs), the
default retry policy, and the default health check that every instance registered without
its own gets. They live in `settings.json` beside the registry, written atomically (write a
temporary file, fsync, rename), so they survive a restart whichever registry backend is in
use. A group that a hand edit broke is logged and replaced by its defaults, never fatal.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import secrets
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson

from meshkit.resilience.breaker import BreakerPolicy
from meshkit.resilience.retry import RetryPolicy
from meshkit.types import HealthCheck, LoadBalancerStrategy

log = logging.getLogger(__name__)
SETTINGS_FILE = "settings.json"


def _int(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name}: must be an integer from {low} to {high}, got {value!r}")
    return value


def _seconds(name: str, value: object, low: float, high: float, *, inclusive_low: bool = True) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok and (value >= low if inclusive_low else value > low) and value <= high:  # type: ignore[operator]
        return float(value)  # type: ignore[arg-type]
    bound = ">=" if inclusive_low else ">"
    raise ValueError(f"{name}: must be a number of seconds {bound} {low:g} and <= {high:g}, got {value!r}")


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    failure_threshold: int = 5
    recovery_timeout: int = 60

    def __post_init__(self) -> None:
        _int("failure_threshold", self.failure_threshold, 1, 100)  # the seed's bounds
        _int("recovery_timeout", self.recovery_timeout, 1, 3600)

    def policy(self) -> BreakerPolicy:
        return BreakerPolicy(failure_threshold=self.failure_threshold, recovery_timeout=self.recovery_timeout)


@dataclass(frozen=True, slots=True)
class RetrySettings:
    max_attempts: int = 3
    base_delay: float = 0.05
    max_delay: float = 30.0
    retry_all_5xx: bool = False

    def __post_init__(self) -> None:
        _int("max_attempts", self.max_attempts, 1, 11)  # /call's retry_count is 0-10
        _seconds("base_delay", self.base_delay, 0.0, 60.0)
        _seconds("max_delay", self.max_delay, 0.0, 300.0, inclusive_low=False)
        if self.base_delay > self.max_delay:
            raise ValueError(
                f"base_delay: must be <= max_delay ({self.max_delay:g}), got {self.base_delay!r}"
            )
        if not isinstance(self.retry_all_5xx, bool):
            raise ValueError(f"retry_all_5xx: must be true or false, got {self.retry_all_5xx!r}")

    def policy(self) -> RetryPolicy:
        return RetryPolicy(
            self.max_attempts, self.base_delay, self.max_delay, retry_all_5xx=self.retry_all_5xx
        )


@dataclass(frozen=True, slots=True)
class HealthCheckSettings:
    """The check given to instances registered without one (Consul's HTTP check on /health)."""

    interval: float = 10.0
    timeout: float = 2.0
    unhealthy_threshold: int = 3
    healthy_threshold: int = 2
    path: str = "/health"
    kind: str = "http"

    def __post_init__(self) -> None:
        _seconds("interval", self.interval, 0.05, 86400.0)
        _seconds("timeout", self.timeout, 0.0, 300.0, inclusive_low=False)
        _int("unhealthy_threshold", self.unhealthy_threshold, 1, 100)
        _int("healthy_threshold", self.healthy_threshold, 1, 100)
        if self.kind not in ("http", "tcp"):
            raise ValueError(f"kind: must be http or tcp, got {self.kind!r}")
        self.check()  # the path's rules live in HealthCheck

    def check(self) -> HealthCheck:
        try:
            return HealthCheck(
                self.kind,
                self.path,
                float(self.interval),
                float(self.timeout),
                self.unhealthy_threshold,
                self.healthy_threshold,
            )
        except ValueError as exc:
            raise ValueError(str(exc).removeprefix("check.")) from None


@dataclass(frozen=True, slots=True)
class PlaneSettings:
    strategy: LoadBalancerStrategy = LoadBalancerStrategy.P2C_EWMA
    circuit_breaker: BreakerSettings = field(default_factory=BreakerSettings)
    retry: RetrySettings = field(default_factory=RetrySettings)
    health_check: HealthCheckSettings = field(default_factory=HealthCheckSettings)

    def as_dict(self) -> dict[str, Any]:
        return {
            "load_balancer": {"strategy": self.strategy.value},
            "circuit_breaker": asdict(self.circuit_breaker),
            "retry": asdict(self.retry),
            "health_check": asdict(self.health_check),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PlaneSettings:
        """Rebuild from `as_dict()` output; a broken group falls back to its defaults (logged)."""
        settings = cls()
        groups: dict[str, Any] = {}
        makers: dict[str, Any] = {
            "circuit_breaker": BreakerSettings,
            "retry": RetrySettings,
            "health_check": HealthCheckSettings,
        }
        for name, maker in makers.items():
            try:
                groups[name] = maker(**data.get(name, {}))
            except (TypeError, ValueError) as exc:
                log.warning("settings: ignoring the stored %s group (%s); using defaults", name, exc)
        try:
            groups["strategy"] = LoadBalancerStrategy.parse(data.get("load_balancer", {}).get("strategy"))
        except (ValueError, AttributeError) as exc:
            if "load_balancer" in data:
                log.warning("settings: ignoring the stored load_balancer group (%s)", exc)
        return replace(settings, **groups)


class SettingsFile:
    """`settings.json` in the data directory (or nothing, when there is none)."""

    def __init__(self, data_dir: Path | None) -> None:
        self.path = data_dir / SETTINGS_FILE if data_dir is not None else None

    def load(self) -> PlaneSettings:
        if self.path is None or not self.path.exists():
            return PlaneSettings()
        try:
            data = orjson.loads(self.path.read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            log.warning("settings: cannot read %s (%s); using defaults", self.path, exc)
            return PlaneSettings()
        return PlaneSettings.from_dict(data if isinstance(data, dict) else {})

    def save(self, settings: PlaneSettings) -> None:
        """Write atomically and durably: a crash leaves the old file or the new one, whole."""
        if self.path is None:
            return
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{SETTINGS_FILE}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(orjson.dumps(settings.as_dict(), option=orjson.OPT_INDENT_2))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
