"""`python -m examples.tracing`: a checkout in a span, its jobs run by a worker, and the
spans of both processes printed as the traces they make."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from examples.launcher import running


def main() -> None:
    spans_file = Path(os.environ.setdefault("TRACING_SPANS", str(Path(tempfile.mkdtemp()) / "spans.jsonl")))
    from .jobs import charge_card, send_receipt, tracer

    with running(["examples.tracing.jobs"]) as tf:
        with tracer.start_as_current_span("POST /checkout"):
            charged = charge_card.enqueue(42)
            receipt = send_receipt.continue_with(charged, 42)
        print(tf.wait(receipt, timeout=30).result, flush=True)
        tf.wait(charged, timeout=30)
    spans = [json.loads(line) for line in spans_file.read_text().splitlines()]
    by_id = {s["span"]: s for s in spans}
    for s in spans:
        if s["parent"] is None:
            show(s, spans, by_id, 0)


def show(span: dict, spans: list[dict], by_id: dict[str, dict], depth: int) -> None:
    a = span["attributes"]
    facts = [function(span), f"attempt {a.get('messaging.taskfire.attempt', '')}",
             f"outcome {a.get('messaging.taskfire.outcome', '')}", "ERROR" if span["status"] == "ERROR" else "",
             *(f"linked to the enqueue of {function(by_id[link])}" for link in span["links"] if link in by_id)]
    facts = [f for f in facts if f and not f.endswith(" ")]
    print("  " * depth + span["name"] + "".join(f" [{f}]" for f in facts), flush=True)
    for child in spans:
        if child["parent"] == span["span"]:
            show(child, spans, by_id, depth + 1)


def function(span: dict) -> str:
    return str(span["attributes"].get("messaging.taskfire.function", "")).rpartition(":")[2]


if __name__ == "__main__":
    main()
