"""A page the served-dashboard tests add with `taskfire dashboard --pages
tests.dashboard_pages:add_pid_page`: it says which gunicorn worker process answered, on
GET (with the page's CSRF token, as every dashboard page carries) and on POST (only past
the dashboard's CSRF check)."""

from __future__ import annotations

import os
from typing import Any


def pid_page() -> str:
    from taskfire_dashboard import render_page
    return render_page("pid", '<p id="pid">{{ pid }}</p>', pid=os.getpid())


def pid_action() -> str:
    return str(os.getpid())


def add_pid_page(app: Any) -> None:
    from taskfire_dashboard import add_page
    add_page(app, "/test/pid", "", pid_page, menu=False)
    add_page(app, "/test/pid/post", "", pid_action, methods=("POST",), menu=False)
