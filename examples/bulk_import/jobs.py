"""The job that imports one bulk request's platforms, run by `taskfire worker
examples.bulk_import.jobs`."""

from __future__ import annotations

import itertools
import os
import time

from taskfire import Failed, current_job, job
from taskfire.filters import ApplyStateContext, JobFilter

from .db import Database, Item

#: Items per transaction, and so how often the counts a client sees move.
CHUNK = 100


class FailImportWithJob(JobFilter):
    """When the job fails for good (its retries spent), its import is Failed too, with
    the reason, rather than Processing forever."""

    def on_state_applied(self, ctx: ApplyStateContext) -> None:
        if isinstance(ctx.new_state, Failed):
            db = Database.from_env()
            import_id = db.import_of_job(ctx.job_id)
            if import_id is not None:
                db.fail(import_id, f"the import stopped: {ctx.new_state.exception_type}: "
                                   f"{ctx.new_state.exception_message}")


@job(retries=3, retry_delays=[5, 30, 120], filters=[FailImportWithJob()])
def import_platforms(import_id: str) -> dict[str, int | str]:
    """Creates the import's platforms, 100 per transaction, reporting progress after
    each. A retry (or a second delivery) goes on from the last committed chunk."""
    db = Database.from_env()
    ctx = current_job()
    assert ctx is not None
    # BULK_IMPORT_RECORD_DELAY: seconds of pretend work per record, to watch counts move.
    delay = float(os.environ.get("BULK_IMPORT_RECORD_DELAY") or 0)

    def per_item(item: Item) -> None:
        ctx.cancellation.raise_if_cancelled()  # a worker shutting down: the rest waits for the next run
        if delay:
            time.sleep(delay)

    db.start(import_id)
    status = db.status(import_id)
    assert status is not None, f"no import {import_id}"
    pending = db.unprocessed(import_id)
    while chunk := list(itertools.islice(pending, CHUNK)):
        status = db.import_chunk(import_id, status.tenant, chunk, per_item)
        ctx.progress(status.processed, status.total)
    final = db.finish(import_id)
    ctx.progress(final.processed, final.total)
    return {"status": final.status, "succeeded": final.succeeded, "failed": final.failed}
