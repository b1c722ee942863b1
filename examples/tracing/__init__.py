"""Jobs in traces (taskfire.contrib.otel): a checkout enqueues two jobs inside its span;
the worker's runs are consumer spans linked to the enqueues, a failed attempt and its
retry each a span of their own, and a job's own spans are children of its run.

    python -m examples.tracing      # the embedded server, a worker, a checkout, then the spans

Spans go to a JSON-lines file (TRACING_SPANS, spans.jsonl by default) written by both
processes; a real application sends them to its tracing backend with an OTLP exporter
instead.
"""
