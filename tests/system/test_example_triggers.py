"""examples/triggers end to end: a local web page this test controls (real sockets),
triggers in the session's server, and real `taskfire worker` processes checking them."""

from __future__ import annotations

import hashlib
import socket
from typing import Iterator

import pytest

from examples.triggers import checker, workflows
from examples.triggers.page_server import Page, serve
from examples.triggers.store import Triggers, parse_every
from tests.conftest import report, wait_for

# The scenario, not the server, is under test here: the embedded Valkey it runs on.
on_valkey = pytest.mark.parametrize("server", ["valkey"], indirect=True)

MODULES = ("examples.triggers.checker", "examples.triggers.workflows")


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
def page() -> Iterator[tuple[Page, str]]:
    p = Page("version 1")
    server, url = serve(p)
    yield p, url
    server.shutdown()


@pytest.fixture
def triggers(tf, start_worker) -> Triggers:
    """Two workers of two threads each, and the checker firing every second."""
    for _ in range(2):
        start_worker("--threads", "2", modules=MODULES)
    checker.install(tf)
    return Triggers(tf)


def fired(tf, trigger_id: str) -> list[dict[str, object]]:
    return [r for r in workflows.runs(tf) if r["trigger_id"] == trigger_id]


@on_valkey
def test_a_poll_fires_once_per_change_with_the_body_status_and_hashes(tf, page, triggers):
    p, url = page
    added = triggers.add_poll("page", url, workflows.page_changed, 1)
    assert added.fire_count == 0 and added.last_checked is None and added.next_check is not None
    # The first fetch records the hash; the next ones find it unchanged: nothing fires.
    wait_for(lambda: p.hit_count() >= 3, 20, "three fetches of the unchanged page")
    t = triggers.get("page")
    assert t is not None and t.fire_count == 0 and t.last_hash == sha("version 1") and t.last_status == 200
    assert t.last_checked is not None and t.last_error is None
    # When the page changes, one workflow starts with what was fetched
    p.set("version 2")
    wait_for(lambda: fired(tf, "page"), 20, "the workflow to start")
    seen = p.hit_count()
    wait_for(lambda: p.hit_count() >= seen + 3, 20, "three more fetches")
    runs = fired(tf, "page")
    assert len(runs) == 1, runs
    assert runs[0]["body"] == "version 2" and runs[0]["status_code"] == 200
    assert runs[0]["hash"] == sha("version 2") and runs[0]["previous_hash"] == sha("version 1")
    t = triggers.get("page")
    assert t is not None and t.fire_count == 1 and t.last_job == runs[0]["job_id"]
    assert t.last_fired is not None and t.last_checked is not None and t.last_fired <= t.last_checked
    gaps = [b - a for a, b in zip(p.hits, p.hits[1:])]
    report(f"triggers: poll every 1 s over 2 workers: {len(p.hits)} fetches, gaps "
           f"{min(gaps):.2f}-{max(gaps):.2f} s, 1 change fired once")


@on_valkey
def test_fire_always_starts_the_workflow_on_every_fetch(tf, page, triggers):
    p, url = page
    triggers.add_poll("always", url, workflows.page_changed, "1s", fire_always=True)
    wait_for(lambda: len(fired(tf, "always")) >= 3, 20, "three workflows")
    runs = fired(tf, "always")
    assert runs[0]["previous_hash"] is None and all(r["body"] == "version 1" for r in runs)
    assert all(r["previous_hash"] == sha("version 1") for r in runs[1:])
    t = triggers.get("always")
    assert t is not None and t.fire_count >= 3
    assert t.fire_count == p.hit_count() or t.fire_count == p.hit_count() - 1  # the last fetch may be recording


@on_valkey
def test_a_429_backs_off_for_retry_after_and_a_failing_url_keeps_its_trigger(tf, page, triggers):
    p, url = page
    # Given a page that asks to be left alone for 3 seconds
    p.set(status=429, headers={"Retry-After": "3"})
    triggers.add_poll("busy", url, workflows.page_changed, 1)
    wait_for(lambda: (t := triggers.get("busy")) and t.last_status == 429, 20, "the 429")
    t = triggers.get("busy")
    assert t is not None and t.backoff_until is not None and t.last_checked is not None
    assert t.last_error == f"GET {url} answered 429 Too Many Requests: backing off for 3 s"
    assert t.backoff_until - t.last_checked == 3000 and t.next_check is not None and t.next_check >= t.backoff_until
    # Then it is not asked again before the 3 seconds are over; after, it is polled as usual
    p.set("version 1")
    wait_for(lambda: p.hit_count() >= 2, 20, "the fetch after the back-off")
    assert p.hits[1] - p.hits[0] >= 2.9, p.hits
    wait_for(lambda: (t := triggers.get("busy")) and t.last_status == 200 and t.last_error is None, 20,
             "the error to clear")
    assert triggers.get("busy").backoff_until is None  # type: ignore[union-attr]

    # A server that fails, and one that is not there at all: the errors are recorded and
    # the triggers stay on their schedule
    p.set(status=500)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}/"
    triggers.add_poll("nobody-home", closed, workflows.page_changed, 1)
    wait_for(lambda: (t := triggers.get("busy")) and t.last_status == 500, 20, "the 500")
    assert triggers.get("busy").last_error == f"GET {url} answered 500"  # type: ignore[union-attr]
    first = wait_for(lambda: (t := triggers.get("nobody-home")) and t.last_checked and t, 20, "a refused fetch")
    assert first.last_error is not None and first.last_error.startswith(f"GET {closed} failed: ")
    assert "refused" in first.last_error
    wait_for(lambda: (t := triggers.get("nobody-home")) and t.last_checked > first.last_checked, 20, "another try")
    # And once the page works again, its trigger carries on where it was
    p.set("version 2")
    wait_for(lambda: fired(tf, "busy"), 20, "the change to fire")
    assert fired(tf, "busy")[0]["previous_hash"] == sha("version 1")
    assert triggers.get("nobody-home").fire_count == 0  # type: ignore[union-attr]


@on_valkey
def test_an_interval_trigger_fires_once_per_interval_with_two_workers(tf, triggers):
    triggers.add_interval("tick", workflows.on_schedule, "every 2 seconds")
    wait_for(lambda: len(fired(tf, "tick")) >= 3, 30, "three runs")
    triggers.remove("tick")
    times = sorted(int(r["fired_at_ms"]) for r in fired(tf, "tick"))  # type: ignore[call-overload]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert min(gaps) >= 2000, gaps  # never twice for one interval
    assert triggers.get("tick") is None
    report(f"triggers: interval of 2 s with 2 workers fired at gaps of {', '.join(f'{g} ms' for g in gaps)}")


@pytest.mark.parametrize("text, seconds", [(30, 30.0), ("30s", 30.0), ("5 minutes", 300.0),
                                           ("every 2 hours", 7200.0), ("1.5m", 90.0)])
def test_intervals_read_as_people_write_them(text, seconds):
    assert parse_every(text) == seconds


@pytest.mark.parametrize("text, words", [("soon", "write seconds"), (0.5, "at most once a second"),
                                         (True, "must be seconds")])
def test_bad_intervals_say_what_is_wrong(text, words):
    with pytest.raises(ValueError, match=words):
        parse_every(text)


@on_valkey
def test_bad_urls_ids_and_workflows_say_what_is_wrong(tf):
    triggers = Triggers(tf)
    with pytest.raises(ValueError, match="must be an http"):
        triggers.add_poll("x", "ftp://example.com/", workflows.page_changed, 5)
    with pytest.raises(ValueError, match="trigger id"):
        triggers.add_interval("has space", workflows.on_schedule, 5)
    with pytest.raises(ValueError, match="workflow must be"):
        triggers.add_interval("x", "not-a-job", 5)
    assert triggers.all() == []
