"""The dashboard as a Flask Blueprint, "taskfire": its pages (pages.py), its actions
(actions.py) and its JSON API and metrics (api.py) attach their views to `bp`.

`register(app, tf, ...)` mounts it on any Flask app, under any prefix, with its settings;
every request it serves passes `guard` first: actions are POSTs carrying the page's CSRF
token, and a read-only dashboard refuses them. Who may see it is the app's business
(`create_app` adds the local-only default and Basic or bearer authentication).
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any

from flask import Blueprint, Flask, abort, current_app, g, request, session

from taskfire import Taskfire
from taskfire.cron import describe

from . import data
from .formatting import duration, pretty, when

bp = Blueprint("taskfire", __name__, template_folder="templates", static_folder="static",
               static_url_path="/static")

#: Rows per page of a list.
PAGE_SIZE = 50


class Settings:
    """The dashboard's settings in one app (app.extensions["taskfire_dashboard"])."""

    def __init__(self, tf: Taskfire, read_only: bool, refresh_ms: int, title: str) -> None:
        self.tf = tf
        self.read_only = read_only
        self.refresh_ms = refresh_ms
        self.title = title
        self.menu: list[tuple[str, str]] = []  # (label, endpoint) of the application's own pages


def register(app: Flask, tf: Taskfire, *, url_prefix: str = "", read_only: bool = False,
             refresh_ms: int = 2000, title: str = "taskfire") -> None:
    """Mounts the dashboard on `app` under `url_prefix`, showing the store `tf` reaches.
    The app needs a `secret_key` (its session carries the CSRF token)."""
    app.extensions["taskfire"] = tf
    app.extensions["taskfire_dashboard"] = Settings(tf, read_only, refresh_ms, title)
    app.add_template_filter(describe, "describe_cron")
    app.add_template_filter(when, "when")
    app.add_template_filter(duration, "duration")
    app.add_template_filter(pretty, "pretty")
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


def counts() -> dict[str, Any]:
    """This request's counts: read once, shared by the page and its menu."""
    if "taskfire_counts" not in g:
        g.taskfire_counts = data.counts(client())
    return g.taskfire_counts  # type: ignore[no-any-return]


def nav_counts() -> dict[str, int]:
    try:
        return counts()["states"]  # type: ignore[no-any-return]
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
    return {"csrf": session["csrf"], "read_only": s.read_only, "title": s.title, "states": data.STATES,
            "refresh_ms": s.refresh_ms, "nav": nav_counts(), "menu": s.menu}


def int_arg(name: str, default: int, low: int = 0, high: int = 10_000_000) -> int:
    """A whole-number query argument, or 400 naming it."""
    raw = request.args.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
        abort(400, f"parameter {name!r} must be a whole number from {low} to {high}, not {raw!r}")
    return int(raw)


def state_arg(state: str) -> str:
    name = state[:1].upper() + state[1:]
    if name not in data.STATES and not name.isidentifier():
        abort(400, f"unknown state {state!r}")
    return name
