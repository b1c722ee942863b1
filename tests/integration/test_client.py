"""Creating, reading and moving jobs without a worker."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest

from taskfire import ConfigError, Deleted, Enqueued, Failed, Scheduled, State, Taskfire, job
from taskfire.storage import FetchRequest
from tests import jobs
from tests.conftest import wait_for


def fetch(tf: Taskfire, queues=("default",), n=10, worker="test-worker", lease_ms=60_000):
    return tf.storage.fetch(FetchRequest(worker, list(queues), n, lease_ms, 5))


def test_enqueue_stores_the_full_job_record(tf):
    jid = tf.enqueue(jobs.add, 2, b=3)
    j = tf.get_job(jid)
    assert (j.function, j.queue, j.state, j.args, j.kwargs) == ("tests.jobs:add", "default", "Enqueued", [2], {"b": 3})
    assert j.created_at is not None and abs((datetime.now(timezone.utc) - j.created_at).total_seconds()) < 5
    assert [e.state for e in j.history] == ["Enqueued"]
    assert tf.queue_lengths() == {"default": 1}


def test_job_function_methods_use_the_latest_client(tf):
    jid = jobs.add.enqueue(1, 1)
    assert tf.get_job(jid).state == "Enqueued"


def test_job_ids_are_unique_and_sort_by_creation(tf):
    ids = jobs.echo.enqueue_many([(i,) for i in range(2000)])
    assert len(set(ids)) == 2000
    stamps = [i[:12] for i in ids]  # milliseconds since the epoch, in hex
    assert stamps == sorted(stamps)


def test_enqueue_many_creates_every_job_in_order(tf):
    ids = jobs.add.enqueue_many([(1, 2), (3, 4), {"a": 5, "b": 6}])
    records = [tf.get_job(i) for i in ids]
    assert [(r.args, r.kwargs) for r in records] == [([1, 2], {}), ([3, 4], {}), ([], {"a": 5, "b": 6})]
    got = fetch(tf).jobs
    assert [g.id for g in got] == ids  # FIFO


def test_enqueue_many_stores_nothing_when_one_call_is_bad(tf):
    with pytest.raises(TypeError, match="missing a required argument"):
        jobs.add.enqueue_many([(1, 2), (3,)])
    assert tf.queue_lengths() == {}


def test_schedule_with_a_delay_or_an_aware_datetime(tf):
    later = tf.schedule(jobs.echo, timedelta(minutes=5), "x")
    at = datetime.now(timezone.utc) + timedelta(hours=1)
    fixed = jobs.echo.schedule(at, "y")
    j = tf.get_job(later)
    assert j.state == "Scheduled"
    assert timedelta(minutes=4) < j.due_at - j.created_at <= timedelta(minutes=5, seconds=1)
    assert abs((tf.get_job(fixed).due_at - at).total_seconds()) < 0.01
    assert tf.queue_lengths() == {}


def test_schedule_refuses_a_naive_datetime(tf):
    with pytest.raises(ConfigError, match="aware datetime"):
        jobs.echo.schedule(datetime.now(), 1)


def test_enqueue_by_name_without_importing_the_function(tf):
    jid = tf.enqueue("billing.jobs:charge", 7)
    other = tf.job("billing.jobs:charge", queue="critical", retries=1).enqueue(8)
    assert tf.get_job(jid).function == "billing.jobs:charge"
    assert tf.get_job(other).queue == "critical"
    assert tf.get_job(other).options == {"retries": 1}


def test_a_name_registered_here_keeps_its_queue_and_controls(tf):
    jid = tf.enqueue("tests.jobs:record_critical", "by-name")
    assert tf.get_job(jid).queue == "critical"  # type: ignore[union-attr]
    tf.recurring.add_or_update("by-name", "tests.jobs:sync_customer", "@daily", args=(3, 0.1))
    assert tf.recurring.get("by-name").queue == "default"  # type: ignore[union-attr]
    fired = tf.get_job(tf.recurring.trigger("by-name"))  # type: ignore[arg-type]
    assert fired is not None and tf.storage.redis.hget(tf.storage.keys.job(fired.id), "limit") == b"mutex:sync-3"
    with pytest.raises(TypeError):
        tf.enqueue("tests.jobs:add", 1)  # checked against the signature, as the function would be


def test_options_override_the_queue_without_touching_function_kwargs(tf):
    jid = jobs.echo.options(queue="low").enqueue(value="queue")
    j = tf.get_job(jid)
    assert (j.queue, j.kwargs) == ("low", {"value": "queue"})


def test_an_unencodable_argument_is_refused_naming_it(tf):
    with pytest.raises(TypeError, match=r"argument 'b' \(position 1\) of type lock cannot be stored"):
        jobs.add.enqueue(1, threading.Lock())
    with pytest.raises(TypeError, match=r"argument 'b' of type object"):
        jobs.add.enqueue(1, b=object())
    assert tf.queue_lengths() == {}


def test_arguments_that_do_not_fit_the_signature_are_refused(tf):
    with pytest.raises(TypeError, match=r"cannot enqueue tests.jobs:add\(a: int, b: int\) -> int: too many positional"):
        jobs.add.enqueue(1, 2, 3)


def test_a_job_defined_in_main_is_refused_with_an_explanation(tf):
    def f() -> None: ...
    f.__module__ = "__main__"
    f.__qualname__ = "f"
    main_job = job(f)
    with pytest.raises(ConfigError, match=r"defined in the script being run \(__main__\)"):
        main_job.enqueue()


def test_job_definition_errors_name_the_fix():
    with pytest.raises(ConfigError, match="module-level function"):
        @job
        def nested() -> None: ...
    with pytest.raises(ConfigError, match="invalid queue name 'Critical Jobs'"):
        job(queue="Critical Jobs")(jobs.echo.fn)
    with pytest.raises(ConfigError, match="retries must be a whole number"):
        job(retries=-1)(jobs.echo.fn)
    with pytest.raises(ConfigError, match="on_exhausted must be 'fail' or 'delete'"):
        job(on_exhausted="retry")(jobs.echo.fn)
    with pytest.raises(ConfigError, match="retry_on must be exception types"):
        job(retry_on=("ValueError",))(jobs.echo.fn)


def test_a_plain_function_is_not_enqueued(tf):
    def plain() -> None: ...
    with pytest.raises(ConfigError, match="decorate it with @job"):
        tf.enqueue(plain)


def test_fetch_moves_jobs_to_processing_under_a_lease(tf):
    jid = jobs.echo.enqueue(1)
    got = fetch(tf).jobs
    assert [g.id for g in got] == [jid]
    j = tf.get_job(jid)
    assert j.state == "Processing" and j.started_at is not None
    r = tf.storage.redis
    assert r.zscore(tf.storage.keys.processing, jid) is not None
    assert fetch(tf).jobs == []  # taken once only


def test_change_state_checks_the_expected_state(tf):
    jid = jobs.echo.enqueue(1)
    assert not tf.change_state(jid, Failed(reason="x"), expected_state="Processing")
    assert tf.get_job(jid).state == "Enqueued"
    assert tf.change_state(jid, Scheduled(delay=60), expected_state="Enqueued")
    assert tf.get_job(jid).state == "Scheduled"
    assert not tf.change_state("no-such-job", Enqueued())


def test_delete_and_requeue(tf):
    jid = jobs.echo.enqueue(1)
    assert tf.delete(jid)
    assert not tf.delete(jid)  # already deleted
    assert fetch(tf).jobs == []  # the id left in the queue is skipped
    assert tf.requeue(jid)
    j = tf.get_job(jid)
    assert [e.state for e in j.history] == ["Enqueued", "Deleted", "Enqueued"]
    assert [g.id for g in fetch(tf).jobs] == [jid]


def test_a_job_requeued_to_another_queue_is_not_run_from_the_old_one(tf):
    jid = jobs.echo.enqueue(1)
    assert tf.change_state(jid, Enqueued(queue="other"))
    assert fetch(tf, ["default"]).jobs == []
    assert [g.id for g in fetch(tf, ["other"]).jobs] == [jid]


def test_final_states_expire_after_the_retention(server, prefix):
    tf = Taskfire(server.url, prefix=prefix, retention=timedelta(minutes=10))
    jid = jobs.echo.enqueue(1)
    r, k = tf.storage.redis, tf.storage.keys
    assert r.ttl(k.job(jid)) == -1
    tf.delete(jid)
    assert 590 <= r.ttl(k.job(jid)) <= 600 and 590 <= r.ttl(k.history(jid)) <= 600
    tf.requeue(jid)  # leaving a final state keeps the job again
    assert r.ttl(k.job(jid)) == -1 and r.ttl(k.history(jid)) == -1


def test_final_state_indexes_keep_the_newest_ten_thousand(tf):
    # Given 10,050 waiting jobs, deleted (purged) oldest first by a client with the defaults
    ids = jobs.echo.options(queue="parked").enqueue_many([(i,) for i in range(10_050)])
    assert tf.queues.purge("parked").changed == 10_050
    # Then the Deleted index keeps the newest 10,000 (docs/states.md), newest first, and
    # the counter counts them all
    r, k = tf.storage.redis, tf.storage.keys
    assert r.llen(k.state("Deleted")) == 10_000
    assert r.lrange(k.state("Deleted"), 0, 0) == [ids[-1].encode()]
    assert r.lrange(k.state("Deleted"), -1, -1) == [ids[50].encode()]
    assert int(r.get(k.stat("Deleted"))) == 10_050


def test_a_corrupt_payload_is_reported_by_get_job(tf):
    jid = jobs.echo.enqueue(1)
    tf.storage.redis.hset(tf.storage.keys.job(jid), "args", b"\xc1garbage")
    j = tf.get_job(jid)
    assert j.payload_error is not None and "corrupt" in j.payload_error


def test_get_job_of_an_unknown_id_is_none(tf):
    assert tf.get_job("nope") is None


def test_custom_states_are_indexed_and_recorded(tf):
    class WaitingAck(State, frozen=True):
        name = "WaitingAck"
        ticket: str | None = None

    jid = jobs.echo.enqueue(1)
    assert tf.change_state(jid, WaitingAck(ticket="T-1", reason="sent to the bank"))
    j = tf.get_job(jid)
    assert j.state == "WaitingAck" and j.history[-1].data == {"ticket": "T-1"}
    assert tf.storage.redis.zscore(tf.storage.keys.state("WaitingAck"), jid) is not None
    assert tf.change_state(jid, Deleted(), expected_state="WaitingAck")
    assert tf.storage.redis.zscore(tf.storage.keys.state("WaitingAck"), jid) is None


def test_a_repeated_create_call_creates_nothing_twice(tf):
    # A call retried after a dropped connection repeats the same ids (and says so).
    from taskfire.storage import NewJob
    from taskfire.payload import encode_args
    new = NewJob(id="fixed-id-1", fn="tests.jobs:echo", args=encode_args("echo", (1,), {}), queue="default")
    tf.storage.create([new])
    tf.storage.create([new], repeated=True)
    assert tf.queue_lengths() == {"default": 1}
    assert len(tf.get_job("fixed-id-1").history) == 1


def test_a_waiting_job_has_no_history_key_until_its_first_change(tf):
    # Given a scheduled job: its creation entry is implied by the job hash
    jid = jobs.echo.schedule(60, 1)
    before = tf.get_job(jid)
    assert not tf.storage.redis.exists(tf.storage.keys.history(jid))
    assert [(e.state, e.due) for e in before.history] == [("Scheduled", before.due_at)]
    # When it changes state, the creation entry is written first, due time included
    assert tf.change_state(jid, Enqueued(reason="now"), expected_state="Scheduled")
    after = tf.get_job(jid)
    assert [(e.state, e.due, e.at) for e in after.history[:1]] == [("Scheduled", before.due_at, before.created_at)]
    assert [e.state for e in after.history] == ["Scheduled", "Enqueued"]
    assert after.history[0].data == {"queue": "default"}


def test_enqueue_rides_out_a_dropped_connection_without_duplicates(tf, server):
    import redis as redis_py
    first = jobs.echo.enqueue(1)
    admin = redis_py.Redis.from_url(server.url)
    assert admin.client_kill_filter(_type="normal", skipme=True) >= 1  # drops the client's connections
    second = jobs.echo.enqueue(2)
    assert tf.queue_lengths() == {"default": 2}
    assert {tf.get_job(first).args[0], tf.get_job(second).args[0]} == {1, 2}


def test_every_state_lists_its_jobs_in_the_order_it_serves_them(tf):
    first, second = jobs.add.options(queue="listed").enqueue(1, 1), jobs.add.options(queue="listed").enqueue(2, 2)
    assert tf.job_ids_in_state("Enqueued", queue="listed") == [first, second]  # next to run first
    assert tf.job_ids_in_state("Enqueued", 1, 5, queue="listed") == [second]
    later, sooner = tf.schedule(jobs.add, 600, 1, 1), tf.schedule(jobs.add, 60, 1, 1)
    assert tf.job_ids_in_state("Scheduled") == [sooner, later]
    tf.change_state(later, Scheduled(delay=1, reason="sooner still"))
    assert tf.job_ids_in_state("Scheduled") == [later, sooner]
    assert tf.job_ids_in_state("NeverEntered") == []
    with pytest.raises(ConfigError, match="per queue"):
        tf.job_ids_in_state("Enqueued")


def test_a_server_on_a_unix_socket_is_reached_by_clients_and_workers(tmp_path, prefix, start_worker_on):
    import subprocess

    from taskfire.embedded import valkey_binary

    sock = tmp_path / "redis.sock"
    server = subprocess.Popen([str(valkey_binary()), "--port", "0", "--unixsocket", str(sock), "--save", "",
                               "--appendonly", "no", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
    try:
        wait_for(sock.exists, 10, "the server's socket")
        url = f"unix://{sock}"
        client = Taskfire(url, prefix=prefix)
        start_worker_on(url)
        jid = client.enqueue(jobs.add, 2, 3)
        wait_for(lambda: client.get_job(jid).state == "Succeeded", 20, "the job to run over the socket")
        assert client.get_job(jid).result == 5
        client.close()
    finally:
        server.terminate()
        server.wait(10)


def test_a_retention_from_the_environment_that_is_not_a_number_is_named(server, prefix, monkeypatch):
    monkeypatch.setenv("TASKFIRE_RETENTION", "a day")
    with pytest.raises(ConfigError, match="TASKFIRE_RETENTION='a day' is not a number"):
        Taskfire(server.url, prefix=prefix)


def test_several_jobs_are_read_in_one_round_trip(tf):
    ids = jobs.add.enqueue_many([(1, 2), (3, 4)])
    found = tf.get_jobs([ids[0], "no-such-job", ids[1]])
    assert [j.args if j else None for j in found] == [[1, 2], None, [3, 4]]
    assert tf.get_jobs([]) == []
