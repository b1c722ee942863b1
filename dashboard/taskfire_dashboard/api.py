"""The dashboard's machine-readable side: JSON under /api/ and Prometheus' /metrics."""

from __future__ import annotations

import msgspec
from flask import Response, abort, jsonify, request

from . import data
from . import metrics as prometheus
from .blueprint import PAGE_SIZE, bp, client, counts, int_arg, state_arg


def _json(value: object) -> Response:
    return Response(msgspec.json.encode(value), mimetype="application/json")


@bp.get("/api/stats")
def api_stats() -> Response:
    return jsonify(counts())


@bp.get("/api/jobs/state/<state>")
def api_jobs(state: str) -> Response:
    offset, limit = int_arg("offset", 0), int_arg("limit", PAGE_SIZE, 1, 1000)
    rows, more = data.filtered_page(client(), state_arg(state), offset, limit, request.args.get("queue"),
                                    request.args.get("function"))
    return jsonify({"jobs": rows, "more": more})


@bp.get("/api/jobs/<job_id>")
def api_job(job_id: str) -> Response:
    job = client().get_job(job_id)
    if job is None:
        abort(404, f"no job {job_id!r}")
    return _json(job)


@bp.get("/api/queues")
def api_queues() -> Response:
    return _json(client().queues.list())


@bp.get("/api/batches")
def api_batches() -> Response:
    offset, limit = int_arg("offset", 0), int_arg("limit", PAGE_SIZE, 1, 1000)
    return _json(client().list_batches(offset, limit))


@bp.get("/api/servers")
def api_servers() -> Response:
    return jsonify(data.servers(client()))


@bp.get("/api/recurring")
def api_recurring() -> Response:
    return _json(client().recurring.list())


@bp.get("/metrics")
def metrics() -> Response:
    return Response(prometheus.exposition(client(), counts()), mimetype="text/plain; version=0.0.4")
