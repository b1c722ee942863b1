"""The HTTP API: accept a bulk import, answer at once, let the client follow it.

    POST /api/platforms/bulk              {"platforms": [{"name", "url", "kind"}, ...]}
        202 {"import_id", "job_id", "status": "Pending", "status_url"}
        400 {"error", "problems": [{"index", "field", "message"}, ...]}
    GET  /api/platforms/bulk/<id>/status
        200 {"import_id", "status", "total", "processed", "succeeded", "failed",
             "errors" (at most 10), "created_at", "started_at", "finished_at", "job_id"}

Every request carries an API key (`X-API-Key`), which names a tenant: no key or an
unknown one is 401; a tenant asking for another tenant's import gets 403, for an import
that does not exist 404.
"""

from __future__ import annotations

import secrets
from typing import Any, Mapping

import msgspec
import redis
from flask import Flask, Response, g, jsonify, request, url_for

from taskfire import Taskfire

from .db import Database
from .jobs import import_platforms
from .validation import MAX_ITEMS, validate_platforms


def create_app(tf: Taskfire, db: Database, api_keys: Mapping[str, str]) -> Flask:
    """The API, enqueueing with `tf`, recording in `db`; `api_keys` maps each key to
    its tenant."""
    if not api_keys:
        raise ValueError("api_keys is empty: no client could call the API")
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_ITEMS * 4 * 1024  # room for 1,000 long items, no more

    @app.before_request
    def authenticate() -> Any:
        key = request.headers.get("X-API-Key")
        if not key:
            return problem(401, "missing API key: send it in the X-API-Key header")
        tenant = next((t for k, t in api_keys.items() if secrets.compare_digest(k, key)), None)
        if tenant is None:
            return problem(401, "unknown API key")
        g.tenant = tenant
        return None

    @app.post("/api/platforms/bulk")
    def create_bulk_import() -> Any:
        body = request.get_json(silent=True)
        if body is None:
            return problem(400, "the body must be JSON (Content-Type: application/json)")
        new, problems = validate_platforms(body)
        if problems:
            return jsonify(error=f"the request has {len(problems)} problem(s); nothing was imported",
                           problems=msgspec.to_builtins(problems)), 400
        import_id = secrets.token_hex(8)
        db.create_import(import_id, g.tenant, new)
        try:
            job_id = tf.enqueue(import_platforms, import_id)
        except redis.RedisError as exc:
            db.fail(import_id, f"could not be queued: {exc}")
            return problem(503, f"import {import_id} could not be queued; try again later")
        db.set_job(import_id, job_id)
        status_url = url_for("bulk_import_status", import_id=import_id)
        response = jsonify(import_id=import_id, job_id=job_id, status="Pending", total=len(new),
                           status_url=status_url)
        response.status_code = 202
        response.headers["Location"] = status_url
        return response

    @app.get("/api/platforms/bulk/<import_id>/status")
    def bulk_import_status(import_id: str) -> Any:
        found = db.status(import_id)
        if found is None:
            return problem(404, f"no import {import_id!r}")
        if found.tenant != g.tenant:
            return problem(403, f"import {import_id!r} belongs to another tenant")
        return jsonify(msgspec.to_builtins(found))

    @app.errorhandler(413)
    def too_large(_: Exception) -> Any:
        return problem(413, f"the body is too large: send at most {MAX_ITEMS} platforms per request")

    return app


def problem(status: int, message: str) -> Response:
    response = jsonify(error=message)
    response.status_code = status
    return response
