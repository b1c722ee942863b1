"""The dashboard's machine-readable side: JSON under /api/ and Prometheus' /metrics."""

from __future__ import annotations

import msgspec
from flask import Response, abort, jsonify, request

from . import data
from . import metrics as prometheus
from .blueprint import PAGE_SIZE, bp, client, counts, int_arg, state_arg


def _json(value: object) -> Response:
    return Response(msgspec.json.encode(value), mimetype="application/json")


def _window() -> tuple[int, int]:
    """(page, rows) from ?page= and ?limit= (or ?offset= and ?limit=, on a page boundary
    or not: the offset is what counts then)."""
    limit = int_arg("limit", PAGE_SIZE, 1, 1000)
    if "offset" in request.args:
        return int_arg("offset", 0), limit
    return (int_arg("page", 1, 1) - 1) * limit, limit


@bp.get("/api/stats")
def api_stats() -> Response:
    return jsonify(counts())


@bp.get("/api/jobs/state/<state>")
def api_jobs(state: str) -> Response:
    """A state's jobs, with the columns its page shows: ?page= (or ?offset=), ?limit=,
    ?queue=, ?function= and, for Failed, ?exception=."""
    offset, limit = _window()
    state = state_arg(state)
    exception = request.args.get("exception") if state == "Failed" else None
    listing = data.state_listing(client(), counts(), state, offset, limit, queue=request.args.get("queue"),
                                 function=request.args.get("function"), exception=exception)
    return jsonify({"jobs": listing.rows, "total": listing.total, "notice": listing.notice,
                    "more": listing.total is not None and offset + len(listing.rows) < listing.total})


@bp.get("/api/retries")
def api_retries() -> Response:
    offset, limit = _window()
    listing = data.retries_listing(client(), counts(), offset, limit)
    return jsonify({"jobs": listing.rows, "total": listing.total, "more": listing.more})


@bp.get("/api/failures")
def api_failures() -> Response:
    """Failed jobs per function and per exception type."""
    functions, exceptions = client().storage.monitor.failure_groups()
    return jsonify({"functions": functions, "exceptions": exceptions})


@bp.get("/api/jobs/<job_id>")
def api_job(job_id: str) -> Response:
    job = client().get_job(job_id)
    if job is None:
        abort(404, f"no job {job_id!r}")
    return _json(job)


@bp.get("/api/jobs/<job_id>/<part>")
def api_job_part(job_id: str, part: str) -> Response:
    """A job's arguments or result whole, for values its page shows only in part."""
    if part not in ("arguments", "result"):
        abort(404, f"a job has 'arguments' and a 'result', not {part!r}")
    job = client().get_job(job_id)
    if job is None:
        abort(404, f"no job {job_id!r}")
    if part == "arguments":
        return _json({"args": job.args, "kwargs": job.kwargs})
    return _json(job.result)


@bp.get("/api/queues")
def api_queues() -> Response:
    return _json(client().queues.list())


@bp.get("/api/batches")
def api_batches() -> Response:
    offset, limit = _window()
    return _json(client().list_batches(offset, limit))


@bp.get("/api/servers")
def api_servers() -> Response:
    return jsonify(data.servers(client()))


@bp.get("/api/recurring")
def api_recurring() -> Response:
    return _json(client().recurring.list())


@bp.get("/metrics")
def metrics() -> Response:
    return Response(prometheus.exposition(client(), counts()), content_type=prometheus.CONTENT_TYPE)
