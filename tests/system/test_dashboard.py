"""The dashboard through Flask's test client against real servers: every page and action,
right answers at sizes that used to give wrong ones, and its defences (authentication,
login throttling, CSRF, security headers, redirects). The pages in a real browser are in
test_dashboard_browser.py."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from taskfire import Cron, Failed, Scheduled, Succeeded
from taskfire.client import transition_for
from taskfire_dashboard import LoginThrottle, create_app
from tests import jobs
from tests.conftest import state_of, wait_for, wait_state


def csrf_of(client, path: str = "/") -> str:
    page = client.get(path).get_data(as_text=True)
    return re.search(r'data-csrf="([^"]+)"', page).group(1)  # type: ignore[union-attr]


def text(client, path: str) -> str:
    r = client.get(path)
    assert r.status_code == 200, (path, r.status_code, r.get_data(as_text=True)[:500])
    return r.get_data(as_text=True)


def fail(tf, ids, exception_type="ValueError", message="boom"):
    tf.storage.transitions([transition_for(i, Failed(reason="An exception occurred", exception_type=exception_type,
                                                     exception_message=message)) for i in ids])


def retry(tf, ids, delay=3600.0, exception_type="TimeoutError"):
    """Jobs moved to Scheduled in place of a failure, as the retry policy elects it."""
    failure = Failed(reason="An exception occurred", exception_type=exception_type, exception_message="slow")
    tf.storage.transitions([transition_for(i, Scheduled(delay=delay, reason="Retry attempt 1 of 3: slow"),
                                           fields={"retries": "1"}, elected=[failure]) for i in ids])


@pytest.fixture
def seeded(tf):
    """A store with a job in each state, a recurring job, and an argument that is HTML."""
    parked = jobs.record_order.options(queue="parked")
    ids = {
        "enqueued": parked.enqueue("<script>alert('x')</script>"),
        "scheduled": tf.schedule(jobs.record_order, 3600, "later"),
        "failed": parked.enqueue("will fail"),
        "succeeded": parked.enqueue("done"),
    }
    tf.change_state(ids["failed"], Failed(reason="boom <b>bold</b>", exception_type="RuntimeError",
                                          exception_message="boom <b>bold</b>"))
    tf.change_state(ids["succeeded"], Succeeded(duration_ms=1500.0, latency_ms=250.0), result={"rows": 3})
    tf.recurring.add_or_update("nightly", jobs.record_order, Cron.daily(2), args=("nightly",))
    return ids


PAGES = ["/", "/jobs/state/Enqueued", "/jobs/state/Enqueued?queue=parked", "/jobs/state/Scheduled",
         "/jobs/state/Failed", "/jobs/state/Failed?function=tests.jobs:record_order",
         "/jobs/state/Failed?exception=RuntimeError", "/jobs/state/Succeeded", "/jobs/state/Deleted",
         "/jobs/state/Awaiting", "/jobs/state/Processing", "/recurring", "/servers", "/queues", "/retries",
         "/batches", "/jobs/find?q=record", "/api/stats", "/api/jobs/state/Failed", "/api/retries",
         "/api/failures", "/api/servers", "/api/recurring", "/api/batches", "/api/queues", "/metrics"]


def test_every_page_renders_with_real_data_and_escapes_what_users_wrote(tf, seeded):
    client = create_app(tf).test_client()
    walks = lambda: {k: v["calls"] for k, v in tf.storage.redis.info("commandstats").items()  # noqa: E731
                     if k in ("cmdstat_keys", "cmdstat_scan")}
    before = walks()
    for path in [*PAGES, f"/jobs/{seeded['failed']}", f"/api/jobs/{seeded['succeeded']}"]:
        text(client, path)
    assert walks() == before  # no page walks the keyspace (KEYS or SCAN)
    page = text(client, f"/jobs/{seeded['enqueued']}")
    assert "&lt;script&gt;alert(" in page and "<script>alert(" not in page
    listing = text(client, "/jobs/state/Enqueued?queue=parked")
    assert "&lt;script&gt;alert(" in listing and "<script>alert(" not in listing  # its argument preview
    kept = text(client, "/jobs/state/Succeeded")
    assert "Listing the 1 kept: succeeded jobs are kept 24.0 h (the newest 10,000 at most)" in kept
    stats = client.get("/api/stats").get_json()
    assert stats["states"]["Succeeded"] == stats["totals"]["succeeded"] == 1 and stats["kept"]["Succeeded"] == 1
    assert stats["states"]["Failed"] == 1 and stats["states"]["Scheduled"] == 1 and stats["retries"] == 0
    failed = text(client, f"/jobs/{seeded['failed']}")
    assert "boom &lt;b&gt;bold&lt;/b&gt;" in failed and "<b>bold</b>" not in failed
    listing = text(client, "/jobs/state/Failed")
    assert seeded["failed"] in listing and "RuntimeError" in listing and "boom &lt;b&gt;bold" in listing
    assert 'taskfire_jobs{state="Failed"} 1.0' in text(client, "/metrics")
    assert client.get(f"/api/jobs/{seeded['succeeded']}").get_json()["result"] == {"rows": 3}
    assert seeded["failed"] in text(client, "/jobs/state/Failed?function=tests.jobs:record_order")
    assert seeded["failed"] not in text(client, "/jobs/state/Failed?function=tests.jobs:add")


class Inline(HTMLParser):
    """Whatever a Content-Security-Policy without 'unsafe-inline' would block."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag, attrs):
        names = {name for name, _ in attrs}
        if tag == "style" or (tag == "script" and "src" not in names):
            self.found.append(f"<{tag}> inline")
        self.found += [f"{tag} {name}=" for name in names if name == "style" or name.startswith("on")]
        self.found += [f"{tag} {name}=javascript:" for name, value in attrs
                       if name in ("href", "action") and (value or "").lower().startswith("javascript:")]


def test_every_response_carries_the_security_headers_and_no_page_has_inline_script_or_style(tf, seeded):
    client = create_app(tf).test_client()
    token = csrf_of(client)
    responses = {path: client.get(path) for path in [*PAGES, f"/jobs/{seeded['failed']}", "/static/app.js",
                                                    "/jobs/nope", "/jobs/state/Nope"]}
    responses["POST"] = client.post(f"/jobs/{seeded['failed']}/requeue", data={"csrf": token})
    responses["401"] = create_app(tf, basic_auth=("ops", "pw")).test_client().get("/")
    responses["403"] = create_app(tf).test_client().get("/", environ_base={"REMOTE_ADDR": "10.0.0.9"})
    for name, r in responses.items():
        csp = r.headers.get("Content-Security-Policy", "")
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "style-src 'self'" in csp, name
        assert "unsafe-inline" not in csp, name
        assert (r.headers.get("X-Frame-Options"), r.headers.get("X-Content-Type-Options"),
                r.headers.get("Referrer-Policy")) == ("DENY", "nosniff", "same-origin"), name
        if r.mimetype == "text/html":
            parser = Inline()
            parser.feed(r.get_data(as_text=True))
            assert parser.found == [], (name, parser.found)


def test_retries_lists_the_retries_that_thousands_of_jobs_due_sooner_used_to_hide(tf):
    # Given 8,119 scheduled jobs, 6,000 due sooner than the 20 retries
    sooner = tf.enqueue_many(jobs.add, [(i, 1) for i in range(6000)])
    tf.storage.transitions([transition_for(i, Scheduled(delay=60)) for i in sooner])
    later = tf.enqueue_many(jobs.add, [(i, 2) for i in range(2099)])
    tf.storage.transitions([transition_for(i, Scheduled(delay=7200)) for i in later])
    retrying = tf.enqueue_many(jobs.fails_with, [("connection",)] * 20)
    retry(tf, retrying, delay=3600)
    client = create_app(tf).test_client()
    # Then the page lists every one, the nav counts them, the API agrees
    page = text(client, "/retries")
    assert all(i in page for i in retrying) and "No job is waiting to be retried" not in page
    assert re.search(r'data-count="Retries">20<', page)
    assert "TimeoutError" in page and "Retry attempt 1 of 3: slow" in page
    assert {j["id"] for j in client.get("/api/retries?limit=100").get_json()["jobs"]} == set(retrying)
    assert not any(i in page for i in sooner[:50])


def test_failed_jobs_are_found_by_function_and_exception_at_any_depth(tf):
    # Given 20 failures of one function older than 6,000 of another
    old = jobs.record_order.options(queue="parked").enqueue_many([(f"o{i}",) for i in range(20)])
    fail(tf, old, "billing.CardDeclined", "card ending 4242 declined")
    fail(tf, tf.enqueue_many(jobs.add, [(i, 1) for i in range(6000)]), "ValueError")
    client = create_app(tf).test_client()
    # Then the function filter finds them, says how many, and so does the exception filter
    page = text(client, "/jobs/state/Failed?function=tests.jobs:record_order")
    assert all(i in page for i in old) and "No failed jobs" not in page
    assert "1–20 of 20" in page and '<option value="tests.jobs:record_order" selected>' in page
    assert ">tests.jobs:record_order (20)<" in page and ">tests.jobs:add (6,000)<" in page
    by_exception = text(client, "/jobs/state/Failed?exception=billing.CardDeclined")
    assert all(i in by_exception for i in old) and "card ending 4242 declined" in by_exception
    both = text(client, "/jobs/state/Failed?function=tests.jobs:add&exception=billing.CardDeclined")
    assert "No failed jobs" in both
    # And the search box finds them by a part of the function's or the exception's name
    found = text(client, "/jobs/find?q=carddecl")
    assert 'href="/jobs/state/Failed?exception=billing.CardDeclined"' in found
    assert "tests.jobs:record_order" not in found
    assert 'href="/jobs/state/Failed?function=tests.jobs:record_order"' in text(client, "/jobs/find?q=record_ord")
    api = client.get("/api/jobs/state/Failed?function=tests.jobs:record_order&limit=5").get_json()
    assert api["total"] == 20 and len(api["jobs"]) == 5 and api["more"]


def test_requeue_all_on_a_filtered_view_requeues_only_the_jobs_it_shows(tf):
    card = jobs.record_order.options(queue="parked").enqueue_many([(f"o{i}",) for i in range(3)])
    fail(tf, card, "billing.CardDeclined")
    other = tf.enqueue_many(jobs.add, [(i, 1) for i in range(4)])
    fail(tf, other, "ValueError")
    client = create_app(tf).test_client()
    path = "/jobs/state/Failed?function=tests.jobs:record_order"
    page = text(client, path)
    assert "Requeue 3 failed jobs of function tests.jobs:record_order?" in page  # what the confirmation says
    r = client.post("/jobs/state/Failed/all", follow_redirects=True,
                    data={"csrf": csrf_of(client), "action": "requeue", "function": "tests.jobs:record_order",
                          "next": path})
    assert "3 Failed job(s) of function tests.jobs:record_order requeued." in r.get_data(as_text=True)
    assert [state_of(tf, i) for i in card] == ["Enqueued"] * 3 and [state_of(tf, i) for i in other] == ["Failed"] * 4
    # Another state's text filter: only the jobs it matched
    done = tf.enqueue_many(jobs.add, [(i, 2) for i in range(2)]) + [jobs.echo.enqueue(1)]
    tf.storage.transitions([transition_for(i, Succeeded()) for i in done])
    client.post("/jobs/state/Succeeded/all", data={"csrf": csrf_of(client), "action": "delete", "function": "echo"})
    assert [state_of(tf, i) for i in done] == ["Succeeded", "Succeeded", "Deleted"]


def test_a_text_filter_on_a_long_list_says_how_far_it_looked(tf):
    ids = tf.enqueue_many(jobs.add, [(i, 1) for i in range(5010)])
    tf.storage.transitions([transition_for(i, Succeeded()) for i in ids])
    page = text(create_app(tf).test_client(), "/jobs/state/Succeeded?function=add")
    assert "Looked for “add” among the newest 5,000 of 5,010 succeeded jobs only" in page


def test_the_enqueued_link_shows_the_queues_to_pick_from(tf):
    jobs.record_order.options(queue="parked").enqueue_many([(f"o{i}",) for i in range(1200)])
    jobs.add.enqueue(1, 2)
    page = text(create_app(tf).test_client(), "/jobs/state/Enqueued")
    assert 'href="/jobs/state/Enqueued?queue=parked">parked <b>1,200</b></a>' in page
    assert 'href="/jobs/state/Enqueued?queue=default">default <b>1</b></a>' in page
    assert "pick one above" in page and "No enqueued jobs" not in page


def test_each_state_lists_the_columns_it_needs(tf, seeded, start_worker):
    client = create_app(tf).test_client()
    scheduled = text(client, "/jobs/state/Scheduled")
    assert "None" not in scheduled and "<th>Due</th>" in scheduled and "an hour from now" in scheduled
    assert '(&#34;later&#34;)' in scheduled  # its arguments
    succeeded = text(client, "/jobs/state/Succeeded")
    assert "<th>Total duration</th>" in succeeded and "1.8 s" in succeeded and '{&#34;rows&#34;: 3}' in succeeded
    failed = text(client, "/jobs/state/Failed")
    row = failed[failed.index(seeded["failed"]):]
    assert "<th>Failed</th><th>Exception</th><th>Message</th>" in failed and row.index("<time datetime=") < row.index(
        "RuntimeError") < row.index("boom &lt;b&gt;bold")
    tf.delete(seeded["scheduled"], reason="Cancelled by the <i>shop</i>")
    assert "Cancelled by the &lt;i&gt;shop&lt;/i&gt;" in text(client, "/jobs/state/Deleted")
    parent = tf.schedule(jobs.add, 3600, 1, 1)
    child = tf.continue_with(parent, jobs.add, 2, 2)
    awaiting = text(client, "/jobs/state/Awaiting")
    assert child in awaiting and f'href="/jobs/{parent}">job {parent}</a>' in awaiting
    start_worker()
    running = jobs.import_rows.enqueue(4)
    wait_for(lambda: (tf.get_job(running).progress or {}).get("done") == 2, 20, "the import to report 2 of 4")
    processing = text(client, "/jobs/state/Processing")
    server = tf.servers()[0]["id"]
    assert running in processing and server in processing and '<progress max="1" value="0.5">' in processing
    tf.storage.redis.set(tf.prefix + "test:go", 1)
    wait_state(tf, running, "Succeeded")


def test_huge_arguments_and_results_are_shown_in_part_with_a_link_to_the_whole(tf):
    big = "x" * 3_000_000
    job_id = jobs.echo.enqueue(big)
    tf.change_state(job_id, Succeeded(), result={"echo": big})
    client = create_app(tf).test_client()
    page = text(client, f"/jobs/{job_id}")
    assert len(page) < 100_000 and page.count("Shown in part.") == 2
    assert f'href="/api/jobs/{job_id}/arguments"' in page and f'href="/api/jobs/{job_id}/result"' in page
    assert client.get(f"/api/jobs/{job_id}/arguments").get_json()["args"] == [big]
    assert client.get(f"/api/jobs/{job_id}/result").get_json() == {"echo": big}
    assert "(result: 3.0 MB)" in text(client, "/jobs/state/Succeeded")  # the list reads no big value


def test_a_job_page_shows_its_worker_latency_and_duration_up_front(tf, start_worker):
    start_worker()
    job_id = jobs.sleep_for.enqueue(0.2)
    wait_state(tf, job_id, "Succeeded")
    page = text(create_app(tf).test_client(), f"/jobs/{job_id}")
    facts = page[page.index('<dl class="facts">'):page.index("</dl>")]
    worker = tf.get_job(job_id).history[-2].data["worker"]  # type: ignore[union-attr]
    assert f'<dt>Worker</dt><dd class="mono">{worker}</dd>' in facts
    assert re.search(r"<dt>Duration</dt><dd>2\d\d ms", facts) and re.search(r"<dt>Latency</dt><dd>[\d.]+ m?s", facts)
    assert 'class="job-title"' in page


def test_times_are_relative_with_the_exact_utc_time_on_hover(tf, seeded):
    page = text(create_app(tf).test_client(), "/jobs/state/Scheduled")
    when = tf.get_job(seeded["scheduled"]).due_at  # type: ignore[union-attr]
    exact = when.strftime("%Y-%m-%d %H:%M:%S UTC")
    assert re.search(rf'<time datetime="{when.strftime("%Y-%m-%dT%H:%M:%S")}\.\d{{3}}Z" title="{exact}">'
                     r"(59 minutes|an hour) from now</time>", page)


def test_the_overview_graphs_a_day_and_a_week_of_hourly_outcomes(tf, start_worker):
    start_worker()
    ids = [jobs.add.enqueue(i, 1) for i in range(3)]
    for i in ids:
        wait_state(tf, i, "Succeeded")
    client = create_app(tf).test_client()
    hourly = client.get("/api/stats").get_json()["hourly"]
    assert len(hourly["succeeded"]) == len(hourly["failed"]) == 7 * 24
    # The last two buckets: the hour may turn between the runs and the read.
    assert sum(hourly["succeeded"][-2:]) == 3 and sum(hourly["failed"][-2:]) == 0
    page = text(client, "/")
    assert 'data-hours="24"' in page and 'data-hours="168"' in page
    assert '<span data-total="succeeded">3</span>' in page and "tbody data-queues" in page  # app.js refreshes these


def test_recurring_schedules_are_described_in_words_and_timelines_show_durations(tf, seeded, start_worker):
    tf.recurring.add_or_update("by-hand", jobs.record_order, Cron.never(), args=("x",))
    client = create_app(tf).test_client()
    page = text(client, "/recurring")
    assert "At 02:00" in page and "Never: no date matches it" in page and "February" not in page
    start_worker()
    jid = jobs.add.enqueue(2, 3)
    wait_state(tf, jid, "Succeeded")
    page = text(client, f"/jobs/{jid}")
    assert re.search(r"after [\d.]+ (ms|s) processing", page) and re.search(r"after [\d.]+ (ms|s) enqueued", page)


def test_recurring_jobs_whose_id_holds_a_slash_have_working_buttons_and_bulk_actions(tf):
    for rid in ("reports/daily", "reports/weekly", "plain"):
        tf.recurring.add_or_update(rid, jobs.record_order, Cron.daily(3), args=(rid,))
    client = create_app(tf).test_client()
    token = csrf_of(client, "/recurring")
    r = client.post("/recurring/reports/daily/trigger", data={"csrf": token}, follow_redirects=True)
    assert "Recurring job reports/daily triggered" in r.get_data(as_text=True)
    assert client.post("/recurring/reports/daily/disable", data={"csrf": token}).status_code == 302
    assert not tf.recurring.get("reports/daily").enabled  # type: ignore[union-attr]
    r = client.post("/recurring/selected", data={"csrf": token, "action": "disable",
                                                 "ids": ["reports/weekly", "plain"]}, follow_redirects=True)
    assert "2 of 2 recurring job(s) disabled." in r.get_data(as_text=True)
    assert [j.enabled for j in tf.recurring.list()] == [False, False, False]
    client.post("/recurring/selected", data={"csrf": token, "action": "trigger", "ids": ["plain"]})
    assert tf.recurring.get("plain").last_job_id is not None  # type: ignore[union-attr]
    assert client.post("/recurring/reports/daily/remove", data={"csrf": token}).status_code == 302
    assert tf.recurring.get("reports/daily") is None
    assert "Remove recurring job plain? It will not fire again" in text(client, "/recurring")


def test_the_servers_page_says_what_each_server_is_running_and_can_quiet_it(tf, start_worker):
    start_worker()
    jid = jobs.until_cancelled.enqueue()
    wait_state(tf, jid, "Processing")
    client = create_app(tf).test_client()
    (facts,) = client.get("/api/servers").get_json()
    assert [r["id"] for r in facts["running"]] == [jid] and facts["responding"]
    page = text(client, "/servers")
    assert f'href="/jobs/{jid}">tests.jobs:until_cancelled</a>' in page
    assert "finishes its running jobs and takes no new ones" in page  # the Quiet button asks first
    tf.delete(jid)
    wait_for(lambda: not client.get("/api/servers").get_json()[0]["running"], 20, "the job to stop")
    assert "idle" in text(client, "/servers")
    r = client.post(f"/servers/{facts['id']}/quiet", data={"csrf": csrf_of(client)}, follow_redirects=True)
    assert "asked to go quiet" in r.get_data(as_text=True)
    wait_for(lambda: tf.servers()[0].get("state") == "quiet", 20, "the server to go quiet")


def test_a_server_that_stopped_beating_shows_as_not_responding_before_it_is_removed(tf):
    # Given a server that beat once, every 0.2 s as it says, with a 60 s timeout
    tf.storage.heartbeat("web-9:123", 60_000, {"host": "web-9", "state": "running", "interval": "0.2",
                                                "timeout": "60"})
    client = create_app(tf).test_client()
    wait_for(lambda: "not responding" in text(client, "/servers"), 10, "the server to be shown as not responding")
    assert client.get("/api/servers").get_json()[0]["status"] == "not responding"
    assert [s["id"] for s in tf.servers()] == ["web-9:123"]  # still registered: only the page knows


def test_queues_can_be_paused_purged_and_moved(tf):
    parked = jobs.record_order.options(queue="parked").enqueue_many([(f"o{i}",) for i in range(30)])
    client = create_app(tf).test_client()
    page = text(client, "/queues")
    assert "Delete the 30 jobs waiting in queue parked?" in page and "Move the 30 jobs waiting in queue parked" in page
    token = csrf_of(client)
    r = client.post("/queues/parked/move", data={"csrf": token, "to": "later"}, follow_redirects=True)
    assert "30 job(s) moved from queue parked to later." in r.get_data(as_text=True)
    assert {tf.get_job(i).queue for i in parked} == {"later"}  # type: ignore[union-attr]
    assert client.post("/queues/later/move", data={"csrf": token, "to": "Not A Queue!"}).status_code == 400
    r = client.post("/queues/later/purge", data={"csrf": token}, follow_redirects=True)
    assert "Queue later purged: 30 job(s) deleted." in r.get_data(as_text=True)
    assert {state_of(tf, i) for i in parked} == {"Deleted"}


def test_retries_can_all_be_run_now_or_deleted(tf):
    scheduled = tf.schedule(jobs.add, 3600, 1, 1)
    retrying = tf.enqueue_many(jobs.fails_with, [("connection",)] * 4)
    retry(tf, retrying)
    client = create_app(tf).test_client()
    page = text(client, "/retries")
    assert "Delete all 4 jobs waiting for a retry? They will not run again." in page
    r = client.post("/retries/all", data={"csrf": csrf_of(client), "action": "requeue"}, follow_redirects=True)
    assert "4 job(s) waiting for a retry retried now." in r.get_data(as_text=True)
    assert {state_of(tf, i) for i in retrying} == {"Enqueued"} and state_of(tf, scheduled) == "Scheduled"


def test_the_batch_page_pages_its_members_and_lists_its_continuations(tf):
    with tf.batch() as b:
        members = [b.enqueue(jobs.record_order.options(queue="parked"), f"m{i}") for i in range(1000)]
    after = tf.continue_batch_with(b.id, jobs.add, 1, 2)
    client = create_app(tf).test_client()
    first = text(client, f"/batches/{b.id}")
    assert "1–50 of 1,000" in first and members[0] in first and members[50] not in first
    assert f'href="/batches/{b.id}?page=20&amp;size=50"' in first  # the last page
    assert after in first[first.index("Continuations"):first.index("Members")]
    last = text(client, f"/batches/{b.id}?page=20")
    assert members[999] in last and members[949] not in last


def test_custom_states_are_listed_and_counted_like_the_built_in_ones(tf):
    from examples.waiting_ack import WaitingAck

    jid = jobs.record_order.options(queue="parked").enqueue("custom")
    assert tf.change_state(jid, WaitingAck(reason="sent", sent_to="sms"))
    client = create_app(tf).test_client()
    menu = text(client, "/")
    assert re.search(r'href="/jobs/state/WaitingAck">WaitingAck <span class="pill" data-count="WaitingAck">1<', menu)
    listing = text(client, "/jobs/state/WaitingAck")
    assert jid in listing and "sent" in listing
    assert client.get("/api/stats").get_json()["states"]["WaitingAck"] == 1
    assert 'taskfire_jobs{state="WaitingAck"} 1.0' in text(client, "/metrics")
    assert tf.change_state(jid, Succeeded(reason="acknowledged"), "WaitingAck")
    assert client.get("/api/stats").get_json()["states"]["WaitingAck"] == 0


def test_an_application_adds_its_own_page_with_actions(tf):
    from examples.waiting_ack import WaitingAck, add_pages

    parked = jobs.record_order.options(queue="parked")
    first, second = parked.enqueue("a <i>one</i>"), parked.enqueue("b")
    for jid in (first, second):
        assert tf.change_state(jid, WaitingAck(reason="sent", sent_to="<b>sms</b>"))
    app = create_app(tf)
    add_pages(app)
    client = app.test_client()
    page = text(client, "/waiting-ack")
    assert '<a href="/waiting-ack">WaitingAck</a>' in page  # its menu item
    assert first in page and second in page and "&lt;b&gt;sms&lt;/b&gt;" in page and "<b>sms" not in page
    assert client.post(f"/waiting-ack/{first}/acknowledge").status_code == 400  # no CSRF token
    assert state_of(tf, first) == "WaitingAck"
    token = csrf_of(client)
    done = client.post(f"/waiting-ack/{first}/acknowledge", data={"csrf": token}, follow_redirects=True)
    assert f"Job {first} acknowledged." in done.get_data(as_text=True)
    rejected = client.post(f"/waiting-ack/{second}/reject", data={"csrf": token}, follow_redirects=True)
    assert f"Job {second} rejected." in rejected.get_data(as_text=True)
    assert (state_of(tf, first), state_of(tf, second)) == ("Succeeded", "Failed")
    again = client.post(f"/waiting-ack/{first}/acknowledge", data={"csrf": token}, follow_redirects=True)
    assert "was no longer waiting" in again.get_data(as_text=True)
    assert client.post(f"/waiting-ack/{first}/shrug", data={"csrf": token}).status_code == 400
    read_only = create_app(tf, read_only=True)
    add_pages(read_only)
    viewer = read_only.test_client()
    assert "Acknowledge" not in text(viewer, "/waiting-ack")
    assert viewer.post(f"/waiting-ack/{first}/reject", data={"csrf": csrf_of(viewer)}).status_code == 403


def test_batches_and_retries_have_their_lists(tf, start_worker):
    with tf.batch() as b:
        b.enqueue(jobs.add, 1, 2)
        b.enqueue(jobs.record_order.options(queue="parked"), "never runs here")
    start_worker()
    retrying = jobs.always_fails.options(retry_delays=[3600]).enqueue()
    wait_for(lambda: (tf.get_job(retrying).retry_count == 1 and state_of(tf, retrying) == "Scheduled"), 30,
             "the first attempt to fail and schedule a retry")
    wait_for(lambda: tf.get_batch(b.id).succeeded == 1, 20, "the batch's runnable member")
    client = create_app(tf).test_client()
    batches = text(client, "/batches")
    assert b.id in batches and re.search(r"1 / 2", batches)
    assert client.get("/api/batches").get_json()[0]["id"] == b.id
    retries = text(client, "/retries")
    assert retrying in retries and "ValueError" in retries
    scheduled_not_retry = tf.schedule(jobs.add, 3600, 1, 1)
    assert scheduled_not_retry not in text(client, "/retries")


def test_a_store_written_before_the_retry_and_failure_indexes_gets_them_on_first_view(tf):
    failed = tf.enqueue_many(jobs.add, [(i, 1) for i in range(30)])
    fail(tf, failed, "KeyError")
    retrying = tf.enqueue_many(jobs.fails_with, [("connection",)] * 5)
    retry(tf, retrying)
    k = tf.storage.keys
    tf.storage.redis.delete(k.retries, k.failed_functions, k.failed_exceptions, k.index_builds,
                            k.failed_by_function("tests.jobs:add"), k.failed_by_exception("KeyError"),
                            k.failed_by_exception("TimeoutError"))
    client = create_app(tf).test_client()
    page = text(client, "/retries")
    assert all(i in page for i in retrying)
    assert "1–30 of 30" in text(client, "/jobs/state/Failed?exception=KeyError")


def test_mounted_inside_another_app_under_a_prefix(tf, seeded):
    from flask import Flask
    from werkzeug.middleware.dispatcher import DispatcherMiddleware

    host = Flask("host")
    host.get("/")(lambda: "the host app")
    host.wsgi_app = DispatcherMiddleware(host.wsgi_app, {"/taskfire": create_app(tf)})  # type: ignore[method-assign]
    client = host.test_client()
    assert client.get("/").get_data(as_text=True) == "the host app"
    page = client.get("/taskfire/jobs/state/Failed").get_data(as_text=True)
    assert 'href="/taskfire/jobs/state/Failed"' in page and 'href="/taskfire/static/style.css"' in page
    assert client.get("/taskfire/static/style.css").status_code == 200
    token = re.search(r'data-csrf="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    here = re.search(r'name="next" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    assert here == "/taskfire/jobs/state/Failed"
    r = client.post(f"/taskfire/jobs/{seeded['failed']}/requeue", data={"csrf": token, "next": here})
    assert r.status_code == 302 and r.headers["Location"] == "/taskfire/jobs/state/Failed"
    assert state_of(tf, seeded["failed"]) == "Enqueued"
    r = client.post(f"/taskfire/jobs/{seeded['scheduled']}/requeue", data={"csrf": token, "next": "/elsewhere"})
    assert r.headers["Location"] == "/taskfire/"  # a path of the host app is not the dashboard's


def test_an_action_sends_the_browser_back_only_to_a_page_of_the_dashboard(tf, seeded):
    client = create_app(tf).test_client()
    token = csrf_of(client)
    target = f"/jobs/{seeded['failed']}/requeue"

    def location(**kwargs) -> str:
        tf.change_state(seeded["failed"], Failed(reason="again"))
        r = client.post(target, **kwargs)
        assert r.status_code == 302
        return r.headers["Location"]

    assert location(data={"csrf": token}, headers={"Referer": "https://evil.example/phish"}) == "/"
    for evil in ("//evil.example/x", "https://evil.example/", "javascript:alert(1)", "/\\evil.example",
                 "http://localhost.evil.example/jobs"):
        assert location(data={"csrf": token, "next": evil}) == "/", evil
    assert location(data={"csrf": token, "next": "/jobs/state/Failed?page=2"}) == "/jobs/state/Failed?page=2"
    assert location(data={"csrf": token}, headers={"Referer": "http://localhost/queues"}) == "/queues"


def test_pages_of_a_long_list_are_numbered_and_keep_the_filter(tf):
    ids = jobs.record_order.options(queue="parked").enqueue_many([(f"o{i}",) for i in range(120)])
    client = create_app(tf).test_client()
    first = text(client, "/jobs/state/Enqueued?queue=parked&function=record")
    assert ids[0] in first and ids[50] not in first  # next to run first
    assert "1–50 of 120" in first and "Prev" not in first
    assert 'href="/jobs/state/Enqueued?page=3&amp;size=50&amp;queue=parked&amp;function=record"' in first
    third = text(client, "/jobs/state/Enqueued?queue=parked&function=record&page=3")
    assert ids[119] in third and ids[99] not in third and "Next" not in third and "101–120 of 120" in third
    sized = text(client, "/jobs/state/Enqueued?queue=parked&size=10&page=2")
    assert ids[10] in sized and ids[9] not in sized and ids[20] not in sized and "11–20 of 120" in sized
    assert client.get("/jobs/state/Enqueued?queue=parked&size=5").status_code == 400
    api = client.get("/api/jobs/state/Enqueued?queue=parked&page=2&limit=100").get_json()
    assert [j["id"] for j in api["jobs"]] == ids[100:] and api["total"] == 120 and not api["more"]


def test_unknown_ids_and_states_are_friendly_404s_and_bad_parameters_are_400s(tf, seeded):
    client = create_app(tf).test_client()
    r = client.get("/jobs/" + "0" * 24)
    assert r.status_code == 404 and "no job" in r.get_data(as_text=True) and "Traceback" not in r.get_data(as_text=True)
    for path in ("/jobs/state/Failed?page=abc", "/jobs/state/Failed?page=0", "/jobs/state/Failed?page=²",
                 "/jobs/state/Succeeded?size=²", "/retries?page=²", "/batches?page=¹",
                 "/api/jobs/state/Failed?page=²", "/api/jobs/state/Failed?offset=²", "/api/jobs/state/Failed?limit=³",
                 "/api/retries?page=²", "/api/batches?offset=²"):
        r = client.get(path)
        assert r.status_code == 400, (path, r.status_code)
    assert client.get("/api/jobs/state/Failed?limit=99999").get_json()["error"].startswith("parameter 'limit'")
    assert client.get("/api/jobs/state/Failed?page=²").get_json()["error"].startswith("parameter 'page'")
    for state in ("not-a-state!", "Bogus", "Retries"):
        r = client.get(f"/jobs/state/{state}")
        assert r.status_code == 404 and "the states are Enqueued, Scheduled" in r.get_data(as_text=True), state
    assert client.get("/api/jobs/state/Bogus").status_code == 404
    assert client.get("/jobs/state/failed").status_code == 200  # the first letter's case does not matter
    assert client.get("/batches/nope").status_code == 404
    assert client.get("/jobs/x/requeue").status_code == 405


def test_actions_need_a_post_with_the_pages_csrf_token(tf, seeded):
    client = create_app(tf).test_client()
    assert client.post(f"/jobs/{seeded['failed']}/requeue").status_code == 400  # no token
    assert client.post(f"/jobs/{seeded['failed']}/requeue", data={"csrf": "forged"}).status_code == 400
    assert state_of(tf, seeded["failed"]) == "Failed"
    token = csrf_of(client)
    r = client.post(f"/jobs/{seeded['failed']}/requeue", data={"csrf": token}, follow_redirects=True)
    assert r.status_code == 200 and "requeued" in r.get_data(as_text=True)
    assert state_of(tf, seeded["failed"]) == "Enqueued"
    client.post("/jobs/selected", data={"csrf": token, "action": "delete", "ids": [seeded["scheduled"]]})
    assert state_of(tf, seeded["scheduled"]) == "Deleted"
    client.post("/recurring/nightly/trigger", data={"csrf": token})
    assert tf.recurring.get("nightly").last_job_id is not None  # type: ignore[union-attr]
    client.post("/recurring/nightly/disable", data={"csrf": token})
    assert not tf.recurring.get("nightly").enabled  # type: ignore[union-attr]
    client.post("/queues/parked/pause", data={"csrf": token})
    assert {q.name: q.paused for q in tf.queues.list()}["parked"]
    assert client.post("/queues/never-used/resume", data={"csrf": token}).status_code == 400
    tf.change_state(seeded["failed"], Failed(reason="again"))
    r = client.post("/jobs/state/Failed/all", data={"csrf": token, "action": "requeue"}, follow_redirects=True)
    assert "1 Failed job(s) requeued" in r.get_data(as_text=True)


def test_every_destructive_button_asks_first_and_says_how_many_jobs_it_touches(tf, seeded):
    fail(tf, tf.enqueue_many(jobs.add, [(i, 1) for i in range(1233)]), "ValueError")
    client = create_app(tf).test_client()
    failed = text(client, "/jobs/state/Failed")
    assert 'data-confirm="Delete 1,234 failed jobs?"' in failed
    assert 'data-confirm="Requeue 1,234 failed jobs? They run again from the start."' in failed
    assert "data-confirm-selected" in failed  # "Delete selected" counts the boxes ticked (app.js)
    assert f'data-confirm="Delete job {seeded["failed"]} (tests.jobs:record_order)?"' in text(
        client, f"/jobs/{seeded['failed']}")
    assert 'data-confirm="Remove recurring job nightly?' in text(client, "/recurring")


def test_only_local_requests_until_authorization_is_configured(tf, seeded):
    remote = {"REMOTE_ADDR": "10.1.2.3"}
    assert create_app(tf).test_client().get("/", environ_base=remote).status_code == 403
    basic = create_app(tf, basic_auth=("ops", "s3cret")).test_client()
    assert basic.get("/", environ_base=remote).status_code == 401
    assert basic.get("/", environ_base=remote, auth=("ops", "wrong")).status_code == 401
    assert basic.get("/", environ_base=remote, auth=("ops", "s3cret")).status_code == 200
    assert basic.get("/").status_code == 401  # configured: local requests need it too
    bearer = create_app(tf, bearer_token="t0ken").test_client()
    assert bearer.get("/api/stats", environ_base=remote, headers={"Authorization": "Bearer t0ken"}).status_code == 200
    assert bearer.get("/api/stats", environ_base=remote, headers={"Authorization": "Bearer nope"}).status_code == 403
    own = create_app(tf, authorize=lambda request: request.headers.get("X-Team") == "ops").test_client()
    assert own.get("/", headers={"X-Team": "ops"}, environ_base=remote).status_code == 200
    assert own.get("/", environ_base=remote).status_code == 403


def test_basic_credentials_outside_ascii_are_compared_not_refused_with_a_500(tf):
    client = create_app(tf, basic_auth=("ops", "pässwörd")).test_client()
    assert client.get("/", auth=("ops", "pässwörd")).status_code == 200
    assert client.get("/", auth=("ops", "passwörd")).status_code == 401
    assert client.get("/", auth=("öps", "s3cret")).status_code == 401
    ascii_only = create_app(tf, basic_auth=("ops", "s3cret")).test_client()
    assert ascii_only.get("/", auth=("ops", "pässwörd")).status_code == 401


def test_repeated_failed_logins_from_one_address_are_refused_for_a_while(tf):
    # Given a throttle with a clock the test moves: 3 failures in a minute lock out 120 s
    now = [1000.0]
    throttle = LoginThrottle(max_failures=3, window_s=60, lockout_s=120, max_clients=50, clock=lambda: now[0])
    client = create_app(tf, basic_auth=("ops", "s3cret"), login_throttle=throttle).test_client()
    attacker, colleague = {"REMOTE_ADDR": "10.0.0.66"}, {"REMOTE_ADDR": "10.0.0.7"}
    assert client.get("/", environ_base=attacker).status_code == 401  # no credentials: not a failure
    assert [client.get("/", environ_base=attacker, auth=("ops", f"guess{i}")).status_code
            for i in range(2)] == [401, 401]
    # When the third guess fails, it and everything after it get a 429 with Retry-After
    r = client.get("/", environ_base=attacker, auth=("ops", "guess2"))
    assert r.status_code == 429 and r.headers["Retry-After"] == "120" and "Too many failed logins" in r.text
    assert client.get("/", environ_base=attacker, auth=("ops", "s3cret")).status_code == 429  # even the right one
    now[0] += 30
    assert client.get("/api/stats", environ_base=attacker).headers["Retry-After"] == "90"
    # Then others are not affected, and the address may try again once its time is served
    assert client.get("/", environ_base=colleague, auth=("ops", "s3cret")).status_code == 200
    now[0] += 91
    assert client.get("/", environ_base=attacker, auth=("ops", "s3cret")).status_code == 200
    bearer = create_app(tf, bearer_token="t0ken", login_throttle=LoginThrottle(max_failures=2)).test_client()
    codes = [bearer.get("/api/stats", environ_base=attacker, headers={"Authorization": "Bearer nope"}).status_code
             for _ in range(3)]
    assert codes == [403, 429, 429]


def test_the_login_throttle_remembers_a_bounded_number_of_addresses(tf):
    throttle = LoginThrottle(max_failures=3, max_clients=100)
    client = create_app(tf, basic_auth=("ops", "s3cret"), login_throttle=throttle).test_client()
    for n in range(300):
        client.get("/", environ_base={"REMOTE_ADDR": f"10.9.{n // 250}.{n % 250}"}, auth=("ops", "guess"))
    assert len(throttle) == 100


def test_read_only_shows_everything_and_changes_nothing(tf, seeded):
    client = create_app(tf, read_only=True).test_client()
    page = text(client, f"/jobs/{seeded['failed']}")
    assert "Requeue" not in page and "read-only" in page
    assert client.post(f"/jobs/{seeded['failed']}/requeue", data={"csrf": csrf_of(client)}).status_code == 403
    assert state_of(tf, seeded["failed"]) == "Failed"
