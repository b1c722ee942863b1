"""The OpenTelemetry filter with the SDK's in-memory exporter, real Redis and a real
worker: the enqueuing span's context travels with the job, and each run's consumer span
is linked to it."""

from __future__ import annotations

from typing import Any

import pytest

from tests import otel_jobs

MODULES = ("tests.otel_jobs",)


@pytest.fixture(autouse=True)
def no_spans_yet():
    otel_jobs.EXPORTER.clear()


def worker_spans(tf: Any) -> list[dict[str, Any]]:
    return tf.wait(otel_jobs.finished_spans.enqueue(), timeout=30).result


def test_a_run_is_a_consumer_span_linked_to_the_enqueuing_span(tf, start_worker):
    # Given a job enqueued inside a request's span
    with otel_jobs.TRACER.start_as_current_span("POST /orders") as request:
        job_id = otel_jobs.traced.enqueue(21)
    # Then the enqueue is a producer span, child of the request's, whose context the job carries
    [enqueue] = [otel_jobs.described(s) for s in otel_jobs.EXPORTER.get_finished_spans() if s.kind.name == "PRODUCER"]
    assert enqueue["name"] == "enqueue default"
    assert enqueue["parent_id"] == f"{request.get_span_context().span_id:016x}"
    assert enqueue["attributes"] == {
        "messaging.system": "taskfire", "messaging.operation.type": "create", "messaging.operation.name": "enqueue",
        "messaging.destination.name": "default", "messaging.message.id": job_id,
        "messaging.taskfire.function": "tests.otel_jobs:traced"}
    traceparent = tf.get_job(job_id).params["trace"]["traceparent"]
    assert traceparent.startswith(f"00-{enqueue['trace_id']}-{enqueue['span_id']}-")  # then the trace flags
    # When a worker runs it
    start_worker(modules=MODULES)
    assert tf.wait(job_id, timeout=30).result == 42
    spans = worker_spans(tf)
    # Then the run is a consumer span, linked to the producer span, parent of the job's own
    [run] = [s for s in spans if s["name"] == "process default"]
    assert run["kind"] == "CONSUMER" and run["parent_id"] is None and run["status"] == "UNSET"
    assert run["links"] == [[enqueue["trace_id"], enqueue["span_id"]]]
    attributes = run["attributes"]
    assert attributes.pop("messaging.client.id").endswith("/0")  # the worker process
    assert attributes == {
        "messaging.system": "taskfire", "messaging.operation.type": "process", "messaging.operation.name": "process",
        "messaging.destination.name": "default", "messaging.message.id": job_id,
        "messaging.taskfire.function": "tests.otel_jobs:traced", "messaging.taskfire.attempt": 1,
        "messaging.taskfire.outcome": "Succeeded"}
    [inside] = [s for s in spans if s["name"] == "inside the job"]
    assert inside["parent_id"] == run["span_id"] and inside["trace_id"] == run["trace_id"]


def test_each_attempt_is_a_span_with_its_outcome_and_a_failure_records_its_exception(tf, start_worker):
    job_id = otel_jobs.fails_then_succeeds.enqueue()
    [enqueue] = otel_jobs.EXPORTER.get_finished_spans()
    start_worker(modules=MODULES)
    assert tf.wait(job_id, timeout=30).state == "Succeeded"
    runs = sorted((s for s in worker_spans(tf) if s["name"] == "process default"),
                  key=lambda s: s["attributes"]["messaging.taskfire.attempt"])
    assert [(r["attributes"]["messaging.taskfire.attempt"], r["attributes"]["messaging.taskfire.outcome"], r["status"])
            for r in runs] == [(1, "Scheduled", "ERROR"), (2, "Succeeded", "UNSET")]
    assert runs[0]["events"] == ["exception"] and runs[1]["events"] == []
    link = [f"{enqueue.context.trace_id:032x}", f"{enqueue.context.span_id:016x}"]
    assert all(r["links"] == [link] for r in runs)
