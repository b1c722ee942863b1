"""AsyncTaskfire on real servers with real workers: the sync client's verbs as
coroutines, storing the same jobs through the same library and layouts."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable, TypeVar

import pytest

from taskfire import AsyncTaskfire, ConfigError, NotFoundError, Succeeded
from taskfire.filters import CreatingContext, JobFilter, global_filters
from tests import jobs
from tests.conftest import report, wait_for

T = TypeVar("T")


def run(tf: Any, body: Callable[[AsyncTaskfire], Awaitable[T]]) -> T:
    """Runs `body` with an AsyncTaskfire on the test's server and prefix, on a fresh loop."""
    async def main() -> T:
        async with AsyncTaskfire(tf.url, prefix=tf.prefix) as atf:
            return await body(atf)
    return asyncio.run(main())


def test_a_job_enqueued_from_asyncio_runs_and_is_awaited(tf, start_worker):
    start_worker()

    async def body(atf: AsyncTaskfire) -> Any:
        job_id = await atf.enqueue(jobs.add, 2, 3)
        also = await jobs.add.enqueue_async(10, 20)  # through the newest AsyncTaskfire
        return job_id, await atf.wait(job_id, timeout=30), await atf.wait(also, timeout=30)

    job_id, job, also = run(tf, body)
    assert job.state == "Succeeded" and job.result == 5 and also.result == 30
    assert tf.get_job(job_id) == job  # the sync client reads the very same record


def test_the_async_client_stores_what_the_sync_client_would(tf):
    async def body(atf: AsyncTaskfire) -> Any:
        later = await atf.schedule(jobs.echo, 3600, "later")
        many = await atf.enqueue_many(jobs.add, [(1, 2), {"a": 3, "b": 4}])
        return later, many, await atf.get_jobs([later, *many, "missing"])

    later, many, read = run(tf, body)
    assert [j.state if j else None for j in read] == ["Scheduled", "Enqueued", "Enqueued", None]
    assert read[1].args == [1, 2] and read[2].kwargs == {"a": 3, "b": 4}
    assert tf.get_job(later).due_at == read[0].due_at
    assert tf.queue_lengths()["default"] == 2
    with pytest.raises(TypeError, match="missing a required argument: 'b'"):
        run(tf, lambda atf: atf.enqueue(jobs.add, 1))  # checked against the signature, as sync


def test_async_state_changes_cancel_requeue_and_params(tf):
    async def body(atf: AsyncTaskfire) -> Any:
        a = await atf.schedule(jobs.echo, 3600, "a")
        b = await atf.enqueue(jobs.echo, "b")
        await atf.set_job_param(b, "tenant", {"id": 7})
        assert await atf.cancel(a) and not await atf.cancel(a)
        assert await atf.requeue(a)
        assert await atf.change_state(b, Succeeded(), "Enqueued", result="done by hand")
        assert not await atf.change_state(b, Succeeded(), "Enqueued")
        assert await atf.delete(a, "not needed")
        return a, b, await atf.get_job_param(b, "tenant")

    a, b, param = run(tf, body)
    assert param == {"id": 7}
    assert [e.state for e in tf.get_job(a).history] == ["Scheduled", "Deleted", "Enqueued", "Deleted"]
    assert tf.get_job(b).result == "done by hand"


def test_a_running_job_is_asked_to_stop_by_an_async_cancel(tf, start_worker):
    start_worker()
    job_id = jobs.until_cancelled.enqueue()
    wait_for(lambda: tf.get_job(job_id).state == "Processing", 20, "the job to run")
    job = run(tf, lambda atf: _cancel_and_wait(atf, job_id))
    assert job.state == "Deleted" and job.reason == "Cancelled by request: the job stopped"


async def _cancel_and_wait(atf: AsyncTaskfire, job_id: str) -> Any:
    assert await atf.cancel(job_id)
    return await atf.wait(job_id, timeout=20)


def test_continuations_and_batches_from_asyncio(tf, start_worker):
    async def body(atf: AsyncTaskfire) -> Any:
        async with atf.batch() as b:
            b.enqueue(jobs.add, 1, 1)
            with b.batch() as inner:
                inner.enqueue(jobs.add, 2, 2)
            b.continue_with(jobs.echo, "after the batch")
        parent = await atf.enqueue(jobs.echo, "parent")
        child = await atf.continue_with(parent, jobs.echo, "child")
        with pytest.raises(ConfigError, match="there is no such job"):
            await atf.continue_with("missing", jobs.echo, "x")
        start_worker()
        batch = await atf.wait_batch(b.id, timeout=30)
        return batch, await atf.wait(child, timeout=30)

    batch, child = run(tf, body)
    assert batch.outcome == "succeeded" and batch.total == 2 and batch.succeeded == 2
    assert child.result == "child" and child.parent_id is not None
    def after_the_batch() -> list[Any]:  # the batch's continuation, released when it finished
        return [j for j in map(tf.get_job, tf.job_ids_in_state("Succeeded")) if j and j.result == "after the batch"]

    wait_for(after_the_batch, 20, "the batch's continuation to run")
    assert len(after_the_batch()) == 1


def test_waiting_does_not_block_the_event_loop(tf):
    # Given a job only another coroutine on the same loop will finish (by deleting it)
    async def body(atf: AsyncTaskfire) -> Any:
        job_id = await atf.schedule(jobs.echo, 3600, "later")
        waiter = asyncio.create_task(atf.wait(job_id, timeout=10))
        while int(await atf.storage.redis.hget(atf.storage.keys.job(job_id), "waited") or 0) == 0:
            await asyncio.sleep(0.01)
        # When that coroutine runs while the wait is on: a wait that blocked the loop
        # would keep it from running, and time out
        assert await atf.delete(job_id, "finished by the other coroutine")
        return await waiter

    assert run(tf, body).reason == "finished by the other coroutine"


def test_client_filters_run_for_async_enqueues(tf):
    class Tenant(JobFilter):
        def on_creating(self, ctx: CreatingContext) -> None:
            ctx.set_param("tenant", "acme")

    f = global_filters.add(Tenant())
    try:
        job_id = run(tf, lambda atf: atf.enqueue(jobs.echo, "x"))
    finally:
        global_filters.remove(f)
    assert tf.get_job(job_id).params == {"tenant": "acme"}


def test_waiting_for_nothing_raises(tf):
    with pytest.raises(NotFoundError):
        run(tf, lambda atf: atf.wait("nope", timeout=1))
    job_id = jobs.echo.schedule(3600, "later")
    with pytest.raises(TimeoutError, match="it is Scheduled"):
        run(tf, lambda atf: atf.wait(job_id, timeout=0.2))


def test_calls_of_concurrent_tasks_share_round_trips(tf):
    async def body(atf: AsyncTaskfire) -> Any:
        exchanges = 0
        exchange = atf.storage.scripts._exchange

        async def counted(commands: Any) -> Any:
            nonlocal exchanges
            exchanges += 1
            return await exchange(commands)

        atf.storage.scripts._exchange = counted  # type: ignore[method-assign]
        ids = await asyncio.gather(*(atf.enqueue(jobs.add, i, i) for i in range(100)))
        return exchanges, ids

    exchanges, ids = run(tf, body)
    assert len(set(ids)) == 100 and tf.queue_lengths()["default"] == 100
    assert [j.args for j in tf.get_jobs(ids)] == [[i, i] for i in range(100)]  # each task got its own job's id
    assert exchanges <= 10, exchanges  # the first call alone, then the others together (plus a library load)
    report(f"enqueue: 100 concurrent AsyncTaskfire enqueues in {exchanges} round trips")


def test_an_error_reply_reaches_only_the_task_whose_call_it_was(tf):
    async def body(atf: AsyncTaskfire) -> Any:
        good = atf.enqueue(jobs.add, 1, 2)
        bad = atf.storage.scripts.call("transition", ["too", "few"])  # a layout the script refuses
        return await asyncio.gather(good, bad, return_exceptions=True)

    good, bad = run(tf, body)
    assert isinstance(good, str) and tf.get_job(good).args == [1, 2]
    assert isinstance(bad, Exception) and not isinstance(bad, AssertionError)


@pytest.mark.parametrize("server", ["redis"], indirect=True)
def test_enqueue_rate_of_100_tasks_on_one_loop_against_one_sync_thread(tf):
    n = 4000

    def sync_rate() -> float:
        started = time.perf_counter()
        for _ in range(n):
            tf.enqueue(jobs.echo, 1)
        return n / (time.perf_counter() - started)

    async def async_rate(atf: AsyncTaskfire) -> float:
        async def task(count: int) -> None:
            for _ in range(count):
                await atf.enqueue(jobs.echo, 1)

        await atf.enqueue(jobs.echo, 1)  # the library is loaded, a connection made
        started = time.perf_counter()
        await asyncio.gather(*(task(n // 100) for _ in range(100)))
        return n / (time.perf_counter() - started)

    sync = sync_rate()
    concurrent = run(tf, async_rate)
    assert tf.queue_lengths()["default"] == 2 * n + 1
    report(f"enqueue: AsyncTaskfire, 100 tasks on one event loop {concurrent:,.0f} jobs/s; "
           f"Taskfire, one thread {sync:,.0f} jobs/s ({concurrent / sync:.2f}x)")
