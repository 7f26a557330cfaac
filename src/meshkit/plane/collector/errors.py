"""Why the collector refused an export, each error carrying the HTTP status it maps to.

The OTLP/HTTP spec says which statuses a receiver answers with: 400 for a payload it
cannot decode (not retryable), 413 for one over the size limit, 415 for a content type or
encoding it does not speak, 503 when it cannot store right now (the exporter retries).
An API route turns these into responses; nothing the sender does ends in a 500.
"""

from __future__ import annotations


class CollectorError(Exception):
    """Base of the collector's refusals; `status` is the HTTP status to answer with."""

    status: int = 400
    rpc_code: int = 3  # google.rpc.Code INVALID_ARGUMENT

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadPayload(CollectorError):
    """The body is not a valid OTLP ExportTraceServiceRequest (garbage protobuf or JSON)."""

    status = 400


class PayloadTooLarge(CollectorError):
    """The body, or what it decompresses to, is over the collector's size limit."""

    status = 413
    rpc_code = 8  # RESOURCE_EXHAUSTED


class UnsupportedMediaType(CollectorError):
    """A Content-Type or Content-Encoding the collector does not decode."""

    status = 415


class StoreUnavailable(CollectorError):
    """The span store failed (disk full, locked): retryable, so the exporter sends again."""

    status = 503
    rpc_code = 14  # UNAVAILABLE
