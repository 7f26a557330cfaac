"""The OpenTelemetry OTLP/HTTP span exporter, serializing with meshkit's wire encoder.

`OTLPSpanExporter.export` encodes with `encode_spans(spans).SerializePartialToString()`
(the SDK encoder, ~70 us of CPU per span) and offers no narrower method to override, so
`WireOTLPSpanExporter.export` is the base's method statement for statement
(opentelemetry-exporter-otlp-proto-http 1.45) with `meshkit.observe.otlp_wire.encode_spans`
in that one place: the request-size limit, the retries with backoff and Retry-After, the
timeout, compression, the exporter's own metrics and `shutdown` stay the base's
(`self._client`, `self._metrics`). tests/observe/test_otlp_wire.py compares the two
methods' syntax trees, so an upgrade that changes the base's `export` fails a test
instead of drifting.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from opentelemetry.exporter.otlp.proto.http._common import RequestPayloadTooLargeError, _is_request_too_large
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.semconv.attributes.http_attributes import HTTP_RESPONSE_STATUS_CODE

from meshkit.observe.otlp_wire import encode_spans

_logger = logging.getLogger(__name__)


class WireOTLPSpanExporter(OTLPSpanExporter):
    """`OTLPSpanExporter` (same arguments, same behaviour) with the request written by `otlp_wire`."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shutdown:
            _logger.warning("Exporter already shutdown, ignoring batch")
            return SpanExportResult.FAILURE

        with self._metrics.export_operation(len(spans)) as result:
            try:
                serialized_data = encode_spans(spans)
            except Exception as error:
                _logger.error("Failed to encode span batch: %s", error)
                result.error = error
                return SpanExportResult.FAILURE

            if _is_request_too_large(serialized_data, self._max_request_size):
                _logger.warning(
                    "Dropping span batch: serialized size %d bytes exceeds max_request_size %d bytes.",
                    len(serialized_data),
                    self._max_request_size,
                )
                result.error = RequestPayloadTooLargeError(
                    f"Serialized span request size {len(serialized_data)} "
                    f"bytes exceeds max_request_size "
                    f"{self._max_request_size} bytes."
                )
                return SpanExportResult.FAILURE

            export_result = self._client.export(serialized_data)
            if not export_result.success:
                result.error = export_result.error
                result.error_attrs = (
                    {HTTP_RESPONSE_STATUS_CODE: export_result.status_code}
                    if export_result.status_code is not None
                    else None
                )
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS
