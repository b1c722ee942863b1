"""OpenTelemetry tracing for jobs (`pip install 'taskfire[otel]'`), as a job filter:

    from taskfire.contrib.otel import TracingFilter
    tf.filters.add(TracingFilter())      # in the enqueuing process and in the worker's job module

Enqueueing opens a producer span, "enqueue <queue>" (messaging.operation.type "create"),
as a child of the span current at the call (a web request's, say), and stores its
context with the job as the parameter "trace" (W3C traceparent). Each run opens a
consumer span, "process <queue>", linked to that context, current while the job runs
(so the job's own spans are its children), with the function, queue, job id, attempt
and outcome (the state the run ended in: Succeeded, Scheduled for a retry, Failed,
Deleted), following OpenTelemetry's messaging semantic conventions. A failed run records
its exception and an error status.

Spans go to the tracer provider given, else the global one (set it up in the worker's
process too, e.g. in the job module). Reading the trace context costs a run one Redis
read (HGET), only when the filter is installed.
"""

from __future__ import annotations

import threading

from opentelemetry import context, propagate, trace
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from ..filters import CreatingContext, ElectStateContext, JobFilter, PerformingContext

#: The job parameter that carries the enqueuing span's context.
TRACE_PARAM = "trace"
SYSTEM = "taskfire"


class TracingFilter(JobFilter):
    """Producer spans for enqueues, consumer spans for runs (see the module's docstring)."""

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        self.tracer = trace.get_tracer("taskfire", tracer_provider=tracer_provider)
        self._running: dict[str, tuple[trace.Span, object]] = {}  # job id -> its span, the context token
        self._lock = threading.Lock()

    def on_creating(self, ctx: CreatingContext) -> None:
        with self.tracer.start_as_current_span(f"enqueue {ctx.queue}", kind=SpanKind.PRODUCER, attributes={
                "messaging.system": SYSTEM, "messaging.operation.type": "create",
                "messaging.operation.name": "enqueue", "messaging.destination.name": ctx.queue,
                "messaging.message.id": ctx.job_id, "messaging.taskfire.function": ctx.job_name}):
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
        ctx.set_param(TRACE_PARAM, carrier)

    def on_performing(self, ctx: PerformingContext) -> None:
        job = ctx.job
        carrier = job.get_param(TRACE_PARAM) or {}
        linked = trace.get_current_span(propagate.extract(carrier)).get_span_context()
        span = self.tracer.start_span(
            f"process {job.queue}", kind=SpanKind.CONSUMER, context=context.Context(),  # a root: linked, not a child
            links=[Link(linked)] if linked.is_valid else [],
            attributes={"messaging.system": SYSTEM, "messaging.operation.type": "process",
                        "messaging.operation.name": "process", "messaging.destination.name": job.queue,
                        "messaging.message.id": job.id, "messaging.taskfire.function": job.name,
                        "messaging.taskfire.attempt": job.attempt, "messaging.client.id": job.worker_id})
        token = context.attach(trace.set_span_in_context(span))
        with self._lock:
            self._running[job.id] = (span, token)

    def on_state_election(self, ctx: ElectStateContext) -> None:
        """The run's outcome is elected (the retry policy has had its say): the span ends
        with it, in the thread or task the run had."""
        with self._lock:
            running = self._running.pop(ctx.job_id, None)
        if running is None:
            return  # not a run of this process: a change asked for by a client
        span, token = running
        span.set_attribute("messaging.taskfire.outcome", ctx.candidate.name)
        if ctx.exception is not None:
            span.record_exception(ctx.exception)
            span.set_status(Status(StatusCode.ERROR, f"{type(ctx.exception).__name__}: {ctx.exception}"))
        context.detach(token)  # type: ignore[arg-type]
        span.end()


__all__ = ["TracingFilter", "TRACE_PARAM"]
