"""examples/django_app end to end, with taskfire.contrib.django: Django set up in this
process (its test client, a SQLite file), real Redis, and real worker processes started
with `manage.py taskfire_worker`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.conftest import ROOT, report, wait_for

pytestmark = pytest.mark.parametrize("server", ["valkey"], indirect=True)
PREFIX = "django-shop:"


@pytest.fixture(scope="module")
def django_env(server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Django set up once for this module, on the session's server under its own prefix."""
    env = {"DJANGO_SETTINGS_MODULE": "examples.django_app.settings",
           "SHOP_DB": str(tmp_path_factory.mktemp("django") / "shop.sqlite3"),
           "TASKFIRE_REDIS_URL": server.url, "TASKFIRE_PREFIX": PREFIX}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    yield env
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def shop(django_env: dict[str, str]) -> Iterator[Any]:
    from taskfire.contrib.django import client

    tf = client()
    yield tf
    tf.storage.clear()


@pytest.fixture
def django_worker(django_env: dict[str, str], tmp_path: Path) -> Iterator[Any]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> Path:
        log = tmp_path / f"django-worker-{len(procs)}.log"
        with open(log, "wb") as out:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "examples.django_app.manage", "taskfire_worker", *args], cwd=ROOT,
                env={**os.environ, **django_env, "TASKFIRE_LOG_LEVEL": "DEBUG", "PYTHONUNBUFFERED": "1"},
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True))
        wait_for(lambda: "taking jobs from" in log.read_text() or procs[-1].poll() is not None, 30, "the worker")
        assert procs[-1].poll() is None, log.read_text()
        return log

    yield start
    for p in procs:
        p.terminate()
        p.wait(30)


def test_an_order_commits_then_the_worker_writes_its_receipt_through_the_orm(shop, django_worker):
    from django.test import Client

    from examples.django_app.shop.models import Order

    log = django_worker()
    assert "jobs: examples.django_app.shop.jobs:send_receipt" in log.read_text()  # the app's jobs, found
    web = Client()
    placed = web.post("/orders", {"email": "ann@example.com"})
    assert placed.status_code == 202
    order_id, job_id = placed.json()["order_id"], placed.json()["job_id"]
    assert Order.objects.get(pk=order_id).receipt_job == job_id
    status = web.get(f"/orders/{order_id}?wait=20").json()
    assert status == {"email": "ann@example.com", "receipt": f"receipt for order {order_id} sent to ann@example.com"}
    assert shop.get_job(job_id).state == "Succeeded"


def test_a_job_enqueued_in_a_transaction_that_rolls_back_never_exists(shop):
    from django.db import transaction

    from examples.django_app.shop.jobs import send_receipt
    from taskfire.contrib.django import enqueue_on_commit

    with pytest.raises(RuntimeError):
        with transaction.atomic():
            rolled_back = enqueue_on_commit(send_receipt, 1)
            raise RuntimeError("the view failed after enqueueing")
    assert shop.get_job(rolled_back) is None and shop.queue_lengths() == {}
    with transaction.atomic():
        committed = enqueue_on_commit(send_receipt, 2)
        assert shop.get_job(committed) is None  # not before the commit
    assert shop.get_job(committed).state == "Enqueued" and shop.get_job(committed).args == [2]
    with pytest.raises(TypeError):
        enqueue_on_commit(send_receipt, "one", "too many")  # checked at the call, not at the commit
    report("django: enqueue_on_commit stores the job at COMMIT; a rollback leaves none")


def test_the_dashboard_is_for_staff_only(shop):
    from django.contrib.auth.models import User
    from django.test import Client

    job_id = shop.enqueue("examples.django_app.shop.jobs:send_receipt", 3)
    staff = User.objects.create_user("ops", password="pw", is_staff=True)
    customer = User.objects.create_user("ann", password="pw")
    web = Client()
    page = web.get("/admin/taskfire/")
    assert page.status_code == 302 and page["Location"] == "/admin/login/?next=/admin/taskfire/"
    web.force_login(customer)
    assert web.get("/admin/taskfire/").status_code == 302
    assert web.post(f"/admin/taskfire/jobs/{job_id}/delete").status_code == 302  # to the login
    assert shop.get_job(job_id).state == "Enqueued"
    web.force_login(staff)
    page = web.get(f"/admin/taskfire/jobs/{job_id}")
    assert page.status_code == 200 and job_id in page.content.decode()
    stylesheet = re.search(r'href="(/admin/taskfire/static/[^"]+\.css)"', page.content.decode()).group(1)
    assert web.get(stylesheet).status_code == 200
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.content.decode()).group(1)
    deleted = web.post(f"/admin/taskfire/jobs/{job_id}/delete", {"csrf": csrf})
    assert deleted.status_code == 302 and shop.get_job(job_id).state == "Deleted"
    staff.delete(), customer.delete()


def test_a_worker_closes_database_connections_between_jobs(shop, django_worker):
    from tests.django_jobs import connection_was_open

    django_worker("examples.django_app.shop.jobs", "tests.django_jobs", "--threads", "1")
    runs = [shop.wait(connection_was_open.enqueue(), timeout=20).result for _ in range(3)]
    assert runs == [False, False, False]  # each job began without the last one's connection

