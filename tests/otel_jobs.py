"""Traced jobs: each process that imports this module (the test's, a worker's) records
its spans in its own in-memory exporter; `finished_spans` hands a worker's to the test."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from taskfire import current_job, job
from taskfire.contrib.otel import TracingFilter

EXPORTER = InMemorySpanExporter()
PROVIDER = TracerProvider()
PROVIDER.add_span_processor(SimpleSpanProcessor(EXPORTER))
TRACER = PROVIDER.get_tracer("tests")
TRACING = TracingFilter(tracer_provider=PROVIDER)


@job(filters=[TRACING])
def traced(n: int) -> int:
    with TRACER.start_as_current_span("inside the job"):
        return n * 2


@job(filters=[TRACING], retries=1, retry_delays=[0.1])
def fails_then_succeeds() -> str:
    if current_job().attempt == 1:
        raise ValueError("first attempt fails")
    return "second attempt"


def described(span: Any) -> dict[str, Any]:
    return {"name": span.name, "kind": span.kind.name, "trace_id": f"{span.context.trace_id:032x}",
            "span_id": f"{span.context.span_id:016x}",
            "parent_id": f"{span.parent.span_id:016x}" if span.parent else None,
            "attributes": dict(span.attributes), "status": span.status.status_code.name,
            "events": [e.name for e in span.events],
            "links": [(f"{lk.context.trace_id:032x}", f"{lk.context.span_id:016x}") for lk in span.links]}


@job
def finished_spans() -> list[dict[str, Any]]:
    """The spans this worker process has finished so far."""
    return [described(s) for s in EXPORTER.get_finished_spans()]
