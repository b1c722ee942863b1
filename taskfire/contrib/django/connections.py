"""Database connections in a worker, as Django handles them around a request."""

from __future__ import annotations

import asyncio

from django.db import close_old_connections

from ...filters import JobFilter, PerformedContext, PerformingContext


class CloseOldConnections(JobFilter):
    """Before and after each job, closes the database connections that are broken or
    older than CONN_MAX_AGE, as Django does at the start and end of every request: a
    worker thread never runs a job on a connection the database dropped, nor holds one
    forever. (Async jobs, which reach the ORM through sync_to_async, are left alone.)"""

    def on_performing(self, ctx: PerformingContext) -> None:
        _close_old_connections()

    def on_performed(self, ctx: PerformedContext) -> None:
        _close_old_connections()


def _close_old_connections() -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        close_old_connections()
