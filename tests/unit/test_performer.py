"""The performer: one filter pipeline for sync and async jobs, and the election of what
a run comes to. No server: the performer stores nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest

from taskfire import Deleted, Failed, Scheduled, Succeeded, current_job, job
from taskfire.context import CancellationToken
from taskfire.filters import JobFilter, PerformedContext, PerformingContext
from taskfire.payload import decode_value, encode_args
from taskfire.retries import default_delay
from taskfire.server.metrics import JobMetrics
from taskfire.server.performer import Performer
from taskfire.storage import FetchedJob


class Recorder(JobFilter):
    """Records the hooks it saw, and what on_performed was shown."""

    def __init__(self, cancel: str | None = None, handle: Any = None) -> None:
        self.seen: list[str] = []
        self.cancel, self.handle = cancel, handle

    def on_performing(self, ctx: PerformingContext) -> None:
        self.seen.append(f"performing {ctx.job.name}")
        if self.cancel:
            ctx.cancel(self.cancel)

    def on_performed(self, ctx: PerformedContext) -> None:
        self.seen.append(f"performed result={ctx.result!r} exception={type(ctx.exception).__name__}")
        if self.handle is not None and ctx.exception is not None:
            ctx.exception_handled, ctx.result = True, self.handle


watch = Recorder()


@job(filters=[watch])
def add(a: int, b: int) -> int:
    return a + b


@job(filters=[watch])
async def add_later(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return a + b


@job(filters=[watch], retries=0)
async def broken_later() -> None:
    raise ValueError("no")


@job(retry_delays=[7.0], retries=2)
def flaky() -> None:
    raise ConnectionError("down")


@job
def flaky_by_default() -> None:
    raise ConnectionError("down")


@job(filters=[Recorder(cancel="not today")])
def cancelled() -> str:
    raise AssertionError("a cancelled job must not run")


@job(filters=[Recorder(handle="recovered")], retries=0)
def handled() -> None:
    raise KeyError("missing")


@job
def whoami() -> str:
    ctx = current_job()
    assert ctx is not None
    return f"{ctx.id} attempt {ctx.attempt}"


def fetched(fn: Any, *args: Any, retries: int = 0, name: str | None = None) -> FetchedJob:
    return FetchedJob(id="j1", token="w:1", fn=name or fn.name, args=encode_args("t", args, {}), queue="default",
                      opts=b"", retries=retries, created_ms=1000, fetched_ms=1005)


@pytest.fixture
def performer() -> Performer:
    watch.seen.clear()
    return Performer("w", ["tests.unit.test_performer"], JobMetrics(), lambda: None, None)  # type: ignore[arg-type]


def run(performer: Performer, fn: Any, *args: Any, **kwargs: Any) -> Any:
    job_ = fetched(fn, *args, **kwargs)
    if fn is not None and fn.is_async:
        return asyncio.run(performer.perform_async(job_, CancellationToken(), None))
    return performer.perform(job_, CancellationToken(), None)


def test_a_sync_job_runs_inside_its_filters(performer):
    outcome = run(performer, add, 2, 3)
    assert isinstance(outcome.state, Succeeded) and decode_value(outcome.fields["result"]) == 5
    assert outcome.state.latency_ms == 5
    assert watch.seen == ["performing tests.unit.test_performer:add", "performed result=5 exception=NoneType"]


def test_an_async_job_runs_inside_the_same_filters(performer):
    outcome = run(performer, add_later, 2, 3)
    assert isinstance(outcome.state, Succeeded) and decode_value(outcome.fields["result"]) == 5
    assert watch.seen == ["performing tests.unit.test_performer:add_later", "performed result=5 exception=NoneType"]


def test_an_async_jobs_filter_sees_its_exception(performer):
    outcome = run(performer, broken_later)
    assert isinstance(outcome.state, Failed) and outcome.state.exception_type == "ValueError"
    assert watch.seen[-1] == "performed result=None exception=ValueError"


def test_a_failure_becomes_a_scheduled_retry_kept_in_the_history(performer):
    outcome = run(performer, flaky, retries=1)
    assert isinstance(outcome.state, Scheduled) and outcome.state.delay == 7.0
    assert outcome.state.reason == "Retry attempt 2 of 2: down"
    assert [type(s) for s in outcome.elected] == [Failed] and outcome.fields["retries"] == "2"


def test_a_failure_after_the_last_retry_stays_failed(performer):
    outcome = run(performer, flaky, retries=2)
    assert isinstance(outcome.state, Failed) and outcome.elected == [] and "retries" not in outcome.fields


def test_the_default_schedule_is_hangfires_curve(performer):
    # Given a job that sets no retry_delays, when it fails, then its first retry waits
    # 15 to 44 s and it has 10 retries, as Hangfire's AutomaticRetry does
    outcome = run(performer, flaky_by_default)
    assert isinstance(outcome.state, Scheduled) and outcome.state.reason.startswith("Retry attempt 1 of 10:")
    assert 15 <= outcome.state.delay <= 44
    assert all(15 <= default_delay(1) <= 44 for _ in range(50))
    assert all(9 ** 4 + 15 <= default_delay(10) <= 9 ** 4 + 15 + 29 * 10 for _ in range(50))


def test_a_filter_that_cancels_the_run_deletes_the_job_unrun(performer):
    outcome = run(performer, cancelled)
    assert isinstance(outcome.state, Deleted)
    assert outcome.state.reason == "Not run: Recorder cancelled it: not today"
    assert cancelled.filters[0].seen == ["performing tests.unit.test_performer:cancelled"]


def test_a_filter_may_handle_the_exception(performer):
    outcome = run(performer, handled)
    assert isinstance(outcome.state, Succeeded) and decode_value(outcome.fields["result"]) == "recovered"


def test_a_function_this_worker_does_not_know_fails_at_once(performer):
    outcome = run(performer, None, name="nowhere:job")
    assert isinstance(outcome.state, Failed) and outcome.state.exception_type == "taskfire.errors.UnknownJobError"
    assert "'nowhere:job' is not a @job registered in this worker" in outcome.state.exception_message
    assert outcome.elected == []  # retrying cannot help


def test_a_job_sees_itself_as_the_current_job(performer):
    outcome = run(performer, whoami, retries=2)
    assert decode_value(outcome.fields["result"]) == "j1 attempt 3"
    assert current_job() is None  # and only while it runs


@pytest.mark.parametrize("state", [
    Succeeded(duration_ms=1.234, latency_ms=5), Succeeded(duration_ms=0.5), Succeeded(duration_ms=1e-05, latency_ms=0),
    Succeeded(duration_ms=3.5e16, latency_ms=10**12), Succeeded(duration_ms=1.0, latency_ms=3, result_error="x"),
    Succeeded(duration_ms=2.0, latency_ms=7, reason="r"), Succeeded()])
def test_a_success_writes_the_entry_any_state_would(state):
    from taskfire.states import State
    assert msgspec.json.decode(state.entry()) == msgspec.json.decode(State.entry(state))
