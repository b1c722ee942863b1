"""The job factory, with no server: what a call becomes before it is stored."""

from __future__ import annotations

import pytest

from taskfire import ConfigError, job
from taskfire.creation import build, new_job_id, resolve
from taskfire.filters import CreatingContext, CreationCancelled, JobFilter
from taskfire.payload import decode_args, decode_value


class Tagging(JobFilter):
    def __init__(self, cancel: bool = False) -> None:
        self.cancel = cancel
        self.created: list[str] = []

    def on_creating(self, ctx: CreatingContext) -> None:
        ctx.set_param("tenant", "acme")
        if self.cancel:
            ctx.cancel("closed for the night")

    def on_created(self, ctx) -> None:  # type: ignore[no-untyped-def]
        self.created.append(ctx.job_id)


tagging = Tagging()


@job(queue="critical", filters=[tagging])
def charge(invoice_id: int, amount: float = 0.0) -> None: ...


@job(mutex="sync-{customer}", unique=True)
def sync(customer: str) -> None: ...


@job(filters=[Tagging(cancel=True)])
def closed() -> None: ...


def test_a_call_becomes_a_record_with_its_arguments_and_queue():
    new, on_created = build(charge, (42,), {"amount": 9.5})
    assert (new.fn, new.queue, new.due) == ("tests.unit.test_creation:charge", "critical", "")
    assert decode_args(new.args) == ([42], {"amount": 9.5})
    assert decode_value(new.fields["param:tenant"]) == "acme"
    assert on_created is not None and tagging.created == []
    on_created()  # once stored
    assert tagging.created == [new.id]


def test_a_call_that_could_never_run_is_refused_at_enqueue():
    with pytest.raises(TypeError, match=r"cannot enqueue .*charge\(invoice_id: int, amount: float = 0.0\)"):
        build(charge, (), {"colour": "red"})


def test_controls_become_fields_with_their_templates_filled_in():
    # A mutex is a limit of one, named after the job's arguments; a unique job is keyed
    # by its function and a digest of its arguments
    new, _ = build(sync, ("acme",), {})
    other, _ = build(sync, ("globex",), {})
    assert {k: new.fields[k] for k in ("limit", "limit_max", "limit_timeout")} == {
        "limit": "mutex:sync-acme", "limit_max": "1", "limit_timeout": "600000"}
    assert str(new.fields["unique"]).startswith("tests.unit.test_creation:sync:")
    assert new.fields["unique"] == build(sync, ("acme",), {})[0].fields["unique"] != other.fields["unique"]
    # "same function and arguments": the same call spelt by name is the same key
    assert build(sync, (), {"customer": "acme"})[0].fields["unique"] == new.fields["unique"]


def test_a_client_filter_may_cancel_the_creation():
    with pytest.raises(CreationCancelled, match="closed for the night"):
        build(closed, (), {})


def test_names_resolve_to_registered_functions_or_references():
    assert resolve("tests.unit.test_creation:charge") is charge
    ref = resolve("elsewhere.jobs:report")
    assert ref.fn is None and ref.name == "elsewhere.jobs:report" and ref.queue == "default"
    with pytest.raises(ConfigError, match="must look like 'package.module:function'"):
        resolve("report")
    with pytest.raises(ConfigError, match="is not a job: decorate it with @job"):
        resolve(print)  # type: ignore[arg-type]


def test_ids_sort_by_creation_time_and_differ():
    ids = [new_job_id() for _ in range(1000)]
    assert len(set(ids)) == 1000 and all(len(i) == 24 for i in ids)
    assert ids == sorted(ids, key=lambda i: i[:12])


def test_the_asyncio_client_on_a_cluster_checks_its_prefix_as_the_sync_one_does():
    # (it reaches a cluster: tests/system/test_cluster.py; a prefix without a hash tag is
    # refused before any connection, as the sync client refuses it)
    from taskfire import AsyncTaskfire

    with pytest.raises(ConfigError, match="has no hash tag"):
        AsyncTaskfire("redis+cluster://127.0.0.1:1", prefix="t:")
    with pytest.raises(ConfigError, match="unknown scheme 'http'"):
        AsyncTaskfire("http://127.0.0.1:1", prefix="t:")


def test_an_enqueue_split_over_shards_that_failed_in_one_says_so_once():
    from taskfire.errors import EnqueueError
    from taskfire.storage.creating import partly_created
    from taskfire.storage.wire import NewJob

    jobs_ = [NewJob(f"id{k}~{k}", "billing:charge", b"", "default") for k in range(3)]
    inner = EnqueueError("Redis is unavailable (the slot moved)", [], [], ["id1~1"], lambda: None)
    error = partly_created(inner, ["id0~0"], [jobs_[2]], jobs_, lambda rest: rest)
    assert (error.stored, error.not_stored, error.maybe_stored) == (["id0~0"], ["id2~2"], ["id1~1"])
    assert str(error).count("e.retry()") == 1 and str(error).count("Redis is unavailable") == 1
    assert [j.id for j in error.retry()] == ["id1~1", "id2~2"]
