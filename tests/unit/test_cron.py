"""Schedules without Redis: the Cron helpers, validation, time zones and DST, and what
the scheduler fires for each misfire mode."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from taskfire import Cron
from taskfire.cron import Schedule, from_ms, to_ms
from taskfire.server.scheduler import plan_run

UTC = timezone.utc


def ticks(expr: str, tz: str, start: str, n: int) -> list[str]:
    """The next n ticks after `start`, as local ISO times with their offsets."""
    s = Schedule(expr, tz)
    t = datetime.fromisoformat(start)
    out = []
    for _ in range(n):
        nxt = s.next_after(t)
        assert nxt is not None
        out.append(nxt.astimezone(s.zone).isoformat())
        t = nxt
    return out


def test_cron_helpers_build_the_expressions_hangfire_users_know():
    assert Cron.minutely() == "* * * * *"
    assert Cron.every_second() == "* * * * * *"
    assert Cron.hourly(15) == "15 * * * *"
    assert Cron.daily(2) == "0 2 * * *"
    assert Cron.daily(6, 30) == "30 6 * * *"
    assert Cron.weekly("sunday") == "0 0 * * 0"
    assert Cron.weekly(1, 9, 5) == "5 9 * * 1"
    assert Cron.monthly(1, 6) == "0 6 1 * *"
    assert Cron.yearly(12, 25, 8) == "0 8 25 12 *"
    assert Cron.never() == "0 0 31 2 *"
    assert Cron.minute_interval(5) == "*/5 * * * *"
    assert Cron.hour_interval(6) == "0 */6 * * *"
    assert Cron.day_interval(2) == "0 0 */2 * *"
    assert Cron.month_interval(3) == "0 0 1 */3 *"
    for expr in (Cron.minutely(), Cron.weekly("friday", 17), Cron.yearly(2, 29), Cron.every_second()):
        Schedule(expr)  # every helper's output parses


@pytest.mark.parametrize("call, words", [
    (lambda: Cron.daily(24), "hour must be a whole number from 0 to 23"),
    (lambda: Cron.hourly(-1), "minute must be a whole number from 0 to 59"),
    (lambda: Cron.weekly("someday"), "weekday name"),
    (lambda: Cron.monthly(32), "day must be a whole number from 1 to 31"),
    (lambda: Cron.minute_interval(0), "interval"),
])
def test_cron_helpers_reject_out_of_range_values(call, words):
    with pytest.raises(ValueError, match=words):
        call()


@pytest.mark.parametrize("expr, tz, words", [
    ("61 * * * *", "UTC", "'61 \\* \\* \\* \\*' is not a valid CRON expression"),
    ("* * *", "UTC", "expected 5 fields"),
    ("", "UTC", "cron must be a CRON expression"),
    ("0 2 * * *", "Europe/Atlantis", "time zone 'Europe/Atlantis' is unknown"),
    ("0 2 * * *", "", "time zone '' is unknown"),
])
def test_invalid_expressions_and_zones_are_named_in_the_error(expr, tz, words):
    with pytest.raises(ValueError, match=words):
        Schedule(expr, tz)


def test_five_and_six_field_expressions_and_macros():
    assert ticks("*/20 * * * * *", "UTC", "2026-01-01T00:00:05+00:00", 3) == [
        "2026-01-01T00:00:20+00:00", "2026-01-01T00:00:40+00:00", "2026-01-01T00:01:00+00:00"]
    assert ticks("@daily", "UTC", "2026-01-01T10:00:00+00:00", 1) == ["2026-01-02T00:00:00+00:00"]
    assert ticks("@hourly", "UTC", "2026-01-01T10:00:00+00:00", 1) == ["2026-01-01T11:00:00+00:00"]
    assert Schedule(Cron.never()).next_after(datetime(2026, 1, 1, tzinfo=UTC)) is None


def test_ticks_are_wall_clock_times_in_the_jobs_time_zone():
    # 02:00 in Paris is 01:00 UTC in winter and 00:00 UTC in summer.
    assert [Schedule("0 2 * * *", "Europe/Paris").next_ms(to_ms(datetime.fromisoformat(t)))
            for t in ("2026-01-10T12:00:00+00:00", "2026-07-10T12:00:00+00:00")] == [
        to_ms(datetime(2026, 1, 11, 1, tzinfo=UTC)), to_ms(datetime(2026, 7, 11, 0, tzinfo=UTC))]
    assert ticks("0 9 * * 1", "America/New_York", "2026-11-23T20:00:00+00:00", 1) == [
        "2026-11-30T09:00:00-05:00"]


def test_spring_forward_a_tick_in_the_skipped_hour_fires_once_at_the_end_of_the_gap():
    # Europe/Paris, 2026-03-29: 02:00 CET jumps to 03:00 CEST.
    assert ticks("30 2 * * *", "Europe/Paris", "2026-03-27T12:00:00+00:00", 3) == [
        "2026-03-28T02:30:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"]
    # Ticks every 15 minutes inside the gap collapse into one run at 03:00.
    assert ticks("*/15 * * * *", "Europe/Paris", "2026-03-29T00:30:00+00:00", 3) == [
        "2026-03-29T01:45:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-29T03:15:00+02:00"]
    # A tick outside the gap is untouched on that day.
    assert ticks("0 4 * * *", "Europe/Paris", "2026-03-28T12:00:00+00:00", 1) == ["2026-03-29T04:00:00+02:00"]


def test_fall_back_fixed_times_fire_once_and_interval_schedules_follow_elapsed_time():
    # Europe/Paris, 2026-10-25: 03:00 CEST goes back to 02:00 CET; 02:xx happens twice.
    assert ticks("30 2 * * *", "Europe/Paris", "2026-10-24T12:00:00+00:00", 2) == [
        "2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]
    assert ticks("0 * * * *", "Europe/Paris", "2026-10-24T23:30:00+00:00", 3) == [
        "2026-10-25T02:00:00+02:00", "2026-10-25T02:00:00+01:00", "2026-10-25T03:00:00+01:00"]
    assert ticks("*/30 * * * *", "Europe/Paris", "2026-10-24T23:50:00+00:00", 5) == [
        "2026-10-25T02:00:00+02:00", "2026-10-25T02:30:00+02:00",
        "2026-10-25T02:00:00+01:00", "2026-10-25T02:30:00+01:00", "2026-10-25T03:00:00+01:00"]
    # The same interval schedule fires every 30 real minutes through the change.
    s = Schedule("*/30 * * * *", "Europe/Paris")
    t = datetime(2026, 10, 24, 22, 0, tzinfo=UTC)
    gaps = set()
    for _ in range(12):
        nxt = s.next_after(t)
        assert nxt is not None
        gaps.add(nxt - t)
        t = nxt
    assert gaps == {timedelta(minutes=30)}


def test_southern_hemisphere_and_half_hour_zones():
    # Australia/Sydney springs forward on 2026-10-04 at 02:00 -> 03:00.
    assert ticks("30 2 * * *", "Australia/Sydney", "2026-10-02T12:00:00+00:00", 2) == [
        "2026-10-03T02:30:00+10:00", "2026-10-04T03:00:00+11:00"]
    assert ticks("0 9 * * *", "Asia/Kolkata", "2026-05-01T00:00:00+00:00", 1) == ["2026-05-01T09:00:00+05:30"]


HOUR = 3_600_000
# The documented bounds (docs/recurring.md), spelt here rather than imported, so that
# changing the implementation's constants breaks this test, not the promise.
MAX_CATCH_UP = 1000       # "up to 1,000" missed ticks fire in strict mode
MISFIRE_GRACE_MS = 60_000  # "a tick reached more than 60 s late does not fire" (ignorable)


def hourly_outage(hours: float) -> tuple[Schedule, int, int]:
    """An hourly job whose run was due `hours` ago, seen now (10 minutes past an hour)."""
    s = Schedule(Cron.hourly())
    now = to_ms(datetime(2026, 11, 23, 12, 10, tzinfo=UTC))
    due = to_ms(datetime(2026, 11, 23, 12, 0, tzinfo=UTC)) - int(hours) * HOUR
    return s, due, now


def test_relaxed_misfire_fires_once_for_all_missed_ticks():
    s, due, now = hourly_outage(3)
    plan = plan_run(s, "relaxed", due, now)
    assert plan.ticks == [due]
    assert from_ms(plan.next_ms) == datetime(2026, 11, 23, 13, 0, tzinfo=UTC)
    assert plan.note == ""


def test_strict_misfire_fires_each_missed_tick_oldest_first():
    s, due, now = hourly_outage(3)
    plan = plan_run(s, "strict", due, now)
    assert [from_ms(t).hour for t in plan.ticks] == [9, 10, 11, 12]
    assert from_ms(plan.next_ms) == datetime(2026, 11, 23, 13, 0, tzinfo=UTC)


def test_strict_misfire_is_bounded_and_says_what_it_skipped():
    s = Schedule(Cron.every_second())
    now = to_ms(datetime(2026, 11, 23, 12, 0, tzinfo=UTC))
    due = now - 3 * HOUR
    plan = plan_run(s, "strict", due, now)
    assert len(plan.ticks) == MAX_CATCH_UP
    assert plan.ticks[0] == due and plan.ticks[-1] == due + (MAX_CATCH_UP - 1) * 1000
    assert f"more than {MAX_CATCH_UP} ticks were missed" in plan.note
    assert plan.next_ms == now + 1000


def test_ignorable_misfire_drops_missed_ticks_but_fires_a_punctual_one():
    s, due, now = hourly_outage(3)
    plan = plan_run(s, "ignorable", due, now)
    assert plan.ticks == []
    assert from_ms(plan.next_ms) == datetime(2026, 11, 23, 13, 0, tzinfo=UTC)
    on_time = to_ms(datetime(2026, 11, 23, 12, 0, tzinfo=UTC))
    assert plan_run(s, "ignorable", on_time, on_time + 40).ticks == [on_time]
    assert plan_run(s, "ignorable", on_time, on_time + MISFIRE_GRACE_MS).ticks == [on_time]  # 60 s late: fires
    assert plan_run(s, "ignorable", on_time, on_time + MISFIRE_GRACE_MS + 1).ticks == []
    # A frequent schedule late past the grace still fires the tick inside it.
    every_10s = Schedule("*/10 * * * * *")
    late = plan_run(every_10s, "ignorable", on_time, on_time + 5 * 60_000 + 3_000)
    assert late.ticks == [on_time + 4 * 60_000 + 10_000]


def test_a_punctual_run_fires_its_own_tick_in_every_mode():
    s = Schedule(Cron.minutely())
    due = to_ms(datetime(2026, 11, 23, 12, 0, tzinfo=UTC))
    for mode in ("relaxed", "strict", "ignorable"):
        plan = plan_run(s, mode, due, due + 3)
        assert plan.ticks == [due]
        assert plan.next_ms == due + 60_000
