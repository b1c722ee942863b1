"""The dashboard (a WSGI app: taskfire_dashboard.create_app) served by a Django view, so
that Django's own login guards it: `staff_member_required` first, then the request goes
to the dashboard, which itself admits only requests this view marked as a staff member's.
The dashboard's forms carry their own CSRF token, so Django's check is not applied twice.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import sys
from typing import Any

from django import conf
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from .apps import client, settings

#: Set in the WSGI environ of a request that passed staff_member_required.
STAFF = "taskfire.django.staff"

_app: Any = None


def dashboard_app() -> Any:
    """The dashboard's Flask app for this process, made on first use."""
    global _app
    if _app is None:
        from taskfire_dashboard import create_app

        secret = hmac.new(conf.settings.SECRET_KEY.encode(), b"taskfire dashboard", hashlib.sha256).hexdigest()
        _app = create_app(client(), authorize=lambda request: request.environ.get(STAFF) is True,
                          read_only=bool(settings().get("DASHBOARD_READ_ONLY")), secret_key=secret)
        _app.config["SESSION_COOKIE_NAME"] = "taskfire_dashboard"  # beside Django's sessionid
    return _app


@csrf_exempt
@staff_member_required
def dashboard(request: HttpRequest, path: str) -> HttpResponse:
    mount = request.path[:len(request.path) - len(path)].rstrip("/")
    body = request.body
    environ = wsgi_environ(request)
    environ.update({"SCRIPT_NAME": mount, "PATH_INFO": "/" + path, "wsgi.input": io.BytesIO(body),
                    "CONTENT_LENGTH": str(len(body)), STAFF: True})
    started: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        started[:] = [status, headers]
        return lambda data: None

    chunks = dashboard_app()(environ, start_response)
    try:
        content = b"".join(chunks)
    finally:
        getattr(chunks, "close", lambda: None)()
    status, headers = started
    response = HttpResponse(content, status=int(status.split(" ", 1)[0]))
    for name, value in headers:
        if name.lower() == "set-cookie":
            response.cookies.load(value)
        else:
            response[name] = value
    return response


def wsgi_environ(request: HttpRequest) -> dict[str, Any]:
    """The request as a WSGI environ (Django under WSGI has it; under ASGI, from META)."""
    environ = dict(getattr(request, "environ", None) or request.META)
    environ.setdefault("wsgi.url_scheme", request.scheme or "http")
    environ.setdefault("wsgi.errors", sys.stderr)
    environ.setdefault("wsgi.version", (1, 0))
    environ.setdefault("wsgi.multithread", True)
    environ.setdefault("wsgi.multiprocess", True)
    environ.setdefault("wsgi.run_once", False)
    environ.setdefault("SERVER_NAME", request.get_host().split(":")[0])
    environ.setdefault("SERVER_PORT", request.get_port())
    return environ
