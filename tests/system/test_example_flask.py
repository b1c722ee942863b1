"""examples/flask_app end to end: the shop's Flask app (its test client) with
taskfire.contrib.flask, real Redis, and a real `taskfire worker` sending receipts."""

from __future__ import annotations

import re

import pytest
from flask import Flask

from examples.flask_app import create_app
from taskfire import ConfigError
from taskfire.contrib.flask import FlaskTaskfire
from tests.conftest import report

pytestmark = pytest.mark.parametrize("server", ["valkey"], indirect=True)


@pytest.fixture
def app(tf) -> Flask:
    return create_app({"TASKFIRE_REDIS_URL": tf.url, "TASKFIRE_PREFIX": tf.prefix, "ADMIN_PASSWORD": "s3cret"})


def test_a_view_enqueues_and_another_waits_for_the_worker(app, tf, start_worker):
    client = app.test_client()
    placed = client.post("/orders", data={"email": "ann@example.com"})
    assert placed.status_code == 202
    job_id = placed.json["job_id"]
    assert tf.get_job(job_id).state == "Enqueued"  # the app's client is the test's store
    assert client.get(f"/orders/{job_id}").json == {"state": "Enqueued", "receipt": None}
    start_worker(modules=("examples.flask_app.jobs",))
    status = client.get(f"/orders/{job_id}?wait=20").json
    assert status == {"state": "Succeeded", "receipt": f"receipt for order {placed.json['order_id']} sent to ann@example.com"}
    assert client.get("/orders/nope").status_code == 404


def test_the_dashboard_is_behind_the_apps_own_login(app, tf):
    job_id = tf.enqueue("examples.flask_app.jobs:send_receipt", 7, "bob@example.com")
    client = app.test_client()
    # Given no login: the shop's login page, not the dashboard
    page = client.get("/admin/taskfire/")
    assert page.status_code == 302 and page.location.startswith("/login?next=/admin/taskfire/")
    assert client.post(f"/admin/taskfire/jobs/{job_id}/delete").status_code == 302  # to the login, again
    assert tf.get_job(job_id).state == "Enqueued"
    assert client.post("/login", data={"user": "admin", "password": "wrong"}).status_code == 401
    # When the admin signs in
    assert client.post("/login?next=/admin/taskfire/", data={"user": "admin", "password": "s3cret"}).location \
        == "/admin/taskfire/"
    # Then the dashboard shows the job, and its buttons work (with the page's CSRF token)
    page = client.get(f"/admin/taskfire/jobs/{job_id}")
    assert page.status_code == 200 and job_id in page.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    assert client.post(f"/admin/taskfire/jobs/{job_id}/delete").status_code == 400  # no token: refused
    assert client.post(f"/admin/taskfire/jobs/{job_id}/delete", data={"csrf": csrf}).status_code == 302
    assert tf.get_job(job_id).state == "Deleted"
    report("flask: dashboard at /admin/taskfire behind the shop's login; POSTs carry its CSRF token")


def test_mounting_the_dashboard_without_a_guard_or_a_secret_key_is_refused(tf):
    app = Flask(__name__)
    app.config.update(TASKFIRE_REDIS_URL=tf.url, TASKFIRE_PREFIX=tf.prefix)
    with pytest.raises(ConfigError, match="mounting the dashboard needs authorize="):
        FlaskTaskfire().init_app(app, dashboard="/taskfire")
    with pytest.raises(ConfigError, match="needs the app's SECRET_KEY"):
        FlaskTaskfire().init_app(app, dashboard="/taskfire", authorize=lambda: True)
    assert FlaskTaskfire(app).init_app(app).prefix == tf.prefix  # no dashboard: nothing to guard


def test_a_guard_that_says_no_answers_403(tf):
    app = Flask(__name__)
    app.config.update(TASKFIRE_REDIS_URL=tf.url, TASKFIRE_PREFIX=tf.prefix, SECRET_KEY="k")
    FlaskTaskfire().init_app(app, dashboard="/ops", authorize=lambda: False)
    assert app.test_client().get("/ops/").status_code == 403
