"""Traces: one trace from the GraphQL request that queues a task, through the queue, into the worker's work.

Off unless the standard OpenTelemetry variables ask for it (``Settings.tracing_on``); off, every span here is
the API's no-op span and nothing is recorded or read. On, the request's trace context is stored in the task's
row as a W3C ``traceparent`` and the worker continues the trace from it. The OpenTelemetry SDK reads the other
OTEL_* variables itself (OTEL_EXPORTER_OTLP_HEADERS, OTEL_BSP_SCHEDULE_DELAY, OTEL_RESOURCE_ATTRIBUTES, ...).

A training's fetch, decode and inference run interleaved over thousands of identifiers, so each is one span
from its first start to its last end, with how many times it ran and its busy seconds, rather than a span per
identifier (:class:`PhaseClock`).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from gateway.settings import Settings

log = logging.getLogger(__name__)

tracer = trace.get_tracer("engineshed")  # a proxy: the no-op tracer until configure() installs a provider
_provider: list[Any] = []  # the SDK provider this process installed, if any


def configure(settings: Settings, role: str) -> bool:
    """Install the SDK's tracer provider when tracing is on; the service is named OTEL_SERVICE_NAME, else
    engineshed-<role>."""
    if not settings.tracing_on or _provider:
        return bool(_provider)
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SpanExporter,
    )

    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: settings.otel_service_name or f"engineshed-{role}"}))
    exporters: list[SpanExporter] = []
    for name in (settings.otel_traces_exporter or "otlp").lower().split(","):
        if name.strip() == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                OTLPSpanExporter,
            )

            exporters.append(OTLPSpanExporter())  # OTLP over HTTP/protobuf; the endpoint comes from OTEL_*
        elif name.strip() == "console":
            exporters.append(ConsoleSpanExporter())
        elif name.strip() not in ("", "none"):
            log.warning("OTEL_TRACES_EXPORTER: %r is not supported here (otlp, console); ignored", name.strip())
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _provider.append(provider)
    log.info("traces on: exported as %s", settings.otel_service_name or f"engineshed-{role}")
    return True


def shutdown() -> None:
    """Export what is buffered and stop (at process end)."""
    while _provider:
        _provider.pop().shutdown()


def enabled() -> bool:
    return bool(_provider)


def traceparent() -> str | None:
    """The current span's W3C trace context, to store with queued work; None when there is no span to continue."""
    if not trace.get_current_span().get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent")


@contextlib.contextmanager
def request_span(kind: str, field: str) -> Iterator[Span]:
    """The span of one GraphQL request, named like "mutation createJob"."""
    with tracer.start_as_current_span(f"{kind} {field}", kind=SpanKind.SERVER, attributes={
        "graphql.operation.type": kind, "graphql.operation.name": field,
    }) as span:
        yield span


@contextlib.contextmanager
def task_span(name: str, parent: str | None, attributes: dict[str, Any]) -> Iterator[Span]:
    """A worker's span for one task attempt, a child of the request that queued it (``parent``: its traceparent)."""
    context = propagate.extract({"traceparent": parent}) if parent else None
    with tracer.start_as_current_span(name, context=context, kind=SpanKind.CONSUMER, attributes=attributes) as span:
        yield span


def span(name: str, **attributes: Any) -> contextlib.AbstractContextManager[Span]:
    return tracer.start_as_current_span(name, attributes=attributes)


def outcome(current: Span, code: str, *, ok: bool) -> None:
    """Record how the work of ``current`` ended (an error status unless ``ok``)."""
    current.set_attribute("engineshed.outcome", code)
    if not ok:
        current.set_status(Status(StatusCode.ERROR, code))


class PhaseClock:
    """When each phase of a training ran: its first start, last end, count and busy nanoseconds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.phases: dict[str, list[int]] = {}

    def add(self, phase: str, start_ns: int, end_ns: int, count: int = 1) -> None:
        with self._lock:
            seen = self.phases.get(phase)
            if seen is None:
                self.phases[phase] = [start_ns, end_ns, count, end_ns - start_ns]
            else:
                seen[0], seen[1] = min(seen[0], start_ns), max(seen[1], end_ns)
                seen[2] += count
                seen[3] += end_ns - start_ns

    @contextlib.contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        start = time.time_ns()
        try:
            yield
        finally:
            self.add(phase, start, time.time_ns())

    def emit(self) -> None:
        """One span per phase, children of the current span, with the times recorded."""
        with self._lock:
            phases = dict(self.phases)
        for phase, (start, end, count, busy) in sorted(phases.items(), key=lambda item: item[1][0]):
            current = tracer.start_span(phase, start_time=start, attributes={
                "engineshed.count": count, "engineshed.busy_seconds": round(busy / 1e9, 6)})
            current.end(end_time=end)


# Clocks of the trainings running in this process: inference batches run on threads the engines own, which
# carry no context, so each batch is added to every running training's clock (exact with one at a time).
_running: set[PhaseClock] = set()


@contextlib.contextmanager
def running(clock: PhaseClock) -> Iterator[None]:
    _running.add(clock)
    try:
        yield
    finally:
        _running.discard(clock)


def inference_ran(start_ns: int, end_ns: int, batch: int) -> None:
    for clock in list(_running):
        clock.add("inference", start_ns, end_ns, batch)


class TimedExecutor(concurrent.futures.Executor):
    """The decode pool as a training's context hands it to its engine: each call's time goes to the clock."""

    def __init__(self, inner: concurrent.futures.Executor, clock: PhaseClock, phase: str) -> None:
        self._inner = inner
        self._clock = clock
        self._phase = phase

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        start = time.time_ns()
        future = self._inner.submit(fn, *args, **kwargs)
        future.add_done_callback(lambda _f: self._clock.add(self._phase, start, time.time_ns()))
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """The pool is the worker's: a training cannot shut it down."""
