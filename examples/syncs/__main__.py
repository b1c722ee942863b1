"""`python -m examples.syncs`: the nine syncs on two worker instances, with one sync
triggered twice while it runs (the second waits), and one whose partner fails twice
(it is retried, then succeeds)."""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone
from pathlib import Path

from examples.launcher import running
from taskfire import Taskfire

from .fake_service import FakeService

SCHEDULES = Path(__file__).with_name("syncs.toml")


def follow(tf: Taskfire, labels: dict[str, str], timeout: float = 60) -> None:
    """Prints each job's states as it reaches them, until all have finished."""
    shown: dict[str, int] = {}
    deadline = time.monotonic() + timeout
    while labels and time.monotonic() < deadline:
        for job_id, label in list(labels.items()):
            job = tf.get_job(job_id)
            if job is None:
                continue
            for entry in job.history[shown.get(job_id, 0):]:
                print(f"  {entry.at:%H:%M:%S.%f}"[:-3] + f"  {label:<22} {entry.state:<10} {entry.reason or ''}",
                      flush=True)
            shown[job_id] = len(job.history)
            if job.state in ("Succeeded", "Failed", "Deleted"):
                del labels[job_id]
        time.sleep(0.1)


def main() -> None:
    environment = os.environ.get("SYNC_ENV", "dev")
    service = FakeService().start()
    with running(["examples.syncs.jobs"], queues="integrations", instances=2, recurring_file=str(SCHEDULES),
                 environment=None if environment == "production" else environment,
                 env={"SYNC_SERVICE_URL": service.url}) as tf:
        for _ in range(100):  # the workers sync the schedules as they start
            if len(tf.recurring.list()) >= 9:
                break
            time.sleep(0.1)
        print(f"the syncs ({environment}):")
        for r in sorted(tf.recurring.list(), key=lambda r: r.id):
            print(f"  {r.id:<14} {r.cron:<16} {r.tz:<17} next {r.next_run:%Y-%m-%d %H:%M} UTC")
        service.slow("salesforce", 1.5)
        service.fail_next("cdk", 503, 502)
        print("salesforce triggered twice (each run takes 1.5 s), cdk once (its partner fails twice):")
        labels = {}
        for n, rid in enumerate(("salesforce", "salesforce", "cdk")):
            job_id = tf.recurring.trigger(rid)
            if job_id:
                labels[job_id] = f"{rid} #{n + 1}" if rid == "salesforce" else rid
        follow(tf, labels)
        for request in service.seen("salesforce") + service.seen("cdk"):
            print(f"  partner saw {request.integration:<11} {datetime.fromtimestamp(request.started, timezone.utc):%H:%M:%S.%f}"[:-3]
                  + f" -> {datetime.fromtimestamp(request.ended, timezone.utc):%H:%M:%S.%f}"[:-3] + f"  {request.status}")
        print("running; Ctrl-C stops", flush=True)
        while True:
            time.sleep(1)
    service.stop()


if __name__ == "__main__":
    main()
