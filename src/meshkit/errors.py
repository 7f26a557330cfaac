"""The errors a call through the mesh can end in, each saying what the mesh decided.

Transport errors (`ConnectError`, `ConnectionReset`, `RequestTimeout`) are what the
network did; the others are decisions a layer made (`CircuitOpen`, `NoHealthyInstances`,
`RetryBudgetExhausted`, `DeadlineExceeded`). Breakers and retries classify by these types.
"""

from __future__ import annotations


class MeshError(Exception):
    """Base of every error meshkit raises on the data path."""


class NoHealthyInstances(MeshError):
    def __init__(self, service: str, detail: str = "") -> None:
        self.service = service
        msg = f"no healthy instance of service {service!r}"
        super().__init__(f"{msg}: {detail}" if detail else msg)


class CircuitOpen(MeshError):
    def __init__(self, instance_id: str, retry_after: float = 0.0) -> None:
        self.instance_id = instance_id
        self.retry_after = retry_after
        super().__init__(f"circuit open for instance {instance_id!r} (retry after {retry_after:.3f}s)")


class RetryBudgetExhausted(MeshError):
    def __init__(self, service: str, cause: BaseException | None = None) -> None:
        self.service = service
        self.cause = cause
        super().__init__(f"retry budget exhausted for service {service!r}")


class DeadlineExceeded(MeshError, TimeoutError):
    def __init__(self, detail: str = "deadline exceeded") -> None:
        super().__init__(detail)


class TransportError(MeshError):
    """The network failed the call; `instance_id` says where."""

    def __init__(self, message: str, instance_id: str | None = None) -> None:
        self.instance_id = instance_id
        super().__init__(message)


class ConnectError(TransportError):
    """No connection could be made (refused, unreachable): nothing was sent."""


class ConnectionReset(TransportError):
    """The connection broke after the request may have been sent."""


class RequestTimeout(TransportError, TimeoutError):
    """The instance did not answer within the attempt's time."""


class RegistryUnavailable(MeshError):
    """The registry could not be reached; reads may still be served from cache."""
