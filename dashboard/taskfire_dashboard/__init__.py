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

Safe by default: until authorization is configured only loopback requests are served,
and repeated failed logins from one address are refused for a while (429). Every action
is a POST carrying a CSRF token from the page, and sends the browser back only to a page
of the dashboard; every value shown is escaped by Jinja; every response carries a
Content-Security-Policy that allows no inline script or style and no framing. Pages
read bounded ranges of Redis indexes, never KEYS or SCAN.
"""

from __future__ import annotations

import os
import secrets
from typing import Any, Callable

from flask import Flask, Response, abort, render_template_string, request
from werkzeug.exceptions import HTTPException

from taskfire import Taskfire

from . import actions, api, pages  # noqa: F401  (each attaches its views to the blueprint)
from .blueprint import bp, client, error_response, guard, register
from .security import LoginThrottle, authorization, secure, throttled

__all__ = ["create_app", "add_page", "client", "render_page", "register", "bp", "LoginThrottle"]


def create_app(redis: str | Taskfire | None = None, *, prefix: str | None = None,
               authorize: Callable[[Any], bool] | None = None, basic_auth: tuple[str, str] | None = None,
               bearer_token: str | None = None, read_only: bool = False, refresh_ms: int = 2000,
               title: str = "taskfire", secret_key: str | None = None,
               login_throttle: LoginThrottle | None = None) -> Flask:
    """The dashboard app for one taskfire store (a URL, or a client to share).
    `login_throttle`: how repeated failed Basic or bearer logins from one address are
    refused (default: 10 within a minute lock it out for 5 minutes, with a 429)."""
    tf = redis if isinstance(redis, Taskfire) else Taskfire(redis, prefix=prefix)
    app = Flask(__name__)
    app.secret_key = secret_key or os.environ.get("TASKFIRE_DASHBOARD_SECRET") or secrets.token_hex(32)
    app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax")
    allowed = authorization(authorize, basic_auth, bearer_token)
    throttle = login_throttle if login_throttle is not None else LoginThrottle()

    @app.before_request
    def authenticate() -> Response | None:
        address = request.remote_addr or ""
        wait = throttle.retry_after(address)
        if wait:
            return throttled(wait)
        verdict = allowed()
        if verdict:
            throttle.succeeded(address)
            return None
        if verdict is False:  # credentials given, and wrong
            throttle.failed(address)
            wait = throttle.retry_after(address)
            if wait:
                return throttled(wait)
        if basic_auth is not None:
            return Response("Sign in to see the taskfire dashboard.", 401,
                            {"WWW-Authenticate": 'Basic realm="taskfire"'})
        abort(403)

    register(app, tf, read_only=read_only, refresh_ms=refresh_ms, title=title)
    app.register_error_handler(HTTPException, _http_error)
    app.after_request(secure)
    return app


def _http_error(error: HTTPException) -> tuple[str | Response, int]:
    """An error as a page, or as JSON under /api/."""
    message = error.description
    if error.code == 405:
        message = "this address takes a POST from the dashboard's buttons"
    return error_response(error.code or 500, message or "")


def add_page(app: Flask, rule: str, title: str, view: Callable[..., Any], *,
             methods: tuple[str, ...] = ("GET",), menu: bool = True) -> None:
    """Adds an application's own page to the dashboard (and a menu item, unless
    `menu=False`, e.g. for the POST address of its buttons). The view is a Flask view
    whose endpoint (for `url_for`) is "page_" + its function's name: it reads the store
    through `client()` and renders with `render_page`. Its POSTs pass the same
    authorization and CSRF check as the built-in actions."""
    endpoint = f"page_{view.__name__}"

    def checked(*args: Any, **kwargs: Any) -> Any:
        guard()
        return view(*args, **kwargs)

    checked.__name__ = view.__name__
    app.add_url_rule(rule, endpoint, checked, methods=list(methods))
    if menu:
        app.extensions["taskfire_dashboard"].menu.append((title, endpoint))


def render_page(title: str, body: str, **context: Any) -> str:
    """Renders `body`, a Jinja template (escaping every value, as the built-in pages do),
    inside the dashboard's layout. The macros `post(url, label)` (a CSRF-protected
    button) and `job_link(id)` are at hand, and so are `csrf` and `read_only`."""
    source = ('{% extends "taskfire/base.html" %}{% from "taskfire/macros.html" import post, job_link with context %}'
              '{% block title %}{{ page_title }}{% endblock %}{% block body %}' + body + '{% endblock %}')
    return render_template_string(source, page_title=title, **context)
