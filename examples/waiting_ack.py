"""WaitingAck: a custom state for work that is done only when someone else says so.

A job sends a message to an external service. Its run succeeding means "sent", not
"done": a filter elects the custom state WaitingAck instead of Succeeded. Later, the
service's callback (an HTTP handler, say) moves the job on:

    tf.change_state(job_id, Succeeded(reason="Acknowledged", latency_ms=840), "WaitingAck",
                    result={"receipt": "r-42"})       # or
    tf.change_state(job_id, Failed(reason="Rejected", exception_type="Rejected",
                    exception_message="bad address"), "WaitingAck")   # or
    tf.delete(job_id)

Jobs still waiting are listed by `tf.job_ids_in_state("WaitingAck")`, and on the
dashboard's WaitingAck page, where an operator can acknowledge or reject them by hand:

    taskfire dashboard --pages examples.waiting_ack:add_pages

Try it: `taskfire worker examples.waiting_ack` in one shell, then
`python -m examples.waiting_ack` in another (both on TASKFIRE_REDIS_URL).
"""

from __future__ import annotations

from typing import Any, ClassVar

from taskfire import Failed, Succeeded, State, Taskfire, job
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


WAITING_PAGE = """
<h1>WaitingAck <small>sent, waiting for the service's acknowledgement</small></h1>
<table><thead><tr><th>Job</th><th>Function</th><th>Sent to</th><th>Waiting since</th><th>Actions</th></tr></thead><tbody>
{% for j in jobs %}
<tr id="ack-{{ j.id }}"><td>{{ job_link(j.id) }}</td><td class="mono">{{ j.function }}</td><td>{{ j.sent_to or '' }}</td>
  <td>{{ j.since.strftime('%Y-%m-%d %H:%M:%S') if j.since else '' }}</td>
  <td>{{ post(url_for('page_answer', job_id=j.id, answer='acknowledge'), 'Acknowledge') }}
      {{ post(url_for('page_answer', job_id=j.id, answer='reject'), 'Reject', 'danger') }}</td></tr>
{% else %}<tr><td colspan="5">Nothing is waiting for an acknowledgement.</td></tr>{% endfor %}
</tbody></table>
"""


def waiting_page() -> str:
    """The jobs waiting for their acknowledgement, newest first (the first 100)."""
    from taskfire_dashboard import client, render_page

    tf = client()
    rows = []
    for j in tf.get_jobs(tf.job_ids_in_state(WaitingAck.name, 0, 100)):
        if j is None or j.state != WaitingAck.name:
            continue  # acknowledged or expired since the index was read
        entered = j.history[-1]
        rows.append({"id": j.id, "function": j.function, "sent_to": entered.data.get("sent_to"),
                     "since": entered.at})
    return render_page("WaitingAck", WAITING_PAGE, jobs=rows)


def answer(job_id: str, answer: str) -> Any:
    """An operator's acknowledgement (or rejection) in place of the service's."""
    from flask import abort, flash, redirect, url_for
    from taskfire_dashboard import client

    if answer == "acknowledge":
        state: State = Succeeded(reason="Acknowledged by an operator")
        done = "acknowledged"
    elif answer == "reject":
        state = Failed(reason="Rejected by an operator", exception_type="Rejected",
                       exception_message="rejected from the dashboard")
        done = "rejected"
    else:
        abort(400, f"answer must be acknowledge or reject, not {answer!r}")
    moved = client().change_state(job_id, state, WaitingAck.name)
    flash(f"Job {job_id} {done}." if moved else f"Job {job_id} was no longer waiting.")
    return redirect(url_for("page_waiting_page"))


def add_pages(app: Any) -> None:
    """Adds the WaitingAck page to a dashboard app (`taskfire dashboard --pages
    examples.waiting_ack:add_pages`, or call it on your own `create_app(...)`)."""
    from taskfire_dashboard import add_page

    add_page(app, "/waiting-ack", "WaitingAck", waiting_page)
    add_page(app, "/waiting-ack/<job_id>/<answer>", "", answer, methods=("POST",), menu=False)


if __name__ == "__main__":
    tf = Taskfire()
    job_id = send_notification.enqueue(7, "Your invoice is ready")
    print(f"enqueued {job_id}; once a worker ran it, it waits in: {tf.job_ids_in_state('WaitingAck')}")
