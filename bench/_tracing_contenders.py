"""The clients bench_tracing.py compares: one meshkit `MeshClient` default stack, tracing off or on.

Every contender is `MeshClient.static(...)` over one nginx instance and one transport
(`AiohttpTransport`, meshkit's default, or `H1Transport`), calling `GET /`:

- "off": no tracer, the baseline of its transport;
- "100%", "10%", "0%": `tracer=Tracer("bench", sample_ratio=r, exporters=[exporter])`, the
  exporter behind meshkit's `BatchingSpanProcessor` (its defaults: queue 2048, batches of 512,
  export on the processor's own thread, off the request path, as in production). The
  exporter reads every field an OTLP exporter encodes (name, kind, context, parent, times,
  attributes, status, events) and counts the spans, then lets them go, as an exporter that
  has shipped a batch does; an exporter that kept the last 10,000 spans (the SDK's
  `InMemorySpanExporter`, used before) measured ~30k instructions per call more, all of it
  the garbage collector walking the spans it held. At 0% nothing is
  sampled: the client only makes ids and injects the trace headers (propagation only);
- "100% OTLP": the same at 100%, exported with `otlp_exporter` (OTLP/HTTP protobuf, the
  OpenTelemetry exporter on its batch thread) to a `/v1/traces` location of the same
  nginx, which reads and discards each batch; the encoding and posting cost this process.

After the run each traced contender is flushed and notes how many spans its exporter
received per call made (2 at 100%: the call span and one attempt span; 0.2 at 10%), so a
span dropped on a full queue, or never exported, shows.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from _nginx import LocalNginx
from _rounds import Contender
from meshkit.observe.wire_exporter import WireOTLPSpanExporter

SERVICE = "bench"
OTLP_LOCATION = '        location = /v1/traces { return 200 ""; }'
MODES = {"off": None, "100%": 1.0, "10%": 0.1, "0%": 0.0, "100% OTLP": 1.0}
TRANSPORTS = ("aiohttp", "h1")


class CountingMemoryExporter(SpanExporter):
    """Reads what an OTLP exporter encodes from every span, counts the spans, keeps none."""

    def __init__(self) -> None:
        self.received = 0
        self.fields = 0  # what was read, so the reads are not optimised away or skipped

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        for span in spans:
            context, parent, attributes = span.get_span_context(), span.parent, span.attributes
            read = (span.name, span.kind, context, parent, span.start_time, span.end_time,
                    attributes, span.status, span.events, span.resource)  # fmt: skip
            # each field read once, as encoders do
            self.fields += len(read) + len(attributes or ()) + (context is not None)
        self.received += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


class CountingExporter(SpanExporter):
    """Counts the spans and reads none of their fields: the instrumentation's cost alone."""

    def __init__(self) -> None:
        self.received = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.received += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


class CountingOTLPExporter(WireOTLPSpanExporter):
    """The exporter `otlp_exporter` builds (OTLP/HTTP, meshkit's wire encoder), counting the spans accepted."""

    def __init__(self, endpoint: str) -> None:
        super().__init__(endpoint=endpoint, timeout=5)
        self.received = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = super().export(spans)
        if result is SpanExportResult.SUCCESS:
            self.received += len(spans)
        return result


def contender_name(mode: str, transport: str) -> str:
    return f"{mode} [{transport}]"


def traced_client(nginx: LocalNginx, mode: str, transport: str) -> Contender:
    from meshkit import Request
    from meshkit.client import MeshClient
    from meshkit.observe.tracing import Tracer
    from meshkit.transport.h1 import H1Transport

    if mode not in MODES:
        raise ValueError(f"mode: must be one of {', '.join(MODES)}, got {mode!r}")
    ratio = MODES[mode]
    exporter: CountingMemoryExporter | CountingOTLPExporter | None = None
    tracer: Tracer | None = None
    if ratio is not None and mode.endswith("OTLP"):
        # what meshkit.observe.export.otlp_exporter builds, with the exporter counting
        exporter = CountingOTLPExporter(f"http://127.0.0.1:{nginx.ports[0]}/v1/traces")
        tracer = Tracer(SERVICE, sample_ratio=ratio, exporters=[exporter])
    elif ratio is not None:
        exporter = CountingMemoryExporter()
        tracer = Tracer(SERVICE, sample_ratio=ratio, exporters=[exporter])
    client = MeshClient.static(
        {SERVICE: nginx.addresses[:1]},
        transport=H1Transport() if transport == "h1" else None,
        tracer=tracer,
    )
    calls = [0]
    name = contender_name(mode, transport)
    contender: dict[str, Contender] = {}

    async def start() -> None:
        resp = await client.call(Request("GET", "/", service=SERVICE))
        calls[0] += 1
        if resp.status != 200 or resp.body != nginx.body:
            raise RuntimeError(f"{name}: unexpected response {resp.status}, {len(resp.body)} bytes")

    async def call() -> bool:
        calls[0] += 1
        resp = await client.call(Request("GET", "/", service=SERVICE))
        return resp.status == 200

    async def close() -> None:
        await client.aclose()
        if tracer is not None and exporter is not None:
            flushed = tracer.force_flush(10_000)
            tracer.shutdown()
            per_call = exporter.received / max(1, calls[0])
            note = f"{per_call:.2f} spans/call exported" + ("" if flushed else " (flush timed out)")
            contender[name].note = f"{contender[name].note}; {note}"

    if ratio is None:
        note = "tracing off"
    else:
        note = "batch -> OTLP/HTTP" if mode.endswith("OTLP") else "batch -> in-memory"
    contender[name] = Contender(name, note, start, call, close)
    return contender[name]


def build(nginx: LocalNginx, modes: Sequence[str], transports: Sequence[str]) -> list[Contender]:
    from _rounds import unavailable

    contenders: list[Contender] = []
    for transport in transports:
        for mode in modes:
            try:
                contenders.append(traced_client(nginx, mode, transport))
            except Exception as exc:  # reported, never faked
                contenders.append(unavailable(contender_name(mode, transport), exc))
    return contenders
