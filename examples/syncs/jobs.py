"""Nine integration syncs, run by `taskfire worker examples.syncs.jobs --queues integrations`
on as many hosts as you like.

Each sync is its own job with its own mutex, so one sync never runs twice at once across
all instances (a run triggered while another is going waits for it), while different
syncs run side by side. A run the partner failed (down, an error status, not JSON) is
retried after 1, 3, 10, 60, 300 and then 900 seconds. Their schedules, per environment, are in
syncs.toml; `taskfire recurring trigger salesforce` runs one now.

Each run fetches the partner's records after the sync's cursor from SYNC_SERVICE_URL
(here the fake service) and keeps them, with the new cursor, in Redis.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any, Callable

from taskfire import JobFunction, Taskfire, current_job, job

QUEUE = "integrations"
RETRY_DELAYS = [1.0, 3.0, 10.0, 60.0, 300.0, 900.0]


class SyncError(Exception):
    """The partner did not answer as it should: the run is retried. Any other error (a
    bug, a missing setting) fails the run at once, for someone to look at."""


def sync_job(integration: str) -> Callable[[Callable[[], dict[str, Any]]], JobFunction[[], dict[str, Any]]]:
    """@job for one integration's sync: its queue, its mutex, its retries."""
    return job(queue=QUEUE, mutex=f"sync-{integration}", mutex_timeout=1800, timeout=600,
               retries=len(RETRY_DELAYS), retry_delays=RETRY_DELAYS, retry_on=SyncError)


def state_key(tf: Taskfire, integration: str) -> str:
    return f"{tf.prefix}syncs:{integration}"


def run_sync(integration: str) -> dict[str, Any]:
    """Fetches the records after the cursor, stores them and moves the cursor on."""
    ctx = current_job()
    assert ctx is not None, "a sync runs as a job"
    tf: Taskfire = ctx.client
    base = os.environ.get("SYNC_SERVICE_URL")
    if not base:
        raise RuntimeError("SYNC_SERVICE_URL is not set: give the workers the partner APIs' base URL")
    r, key = tf.storage.redis, state_key(tf, integration)
    cursor = int(r.hget(key, "cursor") or 0)  # type: ignore[arg-type]
    url = f"{base.rstrip('/')}/{integration}/records?since={cursor}"
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise SyncError(f"{integration}: GET {url} answered {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise SyncError(f"{integration}: GET {url} failed: {getattr(exc, 'reason', exc)}") from None
    except ValueError as exc:
        raise SyncError(f"{integration}: GET {url} answered something that is not JSON: {exc}") from None
    records = body["records"]
    pipe = r.pipeline()
    if records:
        pipe.hset(f"{key}:records", mapping={rec["id"]: json.dumps(rec) for rec in records})
    pipe.hset(key, mapping={"cursor": body["cursor"], "last_job": ctx.id})
    pipe.hincrby(key, "runs", 1)
    pipe.execute()
    ctx.log(f"{len(records)} record(s) after cursor {cursor}; cursor now {body['cursor']}")
    return {"integration": integration, "records": len(records), "cursor": body["cursor"]}


@sync_job("salesforce")
def sync_salesforce() -> dict[str, Any]:
    return run_sync("salesforce")


@sync_job("authenticom")
def sync_authenticom() -> dict[str, Any]:
    return run_sync("authenticom")


@sync_job("dealertrend")
def sync_dealertrend() -> dict[str, Any]:
    return run_sync("dealertrend")


@sync_job("campaign")
def sync_campaign() -> dict[str, Any]:
    return run_sync("campaign")


@sync_job("ctm")
def sync_ctm() -> dict[str, Any]:
    return run_sync("ctm")


@sync_job("google-ads")
def sync_google_ads() -> dict[str, Any]:
    return run_sync("google-ads")


@sync_job("cdk")
def sync_cdk() -> dict[str, Any]:
    return run_sync("cdk")


@sync_job("meta-ads")
def sync_meta_ads() -> dict[str, Any]:
    return run_sync("meta-ads")


@sync_job("ads-creatives")
def sync_ads_creatives() -> dict[str, Any]:
    return run_sync("ads-creatives")
