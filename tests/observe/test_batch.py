"""BatchingSpanProcessor: batches, drops counted on a full queue, flush and shutdown, a failing exporter."""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable, Sequence

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, TraceFlags

from meshkit.observe.batch import BatchingSpanProcessor
from meshkit.observe.spans import SpanSink
from meshkit.observe.tracing import AttemptSpanLayer, CallSpanLayer, Tracer
from meshkit.service import Service
from meshkit.stack import Stack
from meshkit.transport.mock import MockTransport
from meshkit.types import Request, Response, ServiceInstance

WAIT = 10.0  # seconds: a bound on waiting for the worker thread, never a timing assertion
SCOPE = InstrumentationScope("meshkit")
NEVER = 3_600_000  # a schedule delay that does not elapse during a test
RESOURCE = Resource({"service.name": "caller"})  # given: ReadableSpan would otherwise detect one per span


class Recording(SpanExporter):
    """Keeps every batch; can hold an export (`gate`) or fail the first `failures` ones."""

    def __init__(self, *, failures: int = 0, gate: threading.Event | None = None) -> None:
        self.batches: list[list[ReadableSpan]] = []
        self.failures = failures
        self.gate = gate
        self.entered = threading.Event()
        self.exported = threading.Event()
        self.shut_down = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(WAIT)
        if self.failures:
            self.failures -= 1
            raise ConnectionError("collector unreachable")
        self.batches.append(list(spans))
        self.exported.set()
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.shut_down = True

    @property
    def names(self) -> list[str]:
        return [span.name for batch in self.batches for span in batch]


def span(n: int, *, sampled: bool = True) -> ReadableSpan:
    context = SpanContext(n + 1, n + 1, is_remote=False, trace_flags=TraceFlags(int(sampled)))
    return ReadableSpan(name=f"s{n}", context=context, resource=RESOURCE)


VIA = ("on_end", "lane")  # an SDK span through on_end; a ClientSpan appending itself to the queue


def ender(via: str, processor: BatchingSpanProcessor) -> Callable[..., None]:
    """End span number n (named "s<n>") into `processor`, by `via`."""
    if via == "on_end":
        return lambda n, sampled=True: processor.on_end(span(n, sampled=sampled))
    sinks = {flag: SpanSink(processor, RESOURCE, SCOPE, float(flag)) for flag in (True, False)}
    assert sinks[True].lane is processor and sinks[True].queue is processor.queue
    return lambda n, sampled=True: sinks[sampled].start(f"s{n}", None).end()


@pytest.mark.parametrize("via", VIA)
def test_a_full_batch_wakes_the_worker_and_goes_out_in_batch_size_pieces(via: str) -> None:
    exporter = Recording()
    processor = BatchingSpanProcessor(exporter, max_export_batch_size=4, schedule_delay_millis=NEVER)
    end = ender(via, processor)
    for n in range(3):
        end(n)
    assert exporter.batches == []  # below the batch size and the delay has not elapsed
    end(3)
    assert exporter.exported.wait(WAIT)
    assert [len(b) for b in exporter.batches] == [4]
    for n in range(4, 13):
        end(n)
    assert processor.force_flush()
    assert all(len(batch) <= 4 for batch in exporter.batches)
    assert exporter.names == [f"s{n}" for n in range(13)]  # in order, each once
    processor.shutdown()


@pytest.mark.parametrize("via", VIA)
def test_the_schedule_delay_exports_a_partial_batch(via: str) -> None:
    exporter = Recording()
    processor = BatchingSpanProcessor(exporter, max_export_batch_size=512, schedule_delay_millis=5)
    end = ender(via, processor)
    end(0)
    assert exporter.exported.wait(WAIT)
    assert exporter.names == ["s0"]
    processor.shutdown()


@pytest.mark.parametrize("via", VIA)
def test_a_full_queue_drops_new_spans_and_counts_them(via: str) -> None:
    gate = threading.Event()
    exporter = Recording(gate=gate)
    processor = BatchingSpanProcessor(
        exporter, max_queue_size=4, max_export_batch_size=2, schedule_delay_millis=NEVER
    )
    end = ender(via, processor)
    end(0)
    end(1)  # a full batch: the worker takes it and is held in export
    assert exporter.entered.wait(WAIT)
    for n in range(2, 9):  # 4 fit in the queue, 3 do not
        end(n)
    assert processor.dropped == 3
    gate.set()
    assert processor.force_flush()
    assert exporter.names == ["s0", "s1", "s2", "s3", "s4", "s5"]
    assert (processor.exported, processor.dropped, processor.failed) == (6, 3, 0)
    processor.shutdown()


@pytest.mark.parametrize("via", VIA)
def test_shutdown_exports_what_is_queued_and_later_spans_are_dropped(via: str) -> None:
    exporter = Recording()
    processor = BatchingSpanProcessor(exporter, max_export_batch_size=100, schedule_delay_millis=NEVER)
    end = ender(via, processor)
    for n in range(5):
        end(n)
    processor.shutdown()
    assert exporter.names == [f"s{n}" for n in range(5)] and exporter.shut_down
    end(5)
    assert processor.dropped == 1 and exporter.names[-1] == "s4"
    assert not processor.force_flush()
    processor.shutdown()  # a second shutdown is a no-op


@pytest.mark.parametrize("via", VIA)
def test_an_exporter_that_raises_does_not_stop_the_worker(via: str) -> None:
    exporter = Recording(failures=1)
    processor = BatchingSpanProcessor(exporter, max_export_batch_size=2, schedule_delay_millis=NEVER)
    end = ender(via, processor)
    end(0)
    end(1)  # this batch's export raises on the worker thread
    assert exporter.entered.wait(WAIT)
    end(2)
    end(3)
    assert exporter.exported.wait(WAIT)  # the worker went on to the next batch
    assert processor.force_flush()
    assert exporter.names == ["s2", "s3"]
    assert (processor.exported, processor.failed) == (2, 2)
    processor.shutdown()


@pytest.mark.parametrize("via", VIA)
def test_only_sampled_spans_are_exported(via: str) -> None:
    exporter = Recording()
    processor = BatchingSpanProcessor(exporter, schedule_delay_millis=NEVER)
    end = ender(via, processor)
    end(0, sampled=False)
    end(1)
    assert processor.force_flush()
    assert exporter.names == ["s1"]
    processor.shutdown()


@pytest.mark.parametrize("via", VIA)
def test_spans_ended_on_many_threads_are_all_delivered(via: str) -> None:
    exporter = Recording()
    processor = BatchingSpanProcessor(
        exporter, max_queue_size=8000, max_export_batch_size=64, schedule_delay_millis=NEVER
    )
    end = ender(via, processor)

    def end_spans(first: int) -> None:
        for n in range(first, first + 1000):
            end(n)

    threads = [threading.Thread(target=end_spans, args=(k * 1000,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert processor.force_flush()
    assert sorted(exporter.names) == sorted(f"s{n}" for n in range(4000))
    assert processor.dropped == 0
    processor.shutdown()


async def test_spans_from_many_tasks_reach_the_exporter_through_the_tracer() -> None:
    exporter = Recording()
    tracer = Tracer("caller", exporters=[exporter])
    instance = ServiceInstance("users-a", "users", "127.0.0.1", 8001)

    def pick(inner: Service) -> Service:
        async def picked(request: Request) -> Response:
            request.instance = instance
            await asyncio.sleep(0)  # the tasks interleave
            return await inner(request)

        return picked

    stack = Stack()
    stack.push("attempt-span", functools.partial(AttemptSpanLayer, tracer=tracer))
    stack.push("balancer", pick)
    stack.push("call-span", functools.partial(CallSpanLayer, tracer=tracer))
    service = stack.build(MockTransport(lambda r: Response(200)))

    async def calls() -> None:
        for _ in range(20):
            await service(Request(service="users"))

    await asyncio.gather(*(calls() for _ in range(50)))
    assert await asyncio.to_thread(tracer.force_flush)
    spans = [s for batch in exporter.batches for s in batch]
    assert len(spans) == 2 * 50 * 20
    assert len({s.context.span_id for s in spans if s.context is not None}) == len(spans)
    calls_by_trace = {s.context.trace_id for s in spans if s.name == "call users" and s.context}
    assert all(s.parent and s.parent.trace_id in calls_by_trace for s in spans if s.name == "attempt users")
    tracer.shutdown()


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"max_queue_size": 0}, "max_queue_size"),
        ({"max_export_batch_size": True}, "max_export_batch_size"),
        ({"max_queue_size": 10, "max_export_batch_size": 11}, "max_export_batch_size"),
        ({"schedule_delay_millis": 0}, "schedule_delay_millis"),
        ({"schedule_delay_millis": "5"}, "schedule_delay_millis"),
    ],
)
def test_bad_settings_are_rejected(options: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field}: must be"):
        BatchingSpanProcessor(Recording(), **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("via", VIA)
def test_a_span_ended_during_shutdown_is_dropped_alone_and_what_was_queued_goes_out(via: str) -> None:
    gate = threading.Event()
    exporter = Recording(gate=gate)
    processor = BatchingSpanProcessor(exporter, max_export_batch_size=100, schedule_delay_millis=NEVER)
    end = ender(via, processor)
    for n in range(5):
        end(n)
    flusher = threading.Thread(target=processor.force_flush)  # holds the export lock, held in export
    flusher.start()
    assert exporter.entered.wait(WAIT)
    for n in range(5, 10):
        end(n)  # queued behind the held export
    stopper = threading.Thread(target=processor.shutdown)  # its worker waits for the export lock
    stopper.start()
    for _ in range(1000):  # until shutdown has closed the queue (bounded; never a timing assertion)
        if processor.wake_at == 0:
            break
        threading.Event().wait(0.01)
    assert processor.wake_at == 0
    end(10)  # after shutdown began: this span alone is dropped
    gate.set()
    flusher.join(WAIT)
    stopper.join(WAIT)
    assert exporter.names == [f"s{n}" for n in range(10)]
    assert processor.dropped == 1
