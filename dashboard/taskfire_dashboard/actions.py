"""The dashboard's actions: POSTs from its buttons (the guard has checked their CSRF
token), each answered with a flash message and a redirect back."""

from __future__ import annotations

from flask import abort, flash, redirect, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from .blueprint import bp, client, state_arg


def done(message: str, target: str | None = None) -> BaseResponse:
    flash(message)
    return redirect(target or request.referrer or url_for("taskfire.overview"))


@bp.post("/jobs/<job_id>/requeue")
def requeue(job_id: str) -> BaseResponse:
    ok = client().requeue(job_id, reason="Requeued from the dashboard")
    return done(f"Job {job_id} requeued." if ok else f"Job {job_id} could not be requeued (gone?).")


@bp.post("/jobs/<job_id>/delete")
def delete(job_id: str) -> BaseResponse:
    ok = client().delete(job_id, reason="Deleted from the dashboard")
    return done(f"Job {job_id} deleted." if ok else f"Job {job_id} could not be deleted.")


@bp.post("/jobs/selected")
def selected() -> BaseResponse:
    tf = client()
    action = request.form.get("action")
    ids = request.form.getlist("ids")
    if action not in ("requeue", "delete"):
        abort(400, "action must be requeue or delete")
    if not ids:
        return done("Nothing selected.")
    if action == "requeue":
        n = sum(1 for i in ids[:1000] if tf.requeue(i, reason="Requeued from the dashboard"))
    else:
        n = sum(1 for i in ids[:1000] if tf.delete(i, reason="Deleted from the dashboard"))
    return done(f"{n} of {len(ids)} selected job(s) {action}d.")


@bp.post("/jobs/state/<state>/requeue-all")
def requeue_all(state: str) -> BaseResponse:
    result = client().requeue_all(state_arg(state))
    return done(f"{result.changed} {state_arg(state)} job(s) requeued.")


@bp.post("/recurring/<rid>/<action>")
def recurring_action(rid: str, action: str) -> BaseResponse:
    tf = client()
    if action == "trigger":
        job_id = tf.recurring.trigger(rid)
        return done(f"Recurring job {rid} triggered: job {job_id}." if job_id else f"No recurring job {rid}.")
    if action not in ("enable", "disable", "remove"):
        abort(400, f"unknown action {action!r}")
    ok = getattr(tf.recurring, action)(rid)
    return done(f"Recurring job {rid} {action}d." if ok else f"No recurring job {rid}.")


@bp.post("/queues/<name>/<action>")
def queue_action(name: str, action: str) -> BaseResponse:
    if action not in ("pause", "resume"):
        abort(400, f"unknown action {action!r}")
    try:
        getattr(client().queues, action)(name)
    except ValueError as exc:
        abort(400, str(exc))
    return done(f"Queue {name} {action}d.")
