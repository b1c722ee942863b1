"""Jobs of the failover tests. They note their runs in a file, not in Redis: what a failover
loses from Redis must not take the evidence of a run with it."""

from __future__ import annotations

import os
import time

from taskfire import current_job, job


@job
def note_run(pause: float) -> None:
    """Appends "<start time> <job id>" to the file TASKFIRE_TEST_RUNS_FILE (one short
    O_APPEND write per run, so the worker processes' lines never mix), then sleeps."""
    context = current_job()
    assert context is not None
    with open(os.environ["TASKFIRE_TEST_RUNS_FILE"], "a") as runs:
        runs.write(f"{time.time():.4f} {context.id}\n")
    time.sleep(pause)
