"""examples/tracing end to end: `python -m examples.tracing` as a user runs it, on the
session's server, with its real worker; the traces it prints come from both processes'
spans."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.parametrize("server", ["valkey"], indirect=True)


def test_the_checkout_and_its_jobs_runs_make_linked_traces(server, prefix, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKFIRE_")}
    env.update(TASKFIRE_REDIS_URL=server.url, TASKFIRE_PREFIX=prefix, TRACING_SPANS=str(tmp_path / "spans.jsonl"))
    done = subprocess.run([sys.executable, "-m", "examples.tracing"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "receipt for order 42"
    # the checkout's trace: the request and, inside it, its two enqueues
    at = lines.index("POST /checkout")
    assert lines[at + 1:at + 3] == ["  enqueue default [charge_card]", "  enqueue default [send_receipt]"]
    # each run a trace of its own, linked to its enqueue; the failed attempt, its retry
    runs = {line for line in lines if line.startswith("process default")}
    assert runs == {
        "process default [charge_card] [attempt 1] [outcome Scheduled] [ERROR] [linked to the enqueue of charge_card]",
        "process default [charge_card] [attempt 2] [outcome Succeeded] [linked to the enqueue of charge_card]",
        "process default [send_receipt] [attempt 1] [outcome Succeeded] [linked to the enqueue of send_receipt]"}
    # the job's own span is a child of its run's
    failed_run = lines.index("process default [charge_card] [attempt 1] [outcome Scheduled] [ERROR] "
                             "[linked to the enqueue of charge_card]")
    assert lines[failed_run + 1] == "  call the payment provider [ERROR]"
