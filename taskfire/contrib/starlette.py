"""The dashboard in a Starlette application (`pip install 'taskfire[starlette]'`), behind
the application's own check:

    app.mount("/taskfire", dashboard(tf, authorize=is_admin))   # or Mount(...) in routes=

The dashboard is a WSGI app (taskfire_dashboard.create_app), run in threads by a2wsgi.
`authorize(request)` (a function or a coroutine function, given the Starlette Request)
runs first for every request: True lets it through, False answers 403, and a response
(a redirect to the login page) is sent instead. The dashboard itself admits only the
requests that passed it. In handlers, use AsyncTaskfire: `await tf.enqueue(...)` does not
block the event loop.
"""

from __future__ import annotations

import inspect
import secrets
from typing import Any, Callable

from a2wsgi import WSGIMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import Receive, Scope, Send

from ..client import Taskfire

#: Set in the ASGI scope of a request that passed the application's check.
AUTHORIZED = "taskfire.authorized"


class DashboardApp:
    """The dashboard as an ASGI app; `authorize` None means the caller checked already
    (taskfire.contrib.fastapi's route, behind its dependencies)."""

    def __init__(self, tf: Taskfire, authorize: Callable[[Request], Any] | None, *, read_only: bool = False,
                 secret_key: str | None = None, title: str = "taskfire") -> None:
        from taskfire_dashboard import create_app

        flask_app = create_app(tf, authorize=lambda request: request.environ["asgi.scope"].get(AUTHORIZED) is True,
                               read_only=read_only, secret_key=secret_key or secrets.token_hex(32), title=title)
        flask_app.config["SESSION_COOKIE_NAME"] = "taskfire_dashboard"
        self.authorize = authorize
        self.wsgi = WSGIMiddleware(flask_app)  # type: ignore[arg-type]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.authorize is not None:
            verdict = self.authorize(Request(scope, receive))
            if inspect.isawaitable(verdict):
                verdict = await verdict
            if verdict is not True:
                refusal = verdict if isinstance(verdict, Response) else PlainTextResponse("Forbidden", 403)
                await refusal(scope, receive, send)
                return
        await self.wsgi({**scope, AUTHORIZED: True}, receive, send)  # type: ignore[arg-type]


def dashboard(tf: Taskfire, *, authorize: Callable[[Request], Any], read_only: bool = False,
              secret_key: str | None = None, title: str = "taskfire") -> DashboardApp:
    """The dashboard to mount, behind `authorize` (see the module's docstring).
    `secret_key` signs its session (the CSRF token); give the same one to every process
    of the application."""
    return DashboardApp(tf, authorize, read_only=read_only, secret_key=secret_key, title=title)
