"""The dashboard's pages (GET)."""

from __future__ import annotations

from typing import Any

from flask import abort, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from taskfire.records import Job

from . import data
from .blueprint import bp, client, counts, page_args, state_arg
from .formatting import cut, pretty


@bp.get("/")
def overview() -> str:
    return render_template("taskfire/overview.html", c=counts())


@bp.get("/jobs/state/<state>")
def jobs(state: str) -> str:
    state = state_arg(state)
    page, size = page_args()
    queue = request.args.get("queue") or None
    function = request.args.get("function") or None
    exception = (request.args.get("exception") or None) if state == "Failed" else None
    tf = client()
    c = counts()
    listing = data.state_listing(tf, c, state, (page - 1) * size, size, queue=queue, function=function,
                                 exception=exception)
    return render_template("taskfire/jobs.html", state=state, listing=listing, queue=queue, function=function or "",
                           exception=exception or "", queues=c["queues"], kept=c["kept"].get(state),
                           retention_s=tf.storage.retention_s, index_cap=tf.storage.index_cap)


@bp.get("/jobs/find")
def find() -> BaseResponse | str:
    """A job by its id; otherwise the failures whose function or exception type contain
    the text (through the failure indexes: every Failed job, at any depth)."""
    text = (request.args.get("q") or request.args.get("id") or "").strip()
    if not text:
        return redirect(url_for("taskfire.overview"))
    tf = client()
    if len(text) <= 200 and tf.get_job(text) is not None:
        return redirect(url_for("taskfire.job_page", job_id=text))
    functions, exceptions = tf.storage.monitor.failure_groups()
    needle = text.lower()
    return render_template("taskfire/search.html", text=text,
                           functions={k: n for k, n in functions.items() if needle in k.lower()},
                           exceptions={k: n for k, n in exceptions.items() if needle in k.lower()})


@bp.get("/jobs/<job_id>")
def job_page(job_id: str) -> str:
    job = client().get_job(job_id)
    if job is None:
        abort(404, f"no job {job_id!r}: it never existed, or it expired after its retention period")
    return render_template("taskfire/job.html", job=job, facts=job_facts(job), call=call_text(job),
                           result=cut(pretty(job.result)) if job.result is not None else None)


def call_text(job: Job) -> tuple[str, bool]:
    """The call as text, and whether it was cut (a huge argument is shown in part)."""
    parts = [pretty(a) for a in job.args] + [f"{k}={pretty(v)}" for k, v in job.kwargs.items()]
    return cut(f"{job.function}(" + ", ".join(parts) + ")")


def job_facts(job: Job) -> dict[str, Any]:
    """What an operator asks first about a run: which worker ran it, how long it waited
    and how long it ran (its last run: as the worker measured it, else as the history's
    times say)."""
    facts: dict[str, Any] = {"worker": None, "duration": None, "latency": None}
    history = job.history
    for n, entry in enumerate(history):
        if entry.state != "Processing":
            continue
        facts["worker"] = entry.data.get("worker") or facts["worker"]
        if n > 0:
            facts["latency"] = (entry.at - history[n - 1].at).total_seconds()
        if n + 1 < len(history):
            facts["duration"] = (history[n + 1].at - entry.at).total_seconds()
    for entry in history:
        for name in ("duration", "latency"):
            value = entry.data.get(f"{name}_ms")
            if isinstance(value, (int, float)):
                facts[name] = value / 1000
    return facts


@bp.get("/recurring")
def recurring() -> str:
    return render_template("taskfire/recurring.html", jobs=client().recurring.list())


@bp.get("/servers")
def servers_page() -> str:
    return render_template("taskfire/servers.html", servers=data.servers(client()))


@bp.get("/queues")
def queues_page() -> str:
    return render_template("taskfire/queues.html", queues=client().queues.list())


@bp.get("/retries")
def retries() -> str:
    page, size = page_args()
    listing = data.retries_listing(client(), counts(), (page - 1) * size, size)
    return render_template("taskfire/retries.html", listing=listing)


@bp.get("/batches")
def batches() -> str:
    page, size = page_args()
    found = client().list_batches((page - 1) * size, size + 1)
    return render_template("taskfire/batches.html", batches=found[:size], page=page, size=size,
                           more=len(found) > size, index_cap=client().storage.index_cap)


@bp.get("/batches/<batch_id>")
def batch_page(batch_id: str) -> str:
    tf = client()
    batch = tf.get_batch(batch_id)
    if batch is None:
        abort(404, f"no batch {batch_id!r}")
    page, size = page_args()
    members = data.summaries(tf, tf.batch_members(batch_id, (page - 1) * size, size))
    listing = data.Listing(members, batch.total, page, size)
    continuations = data.summaries(tf, tf.storage.monitor.continuations("batch", batch_id))
    return render_template("taskfire/batch.html", batch=batch, listing=listing, continuations=continuations)
