"""OTLP span encoding: the OpenTelemetry SDK's encoder against meshkit's wire encoder, in us per span.

Target (tracing issue, deliverable 6): the wire encoder at <= 1/8 of the SDK encoder's CPU
per span, since the export thread takes that time from the event loop under the GIL.

Both encode the same batch of 512 meshkit `ClientSpan`s (a batch processor's batch): 256
calls, each a "call" span with 5 attributes and an "attempt" span with 9, made through a
real `meshkit.observe.tracing.Tracer` as the client's layers make them. Two batches:

- "mesh": the values a mesh repeats (one service, method, path, instance, status), where
  the wire encoder reuses an attribute's field within the batch;
- "distinct": every call with its own path, instance id, port and status code, so about
  half the attributes are new to the batch (the reuse's worst realistic case).

The baseline is `trace_encoder.encode_spans(spans).SerializePartialToString()` (what
`OTLPSpanExporter.export` runs), the contender `meshkit.observe.otlp_wire.encode_spans`;
the bench first checks that both produce the same request. Times are this process's CPU
time; rounds alternate the two and rotate which goes first; each figure is the best round
(as `timeit` advises) with the median beside it.
Run: `.venv/bin/python bench/bench_otlp_encode.py [--rounds 7]`.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable, Sequence

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan

from meshkit.observe.otlp_wire import encode_spans
from meshkit.observe.tracing import Tracer

CALLS = 256  # two spans each: a batch of 512
ROUND_CPU_SECONDS = 0.25
Encoder = Callable[[Sequence[ReadableSpan]], bytes]


def make_batch(distinct: bool) -> list[ReadableSpan]:
    """512 ended spans of a client's shape; `distinct` gives each call its own path, instance and status."""
    spans: list[ReadableSpan] = []
    sink = Tracer("bench").sink  # no exporter: the spans are kept here, in the order they end
    for k in range(CALLS):
        n = k if distinct else 1
        call = sink.start("call users", None)
        call.set_attributes({"meshkit.service": "users", "http.request.method": "GET", "url.path": f"/x/{n}"})
        call.set_attribute("meshkit.retries", 0)
        call.set_attribute("http.response.status_code", 200 + n % 7)
        attempt = sink.start("attempt users", call)
        attempt.set_attributes(
            {
                "meshkit.service": "users",
                "meshkit.attempt": 0,
                "http.request.method": "GET",
                "meshkit.instance.id": f"users-{n}",
                "server.address": "127.0.0.1",
                "server.port": 8000 + n,
                "meshkit.balancer.reason": "p2c",
                "meshkit.breaker.state": "closed",
                "http.response.status_code": 200 + n % 7,
            }
        )
        attempt.end()
        call.end()
        spans += (attempt, call)
    return spans


def sdk_encoder(spans: Sequence[ReadableSpan]) -> bytes:
    serialized: bytes = sdk_encode_spans(spans).SerializePartialToString()
    return serialized


def cpu_us_per_span(encode: Encoder, spans: Sequence[ReadableSpan]) -> float:
    """One round: encode the batch until ROUND_CPU_SECONDS of CPU have passed."""
    gc.collect()
    done = 0
    started = time.process_time()
    while (elapsed := time.process_time() - started) < ROUND_CPU_SECONDS:
        encode(spans)
        done += 1
    return elapsed / (done * len(spans)) * 1e6


def measure(spans: Sequence[ReadableSpan], rounds: int) -> dict[str, list[float]]:
    contenders: list[tuple[str, Encoder]] = [("sdk", sdk_encoder), ("wire", encode_spans)]
    assert len(spans) == CALLS * 2, f"expected a batch of {CALLS * 2} spans, got {len(spans)}"
    sdk_request = ExportTraceServiceRequest.FromString(sdk_encoder(spans))
    assert ExportTraceServiceRequest.FromString(encode_spans(spans)) == sdk_request, "encodings differ"
    figures: dict[str, list[float]] = {name: [] for name, _ in contenders}
    for index in range(rounds):
        for name, encode in contenders[index % 2 :] + contenders[: index % 2]:
            figures[name].append(cpu_us_per_span(encode, spans))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    print(f"{CALLS * 2} spans per batch, {args.rounds} rounds, CPU us per span: best (median)")
    print(f"{'batch':10s} {'sdk':>16s} {'wire':>16s}  speed-up: best (median)")
    for label, distinct in (("mesh", False), ("distinct", True)):
        figures = measure(make_batch(distinct), args.rounds)
        sdk, wire = figures["sdk"], figures["wire"]
        sdk_median, wire_median = statistics.median(sdk), statistics.median(wire)
        print(
            f"{label:10s} {min(sdk):7.2f} ({sdk_median:6.2f}) {min(wire):7.2f} ({wire_median:6.2f})"
            f"  {min(sdk) / min(wire):5.1f}x ({sdk_median / wire_median:4.1f}x)"
        )


if __name__ == "__main__":
    main()
