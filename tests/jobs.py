"""Job functions the tests enqueue and `taskfire worker tests.jobs` runs. They leave
their traces in Redis, under the test's own prefix, so the test can read them."""

from __future__ import annotations

import dataclasses
import time
from datetime import datetime

from taskfire import JobCancelled, current_job, job
from taskfire.filters import JobFilter
from taskfire.client import default_client


def _redis():
    return default_client().storage.redis


def _key(name: str) -> str:
    return default_client().prefix + "test:" + name


def runs_key(prefix: str) -> str:
    return prefix + "test:runs"


@job
def echo(value):
    return value


@job
def add(a: int, b: int) -> int:
    return a + b


@job(retry_delays=[0.2])  # its own Redis calls fail while Redis restarts: retry soon
def count_run(pause: float = 0.0) -> None:
    """Counts how many times each job id ran (the kill test's duplicate count)."""
    _redis().hincrby(_key("runs"), current_job().id, 1)
    time.sleep(pause)


@job(queue="critical")
def record_critical(tag: str) -> None:
    _redis().rpush(_key("order"), tag)


@job
def record_default(tag: str) -> None:
    _redis().rpush(_key("order"), tag)


@job(queue="low")
def record_low(tag: str) -> None:
    _redis().rpush(_key("order"), tag)


@job
def record_start() -> None:
    _redis().rpush(_key("starts"), repr(time.time()))


@job(retries=5, retry_delays=[0.2])
def fail_times(n: int) -> str:
    attempt = current_job().attempt
    if attempt <= n:
        raise RuntimeError(f"failure {attempt} of {n}")
    return f"succeeded on attempt {attempt}"


@job
def fails_on_the_default_schedule() -> None:
    """No retry options: Hangfire's default policy (10 retries, 15-44 s before the first)."""
    raise RuntimeError("the default retry policy applies")


@job(retries=2, retry_delays=[0.1, 0.2])
def always_fails() -> None:
    raise ValueError("this job always fails")


@job(retries=2, retry_delays=[0.1], on_exhausted="delete")
def fails_then_deleted() -> None:
    raise ValueError("gone after retries")


@job(retries=3, retry_delays=[0.1], retry_on=(ConnectionError,))
def fails_with(kind: str) -> None:
    raise {"connection": ConnectionError, "value": ValueError}[kind]("boom")


@job
def import_broken() -> None:
    import tests.broken_module  # noqa: F401  (raises at import)


@job
def sleep_for(seconds: float) -> str:
    time.sleep(seconds)
    _redis().rpush(_key("slept"), current_job().id)
    return "slept"


@job
def sleep_cooperatively(seconds: float) -> str:
    """Checks its cancellation token: on shutdown it stops and goes back to its queue."""
    ctx = current_job()
    _redis().rpush(_key("started"), ctx.id)
    if ctx.cancellation.wait(seconds):
        _redis().rpush(_key("cancelled"), ctx.cancellation.reason)
        ctx.cancellation.raise_if_cancelled()
    return "finished"


@job
def long_running(seconds: float) -> None:
    """Runs far longer than a lease; counts its starts."""
    _redis().hincrby(_key("runs"), current_job().id, 1)
    time.sleep(seconds)


@dataclasses.dataclass
class Point:
    x: int
    y: int


@job
def typed(when: datetime, point: Point, tags: tuple[str, ...]) -> str:
    assert isinstance(when, datetime) and isinstance(point, Point) and isinstance(tags, tuple)
    return f"{when.isoformat()} {point.x},{point.y} {'/'.join(tags)}"


@job
def context_info() -> dict:
    ctx = current_job()
    return {"id": ctx.id, "name": ctx.name, "queue": ctx.queue, "attempt": ctx.attempt}


@job
def raises_cancelled_without_shutdown() -> None:
    raise JobCancelled("the job gave up on its own")


@job
def sleeps_on_first_run(seconds: float) -> int:
    """Sleeps on its first run only; returns how many times it has started."""
    runs = _redis().hincrby(_key("runs"), current_job().id, 1)
    if runs == 1:
        time.sleep(seconds)
    return runs


@job
def record_fired(tag: str = "") -> None:
    """Notes the id of each run (recurring tests read each job's tick from it)."""
    _redis().rpush(_key("fired"), f"{tag}:{current_job().id}")


@job(retries=0)
def fails_until_fixed(tag: str = "") -> str:
    """Fails for good (no retries) until the test sets the 'fixed' key; then succeeds."""
    _redis().rpush(_key("order"), tag)
    if not _redis().exists(_key("fixed")):
        raise RuntimeError("not fixed yet")
    return "fixed"


@job
def record_order(tag: str) -> None:
    _redis().rpush(_key("order"), tag)


class Recorder(JobFilter):
    """Notes each hook it sees (for jobs named '...filtered...') in the test's Redis."""

    def __init__(self, name: str) -> None:
        self.name = name

    def _note(self, hook: str, job_name: str) -> None:
        if "filtered" in job_name:
            _redis().rpush(_key("hooks"), f"{self.name}.{hook}")

    def on_performing(self, ctx):
        self._note("performing", ctx.job.name)

    def on_performed(self, ctx):
        self._note("performed", ctx.job.name)

    def on_state_election(self, ctx):
        self._note("election", ctx.job_name)

    def on_state_applied(self, ctx):
        self._note("applied", ctx.job_name)

    def on_state_unapplied(self, ctx):
        self._note("unapplied", ctx.job_name)


class TagTenant(JobFilter):
    def on_creating(self, ctx):
        ctx.set_param("tenant", "acme")


class Gatekeeper(JobFilter):
    """Cancels runs whose first argument is 'blocked'; handles ValueError('ignore me')."""

    def on_performing(self, ctx):
        if ctx.job.args and ctx.job.args[0] == "blocked":
            ctx.cancel("blocked by policy")

    def on_performed(self, ctx):
        if isinstance(ctx.exception, ValueError) and str(ctx.exception) == "ignore me":
            ctx.exception_handled = True
            ctx.result = "handled"


_global_recorder = Recorder("global")


def add_global_recorder() -> None:
    from taskfire.filters import global_filters
    if _global_recorder not in list(global_filters):
        global_filters.add(_global_recorder)


add_global_recorder()  # process-wide: the worker importing this module gets it too


@job(filters=[Recorder("first"), Recorder("second"), TagTenant(), Gatekeeper()], retries=0)
def filtered_job(action: str) -> str:
    ctx = current_job()
    if action == "raise":
        raise ValueError("ignore me")
    if action == "fail":
        raise RuntimeError("real failure")
    return f"ran for {ctx.get_param('tenant')}"


@job(retries=1, retry_delays=[0])
def remembers_across_retries() -> str:
    ctx = current_job()
    if ctx.attempt == 1:
        ctx.set_param("progress", {"done": 40})
        raise RuntimeError("first attempt fails")
    return f"resumed from {ctx.get_param('progress')['done']}"


# -- job controls --------------------------------------------------------------------


@job(timeout=1, retries=0)
def busy_loop(seconds: float) -> None:
    """CPU-bound, never looks at its cancellation token: only a hard stop ends it."""
    end = time.time() + seconds
    n = 0
    while time.time() < end:
        n += 1


@job(timeout=0.5, retries=1, retry_delays=[0])
def slow_but_polite() -> str:
    """Stops when asked (its timeout fires the token) on the first attempt only."""
    ctx = current_job()
    _redis().rpush(_key("attempts"), ctx.attempt)
    if ctx.attempt == 1:
        ctx.cancellation.wait(30)
        ctx.cancellation.raise_if_cancelled()
    return "second attempt in time"


@job(retries=0)
def until_cancelled() -> None:
    ctx = current_job()
    _redis().rpush(_key("started"), ctx.id)
    ctx.cancellation.wait(60)  # returns as soon as the token fires
    ctx.cancellation.raise_if_cancelled()


@job(retries=0)
def ignores_cancellation(seconds: float) -> str:
    _redis().rpush(_key("started"), current_job().id)
    time.sleep(seconds)
    return "ran to the end"


@job(mutex="sync-{customer_id}", mutex_timeout=60)
def sync_customer(customer_id: int, pause: float) -> None:
    start = time.time()
    time.sleep(pause)
    _redis().rpush(_key(f"intervals:{customer_id}"), f"{start}:{time.time()}")


@job(mutex="sync-{customer_id}", retries=0)
def hold_mutex(customer_id: int) -> None:
    """Holds its customer's mutex until the test sets `test:go` (a minute at most)."""
    _redis().rpush(_key("holding"), current_job().id)
    deadline = time.monotonic() + 60
    while not _redis().exists(_key("go")) and time.monotonic() < deadline:
        time.sleep(0.02)


@job(mutex="sync-{customer_id}", mutex_timeout=0.5, retries=0)
def impatient_sync(customer_id: int) -> None:
    """Waits half a second at most for its customer's mutex."""


@job(limit=("crm-api", 2))
def push_contact(pause: float) -> None:
    time.sleep(pause)


@job(limit=("crm-api", 2))
def pull_contact(pause: float) -> None:
    time.sleep(pause)


@job(concurrency=2)
def limited(pause: float) -> None:
    r = _redis()
    running = r.incr(_key("running"))
    r.rpush(_key("peaks"), running)
    time.sleep(pause)
    r.decr(_key("running"))


@job(rate=(5, 2))
def rated() -> None:
    _redis().rpush(_key("rated"), repr(time.time()))


@job(unique="invoice-{invoice_id}")
def send_invoice(invoice_id: int) -> None:
    _redis().rpush(_key("invoices"), invoice_id)


@job(unique=True, retries=0)
def unique_by_arguments(n: int) -> int:
    """Unique per arguments; fails for good when n is negative."""
    if n < 0:
        raise ValueError(f"no invoice {n}")
    return n


@job(unique=True)
def also_unique_by_arguments(n: int) -> int:
    return n


@job
def import_rows(batches: int) -> str:
    """Reports progress and logs each batch; waits for the test's go-ahead mid-way."""
    ctx = current_job()
    for i in range(batches):
        ctx.progress(i + 1, batches)
        ctx.log(f"imported batch {i + 1}")
        if i == 1:
            while not _redis().exists(_key("go")):
                time.sleep(0.02)
    return "imported"


@job(retries=0)
async def async_nap(seconds: float) -> str:
    import asyncio
    await asyncio.sleep(seconds)
    _redis().incr(_key("naps"))
    return f"napped as {current_job().id}"


@job(retries=0)
async def async_counted(seconds: float) -> None:
    """Notes how many async jobs of its kind run at once, itself included."""
    import asyncio
    r = _redis()
    r.rpush(_key("peaks"), r.incr(_key("running")))
    await asyncio.sleep(seconds)
    r.decr(_key("running"))


@job(timeout=0.5, retries=0)
async def async_overslept() -> None:
    import asyncio
    await asyncio.sleep(30)


@job(retries=0)
def nap(seconds: float = 0.0) -> str:
    """Writes nothing to Redis of its own (it runs in a full Redis): its runs are counted
    by its record's `fetches`."""
    time.sleep(seconds)
    return "rested"
