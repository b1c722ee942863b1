"""The dashboard as a Flask Blueprint, "taskfire": its pages (pages.py), its actions
(actions.py) and its JSON API and metrics (api.py) attach their views to `bp`.

`register(app, tf, ...)` mounts it on any Flask app, under any prefix, with its settings;
every request it serves passes `guard` first: actions are POSTs carrying the page's CSRF
token, and a read-only dashboard refuses them. Every response it gives carries the
security headers (security.py). Who may see it is the app's business (`create_app` adds
the local-only default and Basic or bearer authentication).
"""

from __future__ import annotations

import hmac
import logging
import secrets
from typing import Any

from flask import Blueprint, Flask, Response, abort, current_app, g, jsonify, render_template, request, session, url_for

from taskfire import Taskfire
from taskfire.storage import REDIS_ERRORS, describe_error

from . import data
from .formatting import FILTERS
from .security import local_target, secure

bp = Blueprint("taskfire", __name__, template_folder="templates", static_folder="static",
               static_url_path="/static")

#: Rows per page of a list, unless the viewer picks another size (PAGE_SIZES).
PAGE_SIZE = 50
PAGE_SIZES = (10, 20, 50, 100, 200, 500)


class Settings:
    """The dashboard's settings in one app (app.extensions["taskfire_dashboard"])."""

    def __init__(self, tf: Taskfire, read_only: bool, refresh_ms: int, title: str) -> None:
        self.tf = tf
        self.read_only = read_only
        self.refresh_ms = refresh_ms
        self.title = title
        self.menu: list[tuple[str, str]] = []  # (label, endpoint) of the application's own pages
        self.trouble = ""  # what Redis's last error meant, logged once until Redis answers again


def register(app: Flask, tf: Taskfire, *, url_prefix: str = "", read_only: bool = False,
             refresh_ms: int = 2000, title: str = "taskfire") -> None:
    """Mounts the dashboard on `app` under `url_prefix`, showing the store `tf` reaches.
    The app needs a `secret_key` (its session carries the CSRF token)."""
    app.extensions["taskfire"] = tf
    app.extensions["taskfire_dashboard"] = Settings(tf, read_only, refresh_ms, title)
    for name, f in FILTERS.items():
        app.add_template_filter(f, name)
    app.register_blueprint(bp, url_prefix=url_prefix or None)


def settings() -> Settings:
    return current_app.extensions["taskfire_dashboard"]  # type: ignore[no-any-return]


def client() -> Taskfire:
    """The taskfire client of the dashboard serving this request."""
    return current_app.extensions["taskfire"]  # type: ignore[no-any-return]


def guard() -> None:
    """Every request: a POST must carry the session's CSRF token, and a read-only
    dashboard takes none."""
    if request.method == "POST":
        if settings().read_only:
            abort(403, "this dashboard is read-only")
        token = request.form.get("csrf") or request.headers.get("X-CSRF-Token", "")
        if not token or not hmac.compare_digest(token, session.get("csrf", "")):
            abort(400, "the form expired or did not come from this dashboard (CSRF token missing or wrong); "
                       "reload the page")


bp.before_request(guard)
bp.after_request(secure)

log = logging.getLogger("taskfire.dashboard")


def error_response(code: int, message: str) -> tuple[str | Response, int]:
    """An error as the dashboard's page, or as JSON under /api/."""
    if request.path.startswith("/api/") or "/api/" in request.path:
        return jsonify({"error": message}), code
    return render_template("taskfire/error.html", code=code, message=message), code


def redis_trouble(exc: Exception) -> Response:
    """Redis refused or did not answer (a password rotated, an ACL, a certificate, an
    outage): a 503 that says what it means and how to fix it, and one log line per change
    of trouble rather than a traceback per request."""
    trouble = describe_error(exc)
    s = settings()
    if trouble.message != s.trouble:
        s.trouble = trouble.message
        log.error("Redis: %s", trouble.message)
    body, code = error_response(503, f"Redis is unavailable: {trouble.message}")
    response = current_app.make_response((body, code))
    response.headers["Retry-After"] = "5"
    return response


@bp.after_request
def note_redis_back(response: Response) -> Response:
    s = settings()
    if s.trouble and response.status_code < 500:
        s.trouble = ""
        log.warning("Redis is back")
    return response


for _error in REDIS_ERRORS:
    bp.register_error_handler(_error, redis_trouble)


def counts() -> dict[str, Any]:
    """This request's counts: read once, shared by the page and its menu."""
    if "taskfire_counts" not in g:
        g.taskfire_counts = data.counts(client())
    return g.taskfire_counts  # type: ignore[no-any-return]


def nav_counts() -> dict[str, Any]:
    try:
        c = counts()
        return {**c["states"], "Retries": c["retries"]}
    except Exception:
        return {}  # an error page while Redis is away still renders


@bp.app_context_processor
def common() -> dict[str, Any]:
    """What every dashboard template (and an application's own pages) may use."""
    if "taskfire_dashboard" not in current_app.extensions:
        return {}
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    s = settings()
    nav = nav_counts()
    states = [name for name in nav if name != "Retries"] or list(data.STATES)
    return {"csrf": session["csrf"], "read_only": s.read_only, "title": s.title, "states": states,
            "refresh_ms": s.refresh_ms, "nav": nav, "menu": s.menu, "here": (request.script_root + request.full_path).rstrip("?")}


def int_arg(name: str, default: int, low: int = 0, high: int = 10_000_000) -> int:
    """A whole-number query argument, or 400 naming it. Only ASCII digits: str.isdigit
    also accepts "²", which int() refuses."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
        abort(400, f"parameter {name!r} must be a whole number from {low} to {high}, not {raw!r}")
    return int(raw)


def page_args() -> tuple[int, int]:
    """(page, rows per page) from ?page= and ?size= (10 to 500)."""
    return int_arg("page", 1, 1), int_arg("size", PAGE_SIZE, 10, 500)


def state_arg(state: str) -> str:
    """A state's name as the URL gives it (any case for its first letter), or 404 if no
    job can be in it: neither built in nor a custom state a job has entered."""
    name = state[:1].upper() + state[1:]
    if name not in data.STATES and name not in counts()["custom_states"]:
        known = ", ".join([*data.STATES, *counts()["custom_states"]])
        abort(404, f"no state {state!r}: the states are {known}")
    return name


def back(fallback: str | None = None) -> str:
    """Where an action sends the browser back to: the page that posted it (the form's
    `next`, else the Referer), if that is a page of this dashboard; else `fallback` or
    the overview."""
    root = url_for("taskfire.overview")
    for candidate in (request.form.get("next"), request.referrer):
        target = local_target(candidate, root)
        if target is not None:
            return target
    return fallback or root
