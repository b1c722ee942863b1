"""The tracing example's jobs, traced by taskfire.contrib.otel. Every process that imports
this module (the example's, the worker's) writes the spans it finishes as JSON lines to
the file TRACING_SPANS names: a stand-in for an OTLP exporter and a tracing backend."""

from __future__ import annotations

import json
import os
from typing import Sequence

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from taskfire import current_job, job
from taskfire.contrib.otel import TracingFilter
from taskfire.filters import global_filters


class JsonLinesExporter(SpanExporter):
    def __init__(self, path: str) -> None:
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with open(self.path, "a") as out:
            for s in spans:
                out.write(json.dumps({
                    "name": s.name, "trace": f"{s.context.trace_id:032x}", "span": f"{s.context.span_id:016x}",
                    "parent": f"{s.parent.span_id:016x}" if s.parent else None,
                    "links": [f"{link.context.span_id:016x}" for link in s.links],
                    "attributes": dict(s.attributes or {}), "status": s.status.status_code.name}) + "\n")
        return SpanExportResult.SUCCESS


provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(JsonLinesExporter(os.environ.get("TRACING_SPANS", "spans.jsonl"))))
trace.set_tracer_provider(provider)
global_filters.add(TracingFilter())
tracer = trace.get_tracer("examples.tracing")


@job(retries=1, retry_delays=[0.2])
def charge_card(order_id: int) -> str:
    with tracer.start_as_current_span("call the payment provider"):
        if current_job().attempt == 1:
            raise ConnectionError("the payment provider timed out")
    return f"order {order_id} charged"


@job
def send_receipt(order_id: int) -> str:
    return f"receipt for order {order_id}"
