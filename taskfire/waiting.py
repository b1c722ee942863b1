"""What `tf.wait` and `tf.wait_batch` make of a wait (sync and asyncio clients alike):
the finished job or batch, or the error that says why there is none."""

from __future__ import annotations

from .batches import Batch
from .errors import NotFoundError
from .records import Job
from .storage import MISSING, WAITING


def outcome_of_job(job_id: str, timeout: float | None, status: int, job: Job | None) -> Job:
    """The job once it has an outcome; NotFoundError or TimeoutError otherwise."""
    if status == MISSING or job is None:
        raise NotFoundError(f"no job {job_id!r}: it was never created, or it expired after its retention")
    if status == WAITING:
        raise TimeoutError(f"job {job_id} ({job.function}) has no outcome after {timeout:g} s: it is {job.state}")
    return job


def outcome_of_batch(batch_id: str, timeout: float | None, status: int, batch: Batch | None) -> Batch:
    """The batch once every member has an outcome; NotFoundError or TimeoutError otherwise."""
    if status == MISSING or batch is None:
        raise NotFoundError(f"no batch {batch_id!r}: it was never created, or it expired after its retention")
    if status == WAITING:
        raise TimeoutError(f"batch {batch_id} has no outcome after {timeout:g} s: {batch.pending} of its "
                           f"{batch.total} member(s) still pending")
    return batch
