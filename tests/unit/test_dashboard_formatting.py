"""How the dashboard writes schedules, times and names, and which redirect targets it
accepts: pure functions, no server."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from flask import Flask

from taskfire import Cron
from taskfire_dashboard.formatting import breakable, call_preview, describe_cron, number, when
from taskfire_dashboard.security import LoginThrottle, local_target


@pytest.mark.parametrize("expr, words", [
    ("0 2 * * *", "At 02:00"),
    (Cron.monthly(1, 6), "At 06:00, on day 1 of the month"),
    (Cron.hourly(), "Every hour"),
    (Cron.weekly("sunday"), "At 00:00, only on Sunday"),
    ("0 */6 * * *", "Every 6 hours"),
    (Cron.minute_interval(15), "Every 15 minutes"),
    (Cron.every_second(), "Every second"),
    ("*/5 * * * * *", "Every 5 seconds"),
    ("30 9 * * 1-5", "At 09:30, Monday through Friday"),
    ("@weekly", "At 00:00, only on Sunday"),
    ("0 0 1 */3 *", "At 00:00, on day 1 of the month, every 3 months"),
])
def test_schedules_are_described_in_words(expr, words):
    assert describe_cron(expr) == words


@pytest.mark.parametrize("expr", [Cron.never(), "0 0 30 2 *", "0 0 31 4 *"])
def test_a_schedule_that_never_fires_says_so_rather_than_naming_a_day_that_does_not_exist(expr):
    assert describe_cron(expr) == "Never: no date matches it (the job runs only when triggered)"


@pytest.mark.parametrize("expr", ["not a cron", "0 0 * * 9", "61 * * * *"])
def test_an_expression_that_cannot_be_read_is_not_described(expr):
    assert describe_cron(expr) is None


def test_a_time_is_relative_with_the_exact_utc_time_for_hovering():
    moment = datetime(2026, 11, 23, 8, 30, tzinfo=timezone.utc)
    html = str(when(moment.timestamp(), now=moment.timestamp() + 180))
    assert html == ('<time datetime="2026-11-23T08:30:00.000Z" title="2026-11-23 08:30:00 UTC">'
                    "3 minutes ago</time>")
    assert "2 hours from now" in str(when(moment, now=moment.timestamp() - 7200))
    assert str(when(None)) == "—"


def test_names_wrap_at_their_dots_and_colons_and_stay_escaped():
    assert str(breakable("shop.jobs:send<b>")) == "shop.<wbr>jobs:<wbr>send&lt;b&gt;"
    assert number(1234567) == "1,234,567"
    preview = call_preview([42, "x" * 200], {"retry": True}, limit=30)
    assert len(preview) == 30 and preview.startswith('(42, "xxx') and preview.endswith("…")


@pytest.mark.parametrize("target, root, expected", [
    ("/jobs/state/Failed?page=2", "/", "/jobs/state/Failed?page=2"),
    ("http://dash.example/queues", "/", "/queues"),
    ("https://evil.example/queues", "/", None),
    ("//evil.example/queues", "/", None),
    ("/\\evil.example", "/", None),
    ("javascript:alert(1)", "/", None),
    ("/taskfire/retries", "/taskfire/", "/taskfire/retries"),
    ("/taskfire", "/taskfire/", "/taskfire"),
    ("/elsewhere", "/taskfire/", None),
    ("/taskfireworks", "/taskfire/", None),
    ("", "/", None),
])
def test_an_action_goes_back_only_to_a_page_under_the_dashboard(target, root, expected):
    with Flask("t").test_request_context("/", base_url="http://dash.example"):
        assert local_target(target, root) == expected


def test_the_throttle_forgets_an_old_failure_and_the_least_recent_address_first():
    now = [0.0]
    throttle = LoginThrottle(max_failures=2, window_s=10, lockout_s=30, max_clients=2, clock=lambda: now[0])
    throttle.failed("a")
    now[0] = 11  # past the window: the next failure starts a new count
    throttle.failed("a")
    assert throttle.retry_after("a") == 0
    throttle.failed("a")
    assert throttle.retry_after("a") == 30
    throttle.failed("b")
    throttle.failed("c")  # a third address: the least recently seen ("a") is forgotten
    assert len(throttle) == 2 and throttle.retry_after("a") == 0
