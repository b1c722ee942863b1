"""What taskfire refuses before it stores anything, and says why (no server)."""

from __future__ import annotations

import functools
from datetime import datetime, timedelta, timezone

import pytest

from taskfire import ConfigError, Taskfire, job
from taskfire.payload import encode_args
from taskfire.records import build_job
from taskfire.states import Scheduled
from taskfire.storage.connection import connect


@pytest.mark.parametrize("when", [1e12, float("inf"), float("nan"), -1, None, "10", True, timedelta(days=10**8)])
def test_a_schedule_no_date_can_hold_or_that_is_no_time_is_refused(when):
    with pytest.raises(ConfigError):
        Scheduled.when(when)


def test_schedules_up_to_year_9999_are_taken():
    assert Scheduled.when(datetime(9999, 12, 30, tzinfo=timezone.utc)).due_arg() == "253402128000000"
    assert Scheduled.when(90).due_arg() == "+90000"
    assert Scheduled.when(timedelta(seconds=1.5)).due_arg() == "+1500"


def _add(a: int, b: int) -> int:
    return a + b


def test_a_callable_without_a_module_level_name_is_not_a_job():
    with pytest.raises(ConfigError, match="no module-level name"):
        job(functools.partial(_add, 1))
    named = job(name="tests.unit.test_inputs:add_one")(functools.partial(_add, 1))
    assert named.name == "tests.unit.test_inputs:add_one" and named(2) == 3


def test_an_argument_nested_too_deeply_is_named():
    deep: list = []
    for _ in range(10_000):
        deep = [deep]
    with pytest.raises(TypeError, match="argument 'b' \\(position 1\\) of type list cannot be stored"):
        encode_args("m:f", (1, deep), {}, job(_add).binder.signature)  # type: ignore[union-attr]


def test_a_naive_datetime_argument_is_refused_and_an_aware_one_taken():
    with pytest.raises(TypeError, match="argument 'at' is a naive datetime"):
        encode_args("m:f", (), {"at": datetime(2030, 1, 1)})
    assert encode_args("m:f", (), {"at": datetime(2030, 1, 1, tzinfo=timezone.utc)})


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6390/xyz", "rediss://127.0.0.1:6390/1x", "redis://h/²"])
def test_a_database_that_is_not_a_number_is_refused(url):
    with pytest.raises(ConfigError, match="is not a database number"):
        connect(url, socket_timeout=1)


@pytest.mark.parametrize("bad", [None, "", 42])
def test_an_id_that_is_none_says_so(bad):
    tf = Taskfire("redis://127.0.0.1:1/0", prefix="never-connected:")  # no I/O until a call
    for verb in (tf.get_job, tf.delete, tf.cancel, tf.requeue, tf.get_batch):
        with pytest.raises(ConfigError, match=f"id is the non-empty string .* not {bad!r}"):
            verb(bad)


def test_a_record_reads_whatever_its_fields_hold():
    fields = {b"fn": b"m:f", b"state": b"\xff", b"created": b"yesterday", b"retries": b"x", b"args": b"\xc1",
              b"opts": b"\xc1", b"result": b"\xc1", b"started": b"99999999999999999", b"progress": b"{"}
    j = build_job("1", fields, [b"not json"], 1e18, log_lines=[b"{"])
    assert j.state == "\ufffd" and j.created_at is None and j.due_at is None and j.history == []
    assert set(j.unreadable) == {"created", "retries", "args", "opts", "result", "started", "progress", "due",
                                 "history[0]", "log[0]"}


def test_the_dashboard_shows_the_start_of_a_huge_value_and_reads_any_time():
    from taskfire_dashboard.formatting import VALUE_CHARS, cut, pretty, when

    shown, was_cut = cut(pretty(["x" * 20_000_000]))
    assert was_cut and len(shown) == VALUE_CHARS + 1
    assert pretty({"a": 1}) == '{\n  "a": 1\n}'
    assert "past year 9999" in when(1e15)