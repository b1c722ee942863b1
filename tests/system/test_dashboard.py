"""The dashboard: every route through Flask's test client against a real server, and the
pages in real headless Chromium (Debian's, driven by Playwright) served by gunicorn."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from taskfire import Cron, Failed, Succeeded
from taskfire_dashboard import create_app
from tests import jobs
from tests.conftest import ROOT, report, state_of, wait_for, wait_state

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def csrf_of(client) -> str:
    page = client.get("/").get_data(as_text=True)
    return re.search(r'data-csrf="([^"]+)"', page).group(1)  # type: ignore[union-attr]


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
    tf.change_state(ids["succeeded"], Succeeded(), result={"rows": 3})
    tf.recurring.add_or_update("nightly", jobs.record_order, Cron.daily(2), args=("nightly",))
    return ids


def test_every_page_renders_with_real_data_and_escapes_what_users_wrote(tf, seeded):
    client = create_app(tf).test_client()
    walks = lambda: {k: v["calls"] for k, v in tf.storage.redis.info("commandstats").items()  # noqa: E731
                     if k in ("cmdstat_keys", "cmdstat_scan")}
    before = walks()
    for path in ["/", "/jobs/state/Enqueued?queue=parked", "/jobs/state/Scheduled", "/jobs/state/Failed",
                 "/jobs/state/Succeeded", "/jobs/state/Deleted", "/jobs/state/Awaiting", "/jobs/state/Processing",
                 "/recurring", "/servers", "/queues", "/retries", "/batches", f"/jobs/{seeded['failed']}",
                 "/api/stats", "/api/jobs/state/Failed", f"/api/jobs/{seeded['succeeded']}", "/api/servers",
                 "/api/recurring", "/api/batches", "/api/queues", "/metrics"]:
        r = client.get(path)
        assert r.status_code == 200, (path, r.status_code)
    assert walks() == before  # no page walks the keyspace (KEYS or SCAN)
    page = client.get(f"/jobs/{seeded['enqueued']}").get_data(as_text=True)
    assert "&lt;script&gt;alert(" in page and "<script>alert(" not in page
    assert "parked" in [q["name"] for q in client.get("/api/queues").get_json()]
    kept = client.get("/jobs/state/Succeeded").get_data(as_text=True)
    assert "Listing the 1 kept: succeeded jobs are kept 24.0 h (the newest 10000 at most)" in kept
    stats = client.get("/api/stats").get_json()
    assert stats["states"]["Succeeded"] == stats["totals"]["succeeded"] == 1 and stats["kept"]["Succeeded"] == 1
    failed = client.get(f"/jobs/{seeded['failed']}").get_data(as_text=True)
    assert "boom &lt;b&gt;bold&lt;/b&gt;" in failed and "<b>bold</b>" not in failed
    listing = client.get("/jobs/state/Failed").get_data(as_text=True)
    assert seeded["failed"] in listing and "RuntimeError" in listing
    assert seeded["enqueued"] in client.get("/jobs/state/Enqueued?queue=parked").get_data(as_text=True)
    assert "nightly" in client.get("/recurring").get_data(as_text=True)
    stats = client.get("/api/stats").get_json()
    assert stats["states"]["Failed"] == 1 and stats["states"]["Scheduled"] == 1
    assert 'taskfire_jobs{state="Failed"} 1' in client.get("/metrics").get_data(as_text=True)
    assert client.get(f"/api/jobs/{seeded['succeeded']}").get_json()["result"] == {"rows": 3}
    filtered = client.get("/jobs/state/Failed?function=record_order").get_data(as_text=True)
    assert seeded["failed"] in filtered
    assert seeded["failed"] not in client.get("/jobs/state/Failed?function=nomatch").get_data(as_text=True)


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
    page = client.get("/").get_data(as_text=True)
    assert 'data-hours="24"' in page and 'data-hours="168"' in page


def test_recurring_schedules_are_described_in_words_and_timelines_show_durations(tf, seeded, start_worker):
    client = create_app(tf).test_client()
    assert "Every day at 02:00" in client.get("/recurring").get_data(as_text=True)
    start_worker()
    jid = jobs.add.enqueue(2, 3)
    wait_state(tf, jid, "Succeeded")
    page = client.get(f"/jobs/{jid}").get_data(as_text=True)
    assert re.search(r"after [\d.]+ (ms|s) processing", page) and re.search(r"after [\d.]+ (ms|s) enqueued", page)


def test_the_servers_page_says_what_each_server_is_running(tf, start_worker):
    start_worker()
    jid = jobs.until_cancelled.enqueue()
    wait_state(tf, jid, "Processing")
    client = create_app(tf).test_client()
    (facts,) = client.get("/api/servers").get_json()
    assert [r["id"] for r in facts["running"]] == [jid]
    page = client.get("/servers").get_data(as_text=True)
    assert f'href="/jobs/{jid}">tests.jobs:until_cancelled</a>' in page
    tf.delete(jid)
    wait_for(lambda: not client.get("/api/servers").get_json()[0]["running"], 20, "the job to stop")
    assert "idle" in client.get("/servers").get_data(as_text=True)


def test_custom_states_are_listed_and_counted_like_the_built_in_ones(tf):
    from examples.waiting_ack import WaitingAck

    jid = jobs.record_order.options(queue="parked").enqueue("custom")
    assert tf.change_state(jid, WaitingAck(reason="sent", sent_to="sms"))
    client = create_app(tf).test_client()
    menu = client.get("/").get_data(as_text=True)
    assert re.search(r'href="/jobs/state/WaitingAck">WaitingAck <span class="pill" data-count="WaitingAck">1<', menu)
    listing = client.get("/jobs/state/WaitingAck").get_data(as_text=True)
    assert jid in listing
    assert client.get("/api/stats").get_json()["states"]["WaitingAck"] == 1
    assert 'taskfire_jobs{state="WaitingAck"} 1' in client.get("/metrics").get_data(as_text=True)
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
    page = client.get("/waiting-ack").get_data(as_text=True)
    assert '<a href="/waiting-ack">WaitingAck</a>' in page  # its menu item
    assert first in page and second in page and "&lt;b&gt;sms&lt;/b&gt;" in page and "<b>sms" not in page
    assert client.post(f"/waiting-ack/{first}/acknowledge").status_code == 400  # no CSRF token
    assert state_of(tf, first) == "WaitingAck"
    token = csrf_of(client)
    done = client.post(f"/waiting-ack/{first}/acknowledge", data={"csrf": token}, follow_redirects=True)
    assert f"Job {first} acknowledged." in done.get_data(as_text=True)
    client.post(f"/waiting-ack/{second}/reject", data={"csrf": token})
    assert (state_of(tf, first), state_of(tf, second)) == ("Succeeded", "Failed")
    again = client.post(f"/waiting-ack/{first}/acknowledge", data={"csrf": token}, follow_redirects=True)
    assert "was no longer waiting" in again.get_data(as_text=True)
    assert client.post(f"/waiting-ack/{first}/shrug", data={"csrf": token}).status_code == 400
    read_only = create_app(tf, read_only=True)
    add_pages(read_only)
    viewer = read_only.test_client()
    assert "Acknowledge" not in viewer.get("/waiting-ack").get_data(as_text=True)
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
    batches = client.get("/batches").get_data(as_text=True)
    assert b.id in batches and re.search(r"1 / 2", batches)
    assert [x.id for x in tf.list_batches()] == [b.id]
    assert client.get("/api/batches").get_json()[0]["id"] == b.id
    retries = client.get("/retries").get_data(as_text=True)
    assert retrying in retries and "ValueError" in retries
    scheduled_not_retry = tf.schedule(jobs.add, 3600, 1, 1)
    assert scheduled_not_retry not in client.get("/retries").get_data(as_text=True)


def test_mounted_inside_another_app_under_a_prefix(tf, seeded):
    from flask import Flask
    from werkzeug.middleware.dispatcher import DispatcherMiddleware

    host = Flask("host")
    host.get("/")(lambda: "the host app")
    host.wsgi_app = DispatcherMiddleware(host.wsgi_app, {"/taskfire": create_app(tf)})  # type: ignore[method-assign]
    client = host.test_client()
    assert client.get("/").get_data(as_text=True) == "the host app"
    page = client.get("/taskfire/").get_data(as_text=True)
    assert 'href="/taskfire/jobs/state/Failed"' in page and 'href="/taskfire/static/style.css"' in page
    assert client.get("/taskfire/static/style.css").status_code == 200
    token = re.search(r'data-csrf="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    r = client.post(f"/taskfire/jobs/{seeded['failed']}/requeue", data={"csrf": token})
    assert r.status_code == 302 and r.headers["Location"].startswith("/taskfire/")
    assert state_of(tf, seeded["failed"]) == "Enqueued"


def test_pages_of_a_long_list_link_to_each_other_keeping_the_filter(tf):
    ids = jobs.record_order.options(queue="parked").enqueue_many([(f"o{i}",) for i in range(120)])
    client = create_app(tf).test_client()
    first = client.get("/jobs/state/Enqueued?queue=parked&function=record").get_data(as_text=True)
    assert ids[0] in first and ids[50] not in first  # next to run first
    assert 'href="/jobs/state/Enqueued?page=2&amp;queue=parked&amp;function=record"' in first and "Newer" not in first
    third = client.get("/jobs/state/Enqueued?queue=parked&function=record&page=3").get_data(as_text=True)
    assert ids[119] in third and ids[99] not in third and "Older" not in third
    assert 'href="/jobs/state/Enqueued?page=2&amp;queue=parked&amp;function=record"' in third


def test_unknown_ids_are_friendly_404s_and_bad_parameters_are_400s(tf, seeded):
    client = create_app(tf).test_client()
    r = client.get("/jobs/" + "0" * 24)
    assert r.status_code == 404 and "no job" in r.get_data(as_text=True) and "Traceback" not in r.get_data(as_text=True)
    assert client.get("/jobs/state/Failed?page=abc").status_code == 400
    assert client.get("/jobs/state/Failed?page=0").status_code == 400
    assert client.get("/api/jobs/state/Failed?limit=99999").get_json()["error"].startswith("parameter 'limit'")
    assert client.get("/jobs/state/not-a-state!").status_code == 400
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
    r = client.post("/jobs/state/Failed/requeue-all", data={"csrf": token}, follow_redirects=True)
    assert "1 Failed job(s) requeued" in r.get_data(as_text=True)


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


def test_read_only_shows_everything_and_changes_nothing(tf, seeded):
    client = create_app(tf, read_only=True).test_client()
    page = client.get(f"/jobs/{seeded['failed']}").get_data(as_text=True)
    assert "Requeue" not in page and "read-only" in page
    assert client.post(f"/jobs/{seeded['failed']}/requeue", data={"csrf": csrf_of(client)}).status_code == 403
    assert state_of(tf, seeded["failed"]) == "Failed"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_pages_in_headless_chromium(tf, server, prefix, start_worker, tmp_path):
    from playwright.sync_api import sync_playwright

    from examples.waiting_ack import WaitingAck

    start_worker()
    ok = jobs.echo.enqueue({"invoice": 42})
    bad = jobs.always_fails.enqueue()
    retrying = jobs.always_fails.options(retry_delays=[3600]).enqueue()
    with tf.batch() as b:
        for n in range(3):
            b.enqueue(jobs.add, n, 1)
    waiting = jobs.record_order.options(queue="parked").enqueue("notify")
    tf.change_state(waiting, WaitingAck(reason="sent", sent_to="sms"))
    tf.recurring.add_or_update("daily-report", jobs.record_order, Cron.daily(2), args=("report",))
    wait_state(tf, ok, "Succeeded")
    wait_state(tf, bad, "Failed", 30)
    wait_for(lambda: tf.get_batch(b.id).state == "Finished", 20, "the batch to finish")
    wait_for(lambda: tf.get_job(retrying).retry_count == 1, 20, "the retry to be scheduled")
    port = free_port()
    env = dict(os.environ, TASKFIRE_REDIS_URL=server.url, TASKFIRE_PREFIX=prefix)
    log = open(tmp_path / "dashboard.log", "wb")
    dash = subprocess.Popen([sys.executable, "-m", "taskfire", "dashboard", "--bind", f"127.0.0.1:{port}",
                             "--workers", "1", "--pages", "examples.waiting_ack:add_pages"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    shots = Path(os.environ.get("TASKFIRE_SCREENSHOTS", tmp_path / "screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(port), 20, "the dashboard to serve")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            page.goto(base + "/")
            assert page.title().startswith("Overview")
            page.locator("[data-count=Failed]").first.wait_for()
            page.screenshot(path=str(shots / "overview.png"), full_page=True)
            page.click("text=Failed")
            page.click(f"text={bad}")
            assert "this job always fails" in page.content()
            page.screenshot(path=str(shots / "failed-job.png"), full_page=True)
            page.click("button:has-text('Requeue')")
            page.locator(".flash").wait_for()
            assert "requeued" in page.locator(".flash").inner_text()
            page.goto(base + "/recurring")
            page.click("#recurring-daily-report button:has-text('Trigger now')")
            assert "triggered" in page.locator(".flash").inner_text()
            wait_for(lambda: "report" in [v.decode() for v in tf.storage.redis.lrange(prefix + "test:order", 0, -1)],
                     what="the triggered job to run")
            page.screenshot(path=str(shots / "recurring.png"), full_page=True)
            page.click("text=Retries")
            assert retrying in page.content()
            page.screenshot(path=str(shots / "retries.png"), full_page=True)
            page.click("header >> text=Batches")
            page.click(f"text={b.id}")
            assert "3 succeeded" in page.content()
            page.screenshot(path=str(shots / "batch.png"), full_page=True)
            page.click("header >> text=WaitingAck")
            page.screenshot(path=str(shots / "waiting-ack.png"), full_page=True)
            page.click(f"#ack-{waiting} button:has-text('Acknowledge')")
            assert "acknowledged" in page.locator(".flash").inner_text()
            assert state_of(tf, waiting) == "Succeeded"
            page.emulate_media(color_scheme="dark")
            page.goto(base + "/servers")
            page.screenshot(path=str(shots / "servers-dark.png"), full_page=True)
            phone = browser.new_page(viewport={"width": 390, "height": 844})
            phone.goto(base + f"/jobs/{ok}")
            phone.screenshot(path=str(shots / "job-phone.png"), full_page=True)
            browser.close()
    finally:
        dash.terminate()
        dash.wait(10)
        log.close()
    report(f"dashboard screenshots (headless Chromium via Playwright): {shots}")


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False
