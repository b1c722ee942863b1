"""taskfire in a Django project (`pip install 'taskfire[django]'`): an app.

    INSTALLED_APPS = [..., "taskfire.contrib.django"]
    TASKFIRE = {"REDIS_URL": "redis://127.0.0.1:6379/0", "PREFIX": "shop:", "QUEUES": "critical,default"}

    urlpatterns = [..., path("admin/taskfire/", include("taskfire.contrib.django.urls"))]

    python manage.py taskfire_worker            # the jobs modules of the installed apps

Settings (`TASKFIRE`, every key optional; unset ones fall back to the TASKFIRE_*
environment variables, as `Taskfire()` does): REDIS_URL, PREFIX, RETENTION (seconds),
QUEUES and MODULES (the worker's; MODULES defaults to the `jobs` module of every
installed app that has one), DASHBOARD_READ_ONLY.

`client()` is the project's Taskfire (made when the app is ready: the default client of
`job.enqueue`). In a database transaction, `enqueue_on_commit` enqueues only once the
transaction commits: a rolled-back transaction leaves no job behind, and a worker never
sees a job before the rows it reads.
"""

from __future__ import annotations

from typing import Any

from ...client import Taskfire
from ...creation import build, resolve
from ...job import JobFunction
from .apps import client, settings

__all__ = ["client", "enqueue_on_commit", "settings"]


def enqueue_on_commit(target: JobFunction[..., Any] | str, *args: Any, using: str | None = None,
                      **kwargs: Any) -> str:
    """Enqueues a job when the current transaction (of database `using`) commits, at
    once outside a transaction; returns its id now. The call is checked against the
    function's signature now, so a bad call fails in the view, not at the commit. (With
    `unique`, the job stored may be the pending one holding its key, under another id.)"""
    from django.db import transaction

    tf: Taskfire = client()
    new, created = build(resolve(target), args, kwargs, place=tf.storage.placement)
    transaction.on_commit(lambda: tf.creator.store(new, created), using=using)
    return new.id
