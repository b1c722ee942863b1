"""A job for the Django integration's test: whether its worker thread still had a
database connection open when the job began."""

from __future__ import annotations

from taskfire import job


@job
def connection_was_open() -> bool:
    from django.contrib.auth.models import User
    from django.db import connection

    was_open = connection.connection is not None
    User.objects.count()  # opens one, as any job using the ORM does
    return was_open
