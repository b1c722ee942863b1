"""Screenshots of the dashboard's main pages, for docs/images/dashboard/: a throwaway
server filled by a real worker running a small shop's jobs (benchmarks/shop_jobs.py),
the dashboard served by `taskfire dashboard`, pages taken by headless Chromium.

    python -m benchmarks.screenshots --out docs/images/dashboard --tag after

Writes <tag>-overview.png, <tag>-failed.png, <tag>-retries.png and <tag>-job.png (and,
with --all, every page of the menu in light and dark mode).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from taskfire import Cron, Taskfire
from taskfire.embedded import EmbeddedServer, free_port

from . import shop_jobs as shop

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "shop:"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def wait(predicate, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.1)
    return value


def fill(tf: Taskfire) -> dict[str, str]:
    """What the worker turns into every kind of job; returns ids worth a page."""
    ids = {}
    charges = [tf.enqueue(shop.charge_card, 1000 + n, round(19.9 + n * 3.25, 2)) for n in range(60)]
    receipts = [tf.enqueue(shop.send_receipt, 1000 + n, f"customer{n}@example.com") for n in range(40)]
    ids["failed"] = tf.enqueue(shop.import_prices, "prices-2026-11.csv",
                               [{"sku": f"SKU-{n:04d}", "price": "abc" if n == 2 else n * 1.5} for n in range(40)])
    for warehouse in ("north", "south", "east"):
        tf.enqueue(shop.sync_inventory, warehouse)
    tf.enqueue(shop.build_report, "2026-11-23")
    for n in range(25):
        shop.send_receipt.options(queue="emails").enqueue(2000 + n, f"later{n}@example.com")
    for n in range(8):
        shop.charge_card.options(queue="low").enqueue(3000 + n, 5.0)
    tf.schedule(shop.build_report, 7200, "2026-11-24")
    tf.recurring.add_or_update("nightly-report", shop.build_report, Cron.daily(2), args=("today",))
    tf.recurring.add_or_update("inventory/north", shop.sync_inventory, Cron.hourly(15), args=("north",))
    tf.recurring.add_or_update("never", shop.build_report, Cron.never(), args=("by hand",))
    ids["charge"] = charges[3]
    ids["receipt"] = receipts[0]
    return ids


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="docs/images/dashboard")
    p.add_argument("--tag", default="after")
    p.add_argument("--all", action="store_true", help="every page of the menu, light and dark")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data_dir = tempfile.mkdtemp(prefix="taskfire-shots-")
    server = EmbeddedServer(data_dir)
    server.start()
    children: list[subprocess.Popen[bytes]] = []
    env = dict(os.environ, TASKFIRE_REDIS_URL=server.url, TASKFIRE_PREFIX=PREFIX, TASKFIRE_LOG_LEVEL="WARNING")
    try:
        tf = Taskfire(server.url, prefix=PREFIX)
        ids = fill(tf)
        children.append(subprocess.Popen([sys.executable, "-m", "taskfire", "worker", "benchmarks.shop_jobs",
                                          "--queues", "default", "--threads", "4", "--name", "web-1"],
                                         cwd=ROOT, env=env, start_new_session=True))
        wait(lambda: tf.storage.monitor.counts()["states"]["Failed"] >= 9, 60, "the failures")
        wait(lambda: tf.storage.monitor.counts()["states"]["Enqueued"] <= 33, 60, "the default queue to drain")
        port = free_port()
        children.append(subprocess.Popen([sys.executable, "-m", "taskfire", "dashboard", "--bind",
                                          f"127.0.0.1:{port}", "--workers", "1"], cwd=ROOT, env=env,
                                         start_new_session=True))
        base = f"http://127.0.0.1:{port}"
        wait(lambda: _answers(base), 30, "the dashboard")
        shoot(base, ids, out, args.tag, args.all)
    finally:
        for child in children:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGTERM)
                child.wait(20)
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def _answers(base: str) -> bool:
    try:
        with urllib.request.urlopen(base + "/api/stats", timeout=2):
            return True
    except OSError:
        return False


def shoot(base: str, ids: dict[str, str], out: Path, tag: str, every_page: bool) -> None:
    from playwright.sync_api import sync_playwright

    pages = {"overview": "/", "failed": "/jobs/state/Failed", "retries": "/retries", "job": f"/jobs/{ids['failed']}"}
    if every_page:
        pages.update({"recurring": "/recurring", "batches": "/batches", "queues": "/queues", "servers": "/servers",
                      "succeeded": "/jobs/state/Succeeded", "scheduled": "/jobs/state/Scheduled",
                      "processing": "/jobs/state/Processing", "enqueued": "/jobs/state/Enqueued"})
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
        for scheme in ("light", "dark") if every_page else ("light",):
            page = browser.new_page(viewport={"width": 1280, "height": 800}, color_scheme=scheme)  # type: ignore[arg-type]
            for name, path in pages.items():
                page.goto(base + path)
                page.wait_for_load_state("networkidle")
                suffix = "" if scheme == "light" else "-dark"
                page.screenshot(path=str(out / f"{tag}-{name}{suffix}.png"), full_page=True)
                print(f"  {out / f'{tag}-{name}{suffix}.png'}", file=sys.stderr)
        browser.close()


if __name__ == "__main__":
    main()
