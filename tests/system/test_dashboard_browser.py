"""The dashboard in real headless Chromium (Debian's, driven by Playwright), served by
`taskfire dashboard` (gunicorn) over a store a real worker filled: every page of the
menu in light and dark mode and at a phone's width with no console error (a script or
style the Content-Security-Policy blocked would be one) and nothing wider than the
screen, and the actions an operator clicks through, confirmations included. On one
server: the browser, not Redis, is under test here."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from taskfire import Cron, Failed
from tests import jobs
from tests.conftest import ROOT, report, state_of, wait_for, wait_state

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DESKTOP, PHONE = {"width": 1280, "height": 860}, {"width": 390, "height": 844}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture
def store(tf, start_worker):
    """Jobs in every state, run by a real worker, and the ids worth a page."""
    from examples.waiting_ack import WaitingAck

    start_worker()
    ids = {"ok": jobs.echo.enqueue({"invoice": 42}), "bad": jobs.always_fails.enqueue(),
           "retrying": jobs.always_fails.options(retry_delays=[3600]).enqueue(),
           "waiting": jobs.record_order.options(queue="parked").enqueue("notify"),
           "running": jobs.import_rows.enqueue(4), "later": tf.schedule(jobs.add, 3600, 1, 2)}
    with tf.batch() as b:
        for n in range(3):
            b.enqueue(jobs.add, n, 1)
    ids["batch"] = b.id
    tf.continue_batch_with(b.id, jobs.add, 9, 9)
    tf.change_state(ids["waiting"], WaitingAck(reason="sent", sent_to="sms"))
    tf.recurring.add_or_update("daily-report", jobs.record_order, Cron.daily(2), args=("report",))
    tf.recurring.add_or_update("reports/never", jobs.record_order, Cron.never(), args=("by hand",))
    wait_state(tf, ids["ok"], "Succeeded")
    wait_state(tf, ids["bad"], "Failed", 30)
    wait_for(lambda: tf.get_batch(b.id).state == "Finished", 20, "the batch to finish")
    wait_for(lambda: tf.get_job(ids["retrying"]).retry_count == 1, 20, "the retry to be scheduled")
    wait_for(lambda: (tf.get_job(ids["running"]).progress or {}).get("done") == 2, 20, "the import to be half-way")
    return ids


@pytest.fixture
def dashboard(tf, server, prefix, tmp_path):
    port = free_port()
    env = dict(os.environ, TASKFIRE_REDIS_URL=server.url, TASKFIRE_PREFIX=prefix)
    log = open(tmp_path / "dashboard.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "taskfire", "dashboard", "--bind", f"127.0.0.1:{port}",
                             "--workers", "1", "--pages", "examples.waiting_ack:add_pages"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: _answers(port), 20, "the dashboard to serve")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


class Browser:
    """One Chromium, its pages' console errors collected."""

    def __init__(self, playwright, shots: Path) -> None:
        self.browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        self.errors: list[str] = []
        self.shots = shots

    def page(self, viewport: dict[str, int], scheme: str = "light"):
        page = self.browser.new_page(viewport=viewport, color_scheme=scheme)
        page.on("console", lambda m: self.errors.append(f"{page.url}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"{page.url}: {e}"))
        return page

    def visit(self, page, url: str, shot: str | None = None) -> None:
        page.goto(url)
        page.wait_for_load_state("networkidle")
        wide = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert wide <= 1, f"{url} is {wide} px wider than the {page.viewport_size['width']} px screen"
        if shot:
            page.screenshot(path=str(self.shots / f"{shot}.png"), full_page=True)


@pytest.mark.parametrize("server", ["valkey"], indirect=True)
def test_every_page_of_the_menu_in_light_and_dark_and_on_a_phone_without_a_console_error(
        tf, store, dashboard, tmp_path):
    from playwright.sync_api import sync_playwright

    shots = Path(os.environ.get("TASKFIRE_SCREENSHOTS", tmp_path / "screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = Browser(p, shots)
        desktop = b.page(DESKTOP)
        b.visit(desktop, dashboard + "/")
        menu = desktop.eval_on_selector_all(
            "header nav a, aside a", "links => links.map(a => a.getAttribute('href'))")
        pages = sorted(set(menu) | {f"/jobs/{store['bad']}", f"/jobs/{store['ok']}", f"/batches/{store['batch']}",
                                    "/jobs/state/Enqueued?queue=parked", "/jobs/find?q=always",
                                    "/jobs/state/Failed?function=tests.jobs:always_fails"})
        assert len(pages) >= 17 and "/waiting-ack" in pages
        for scheme in ("light", "dark"):
            for viewport, name in ((DESKTOP, "desktop"), (PHONE, "phone")):
                page = b.page(viewport, scheme)
                for path in pages:
                    slug = path.strip("/").replace("/", "-").replace("?", "-").replace("=", "-") or "overview"
                    b.visit(page, dashboard + path, f"{scheme}-{name}-{slug}" if path in (
                        "/", "/jobs/state/Failed", "/retries", f"/jobs/{store['bad']}") else None)
                page.close()
        assert b.errors == []
        b.browser.close()
    report(f"dashboard: {len(pages)} pages x light/dark x desktop/phone in headless Chromium, no console error; "
           f"screenshots in {shots}")


@pytest.mark.parametrize("server", ["valkey"], indirect=True)
def test_an_operator_clicks_through_confirmations_filters_and_live_counts(tf, store, dashboard, prefix):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = Browser(p, Path("."))
        page = b.page(DESKTOP)
        answers: list[bool] = []
        questions: list[str] = []

        def on_dialog(dialog) -> None:
            questions.append(dialog.message)
            dialog.accept() if answers.pop(0) else dialog.dismiss()

        page.on("dialog", on_dialog)
        b.visit(page, dashboard + "/")
        assert page.title().startswith("Overview")
        # Live counts: a job that fails now shows in the menu's Failed count without a reload
        failed_before = page.locator("header [data-count=Failed]").inner_text()
        attempts_before = page.locator("[data-total=failed]").inner_text()
        tf.change_state(store["later"], Failed(reason="by hand", exception_type="RuntimeError"))
        jobs.add.options(queue="fresh").enqueue(1, 1)
        wait_for(lambda: page.locator("header [data-count=Failed]").inner_text() != failed_before, 10,
                 "the live count to move")
        # ... and so do the totals and the queue table
        wait_for(lambda: page.locator("[data-total=failed]").inner_text() != attempts_before, 10, "the totals")
        wait_for(lambda: "fresh" in page.locator("tbody[data-queues]").inner_text(), 10, "the new queue")
        # A graph's tooltip
        page.locator("canvas.history").first.hover()
        tip = page.locator(".chart:has(canvas.history) .tooltip").first
        assert "succeeded: " in tip.inner_text() and "failed: " in tip.inner_text()
        # A destructive action asks first: dismissed, nothing happens; accepted, it is done
        page.goto(f"{dashboard}/jobs/{store['bad']}")
        answers.append(False)
        page.click("button:has-text('Delete')")
        assert questions[-1] == f"Delete job {store['bad']} (tests.jobs:always_fails)?"
        assert state_of(tf, store["bad"]) == "Failed"
        answers.append(True)
        page.click("button:has-text('Delete')")
        page.locator(".flash").wait_for()
        assert "deleted" in page.locator(".flash").inner_text() and state_of(tf, store["bad"]) == "Deleted"
        assert page.url == f"{dashboard}/jobs/{store['bad']}"  # back where it was clicked
        # Delete selected counts the boxes ticked
        page.goto(f"{dashboard}/jobs/state/Failed")
        page.check("input[data-select-all]")
        answers.append(False)
        page.click("button:has-text('Delete selected')")
        assert questions[-1] == "Delete 1 selected job?"
        # A recurring job whose id holds a slash, and one more from the bulk buttons
        page.goto(f"{dashboard}/recurring")
        assert "Never: no date matches it" in page.content()
        page.click("[id='recurring-reports/never'] button:has-text('Trigger now')")
        assert "triggered" in page.locator(".flash").inner_text()
        page.check("input[name=ids][value='daily-report']")
        page.click("button:has-text('Disable selected')")
        assert "1 of 1 recurring job(s) disabled." in page.locator(".flash").inner_text()
        # Retries, times in UTC on request, and the live toggle
        page.goto(f"{dashboard}/retries")
        assert store["retrying"] in page.content()
        page.select_option("select[data-pref=tz]", "utc")
        assert page.locator("time").first.get_attribute("title").endswith(" UTC")  # type: ignore[union-attr]
        page.select_option("select[data-pref=tz]", "local")
        assert not page.locator("time").first.get_attribute("title").endswith(" UTC")  # type: ignore[union-attr]
        polls: list[str] = []
        page.on("request", lambda r: polls.append(r.url) if "/api/stats" in r.url else None)
        page.reload()
        page.wait_for_load_state("networkidle")
        assert polls  # live: the page polls as soon as it loads
        page.uncheck("input[data-pref=live]")
        polls.clear()
        page.reload()
        page.wait_for_load_state("networkidle")
        assert polls == [] and not page.is_checked("input[data-pref=live]")  # off, and remembered
        # The application's own page, and its action
        page.click("header >> text=WaitingAck")
        page.click(f"#ack-{store['waiting']} button:has-text('Acknowledge')")
        assert f"Job {store['waiting']} acknowledged." in page.locator(".flash").inner_text()
        assert b.errors == []
        b.browser.close()
    tf.storage.redis.set(prefix + "test:go", 1)  # lets the import finish
