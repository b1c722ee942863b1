"""The dashboard in a FastAPI application (`pip install 'taskfire[fastapi]'`), behind the
application's own auth dependencies:

    app.include_router(dashboard_router(tf, prefix="/taskfire", dependencies=[Depends(require_admin)]))

A mounted sub-application would skip FastAPI's dependencies; this is a route instead (every
method the dashboard answers, any path under `prefix`), so the dependencies run for each
request, as for any route of the app: one that raises HTTPException(401) answers 401.
Then the request goes on to the dashboard (taskfire.contrib.starlette.DashboardApp).
"""

from __future__ import annotations

from typing import Any, Sequence

from fastapi import APIRouter, Request
from fastapi.params import Depends
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ..client import Taskfire
from .starlette import DashboardApp


class _ToDashboard(Response):
    """The route's answer: the dashboard's own, for the request the route received."""

    def __init__(self, dashboard: DashboardApp, prefix: str) -> None:
        super().__init__()
        self.dashboard = dashboard
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        mounted = {**scope, "root_path": scope.get("root_path", "") + self.prefix}
        await self.dashboard(mounted, receive, send)


def dashboard_router(tf: Taskfire, *, prefix: str = "/taskfire", dependencies: Sequence[Depends] = (),
                     read_only: bool = False, secret_key: str | None = None, title: str = "taskfire") -> APIRouter:
    """A router serving the dashboard under `prefix`, each request through `dependencies`
    first (see the module's docstring). `secret_key` signs the dashboard's session (its
    CSRF token): give every process of the application the same one."""
    prefix = "/" + prefix.strip("/")
    dashboard = DashboardApp(tf, None, read_only=read_only, secret_key=secret_key, title=title)
    router = APIRouter(prefix=prefix, dependencies=list(dependencies))

    @router.api_route("/{path:path}", methods=["GET", "POST", "HEAD"], include_in_schema=False)
    async def taskfire_dashboard(request: Request, path: str) -> Any:
        return _ToDashboard(dashboard, prefix)

    return router
