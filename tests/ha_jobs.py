"""Jobs of the failover tests. They note their runs in a file, not in Redis: what a failover
loses from Redis must not take the evidence of a run with it."""

from __future__ import annotations

import os
import time

from taskfire import current_job, job


def _note() -> None:
    """Appends "<start time> <job id>" to the file TASKFIRE_TEST_RUNS_FILE (one short
    O_APPEND write per run, so the worker processes' lines never mix)."""
    context = current_job()
    assert context is not None
    with open(os.environ["TASKFIRE_TEST_RUNS_FILE"], "a") as runs:
        runs.write(f"{time.time():.4f} {context.id}\n")


@job
def note_run(pause: float) -> None:
    """Notes its run (see _note), then sleeps."""
    _note()
    time.sleep(pause)


@job
def note_run_until(gate: str) -> None:
    """Notes its run, then runs until the file `gate` exists (a minute at most): the
    test decides when the jobs end, a shard's primary down meanwhile, say."""
    _note()
    deadline = time.monotonic() + 60
    while not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.01)
