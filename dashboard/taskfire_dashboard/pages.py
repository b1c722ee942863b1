"""The dashboard's pages (GET)."""

from __future__ import annotations

from flask import abort, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from . import data
from .blueprint import PAGE_SIZE, bp, client, counts, int_arg, state_arg


@bp.get("/")
def overview() -> str:
    return render_template("taskfire/overview.html", c=counts())


@bp.get("/jobs/state/<state>")
def jobs(state: str) -> str:
    state = state_arg(state)
    tf = client()
    page = int_arg("page", 1, 1)
    queue = request.args.get("queue") or None
    function = request.args.get("function") or None
    rows, more = data.filtered_page(tf, state, (page - 1) * PAGE_SIZE, PAGE_SIZE, queue, function)
    queues = counts()["queues"] if state == "Enqueued" else []
    kept = counts()["kept"].get(state)
    return render_template("taskfire/jobs.html", state=state, rows=rows, page=page, more=more, queue=queue,
                           function=function or "", queues=queues, kept=kept,
                           retention_s=tf.storage.retention_s, index_cap=tf.storage.index_cap)


@bp.get("/jobs/find")
def find() -> BaseResponse:
    job_id = (request.args.get("id") or "").strip()
    return redirect(url_for("taskfire.job_page", job_id=job_id) if job_id else url_for("taskfire.overview"))


@bp.get("/jobs/<job_id>")
def job_page(job_id: str) -> str:
    job = client().get_job(job_id)
    if job is None:
        abort(404, f"no job {job_id!r}: it never existed, or it expired after its retention period")
    return render_template("taskfire/job.html", job=job)


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
    page = int_arg("page", 1, 1)
    rows, more = data.retries_page(client(), (page - 1) * PAGE_SIZE, PAGE_SIZE)
    return render_template("taskfire/retries.html", rows=rows, page=page, more=more)


@bp.get("/batches")
def batches() -> str:
    page = int_arg("page", 1, 1)
    found = client().list_batches((page - 1) * PAGE_SIZE, PAGE_SIZE + 1)
    return render_template("taskfire/batches.html", batches=found[:PAGE_SIZE], page=page,
                           more=len(found) > PAGE_SIZE)


@bp.get("/batches/<batch_id>")
def batch_page(batch_id: str) -> str:
    tf = client()
    batch = tf.get_batch(batch_id)
    if batch is None:
        abort(404, f"no batch {batch_id!r}")
    members = data.summaries(tf, tf.batch_members(batch_id, 0, 200))
    return render_template("taskfire/batch.html", batch=batch, members=members)
