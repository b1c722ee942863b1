"""`python -m examples.triggers`: a poll trigger on a local page that changes every 6
seconds, an interval trigger every 5 seconds, and what they start, as it happens."""

from __future__ import annotations

import time
from datetime import datetime, timezone

from examples.launcher import running

from . import checker, workflows
from .page_server import Page, serve
from .store import Triggers


def main() -> None:
    page = Page("prices: 1.00")
    server, url = serve(page)
    with running(["examples.triggers.checker", "examples.triggers.workflows"]) as tf:
        checker.install(tf)
        triggers = Triggers(tf)
        triggers.add_poll("price-page", url, workflows.page_changed, "2s")
        triggers.add_interval("heartbeat", workflows.on_schedule, "5 seconds")
        print(f"polling {url} every 2 s; it changes every 6 s. Ctrl-C stops.", flush=True)
        shown = len(workflows.runs(tf))
        started = time.monotonic()
        while True:
            time.sleep(1)
            page.set(f"prices: {1 + int((time.monotonic() - started) // 6) / 100:.2f}")
            for run in workflows.runs(tf)[shown:]:
                shown += 1
                at = datetime.now(timezone.utc).strftime("%H:%M:%S")
                detail = f"body={run['body']!r}" if run["workflow"] == "page_changed" else ""
                print(f"{at} {run['trigger_id']:<11} started {run['workflow']} {detail}", flush=True)
    server.shutdown()


if __name__ == "__main__":
    main()
