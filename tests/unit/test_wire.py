"""Each script's argument and reply layout, read back as its Lua file reads it.

The readers below follow the offsets the scripts use (lua/lib/changes.lua's apply_change,
lua/lib/fetch.lua's fetch_jobs, lua/scripts/*.lua): a change to storage/wire.py that the
scripts do not follow fails here, with no server. The integration suite runs the same
layouts against real servers."""

from __future__ import annotations

from typing import Any

from taskfire.storage import wire
from taskfire.storage.wire import FetchRequest, NewBatch, NewJob, Transition

PREFIX = "t:"


def argv(args: list[Any]) -> list[str]:
    """ARGV as a script sees it: 1-based (index 0 unused), the prefix first, every value text."""
    return ["", PREFIX, *(a.decode() if isinstance(a, bytes) else str(a) for a in args)]


def read_job(a: list[str], base: int, with_due: bool = True) -> tuple[NewJob, int]:
    """create.lua's per-job layout from ARGV[base] (continue.lua's has no due time)."""
    id_, fn, args, queue, opts = a[base:base + 5]
    due = a[base + 5] if with_due else ""
    n_at = base + (6 if with_due else 5)
    n = int(a[n_at])
    pairs = a[n_at + 1:n_at + 1 + n * 2]
    fields = dict(zip(pairs[::2], pairs[1::2]))
    return NewJob(id_, fn, args.encode(), queue, opts.encode(), due, fields), n_at + 1 + n * 2


def as_text(job: NewJob) -> NewJob:
    return NewJob(job.id, job.fn, job.args, job.queue, job.opts, job.due,
                  {k: v.decode() if isinstance(v, bytes) else v for k, v in job.fields.items()})


JOBS = [NewJob("a1", "m:f", b"args-1", "default"),
        NewJob("a2", "m:g", b"args", "low", b"opts", "+1500", {"batch": "b1", "param:x": b"v"}),
        NewJob("a3", "m:h", b"", "critical", b"", "1765000000000", {"unique": "k"})]


def test_create_lists_each_job_with_its_fields():
    a = argv(wire.encode_create(JOBS))
    assert a[2] == "0" and argv(wire.encode_create(JOBS, repeated=True))[2] == "1"
    n, base, read = int(a[3]), 4, []
    for _ in range(n):
        job, base = read_job(a, base)
        read.append(job)
    assert base == len(a)
    assert read == [as_text(j) for j in JOBS]


def test_create_reply_names_the_jobs_a_uniqueness_key_held_back():
    assert wire.decode_create([1, b"2", b"held-by"], JOBS[:2]) == {"a2": "held-by"}
    assert wire.decode_create([3], JOBS) == {}


def test_batch_open_lists_each_batch_after_the_settings():
    a = argv(wire.encode_batch_open([NewBatch("b1", 3), NewBatch("b2", 1, "b1")], 86400, 10_000))
    assert (a[2], a[3], a[4]) == ("86400", "10000", "2")
    assert [tuple(a[5 + i * 3:8 + i * 3]) for i in range(2)] == [("b1", "3", ""), ("b2", "1", "b1")]


def test_continue_takes_the_parent_then_the_job_without_a_due_time():
    job = NewJob("c1", "m:f", b"x", "default", b"o", "", {"param:p": "v"})
    a = argv(wire.encode_continue("batch", "b1", "finished", job, 60, 100))
    assert a[2:7] == ["batch", "b1", "finished", "60", "100"]
    read, end = read_job(a, 7, with_due=False)
    assert (read, end) == (as_text(job), len(a))


def read_change(a: list[str], at: int) -> tuple[dict[str, Any], int]:
    """apply_change's reading of ARGV[at...], as lua/lib/changes.lua does it."""
    nfields = int(a[at + 11])
    nentries = int(a[at + 12 + nfields * 2])
    fields = a[at + 12:at + 12 + nfields * 2]
    e = at + 13 + nfields * 2
    change = {
        "id": a[at], "expected": a[at + 1], "unless": a[at + 2], "token": a[at + 3], "state": a[at + 4],
        "queue": a[at + 5], "front": a[at + 6] == "1", "due": a[at + 7], "final": a[at + 8] == "1",
        "retention": int(a[at + 9]), "cap": int(a[at + 10]), "fields": dict(zip(fields[::2], fields[1::2])),
        "entries": [(a[e + i * 2], a[e + i * 2 + 1]) for i in range(nentries)],
    }
    return change, at + 13 + nfields * 2 + nentries * 2


CHANGE = Transition("j1", "Scheduled", [("Failed", b'{"state":"Failed"}'), ("Scheduled", b'{"state":"Scheduled"}')],
                    expected=("Processing",), unless=("Deleted", "Failed"), token="w:3", queue="low", front=True,
                    due="+2000", final=False, fields={"retries": "2", "error_type": "ValueError"})


def test_a_change_reads_back_field_by_field():
    change, end = read_change(argv(wire.encode_transition(CHANGE, 86400, 10_000)), 2)
    assert end == len(argv(wire.encode_transition(CHANGE, 86400, 10_000)))
    assert change == {
        "id": "j1", "expected": ",Processing,", "unless": ",Deleted,Failed,", "token": "w:3", "state": "Scheduled",
        "queue": "low", "front": True, "due": "+2000", "final": False, "retention": 86400, "cap": 10_000,
        "fields": {"retries": "2", "error_type": "ValueError"},
        "entries": [("Failed", '{"state":"Failed"}'), ("Scheduled", '{"state":"Scheduled"}')],
    }


def read_fetch(a: list[str], at: int) -> dict[str, Any]:
    """fetch_jobs's reading of ARGV[at...] (lua/lib/fetch.lua)."""
    return {"worker": a[at], "max": int(a[at + 1]), "lease": int(a[at + 2]), "recoveries": int(a[at + 3]),
            "pass_wake": a[at + 4] == "1", "seed": int(a[at + 5]), "queues": a[at + 6:]}


def test_a_fetch_request_reads_back_with_its_queues_last():
    request = FetchRequest("w1", ["critical:5", "default:1"], 4, 8000, 5, pass_wake=False)
    fetch = read_fetch(argv(wire.encode_fetch(request)), 2)
    assert 1 <= fetch.pop("seed") <= 2**31 - 2
    assert fetch == {"worker": "w1", "max": 4, "lease": 8000, "recoveries": 5, "pass_wake": False,
                     "queues": ["critical:5", "default:1"]}


def test_finish_carries_its_changes_then_a_fetch():
    other = Transition("j2", "Succeeded", [("Succeeded", b"{}")], token="w:4", final=True)
    a = argv(wire.encode_finish([CHANGE, other], FetchRequest("w1", ["default"], 2, 8000, 5), 60, 50))
    at, read = 3, []
    for _ in range(int(a[2])):
        change, at = read_change(a, at)
        read.append(change["id"])
    assert read == ["j1", "j2"]
    assert read_fetch(a, at)["queues"] == ["default"]


def fetch_reply(now: int, wake: int, jobs: list[list[Any]]) -> list[Any]:
    """What fetch_jobs returns: now, next wake-up, n, then each job's values."""
    return [now, wake, len(jobs), *(v for job in jobs for v in job)]


def test_a_fetch_reply_reads_as_jobs():
    reply = fetch_reply(1000, -1, [[b"j1", b"w:1", b"m:f", b"args", b"default", b"", b"0", b"900"],
                                   [b"j2", b"w:2", b"m:g", b"", b"low", b"opts", b"3", b"950"]])
    fetch = wire.decode_fetch(reply)
    assert fetch.now_ms == 1000 and fetch.next_wake_ms is None
    assert [(j.id, j.token, j.fn, j.args, j.queue, j.opts, j.retries, j.created_ms, j.fetched_ms) for j in fetch.jobs] == [
        ("j1", "w:1", "m:f", b"args", "default", b"", 0, 900, 1000),
        ("j2", "w:2", "m:g", b"", "low", b"opts", 3, 950, 1000)]
    assert wire.decode_fetch(fetch_reply(5, 42, [])).next_wake_ms == 42


def test_a_finish_reply_is_each_changes_outcome_then_the_fetch():
    outcomes, fetch = wire.decode_finish([1, b"Processing", -2, b"Enqueued", *fetch_reply(7, 9, [])], 2)
    assert outcomes == [(1, "Processing"), (-2, "Enqueued")]
    assert fetch.now_ms == 7 and fetch.jobs == []


def test_extend_pairs_each_job_with_its_lease():
    a = argv(wire.encode_extend(8000, [("j1", "w:1"), ("j2", "w:2")]))
    assert a[2] == "8000" and list(zip(a[3::2], a[4::2])) == [("j1", "w:1"), ("j2", "w:2")]
    assert wire.decode_extend([[b"j1"], [b"j2"]]) == (["j1"], ["j2"])


def test_heartbeat_pairs_the_servers_facts():
    a = argv(wire.encode_heartbeat("s1", 30_000, {"host": "h", "pid": "1"}))
    assert a[2:4] == ["s1", "30000"] and dict(zip(a[4::2], a[5::2])) == {"host": "h", "pid": "1"}
    assert wire.decode_heartbeat([5, [b"s0"], 1]) == (5, ["s0"], True)


def test_a_claim_reply_reads_as_due_runs():
    claim = wire.decode_claim([10, -1, 1, b"r1", b"m:f", b"0 * * * *", b"UTC", b"relaxed", b"9"])
    assert claim.now_ms == 10 and claim.next_ms is None
    assert [(r.id, r.fn, r.cron, r.tz, r.misfire, r.next_ms) for r in claim.due] == [
        ("r1", "m:f", "0 * * * *", "UTC", "relaxed", 9)]


def test_fire_lists_each_job_with_its_tick():
    a = argv(wire.encode_fire("r1", None, 60_000, "", "Fired", [("j1", 1), ("j2", 2)]))
    assert a[2:8] == ["r1", "", "60000", "", "Fired", "2"]
    assert list(zip(a[8::2], a[9::2])) == [("j1", "1"), ("j2", "2")]


def test_bulk_puts_the_actions_own_arguments_last():
    a = argv(wire.encode_bulk("requeue", 1000, 60, 50, 0, "Failed", "", "TimeoutError", ""))
    assert a[2:7] == ["requeue", "1000", "60", "50", "0"] and a[7:] == ["Failed", "", "TimeoutError", ""]
    assert wire.decode_bulk([3, 10, 7]) == (3, 10, 7)


def test_backfill_names_its_index_and_the_size_of_a_slice():
    a = argv(wire.encode_backfill("retries", 2000))
    assert a[2:] == ["retries", "2000"]  # backfill.lua: ARGV[2] index, ARGV[3] limit
    assert wire.decode_backfill([70, 0]) == (70, False) and wire.decode_backfill([3, 1]).built


def test_wait_names_the_kind_then_the_id():
    assert argv(wire.encode_wait("batch", "b1"))[2:] == ["batch", "b1"]
    assert [wire.decode_wait(r) for r in (1, 0, -1)] == [wire.HAS_OUTCOME, wire.WAITING, wire.MISSING]
