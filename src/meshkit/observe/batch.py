"""Batched span export off the data path, for a fraction of the SDK batch processor's cost per span.

A finished span is appended to a bounded deque on the thread that ended it (the event
loop's, for the client's spans): `on_end` is one length check and one `deque.append`, no
lock, no logging, no process-id check, and a meshkit `ClientSpan` appends itself (the
processor is its sink's `SpanLane`): no call at all until the queue holds a batch, then
`overflow()` drops what is beyond capacity and wakes the worker. A worker thread takes the
queued spans in batches of `max_export_batch_size` and calls the exporter, woken when a
batch is full or every `schedule_delay_millis`. When the queue holds `max_queue_size`
spans, a new span is dropped and counted (`dropped`; the worker logs the count, never the
data path), so a slow exporter costs spans, never memory or latency. `deque.append` and
`popleft` are atomic under the GIL, so spans ended on several threads are all queued;
exports never overlap (one lock), as the OpenTelemetry spec asks of an exporter's caller.

The semantics are those of the SDK's `BatchSpanProcessor` (OpenTelemetry specification,
"Batching processor"; the defaults are its: queue 2048, batches of 512, 5 s): `force_flush`
exports everything queued before it was called and `shutdown` exports what is left, stops
the worker and shuts the exporter down; spans ended after shutdown are dropped (and
counted). An exception from the exporter is logged and counted; the worker goes on. Only
spans whose trace is sampled are exported, as the SDK's processors do.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import weakref

from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY as SUPPRESS_INSTRUMENTATION
from opentelemetry.context import Context, attach, set_value
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from meshkit.observe.spans import ClientSpan

logger = logging.getLogger(__name__)


class BatchingSpanProcessor(SpanProcessor):
    """Queues finished sampled spans and exports them in batches from a worker thread."""

    def __init__(
        self,
        exporter: SpanExporter,
        *,
        max_queue_size: int = 2048,
        max_export_batch_size: int = 512,
        schedule_delay_millis: float = 5000,
    ) -> None:
        for name, value in (
            ("max_queue_size", max_queue_size),
            ("max_export_batch_size", max_export_batch_size),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: must be an integer >= 1, got {value!r}")
        if max_export_batch_size > max_queue_size:
            raise ValueError(
                f"max_export_batch_size: must be <= max_queue_size ({max_queue_size}), got {max_export_batch_size}"
            )
        delay = schedule_delay_millis
        if isinstance(delay, bool) or not isinstance(delay, int | float) or not 0 < delay < float("inf"):
            raise ValueError(f"schedule_delay_millis: must be a number > 0, got {delay!r}")
        self.exporter = exporter
        self.max_queue_size = max_queue_size
        self._capacity = max_queue_size  # 0 once shut down: every later span is dropped
        self._batch_size = max_export_batch_size
        # SpanLane: a ClientSpan's end() appends to `queue` and calls overflow() at this length
        self.wake_at = max_export_batch_size
        self._delay = delay / 1000
        self.queue: collections.deque[ReadableSpan] = collections.deque()
        self._signalled = False  # a wake-up for a full batch is pending
        self._wakeup = threading.Event()
        self._export_lock = threading.Lock()
        self._stopping = False
        self.dropped = 0  # spans dropped on a full queue or after shutdown
        self.exported = 0  # spans handed to the exporter that it accepted
        self.failed = 0  # spans whose export failed or raised
        self._dropped_logged = 0
        self._worker = self._start_worker()
        if hasattr(os, "register_at_fork"):  # a forked child gets an empty queue and a worker of its own
            reinit = weakref.WeakMethod(self._after_fork)
            os.register_at_fork(after_in_child=lambda: (method := reinit()) and method())

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        if span.__class__ is not ClientSpan:  # a ClientSpan is only ended into processors when sampled
            context = span.context
            if context is None or not context.trace_flags & 1:
                return
        queue = self.queue
        if len(queue) >= self._capacity:
            self.dropped += 1
            return
        queue.append(span)
        if len(queue) >= self._batch_size and not self._signalled:
            self._signalled = True
            self._wakeup.set()

    def overflow(self) -> None:
        """After a `ClientSpan` appended itself and left `wake_at` or more queued: drop beyond capacity, wake."""
        queue = self.queue
        if len(queue) > self._capacity:  # one pop per append: after shutdown, what was queued before stays
            try:
                queue.pop()  # the newest: the span just appended (or one appended beside it on another thread)
            except IndexError:
                pass
            else:
                self.dropped += 1
        if len(queue) >= self._batch_size and not self._signalled:
            self._signalled = True
            self._wakeup.set()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Export every span queued so far (on the calling thread); False if shut down or timed out."""
        if self._stopping:
            return False
        if not self._export_lock.acquire(timeout=max(timeout_millis, 0) / 1000):
            return False
        try:
            self._export_queued()
        finally:
            self._export_lock.release()
        return True

    def shutdown(self, timeout_millis: int = 30_000) -> None:
        """Export what is queued, stop the worker and shut the exporter down (once)."""
        if self._stopping:
            return
        self._stopping = True
        self._capacity = 0
        self.wake_at = 0  # every span a ClientSpan appends from now on is dropped by overflow()
        self._wakeup.set()
        self._worker.join(max(timeout_millis, 0) / 1000)
        self.exporter.shutdown()

    def _start_worker(self) -> threading.Thread:
        worker = threading.Thread(target=self._run, name="meshkit-span-export", daemon=True)
        worker.start()
        return worker

    def _after_fork(self) -> None:
        self.queue.clear()
        self._export_lock = threading.Lock()
        self._wakeup = threading.Event()
        self._signalled = False
        if not self._stopping:
            self._worker = self._start_worker()

    def _run(self) -> None:
        attach(set_value(SUPPRESS_INSTRUMENTATION, True))  # the exporter's own calls are not traced
        while not self._stopping:
            self._wakeup.wait(self._delay)
            self._wakeup.clear()
            self._signalled = False
            with self._export_lock:
                self._export_queued()
        with self._export_lock:
            self._export_queued()  # shutdown: what was queued before it goes out

    def _export_queued(self) -> None:
        """Export the spans queued now, in batches (the caller holds the export lock)."""
        queue, popleft, size = self.queue, self.queue.popleft, self._batch_size
        pending = len(queue)
        while pending > 0:
            count = min(size, pending)
            pending -= count
            self._export([popleft() for _ in range(count)])
        if self.dropped != self._dropped_logged:
            logger.warning("span export queue full: %d spans dropped so far", self.dropped)
            self._dropped_logged = self.dropped

    def _export(self, batch: list[ReadableSpan]) -> None:
        try:
            result = self.exporter.export(batch)
        except Exception:
            logger.exception(
                "span exporter %s raised; %d spans lost", type(self.exporter).__name__, len(batch)
            )
            self.failed += len(batch)
            return
        if result is SpanExportResult.SUCCESS:
            self.exported += len(batch)
        else:
            self.failed += len(batch)
