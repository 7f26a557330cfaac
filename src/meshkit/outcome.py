"""Classifying the result of one attempt, so breakers, retries and outlier detection agree.

Connect errors, resets, timeouts and 5xx are failures; 4xx are the caller's fault and
count as successes for the instance (Envoy and Linkerd classify the same way).
"""

from __future__ import annotations

from enum import StrEnum

from meshkit.errors import ConnectError, ConnectionReset, RequestTimeout, TransportError
from meshkit.types import Response


class Outcome(StrEnum):
    SUCCESS = "success"
    SERVER_ERROR = "server_error"  # a 5xx
    CONNECT_ERROR = "connect_error"  # nothing was sent
    RESET = "reset"  # the request may have reached the instance
    TIMEOUT = "timeout"

    @property
    def failed(self) -> bool:
        return self is not Outcome.SUCCESS


def classify(result: Response | BaseException) -> Outcome:
    if isinstance(result, Response):
        return Outcome.SERVER_ERROR if result.status >= 500 else Outcome.SUCCESS
    if isinstance(result, ConnectError):
        return Outcome.CONNECT_ERROR
    if isinstance(result, RequestTimeout | TimeoutError):
        return Outcome.TIMEOUT
    if isinstance(result, ConnectionReset | TransportError | OSError):
        return Outcome.RESET
    return Outcome.SUCCESS  # a decision error (CircuitOpen...) says nothing about the instance
