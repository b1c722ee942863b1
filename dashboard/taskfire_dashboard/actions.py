"""The dashboard's actions: POSTs from its buttons (the guard has checked their CSRF
token), each answered with a flash message and a redirect back to the dashboard page
that posted it. Every destructive button asks first, in the browser (app.js reads its
`data-confirm`), saying how many jobs it will touch."""

from __future__ import annotations

from flask import abort, flash, redirect, request
from werkzeug.wrappers import Response as BaseResponse

from taskfire.errors import ConfigError

from . import data
from .blueprint import back, bp, client, state_arg

#: Jobs one "selected" action takes at most (a page holds 500).
SELECTED_MAX = 1000


def done(message: str) -> BaseResponse:
    flash(message)
    return redirect(back())


def _action(allowed: tuple[str, ...]) -> str:
    action = request.form.get("action", "")
    if action not in allowed:
        abort(400, f"action must be one of {', '.join(allowed)}, not {action!r}")
    return action


def _change(ids: list[str], action: str) -> int:
    tf = client()
    if action == "requeue":
        return sum(1 for i in ids if tf.requeue(i, reason="Requeued from the dashboard"))
    return sum(1 for i in ids if tf.delete(i, reason="Deleted from the dashboard"))


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
    action = _action(("requeue", "delete"))
    ids = request.form.getlist("ids")
    if not ids:
        return done("Nothing selected.")
    n = _change(ids[:SELECTED_MAX], action)
    return done(f"{n:,} of {len(ids):,} selected job(s) {action}d.")


@bp.post("/jobs/state/<state>/all")
def state_all(state: str) -> BaseResponse:
    """Requeues or deletes every job of a state, or only those the page's filter shows:
    Failed by exact function and exception type (server-side, any depth); another state
    by the text of its function filter, among the jobs its page looked at."""
    state = state_arg(state)
    action = _action(("requeue", "delete"))
    function = request.form.get("function") or None
    exception = request.form.get("exception") or None
    queue = request.form.get("queue") or None
    tf = client()
    if state == "Enqueued":
        abort(400, "jobs waiting in a queue are purged or moved per queue, on the Queues page")
    if function and state != "Failed":
        n = _change(data.matching_ids(tf, state, function, queue), action)
        return done(f"{n:,} {state} job(s) of a function matching “{function}” {action}d.")
    try:
        verb = tf.requeue_all if action == "requeue" else tf.delete_all
        result = verb(state, function=function, exception=exception, queue=queue)
    except ConfigError as exc:
        abort(400, str(exc))
    which = " and ".join(f"{k} {v}" for k, v in (("function", function), ("exception", exception)) if v)
    return done(f"{result.changed:,} {state} job(s){' of ' + which if which else ''} {action}d.")


@bp.post("/retries/all")
def retries_all() -> BaseResponse:
    """Runs every job waiting for a retry now, or deletes them all."""
    action = _action(("requeue", "delete"))
    tf = client()
    verb = tf.requeue_all if action == "requeue" else tf.delete_all
    result = verb("Scheduled", only_retries=True)
    return done(f"{result.changed:,} job(s) waiting for a retry {'retried now' if action == 'requeue' else 'deleted'}.")


@bp.post("/recurring/selected")
def recurring_selected() -> BaseResponse:
    action = _action(("trigger", "enable", "disable", "remove"))
    ids = request.form.getlist("ids")
    if not ids:
        return done("Nothing selected.")
    recurring = client().recurring
    if action == "trigger":
        n = sum(1 for rid in ids if recurring.trigger(rid))
    else:
        n = sum(1 for rid in ids if getattr(recurring, action)(rid))
    return done(f"{n:,} of {len(ids):,} recurring job(s) {action}{'ed' if action == 'trigger' else 'd'}.")


@bp.post("/recurring/<path:rid>/<action>")
def recurring_action(rid: str, action: str) -> BaseResponse:
    """One recurring job's button (its id may hold "/": "reports/daily")."""
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
    queues = client().queues
    try:
        if action in ("pause", "resume"):
            getattr(queues, action)(name)
            return done(f"Queue {name} {action}d.")
        if action == "purge":
            result = queues.purge(name)
            return done(f"Queue {name} purged: {result.changed:,} job(s) deleted.")
        if action == "move":
            target = (request.form.get("to") or "").strip()
            result = queues.move(name, target)
            return done(f"{result.changed:,} job(s) moved from queue {name} to {target}.")
    except ConfigError as exc:
        abort(400, str(exc))
    abort(400, f"unknown action {action!r}: pause, resume, purge or move")


@bp.post("/servers/<server_id>/quiet")
def quiet_server(server_id: str) -> BaseResponse:
    ok = client().quiet_server(server_id)
    return done(f"Server {server_id} asked to go quiet: it finishes its running jobs and takes no new ones."
                if ok else f"No server {server_id} (stopped already?).")
