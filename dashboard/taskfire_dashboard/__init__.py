"""taskfire's dashboard: a Flask app that shows and steers jobs, queues, recurring jobs and
servers.

    from taskfire_dashboard import create_app
    app = create_app("redis://127.0.0.1:6379/0")                 # local requests only
    app = create_app(url, basic_auth=("ops", "secret"))          # or bearer_token="...",
    app = create_app(url, authorize=lambda request: ...)         # or your own check
    app = create_app(url, read_only=True)                        # shows all, changes nothing
    add_page(app, "/waiting-ack", "WaitingAck", view)            # an application's own page

Serve it with `taskfire dashboard --bind 127.0.0.1:8008` (gunicorn), or mount it in your
own WSGI app under a prefix (werkzeug's DispatcherMiddleware, like Hangfire's /hangfire).

Safe by default: until authorization is configured only loopback requests are served.
Every action is a POST carrying a CSRF token from the page; every value shown is escaped
by Jinja. Pages read bounded ranges of Redis indexes, never KEYS or SCAN.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
import secrets
from datetime import datetime, timezone
from typing import Any, Callable

import msgspec
from flask import (Flask, Response, abort, current_app, flash, g, jsonify, redirect, render_template,
                   render_template_string, request, session, url_for)
from werkzeug.wrappers import Response as BaseResponse

from taskfire import Taskfire
from taskfire.cron import describe

from . import data
from . import metrics as prometheus

PAGE_SIZE = 50
LOCAL_ONLY = ("127.0.0.1", "::1")


def create_app(redis: str | Taskfire | None = None, *, prefix: str | None = None,
               authorize: Callable[[Any], bool] | None = None, basic_auth: tuple[str, str] | None = None,
               bearer_token: str | None = None, read_only: bool = False, refresh_ms: int = 2000,
               title: str = "taskfire", secret_key: str | None = None) -> Flask:
    """The dashboard app for one taskfire store (a URL, or a client to share)."""
    tf = redis if isinstance(redis, Taskfire) else Taskfire(redis, prefix=prefix)
    app = Flask(__name__)
    app.extensions["taskfire"] = tf
    app.config["TASKFIRE_MENU"] = []
    app.secret_key = secret_key or os.environ.get("TASKFIRE_DASHBOARD_SECRET") or secrets.token_hex(32)
    app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax")
    configured = authorize is not None or basic_auth is not None or bearer_token is not None

    def allowed() -> bool:
        if authorize is not None and authorize(request):
            return True
        if basic_auth is not None and request.authorization is not None:
            user, password = basic_auth
            if (hmac.compare_digest(request.authorization.username or "", user)
                    and hmac.compare_digest(request.authorization.password or "", password)):
                return True
        if bearer_token is not None:
            header = request.headers.get("Authorization", "")
            if header.startswith("Bearer ") and hmac.compare_digest(header[7:], bearer_token):
                return True
        if not configured:
            try:
                return ipaddress.ip_address(request.remote_addr or "").is_loopback
            except ValueError:
                return False
        return False

    @app.before_request
    def guard() -> Response | None:
        if not allowed():
            if basic_auth is not None:
                return Response("Sign in to see the taskfire dashboard.", 401,
                                {"WWW-Authenticate": 'Basic realm="taskfire"'})
            abort(403)
        if request.method == "POST":
            if read_only:
                abort(403, "this dashboard is read-only")
            token = request.form.get("csrf") or request.headers.get("X-CSRF-Token", "")
            if not token or not hmac.compare_digest(token, session.get("csrf", "")):
                abort(400, "the form expired or did not come from this dashboard (CSRF token missing or wrong); reload the page")
        return None

    @app.context_processor
    def common() -> dict[str, Any]:
        if "csrf" not in session:
            session["csrf"] = secrets.token_urlsafe(32)
        return {"csrf": session["csrf"], "read_only": read_only, "title": title, "states": data.STATES,
                "refresh_ms": refresh_ms, "nav": nav_counts(), "menu": app.config["TASKFIRE_MENU"]}

    def counts() -> dict[str, Any]:
        """This request's counts: read once, shared by the page and its menu."""
        if "counts" not in g:
            g.counts = data.counts(tf)
        return g.counts  # type: ignore[no-any-return]

    def nav_counts() -> dict[str, int]:
        try:
            return counts()["states"]  # type: ignore[no-any-return]
        except Exception:
            return {}  # an error page while Redis is away still renders

    @app.template_filter("when")
    def when(ts: float | None) -> str:
        if not ts:
            return "—"
        return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")

    app.add_template_filter(describe, "describe_cron")

    @app.template_filter("duration")
    def duration(seconds: float) -> str:
        if seconds < 1:
            return f"{seconds * 1000:.0f} ms"
        if seconds < 120:
            return f"{seconds:.1f} s"
        if seconds < 7200:
            return f"{seconds / 60:.1f} min"
        return f"{seconds / 3600:.1f} h"

    @app.template_filter("pretty")
    def pretty(value: Any) -> str:
        try:
            return json.dumps(value, indent=2, ensure_ascii=False, default=str)
        except (TypeError, ValueError):
            return repr(value)

    def int_arg(name: str, default: int, low: int = 0, high: int = 10_000_000) -> int:
        raw = request.args.get(name)
        if raw is None:
            return default
        if not raw.isdigit() or not low <= int(raw) <= high:
            abort(400, f"parameter {name!r} must be a whole number from {low} to {high}, not {raw!r}")
        return int(raw)

    def state_arg(state: str) -> str:
        name = state[:1].upper() + state[1:]
        if name not in data.STATES and not name.isidentifier():
            abort(400, f"unknown state {state!r}")
        return name

    # -- pages -----------------------------------------------------------------------

    @app.get("/")
    def overview() -> str:
        return render_template("overview.html", c=counts())

    @app.get("/jobs/state/<state>")
    def jobs(state: str) -> str:
        state = state_arg(state)
        page = int_arg("page", 1, 1)
        queue = request.args.get("queue") or None
        function = request.args.get("function") or None
        rows, more = data.filtered_page(tf, state, (page - 1) * PAGE_SIZE, PAGE_SIZE, queue, function)
        queues = counts()["queues"] if state == "Enqueued" else []
        kept = counts()["kept"].get(state)
        return render_template("jobs.html", state=state, rows=rows, page=page, more=more, queue=queue,
                               function=function or "", queues=queues, kept=kept,
                               retention_s=tf.storage.retention_s, index_cap=tf.storage.index_cap)

    @app.get("/jobs/find")
    def find() -> BaseResponse:
        job_id = (request.args.get("id") or "").strip()
        return redirect(url_for("job_page", job_id=job_id)) if job_id else redirect(url_for("overview"))

    @app.get("/jobs/<job_id>")
    def job_page(job_id: str) -> str:
        job = tf.get_job(job_id)
        if job is None:
            abort(404, f"no job {job_id!r}: it never existed, or it expired after its retention period")
        return render_template("job.html", job=job)

    @app.get("/recurring")
    def recurring() -> str:
        return render_template("recurring.html", jobs=tf.recurring.list())

    @app.get("/servers")
    def servers_page() -> str:
        return render_template("servers.html", servers=data.servers(tf))

    @app.get("/queues")
    def queues_page() -> str:
        return render_template("queues.html", queues=tf.queues.list())

    @app.get("/retries")
    def retries() -> str:
        page = int_arg("page", 1, 1)
        rows, more = data.retries_page(tf, (page - 1) * PAGE_SIZE, PAGE_SIZE)
        return render_template("retries.html", rows=rows, page=page, more=more)

    @app.get("/batches")
    def batches() -> str:
        page = int_arg("page", 1, 1)
        found = tf.list_batches((page - 1) * PAGE_SIZE, PAGE_SIZE + 1)
        return render_template("batches.html", batches=found[:PAGE_SIZE], page=page, more=len(found) > PAGE_SIZE)

    @app.get("/batches/<batch_id>")
    def batch_page(batch_id: str) -> str:
        batch = tf.get_batch(batch_id)
        if batch is None:
            abort(404, f"no batch {batch_id!r}")
        members = data.summaries(tf, tf.batch_members(batch_id, 0, 200))
        return render_template("batch.html", batch=batch, members=members)

    # -- actions (POST + CSRF) -------------------------------------------------------

    def done(message: str, target: str | None = None) -> BaseResponse:
        flash(message)
        return redirect(target or request.referrer or url_for("overview"))

    @app.post("/jobs/<job_id>/requeue")
    def requeue(job_id: str) -> BaseResponse:
        ok = tf.requeue(job_id, reason="Requeued from the dashboard")
        return done(f"Job {job_id} requeued." if ok else f"Job {job_id} could not be requeued (gone?).")

    @app.post("/jobs/<job_id>/delete")
    def delete(job_id: str) -> BaseResponse:
        ok = tf.delete(job_id, reason="Deleted from the dashboard")
        return done(f"Job {job_id} deleted." if ok else f"Job {job_id} could not be deleted.")

    @app.post("/jobs/selected")
    def selected() -> BaseResponse:
        action = request.form.get("action")
        ids = request.form.getlist("ids")
        if action not in ("requeue", "delete"):
            abort(400, "action must be requeue or delete")
        if not ids:
            return done("Nothing selected.")
        act = (lambda i: tf.requeue(i, reason="Requeued from the dashboard")) if action == "requeue" else \
            (lambda i: tf.delete(i, reason="Deleted from the dashboard"))
        n = sum(1 for i in ids[:1000] if act(i))
        return done(f"{n} of {len(ids)} selected job(s) {action}d.")

    @app.post("/jobs/state/<state>/requeue-all")
    def requeue_all(state: str) -> BaseResponse:
        result = tf.requeue_all(state_arg(state))
        return done(f"{result.changed} {state_arg(state)} job(s) requeued.")

    @app.post("/recurring/<rid>/<action>")
    def recurring_action(rid: str, action: str) -> BaseResponse:
        if action == "trigger":
            job_id = tf.recurring.trigger(rid)
            return done(f"Recurring job {rid} triggered: job {job_id}." if job_id else f"No recurring job {rid}.")
        if action not in ("enable", "disable", "remove"):
            abort(400, f"unknown action {action!r}")
        ok = getattr(tf.recurring, action)(rid)
        return done(f"Recurring job {rid} {action}d." if ok else f"No recurring job {rid}.")

    @app.post("/queues/<name>/<action>")
    def queue_action(name: str, action: str) -> BaseResponse:
        if action not in ("pause", "resume"):
            abort(400, f"unknown action {action!r}")
        try:
            getattr(tf.queues, action)(name)
        except ValueError as exc:
            abort(400, str(exc))
        return done(f"Queue {name} {action}d.")

    # -- machine-readable --------------------------------------------------------------

    @app.get("/api/stats")
    def api_stats() -> Response:
        return jsonify(counts())

    @app.get("/api/jobs/state/<state>")
    def api_jobs(state: str) -> Response:
        offset, limit = int_arg("offset", 0), int_arg("limit", PAGE_SIZE, 1, 1000)
        rows, more = data.filtered_page(tf, state_arg(state), offset, limit, request.args.get("queue"),
                                        request.args.get("function"))
        return jsonify({"jobs": rows, "more": more})

    @app.get("/api/jobs/<job_id>")
    def api_job(job_id: str) -> Response:
        job = tf.get_job(job_id)
        if job is None:
            abort(404, f"no job {job_id!r}")
        return Response(msgspec.json.encode(job), mimetype="application/json")

    @app.get("/api/queues")
    def api_queues() -> Response:
        return Response(msgspec.json.encode(tf.queues.list()), mimetype="application/json")

    @app.get("/api/batches")
    def api_batches() -> Response:
        offset, limit = int_arg("offset", 0), int_arg("limit", PAGE_SIZE, 1, 1000)
        return Response(msgspec.json.encode(tf.list_batches(offset, limit)), mimetype="application/json")

    @app.get("/api/servers")
    def api_servers() -> Response:
        return jsonify(data.servers(tf))

    @app.get("/api/recurring")
    def api_recurring() -> Response:
        return Response(msgspec.json.encode(tf.recurring.list()), mimetype="application/json")

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(prometheus.exposition(tf, counts()), mimetype="text/plain; version=0.0.4")

    # -- errors --------------------------------------------------------------------------

    @app.errorhandler(400)
    @app.errorhandler(403)
    @app.errorhandler(404)
    def http_error(error: Any) -> tuple[str | Response, int]:
        if request.path.startswith("/api/"):
            return jsonify({"error": error.description}), error.code
        return render_template("error.html", code=error.code, message=error.description), error.code

    @app.errorhandler(405)
    def not_allowed(error: Any) -> tuple[str, int]:
        return render_template("error.html", code=405, message="this address takes a POST from the dashboard's buttons"), 405

    return app


def add_page(app: Flask, rule: str, title: str, view: Callable[..., Any], *,
             methods: tuple[str, ...] = ("GET",), menu: bool = True) -> None:
    """Adds an application's own page to the dashboard (and a menu item, unless
    `menu=False`, e.g. for the POST address of its buttons). The view is a Flask view
    whose endpoint (for `url_for`) is "page_" + its function's name: it reads the store
    through `client()` and renders with `render_page`. Its POSTs pass the same
    authorization and CSRF check as the built-in actions."""
    endpoint = f"page_{view.__name__}"
    app.add_url_rule(rule, endpoint, view, methods=list(methods))
    if menu:
        app.config["TASKFIRE_MENU"].append((title, endpoint))


def client() -> Taskfire:
    """The taskfire client of the dashboard serving this request."""
    return current_app.extensions["taskfire"]  # type: ignore[no-any-return]


def render_page(title: str, body: str, **context: Any) -> str:
    """Renders `body`, a Jinja template (escaping every value, as the built-in pages do),
    inside the dashboard's layout. The macros `post(url, label)` (a CSRF-protected
    button) and `job_link(id)` are at hand, and so are `csrf` and `read_only`."""
    source = ('{% extends "base.html" %}{% from "macros.html" import post, job_link with context %}'
              '{% block title %}{{ page_title }}{% endblock %}{% block body %}' + body + '{% endblock %}')
    return render_template_string(source, page_title=title, **context)
