"""examples/fastapi_app end to end (taskfire.contrib.fastapi and .starlette): the ASGI
app through Starlette's test client, AsyncTaskfire in its handlers, real Redis, and a
real `taskfire worker` running the async job."""

from __future__ import annotations

import re
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse
from starlette.routing import Mount
from starlette.testclient import TestClient

from examples.fastapi_app import create_app
from taskfire.contrib.starlette import dashboard
from tests.conftest import report

pytestmark = pytest.mark.parametrize("server", ["valkey"], indirect=True)
ADMIN = ("admin", "s3cret")


@pytest.fixture
def client(tf, monkeypatch) -> Any:
    monkeypatch.setenv("SHOP_ADMIN_PASSWORD", ADMIN[1])
    with TestClient(create_app(tf.url, tf.prefix)) as c:  # runs the lifespan: the AsyncTaskfire
        yield c


def test_a_handler_enqueues_with_the_async_client_and_another_awaits_the_worker(client, tf, start_worker):
    placed = client.post("/photos/7/thumbnail?size=128")
    assert placed.status_code == 202
    job_id = placed.json()["job_id"]
    assert tf.get_job(job_id).state == "Enqueued"
    assert client.get(f"/jobs/{job_id}").json() == {"state": "Enqueued", "result": None}
    start_worker(modules=("examples.fastapi_app.jobs",))
    assert client.get(f"/jobs/{job_id}?wait=20").json() == {"state": "Succeeded",
                                                            "result": "photo 7: 128x128 thumbnail"}
    assert client.get("/jobs/nope").status_code == 404


def test_the_dashboard_route_runs_the_apps_auth_dependency_first(client, tf):
    job_id = tf.enqueue("examples.fastapi_app.jobs:make_thumbnail", 1, 64)
    refused = client.get("/admin/taskfire/")
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == 'Basic realm="taskfire"'
    assert client.get("/admin/taskfire/", auth=("admin", "wrong")).status_code == 401
    assert client.post(f"/admin/taskfire/jobs/{job_id}/delete").status_code == 401
    assert tf.get_job(job_id).state == "Enqueued"
    page = client.get(f"/admin/taskfire/jobs/{job_id}", auth=ADMIN)
    assert page.status_code == 200 and job_id in page.text
    assert 'href="/admin/taskfire/' in page.text  # links know where the dashboard is mounted
    stylesheet = re.search(r'href="(/admin/taskfire/static/[^"]+\.css)"', page.text).group(1)
    assert client.get(stylesheet, auth=ADMIN).status_code == 200
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    deleted = client.post(f"/admin/taskfire/jobs/{job_id}/delete", data={"csrf": csrf}, auth=ADMIN,
                          follow_redirects=False)
    assert deleted.status_code == 302 and tf.get_job(job_id).state == "Deleted"
    report("fastapi: dashboard route behind the app's HTTPBasic dependency; AsyncTaskfire in handlers")


def test_a_starlette_mount_asks_the_apps_own_check_first(tf):
    async def is_admin(request: Request) -> Any:  # a coroutine, as a session lookup would be
        if request.headers.get("x-user") == "admin":
            return True
        if request.headers.get("x-user") is None:
            return RedirectResponse("/login", 303)
        return False

    app = Starlette(routes=[Mount("/ops/taskfire", app=dashboard(tf, authorize=is_admin))])
    with TestClient(app) as web:
        login = web.get("/ops/taskfire/", follow_redirects=False)
        assert login.status_code == 303 and login.headers["location"] == "/login"
        assert web.get("/ops/taskfire/", headers={"x-user": "ann"}).status_code == 403
        page = web.get("/ops/taskfire/", headers={"x-user": "admin"})
        assert page.status_code == 200 and 'href="/ops/taskfire/' in page.text
