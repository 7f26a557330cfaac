"""OTLP decoding: protobuf and JSON, compression, size limits, garbage, partial rejection."""

from __future__ import annotations

import base64
import gzip
import zlib

import orjson
import pytest
from google.protobuf import json_format  # type: ignore[import-untyped]
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from meshkit.plane.collector import BadPayload, CollectorError, PayloadTooLarge, UnsupportedMediaType
from meshkit.plane.collector.otlp import decode_traces
from meshkit.plane.collector.record import KIND_CLIENT, KIND_SERVER
from meshkit.plane.collector.reply import error_reply, export_reply
from tests.plane.collector.builders import WALL, otlp_request, otlp_span, sid, tid

PB = "application/x-protobuf"


def sample_request() -> bytes:
    request = otlp_request(
        {
            "web": [otlp_span(1, 1, name="GET /", attributes={"http.status_code": 200, "ok": True})],
            "api": [
                otlp_span(1, 2, 1, name="call db", kind=KIND_CLIENT, attributes={"peer.service": "db"}),
                otlp_span(1, 3, 2, name="q", error=True, duration_ms=2.5, attributes={"ratio": 0.5}),
            ],
        }
    )
    return bytes(request.SerializeToString())


def otlp_json(body: bytes) -> bytes:
    """The same request in OTLP/JSON: camelCase, enums as ints, ids as hex (not base64)."""
    request = otlp_request({})
    request.ParseFromString(body)
    data = json_format.MessageToDict(request, use_integers_for_enums=True)
    for rs in data["resourceSpans"]:
        for span in rs["scopeSpans"][0]["spans"]:
            for key in ("traceId", "spanId", "parentSpanId"):
                if key in span:
                    span[key] = base64.b64decode(span[key]).hex()
    return orjson.dumps(data)


def test_protobuf_decodes_every_field() -> None:
    result = decode_traces(sample_request(), PB)
    assert result.rejected == 0
    web, call, query = result.spans
    assert (web.trace_id, web.span_id, web.parent_span_id) == (tid(1), sid(1), None)
    assert (web.service, web.name, web.kind, web.start_ns) == ("web", "GET /", KIND_SERVER, int(WALL * 1e9))
    assert web.attributes == {"http.status_code": 200, "ok": True}
    assert (call.service, call.parent_span_id, call.peer_service) == ("api", sid(1), "db")
    assert query.error and query.duration_ms == 2.5 and query.attributes == {"ratio": 0.5}
    assert web.peer_service is None and query.peer_service is None


def test_json_with_hex_ids_decodes_like_protobuf() -> None:
    body = sample_request()
    as_json = otlp_json(body)
    assert tid(1).encode() in as_json  # really hex in the JSON
    assert decode_traces(as_json, "application/json; charset=utf-8").spans == decode_traces(body, PB).spans


def test_json_enum_names_and_unknown_fields_are_accepted() -> None:
    span = {"traceId": tid(9), "spanId": sid(9), "name": "x", "kind": "SPAN_KIND_CLIENT", "future": 1}
    span |= {"startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": 1700000000001000000}
    body = orjson.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]})
    (rec,) = decode_traces(body, "application/json").spans
    assert (rec.kind, rec.duration_ms, rec.service) == (KIND_CLIENT, 1.0, "unknown_service")


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_compressed_bodies(encoding: str) -> None:
    body = sample_request()
    packed = gzip.compress(body) if encoding == "gzip" else zlib.compress(body)
    assert len(decode_traces(packed, PB, content_encoding=encoding).spans) == 3


def test_oversized_body_is_413() -> None:
    body = sample_request()
    with pytest.raises(PayloadTooLarge) as err:
        decode_traces(body, PB, max_bytes=len(body) - 1)
    assert err.value.status == 413


def test_gzip_bomb_stops_at_the_limit() -> None:
    bomb = gzip.compress(b"\0" * 50_000_000)
    assert len(bomb) < 100_000
    with pytest.raises(PayloadTooLarge):
        decode_traces(bomb, PB, max_bytes=1_000_000, content_encoding="gzip")


@pytest.mark.parametrize(
    ("body", "content_type", "encoding", "error"),
    [
        (b"\xff\xfe garbage \x00\x01", PB, None, BadPayload),
        (b"{not json", "application/json", None, BadPayload),
        (b"[1, 2]", "application/json", None, BadPayload),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}',
            "application/json",
            None,
            BadPayload,
        ),
        (b'{"resourceSpans": 5}', "application/json", None, BadPayload),
        (b"not gzip at all", PB, "gzip", BadPayload),
        (gzip.compress(b"abc")[:-6], PB, "gzip", BadPayload),
        (b"", "text/plain", None, UnsupportedMediaType),
        (b"", PB, "br", UnsupportedMediaType),
    ],
)
def test_bad_input_maps_to_4xx(
    body: bytes, content_type: str, encoding: str | None, error: type[CollectorError]
) -> None:
    with pytest.raises(error) as err:
        decode_traces(body, content_type, content_encoding=encoding)
    assert err.value.status == {BadPayload: 400, UnsupportedMediaType: 415}[error]  # type: ignore[index]


def test_bad_spans_are_rejected_alone() -> None:
    good = otlp_span(1, 1)
    short_id = otlp_span(1, 2)
    short_id.trace_id = b"\x01\x02"
    backwards = otlp_span(1, 3)
    backwards.end_time_unix_nano = backwards.start_time_unix_nano - 1
    zero_span = otlp_span(1, 4)
    zero_span.span_id = bytes(8)
    body = otlp_request({"s": [good, short_id, backwards, zero_span]}).SerializeToString()
    result = decode_traces(body, PB)
    assert [r.span_id for r in result.spans] == [sid(1)]
    assert result.rejected == 3 and result.message.startswith("traceId:")


def test_empty_request_is_fine() -> None:
    assert decode_traces(b"", PB).spans == []


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.sampled_from([PB, "application/json"]))
def test_any_bytes_decode_or_raise_a_collector_error(body: bytes, content_type: str) -> None:
    try:
        decode_traces(body, content_type)
    except CollectorError as exc:
        assert exc.status in (400, 413)


def test_replies_match_the_request_encoding() -> None:
    ok = export_reply("protobuf", rejected=2, message="why")
    response = ExportTraceServiceResponse.FromString(ok.body)
    assert (ok.status, response.partial_success.rejected_spans) == (200, 2)
    as_json = export_reply("json")
    assert (as_json.content_type, orjson.loads(as_json.body)) == ("application/json", {})
    err = error_reply("json", PayloadTooLarge("body: too big"))
    assert err.status == 413 and orjson.loads(err.body)["message"] == "body: too big"
