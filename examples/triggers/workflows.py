"""Sample workflows the triggers start. A real one would open a ticket, sync a record,
send a message...; these keep what they were given in a Redis list (newest last) that
the demo prints and the tests read."""

from __future__ import annotations

import json

from taskfire import Taskfire, current_job, job


def fired_key(tf: Taskfire) -> str:
    return tf.prefix + "triggers:workflow-runs"


def _keep(run: dict[str, object]) -> None:
    ctx = current_job()
    assert ctx is not None
    tf: Taskfire = ctx.client
    tf.storage.redis.rpush(fired_key(tf), json.dumps({"job_id": ctx.id, **run}))


@job
def page_changed(trigger_id: str, body: str, status_code: int, hash: str, previous_hash: str | None) -> str:
    """Started by a poll trigger with what it fetched."""
    _keep({"workflow": "page_changed", "trigger_id": trigger_id, "body": body, "status_code": status_code,
           "hash": hash, "previous_hash": previous_hash})
    return f"{trigger_id}: {len(body)} characters, hash {hash[:12]} (was {(previous_hash or 'none')[:12]})"


@job
def on_schedule(trigger_id: str, fired_at_ms: int) -> str:
    """Started by an interval trigger."""
    _keep({"workflow": "on_schedule", "trigger_id": trigger_id, "fired_at_ms": fired_at_ms})
    return f"{trigger_id} at {fired_at_ms}"


def runs(tf: Taskfire) -> list[dict[str, object]]:
    """What the sample workflows were started with, oldest first."""
    return [json.loads(v) for v in tf.storage.redis.lrange(fired_key(tf), 0, -1)]
