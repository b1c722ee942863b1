"""WaitingAck: a custom state for work that is done only when someone else says so.

A job sends a message to an external service. Its run succeeding means "sent", not
"done": a filter elects the custom state WaitingAck instead of Succeeded. Later, the
service's callback (an HTTP handler, say) moves the job on:

    tf.change_state(job_id, Succeeded(reason="Acknowledged", latency_ms=840), "WaitingAck",
                    result={"receipt": "r-42"})       # or
    tf.change_state(job_id, Failed(reason="Rejected", exception_type="Rejected",
                    exception_message="bad address"), "WaitingAck")   # or
    tf.delete(job_id)

Jobs still waiting are listed by `tf.job_ids_in_state("WaitingAck")`.

Try it: `taskfire worker examples.waiting_ack` in one shell, then
`python -m examples.waiting_ack` in another (both on TASKFIRE_REDIS_URL).
"""

from __future__ import annotations

from typing import ClassVar

from taskfire import Succeeded, State, Taskfire, job
from taskfire.filters import ElectStateContext, JobFilter
from taskfire.states import PROCESSING


class WaitingAck(State, frozen=True):
    """Sent; waiting for the external service's acknowledgement. Not final: the job
    stays (and is listed) until it is acknowledged, failed or deleted."""

    name: ClassVar[str] = "WaitingAck"
    sent_to: str | None = None


class AwaitAcknowledgement(JobFilter):
    """A run that succeeds waits for its acknowledgement instead of succeeding."""

    def on_state_election(self, ctx: ElectStateContext) -> None:
        if ctx.current_state == PROCESSING and isinstance(ctx.candidate, Succeeded):
            ctx.elect(WaitingAck(reason="Sent; waiting for the acknowledgement", sent_to="notifications"))


@job(filters=[AwaitAcknowledgement()], retries=3)
def send_notification(user_id: int, text: str) -> dict[str, object]:
    # ... call the external service here ...
    return {"user_id": user_id, "queued": True}


if __name__ == "__main__":
    tf = Taskfire()
    job_id = send_notification.enqueue(7, "Your invoice is ready")
    print(f"enqueued {job_id}; once a worker ran it, it waits in: {tf.job_ids_in_state('WaitingAck')}")
