"""OTLP/HTTP response bodies: the export response with partial success, and error statuses.

Per the OTLP/HTTP spec a success is `ExportTraceServiceResponse` (with `partial_success`
when some spans were refused) and a failure is a `google.rpc.Status`, each encoded like the
request: binary protobuf for protobuf requests, JSON for JSON ones.
"""

from __future__ import annotations

from typing import NamedTuple

import orjson
from google.protobuf import json_format  # type: ignore[import-untyped]
from google.protobuf.message import Message  # type: ignore[import-untyped]
from google.rpc.status_pb2 import Status  # type: ignore[import-untyped]
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from meshkit.plane.collector.errors import CollectorError
from meshkit.plane.collector.otlp import JSON

PROTOBUF_TYPE = "application/x-protobuf"
JSON_TYPE = "application/json"


class OtlpReply(NamedTuple):
    """What an HTTP route sends back: status code, body bytes and Content-Type."""

    status: int
    body: bytes
    content_type: str


def export_reply(fmt: str, rejected: int = 0, message: str = "") -> OtlpReply:
    response = ExportTraceServiceResponse()
    if rejected:
        response.partial_success.rejected_spans = rejected
        response.partial_success.error_message = message
    return _encode(200, fmt, response)


def error_reply(fmt: str, error: CollectorError) -> OtlpReply:
    return _encode(error.status, fmt, Status(code=error.rpc_code, message=error.message))


def _encode(status: int, fmt: str, message: Message) -> OtlpReply:
    if fmt == JSON:
        body = orjson.dumps(json_format.MessageToDict(message))
        return OtlpReply(status, body, JSON_TYPE)
    return OtlpReply(status, message.SerializeToString(), PROTOBUF_TYPE)
