"""examples/bulk_import end to end: the Flask API (its test client) in this process, a
SQLite file per test, and real `taskfire worker` processes running the import job."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, insert, select

from examples.bulk_import.api import create_app
from examples.bulk_import.db import Database, platforms
from examples.bulk_import.jobs import import_platforms
from examples.bulk_import.validation import Platform
from tests.conftest import report, wait_for, wait_state

# The scenario, not the server, is under test here: the embedded Valkey it runs on.
pytestmark = pytest.mark.parametrize("server", ["valkey"], indirect=True)

ACME = {"X-API-Key": "acme-key"}
GLOBEX = {"X-API-Key": "globex-key"}
JOBS = ("examples.bulk_import.jobs",)


@pytest.fixture
def db(tmp_path: Path) -> Database:
    return Database(f"sqlite:///{tmp_path / 'imports.db'}")


@pytest.fixture
def client(tf, db) -> FlaskClient:
    return create_app(tf, db, {"acme-key": "acme", "globex-key": "globex"}).test_client()


@pytest.fixture
def start_import_worker(start_worker, db):
    def start(delay: float = 0.0):
        return start_worker(modules=JOBS, env={"BULK_IMPORT_DB": db.url, "BULK_IMPORT_RECORD_DELAY": str(delay)})
    return start


def platform(i: int, **changes: Any) -> dict[str, Any]:
    return {"name": f"platform-{i}", "url": f"https://p{i}.example.com/", "kind": "web", **changes}


def post(client: FlaskClient, items: list[Any], headers: dict[str, str] = ACME) -> Any:
    return client.post("/api/platforms/bulk", json={"platforms": items}, headers=headers)


def status(client: FlaskClient, import_id: str, headers: dict[str, str] = ACME) -> dict[str, Any]:
    response = client.get(f"/api/platforms/bulk/{import_id}/status", headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def finished(client: FlaskClient, import_id: str, headers: dict[str, str] = ACME) -> dict[str, Any]:
    return wait_for(lambda: (s := status(client, import_id, headers))["finished_at"] and s, 60,
                    f"import {import_id} to finish")


def existing(db: Database, tenant: str, names: list[str]) -> None:
    with db.engine.begin() as conn:
        conn.execute(insert(platforms), [{"tenant": tenant, "name": n, "url": "https://old.example/", "kind": "web",
                                          "import_id": "earlier"} for n in names])


def platform_count(db: Database, tenant: str) -> int:
    with db.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(platforms).where(platforms.c.tenant == tenant)).scalar_one()


def test_invalid_requests_get_400_with_a_message_per_item_and_store_nothing(tf, client, db):
    bad = [
        platform(0),
        {"url": "https://x.example/"},                                   # no name
        platform(2, url="ftp://files.example/"),                          # not http(s)
        platform(3, kind="fax"),                                          # unknown kind
        platform(4, owner="me"),                                          # unknown field
        platform(0, url="https://again.example/"),                       # duplicate name
        "just a string",
    ]
    response = post(client, bad)
    assert response.status_code == 400
    body = response.get_json()
    assert body["error"] == "the request has 6 problem(s); nothing was imported"
    assert body["problems"] == [
        {"index": 1, "field": "name", "message": "is required: a non-empty string"},
        {"index": 2, "field": "url", "message": "'ftp://files.example/' is not an http:// or https:// URL with a host"},
        {"index": 3, "field": "kind", "message": "'fax' is not one of web, ios, android, desktop, api"},
        {"index": 4, "field": "owner", "message": "unknown field (expected name, url, kind)"},
        {"index": 5, "field": "name", "message": "duplicate of item 0: names must be unique"},
        {"index": 6, "message": "must be an object with name, url, kind, not str"},
    ]
    too_many = post(client, [platform(i) for i in range(1001)])
    assert too_many.status_code == 400
    assert too_many.get_json()["problems"] == [{"message": "too many platforms: 1001, at most 1000 per request"}]
    assert post(client, []).get_json()["problems"] == [{"message": "platforms is empty: send 1 to 1000 platforms"}]
    not_json = client.post("/api/platforms/bulk", data="name=x", headers=ACME)
    assert not_json.status_code == 400 and "must be JSON" in not_json.get_json()["error"]
    wrong_shape = client.post("/api/platforms/bulk", json=[platform(1)], headers=ACME)
    assert wrong_shape.get_json()["problems"] == [{"message": 'the body must be a JSON object {"platforms": [...]}'}]
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("select count(*) from platform_imports").scalar() == 0
    assert sum(tf.queue_lengths().values()) == 0


def test_api_keys_name_tenants_and_each_sees_only_its_own_imports(client):
    accepted = post(client, [platform(1)])
    assert accepted.status_code == 202
    import_id = accepted.get_json()["import_id"]
    url = f"/api/platforms/bulk/{import_id}/status"
    assert client.get(url).status_code == 401
    assert client.get(url).get_json() == {"error": "missing API key: send it in the X-API-Key header"}
    assert client.get(url, headers={"X-API-Key": "guessed"}).get_json() == {"error": "unknown API key"}
    assert post(client, [platform(2)], headers={}).status_code == 401
    other = client.get(url, headers=GLOBEX)
    assert other.status_code == 403 and other.get_json() == {"error": f"import {import_id!r} belongs to another tenant"}
    missing = client.get("/api/platforms/bulk/0123456789abcdef/status", headers=ACME)
    assert missing.status_code == 404 and missing.get_json() == {"error": "no import '0123456789abcdef'"}
    assert client.get(url, headers=ACME).status_code == 200


def test_a_thousand_platforms_are_imported_with_counts_moving_every_hundred(tf, client, db, start_import_worker):
    # Given a tenant that already has 15 of the names it is about to import
    taken = [f"platform-{i}" for i in range(0, 1000, 67)]
    existing(db, "acme", taken)
    # When it posts 1,000 platforms
    accepted = post(client, [platform(i) for i in range(1000)])
    assert accepted.status_code == 202
    body = accepted.get_json()
    import_id, job_id = body["import_id"], body["job_id"]
    assert body["status"] == "Pending" and body["total"] == 1000
    assert accepted.headers["Location"] == body["status_url"] == f"/api/platforms/bulk/{import_id}/status"
    pending = status(client, import_id)
    assert pending["status"] == "Pending" and pending["processed"] == 0 and pending["started_at"] is None
    assert pending["job_id"] == job_id and tf.get_job(job_id).state == "Enqueued"  # type: ignore[union-attr]

    # Then a worker takes it, and the counts move 100 at a time while it runs
    start_import_worker(delay=0.003)
    seen: list[tuple[str, int, int, int]] = []

    def watch() -> bool:
        s = status(client, import_id)
        sample = (s["status"], s["processed"], s["succeeded"], s["failed"])
        if not seen or seen[-1] != sample:
            seen.append(sample)
        return s["finished_at"] is not None

    wait_for(watch, 60, "the import to finish")
    moving = [p for st, p, _, _ in seen if st == "Processing" and 0 < p < 1000]
    assert len(moving) >= 2, seen
    assert all(p % 100 == 0 for _, p, _, _ in seen), seen
    assert [p for _, p, _, _ in seen] == sorted(p for _, p, _, _ in seen), seen
    assert all(ok + failed == p for _, p, ok, failed in seen), seen

    done = status(client, import_id)
    assert done["status"] == "PartialSuccess"
    assert (done["total"], done["processed"], done["succeeded"], done["failed"]) == (1000, 1000, 985, 15)
    assert done["errors"] == [f"item {int(n.split('-')[1])}: a platform named {n!r} already exists" for n in taken[:10]]
    assert done["created_at"] <= done["started_at"] <= done["finished_at"]
    wait_state(tf, job_id, "Succeeded")
    job = tf.get_job(job_id)
    assert job is not None and job.progress == {"done": 1000, "total": 1000, "fraction": 1.0}
    assert job.result == {"status": "PartialSuccess", "succeeded": 985, "failed": 15}
    assert platform_count(db, "acme") == 1000
    report(f"bulk import: 1,000 platforms (3 ms each) seen at {len(moving)} intermediate counts: "
           f"{', '.join(str(p) for p in moving)}")


def test_completed_failed_and_tenant_scoped_names(client, db, start_import_worker):
    start_import_worker()
    existing(db, "acme", ["a", "b"])
    all_taken = post(client, [platform(0, name="a"), platform(1, name="b")]).get_json()["import_id"]
    same_names_elsewhere = post(client, [platform(0, name="a"), platform(1, name="b")], GLOBEX).get_json()["import_id"]
    failed = finished(client, all_taken)
    assert (failed["status"], failed["succeeded"], failed["failed"]) == ("Failed", 0, 2)
    completed = finished(client, same_names_elsewhere, GLOBEX)
    assert (completed["status"], completed["succeeded"], completed["failed"]) == ("Completed", 2, 0)
    assert completed["errors"] == []


def test_a_job_that_fails_for_good_fails_its_import_with_the_reason(tf, client, db, start_import_worker):
    # Given a database that refuses to start imports, and a job with no retries to spend
    with db.engine.begin() as conn:
        conn.exec_driver_sql("CREATE TRIGGER maintenance BEFORE UPDATE OF status ON platform_imports "
                             "WHEN NEW.status = 'Processing' BEGIN SELECT RAISE(ABORT, 'imports are "
                             "frozen for maintenance'); END")
    import_id = "feedfacefeedface"
    db.create_import(import_id, "acme", [Platform("a", "https://a.example/")])
    job_id = import_platforms.options(retries=0).enqueue(import_id)
    db.set_job(import_id, job_id)
    assert status(client, import_id)["status"] == "Pending"
    # When a worker runs the job, it fails; then the import is Failed, with the reason
    start_import_worker()
    wait_state(tf, job_id, "Failed")
    s = finished(client, import_id)
    assert s["status"] == "Failed" and s["processed"] == 0
    assert s["errors"][0].startswith("the import stopped: sqlalchemy.exc.IntegrityError: ")
    assert "imports are frozen for maintenance" in s["errors"][0]


def test_a_worker_killed_mid_import_is_resumed_without_importing_twice(tf, client, db, start_import_worker):
    first = start_import_worker(delay=0.003)
    body = post(client, [platform(i) for i in range(800)]).get_json()
    wait_for(lambda: status(client, body["import_id"])["processed"] >= 200, 30, "200 records imported")
    first.kill()  # SIGKILL: its lease lapses, and the job goes back to its queue
    start_import_worker()
    done = finished(client, body["import_id"])
    assert (done["status"], done["processed"], done["succeeded"], done["failed"]) == ("Completed", 800, 800, 0)
    assert platform_count(db, "acme") == 800
    history = [e.state for e in tf.get_job(body["job_id"]).history]  # type: ignore[union-attr]
    assert history.count("Processing") == 2, history
