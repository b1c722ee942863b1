"""taskfire spread over a real Redis Cluster: three primaries, a replica each, Debian
`redis-server` processes on free loopback ports (issue 19). A store there has a shard
per primary (taskfire/storage/shards.py); these tests check that jobs spread over every
primary and that the core scenarios of the integration suite hold across shards: several
of those tests run here unchanged, against this cluster (the `server` and `prefix`
fixtures below stand in for the session's single servers)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from concurrent.futures import wait as futures_wait
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from taskfire import AsyncTaskfire, Cron, Enqueued, Taskfire
from taskfire.storage.fanout import ShardWaiter
from taskfire.storage.shards import Shard, index_of, shard_prefix
from tests import ha_jobs, jobs
from tests.conftest import report, traces, wait_for
from tests.integration.test_async_client import run
from tests.integration.test_controls import (  # noqa: F401 - collected here, on the cluster
    test_a_mutex_never_lets_two_runs_overlap_across_workers,
    test_a_unique_key_returns_the_pending_job_instead_of_a_duplicate,
)
from tests.integration.test_queues import (  # noqa: F401
    test_a_paused_queue_keeps_accepting_jobs_and_resuming_wakes_idle_workers,
)
from tests.integration.test_resilience import (  # noqa: F401
    test_a_sigkilled_worker_process_is_replaced_and_its_job_recovered,
)
from tests.integration.test_workflows import (  # noqa: F401
    test_continuations_added_while_parents_finish_are_never_lost,
)
from tests.system.test_ha import (REDIS_CLI, REDIS_SERVER, Enqueuer, RedisProcess, all_succeeded, existing,
                                  read_runs, require)
from taskfire.embedded import free_port

_prefixes = iter(range(10**6))


class ReplicatedCluster:
    """Three primaries and a replica of each, joined by `redis-cli --cluster create`."""

    def __init__(self, home: Path) -> None:
        self.nodes = [RedisProcess(home, ["cluster-enabled yes", "cluster-config-file nodes.conf",
                                          f"cluster-port {free_port()}", "cluster-node-timeout 1000",
                                          "appendonly no", "maxmemory-policy noeviction",
                                          "repl-diskless-sync-delay 0"]) for _ in range(6)]
        subprocess.run([REDIS_CLI or "redis-cli", "--cluster", "create",
                        *(f"127.0.0.1:{n.port}" for n in self.nodes), "--cluster-replicas", "1",
                        "--cluster-yes"], check=True, capture_output=True, timeout=60)
        wait_for(lambda: all(n.client.cluster("info")["cluster_state"] == "ok" for n in self.nodes)
                 and len(self.primaries()) == 3 and all(self.replica_of(p) for p in self.primaries()), 60,
                 "the cluster to be ok on every node, each primary with its replica")
        self.url = "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)
        self.port = self.nodes[0].port

    def alive(self) -> list[RedisProcess]:
        return [n for n in self.nodes if n.process.poll() is None]

    def role(self, node: RedisProcess) -> str:
        try:
            return str(node.client.role()[0].decode())
        except redis.RedisError:
            return "down"

    def primaries(self) -> list[RedisProcess]:
        return [n for n in self.alive() if self.role(n) == "master"]

    def replica_of(self, primary: RedisProcess) -> RedisProcess | None:
        """A replica of `primary` that holds its data: its link up (a replica that has
        not synced yet, the first seconds after it is made one, has nothing to take over)."""
        for n in self.alive():
            if n is not primary and self.role(n) == "slave":
                replication = n.client.info("replication")
                if replication.get("master_port") == primary.port and replication.get("master_link_status") == "up":
                    return n
        return None

    def owner(self, key: str) -> RedisProcess:
        """The primary that serves a key's slot (as the live nodes see it)."""
        asked = self.alive()[0].client
        slot = asked.cluster("keyslot", key)
        for start, end, primary, *_ in asked.cluster("slots"):
            if start <= slot <= end:
                return next(n for n in self.alive() if n.port == int(primary[1]))
        raise AssertionError(f"slot {slot} is served by no node")

    def kill(self) -> None:
        for n in self.nodes:
            n.kill()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReplicatedCluster]:
    require((REDIS_SERVER, "redis-server"), (REDIS_CLI, "redis-cli"))
    c = ReplicatedCluster(tmp_path_factory.mktemp("cluster"))
    yield c
    c.kill()


@pytest.fixture
def server(cluster: ReplicatedCluster) -> ReplicatedCluster:
    """The integration tests' `server`, here the cluster (they read only its url)."""
    return cluster


@pytest.fixture
def prefix() -> str:
    return f"{{c{next(_prefixes)}}}:"


def cpu_seconds(node: RedisProcess) -> float:
    info = node.client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def test_a_store_has_a_shard_on_every_primary_and_jobs_spread_over_them(tf, cluster, start_worker):
    # Given a client on a three-primary cluster
    shards = tf.storage.shards
    owners = {cluster.owner(s.keys.queues).port for s in shards}
    # Then its store has a shard on each primary, the first under the prefix itself
    assert len(shards) == 3 and len(owners) == 3 and shards[0].keys.prefix == tf.prefix
    # And a second client finds the same shards (the home shard's registry)
    other = Taskfire(cluster.url, prefix=tf.prefix)
    assert [s.keys.prefix for s in other.storage.shards] == [s.keys.prefix for s in shards]
    # When jobs are enqueued one at a time and in bulk, half of them in one hot queue
    hot = jobs.add.options(queue="hot")
    ids = [hot.enqueue(i, 1) for i in range(150)] + hot.enqueue_many([(i, 2) for i in range(150)])
    for q in ("q1", "q2", "q3", "q4", "q5"):
        ids += jobs.add.options(queue=q).enqueue_many([(i, 3) for i in range(60)])
    # Then each shard holds a third of them, give or take one
    per_shard = Counter(index_of(i, 3) for i in ids)
    assert sorted(per_shard) == [0, 1, 2] and max(per_shard.values()) - min(per_shard.values()) <= 1, per_shard
    # And one worker runs them all, from every shard
    start_worker("--queues", "hot,q1,q2,q3,q4,q5", "--threads", "8")
    wait_for(lambda: all_succeeded(tf, ids), 60, "every job to run")
    assert tf.storage.monitor.counts()["states"]["Succeeded"] == len(ids)
    report(f"cluster placement: 600 jobs, half in one hot queue, over 3 shards: {dict(sorted(per_shard.items()))}")


def test_ties_land_in_one_shard(tf):
    # A continuation goes to its parent's shard, a batch's members to the batch's, a
    # mutex's or uniqueness key's jobs to the shard the key hashes to
    parents = jobs.add.enqueue_many([(i, i) for i in range(6)])
    assert {index_of(p, 3) for p in parents} == {0, 1, 2}
    for p in parents:
        assert index_of(tf.continue_with(p, jobs.add, 1, 1), 3) == index_of(p, 3)
    with tf.batch() as b:
        members = [b.enqueue(jobs.add, i, 1) for i in range(30)]
        with b.batch() as inner:
            nested = [inner.enqueue(jobs.add, i, 2) for i in range(5)]
    assert {index_of(i, 3) for i in [*members, *nested, inner.id]} == {index_of(b.id, 3)}
    mutexed = [jobs.sync_customer.enqueue(7, 0) for _ in range(10)]
    assert len({index_of(i, 3) for i in mutexed}) == 1


def test_a_2000_member_batch_finishes_and_its_continuation_runs_once(tf, start_worker):
    start_worker("--processes", "2", "--threads", "8")
    with tf.batch() as b:
        for i in range(2000):
            b.enqueue(jobs.count_run)
        b.continue_with(jobs.count_run)
    wait_for(lambda: tf.get_batch(b.id).state == "Finished", 120, "the batch to finish")
    runs = tf.prefix + "test:runs"  # count_run counts each job id's runs
    wait_for(lambda: tf.storage.redis.hlen(runs) == 2001, 30, "the continuation to run")
    batch = tf.get_batch(b.id)
    assert (batch.total, batch.succeeded) == (2000, 2000)
    counted = {k.decode(): int(v) for k, v in tf.storage.redis.hgetall(runs).items()}
    assert set(counted.values()) == {1}  # every member and the continuation ran once
    ids = list(counted)
    [after] = [i for i, batch_field in zip(ids, tf.storage.monitor.field_values([(i, "batch") for i in ids]),
                                           strict=True) if batch_field is None]
    assert index_of(after, 3) == index_of(b.id, 3)  # the continuation lives with its batch


def test_unique_keys_hold_under_concurrent_enqueues(tf, start_worker):
    # Four threads enqueue the same 50 invoices at once: one job per invoice
    got: list[list[str]] = []

    def enqueue() -> None:
        got.append([jobs.send_invoice.enqueue(n) for n in range(50)])

    threads = [threading.Thread(target=enqueue) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 4 and got[0] == got[1] == got[2] == got[3]
    assert len({index_of(i, 3) for i in got[0]}) == 3  # the keys spread over the shards
    start_worker("--threads", "8")
    wait_for(lambda: len(traces(tf, "invoices")) >= 50 and all_succeeded(tf, got[0]), 30, "the invoices")
    assert sorted(map(int, traces(tf, "invoices"))) == list(range(50))


def test_every_second_with_four_schedulers_fires_each_tick_exactly_once(tf, start_worker):
    start_worker("--processes", "2")
    start_worker("--processes", "2")
    start = tf.storage.server_time_ms()
    tf.recurring.add_or_update("tick", jobs.record_fired, Cron.every_second(), args=("tick",))
    wait_for(lambda: tf.storage.server_time_ms() >= start + 10_000, 20, "10 s of ticks", interval=0.5)
    assert tf.recurring.disable("tick")
    end = tf.storage.server_time_ms()
    ids = wait_for(lambda: (f := [e.split(":", 1)[1] for e in traces(tf, "fired")]) and all_succeeded(tf, f) and f,
                   20, "every fired job to run")
    ticks = [tf.get_job(i).recurring_tick for i in ids]  # type: ignore[union-attr]
    assert len(set(ids)) == len(ids) and len(set(ticks)) == len(ticks), "a tick fired twice"
    expected = end // 1000 - start // 1000
    assert expected - 1 <= len(ticks) <= expected + 1, (len(ticks), expected)


def test_requeue_all_failed_and_counts_cover_every_shard(tf, start_worker):
    failing = jobs.always_fails.enqueue_many([() for _ in range(30)])
    assert len({index_of(i, 3) for i in failing}) == 3
    start_worker("--threads", "8")
    wait_for(lambda: tf.storage.monitor.counts()["states"]["Failed"] == 30, 60, "every job to fail for good")
    assert sorted(tf.job_ids_in_state("Failed", 0, 100)) == sorted(failing)
    def failures(i: str) -> int:
        return sum(e.state == "Failed" for e in tf.get_job(i).history)  # type: ignore[union-attr]

    before = {i: failures(i) for i in failing}
    # When an operator requeues every Failed job, in every shard
    assert tf.requeue_all("Failed").changed == 30
    # Then each runs once more (and fails again: its retries were spent)
    wait_for(lambda: all(failures(i) == before[i] + 1 for i in failing), 60, "every requeued job to fail again")
    assert tf.storage.monitor.counts()["states"]["Failed"] == 30


def test_a_primary_added_while_a_worker_runs_gets_a_shard_the_worker_serves(tf, cluster, start_worker, tmp_path):
    # Given a worker on the three-primary cluster, busy with a backlog in every shard
    runs_file = tmp_path / "runs.txt"
    runs_file.touch()
    start_worker("--processes", "2", "--threads", "4", modules=("tests.jobs", "tests.ha_jobs"),
                 env={"TASKFIRE_TEST_RUNS_FILE": str(runs_file)})
    assert len(tf.storage.shards) == 3
    backlog = tf.enqueue_many(ha_jobs.note_run, [(0.02,)] * 2400)
    wait_for(lambda: len(read_runs(runs_file)) >= 50, 30, "the backlog to start")
    owners = [cluster.owner(s.keys.queues) for s in tf.storage.shards]
    # When a fourth primary joins and takes slots from the others (a shard's own slot
    # among them, maybe: then its keys move while the worker takes its jobs)
    node = RedisProcess(tmp_path, ["cluster-enabled yes", "cluster-config-file nodes.conf",
                                   f"cluster-port {free_port()}", "cluster-node-timeout 1000", "appendonly no"])
    cluster.nodes.append(node)  # (stopped with the cluster)
    seed = f"127.0.0.1:{cluster.primaries()[0].port}"
    subprocess.run([REDIS_CLI or "redis-cli", "--cluster", "add-node", f"127.0.0.1:{node.port}", seed],
                   check=True, capture_output=True, timeout=60)
    wait_for(lambda: node.client.cluster("info")["cluster_state"] == "ok", 30, "the new node to join")
    subprocess.run([REDIS_CLI or "redis-cli", "--cluster", "rebalance", seed, "--cluster-use-empty-masters"],
                   check=True, capture_output=True, timeout=120)
    waiting = len(backlog) - len(read_runs(runs_file))
    moved = [s.index for s, before in zip(tf.storage.shards, owners, strict=True) if cluster.owner(s.keys.queues)
             is not before]
    # Then the next client registers a shard on it, and places jobs there
    grown = Taskfire(cluster.url, prefix=tf.prefix)
    assert len(grown.storage.shards) == 4 and cluster.owner(grown.storage.shards[3].keys.queues) is node
    ids = grown.enqueue_many(jobs.add, [(i, 1) for i in range(40)])
    assert Counter(index_of(i, 4) for i in ids)[3] == 10
    # And the worker started before the growth runs them all, the new shard's too
    wait_for(lambda: all_succeeded(tf, ids), 60, "every job to run, the new shard's included")
    assert len(tf.storage.shards) == 4  # the old client found the new shard by a job's id
    grown.close()
    # And the backlog the growth went through ran whole, each job once
    wait_for(lambda: all_succeeded(tf, backlog), 60, "the backlog to run")
    runs = Counter(i for _, i in read_runs(runs_file))
    assert [i for i in backlog if runs[i] != 1] == []
    report(f"cluster grown under load: a 4th primary added and the slots rebalanced while {max(waiting, 0):,} of "
           f"2,400 jobs had not started; shards whose slot moved: {moved or 'none'}; every job ran once")


@pytest.mark.parametrize("wait_replicas", [1])
def test_a_primary_killed_under_load_loses_no_acknowledged_job(tf, cluster, start_worker_on, prefix, tmp_path,
                                                                wait_replicas):
    # Given workers on the cluster and a client that waits for a replica, enqueueing
    # 30 ms jobs faster than they run
    runs_file = tmp_path / "runs.txt"
    runs_file.touch()
    worker = start_worker_on(cluster.url, "--processes", "2", "--threads", "2", modules=("tests.ha_jobs",),
                             env={"TASKFIRE_TEST_RUNS_FILE": str(runs_file)})
    client = Taskfire(cluster.url, prefix=prefix, wait_replicas=wait_replicas, wait_timeout_ms=500)
    enqueuer = Enqueuer(client, pause=0.03)
    enqueuer.start()
    wait_for(lambda: len(enqueuer.acked) >= 30 and all_succeeded(tf, [i for _, i in enqueuer.acked[:30]]), 30,
             "the first jobs to run")
    # When the primary of shard 1 is SIGKILLed
    n = len(tf.storage.shards)
    shard = tf.storage.shards[1]
    victim = cluster.owner(shard.keys.queues)
    replica = cluster.replica_of(victim)
    assert replica is not None
    killed_at, killed_mono = time.time(), time.monotonic()
    os.kill(victim.process.pid, signal.SIGKILL)
    victim.process.wait()
    # Then its replica is promoted, and jobs of that shard are enqueued and run again
    wait_for(lambda: cluster.role(replica) == "master", 30, "the replica to be promoted")
    promoted = time.monotonic() - killed_mono
    # (stored, but not confirmed: the promoted replica has no replica of its own)
    wait_for(lambda: any(t > killed_at and index_of(i, n) == 1 for t, i in enqueuer.acked + enqueuer.unconfirmed), 30,
             "a job of the failed shard stored after the kill")
    wait_for(lambda: any(t > killed_at + 0.5 and index_of(i, n) == 1 for t, i in read_runs(runs_file)), 30,
             "a job of the failed shard to start after the kill")
    enqueuer.stopping.set()
    enqueuer.join(10)
    assert not enqueuer.unexpected, enqueuer.unexpected
    acked = [i for _, i in enqueuer.acked]
    # And every job a replica acknowledged survived; every job stored after it ran too
    absent = [i for i in acked if i not in existing(tf, acked)]
    assert absent == [], f"{len(absent)} acknowledged jobs lost: {absent[:5]}"
    wait_for(lambda: all_succeeded(tf, acked), 60, "every acknowledged job to succeed")
    unconfirmed = Counter(index_of(i, n) for _, i in enqueuer.unconfirmed)
    assert worker.proc.poll() is None
    enqueued_again = min(t for t, i in enqueuer.acked + enqueuer.unconfirmed
                         if t > killed_at and index_of(i, n) == 1) - killed_at
    started_again = min(t for t, i in read_runs(runs_file) if t > killed_at + 0.5 and index_of(i, n) == 1) - killed_at
    other_shards = [t for t, i in read_runs(runs_file) if killed_at < t < killed_at + promoted and index_of(i, n) != 1]
    late = [t for t in other_shards if t > killed_at + promoted / 2]
    report(f"cluster failover, wait_replicas={wait_replicas}: primary of shard 1 SIGKILLed; replica promoted at "
           f"{promoted:.2f} s, first enqueue to that shard acknowledged at {enqueued_again:.2f} s, its first job "
           f"started at {started_again:.2f} s; {len(other_shards)} jobs of the other shards started during the "
           f"outage ({len(late)} in its second half, where the enqueuer offered few); "
           f"{len(acked)} jobs acknowledged, 0 lost; "
           f"{enqueuer.failures} enqueues failed during it; "
           f"stored but not confirmed by a replica in 500 ms, per shard: {dict(sorted(unconfirmed.items()))}")
    # And the other shards' jobs kept running while the failed one's primary was away:
    # every one acknowledged in the outage's first half started before the promotion
    # (a worker process holding a job of the failed shard must not hold back the others';
    # jobs that started in the first moments of the outage were fetched before it, so
    # they show nothing). The enqueuer itself, whose every third enqueue waits on the
    # failed shard, offers few jobs in the second half, so those are not counted.
    early = [i for t, i in enqueuer.acked + enqueuer.unconfirmed
             if killed_at < t < killed_at + promoted / 2 and index_of(i, n) != 1]
    started = {i for t, i in read_runs(runs_file) if t < killed_at + promoted}
    waiting = [i for i in early if i not in started]
    assert early and not waiting, (f"{len(waiting)} of the {len(early)} jobs of the other shards acknowledged in "
                                   f"the outage's first half did not start before the promotion")


def move_slot(cluster: ReplicatedCluster, slot: int, source: RedisProcess, target: RedisProcess,
              halfway: Callable[[], None]) -> int:
    """Moves a slot's keys from one primary to another a key at a time, as
    `redis-cli --cluster reshard` does (SETSLOT IMPORTING / MIGRATING, MIGRATE, SETSLOT
    NODE), calling `halfway` when half of them have moved; how many keys moved."""
    ids = {n.port: n.client.cluster("myid") for n in (source, target)}
    target.client.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[source.port])
    source.client.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[target.port])
    total = int(source.client.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot))
    moved = 0
    while keys := source.client.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 1):
        source.client.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)
        moved += len(keys)
        if moved == total // 2:
            halfway()
    for node in (target, source, *(p for p in cluster.primaries() if p not in (source, target))):
        node.client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", ids[target.port])
    return moved


def test_a_shards_slot_moved_to_another_primary_under_load_loses_no_job_and_runs_none_twice(
        tf, cluster, start_worker_on, prefix, tmp_path):
    # Given workers on the cluster working through a backlog in every shard
    runs_file = tmp_path / "runs.txt"
    runs_file.touch()
    start_worker_on(cluster.url, "--processes", "2", "--threads", "2", modules=("tests.ha_jobs",),
                    env={"TASKFIRE_TEST_RUNS_FILE": str(runs_file)})
    n = len(tf.storage.shards)
    backlog = tf.enqueue_many(ha_jobs.note_run, [(0.01,)] * 600)
    wait_for(lambda: len(read_runs(runs_file)) >= 30, 30, "the first jobs to run")
    # When shard 1's slot moves to another primary, key by key, while they run; half-way
    # through, a client enqueues into every shard and the other shards' jobs go on
    shard = tf.storage.shards[1]
    source = cluster.owner(shard.keys.queues)
    target = next(p for p in cluster.primaries() if p is not source)
    slot = int(source.client.cluster("keyslot", shard.keys.queues))
    during: dict[str, Any] = {}
    patient = Taskfire(cluster.url, prefix=prefix, timeout=60)  # (waits out the move, however slow CI is)

    def shard_calls() -> int:
        """Script calls the slot's two primaries took or turned away (their INFO)."""
        stats = [node.client.info("commandstats").get("cmdstat_fcall", {}) for node in (source, target)]
        return sum(int(s.get(k, 0)) for s in stats for k in ("calls", "rejected_calls", "failed_calls"))

    def halfway() -> None:
        during["at"], calls = time.time(), shard_calls()
        enqueue = threading.Thread(target=lambda: during.update(ids=patient.enqueue_many(ha_jobs.note_run,
                                                                                         [(0.01,)] * 3)))
        enqueue.start()
        during["enqueue"] = enqueue

        async def enqueue_async() -> None:
            async with AsyncTaskfire(cluster.url, prefix=prefix, timeout=60) as atf:
                during["async_ids"] = await atf.enqueue_many(ha_jobs.note_run, [(0.01,)] * 3)

        enqueue_async_thread = threading.Thread(target=lambda: asyncio.run(enqueue_async()))
        enqueue_async_thread.start()
        during["enqueue_async"] = enqueue_async_thread
        wait_for(lambda: sum(1 for t, i in read_runs(runs_file) if t > during["at"] and index_of(i, n) != 1) >= 10,
                 30, "the other shards' jobs to go on while the slot is half moved")
        wait_for(lambda: shard_calls() >= calls + 50, 30, "workers and the client to call on the half-moved shard")
        during["waiting"] = enqueue.is_alive()  # its shard 1 part cannot be stored yet
        during["async_waiting"] = enqueue_async_thread.is_alive()

    started = time.monotonic()
    moved = move_slot(cluster, slot, source, target, halfway)
    took = time.monotonic() - started
    # Then the enqueue made half-way waited for the move and stored its jobs, one per shard
    during["enqueue"].join(60)
    during["enqueue_async"].join(60)
    patient.close()
    assert during["waiting"] and during["async_waiting"], "an enqueue made half-way was stored before the move was done"
    for ids in (during.get("ids", []), during.get("async_ids", [])):
        assert sorted(index_of(i, n) for i in ids) == [0, 1, 2], "an enqueue made during the move failed"
    assert cluster.owner(shard.keys.queues) is target
    # And every job runs, exactly once: none lost with a half-run script, none run again
    # because its outcome was refused
    jobs_ = backlog + during["ids"] + during["async_ids"]
    wait_for(lambda: all_succeeded(tf, jobs_), 60, "every job to succeed")
    runs = Counter(i for _, i in read_runs(runs_file))
    assert [i for i in jobs_ if runs[i] != 1] == []
    report(f"cluster reshard under load: shard 1's slot ({moved} keys) moved to another primary key by key in "
           f"{took:.2f} s while 600 jobs ran; {len(jobs_)} jobs, each run once, 0 lost; a sync and an async "
           f"enqueue made half-way stored their 3 jobs each once the move was done")


# -- AsyncTaskfire on the cluster -------------------------------------------------------
# The asyncio client places jobs by the sync client's rules and routes every call by the
# id's shard (taskfire/storage/aio_shards.py). The cluster may have grown a primary, and
# lost one to a failover, in the tests above: these count the shards the store has.


def evenly_over(ids: list[str], n: int) -> bool:
    per_shard = Counter(index_of(i, n) for i in ids)
    return sorted(per_shard) == list(range(n)) and max(per_shard.values()) - min(per_shard.values()) <= 1


def test_an_async_client_spreads_jobs_over_every_shard_and_awaits_their_outcomes(tf, start_worker):
    # Given a worker, and an async client on the cluster
    n = len(tf.storage.shards)
    start_worker("--threads", "8")

    async def body(atf: AsyncTaskfire) -> Any:
        # it finds the shards the sync client registered
        assert [s.keys.prefix for s in atf.storage.shards] == [s.keys.prefix for s in tf.storage.shards]
        # When it enqueues one at a time, from many tasks at once, and in bulk
        one = [await atf.enqueue(jobs.add, i, 1) for i in range(2 * n)]
        together = list(await asyncio.gather(*(atf.enqueue(jobs.add, i, 2) for i in range(2 * n))))
        many = await atf.enqueue_many(jobs.add, [(i, 3) for i in range(30 * n)])
        stored = await atf.get_jobs(many)
        outcomes = await asyncio.gather(*(atf.wait(i, timeout=30) for i in [*one, *together, *many]))
        return one, together, many, stored, outcomes

    started = time.monotonic()
    one, together, many, stored, outcomes = run(tf, body)
    # Then each way spread its jobs evenly over every shard, the bulk call split by shard
    assert evenly_over(one, n) and evenly_over(together, n) and evenly_over(many, n)
    assert all(j is not None and j.id == i for i, j in zip(many, stored, strict=True))
    # And the worker ran them all, each outcome awaited in its own shard
    assert {o.state for o in outcomes} == {"Succeeded"}
    expected = [i + 1 for i in range(2 * n)] + [i + 2 for i in range(2 * n)] + [i + 3 for i in range(30 * n)]
    assert [o.result for o in outcomes] == expected
    assert all_succeeded(tf, [*one, *together, *many])  # the sync client reads the same records
    report(f"cluster, AsyncTaskfire: {len(outcomes)} jobs over {n} shards enqueued and awaited in "
           f"{time.monotonic() - started:.2f} s")


def test_async_continuations_and_batches_live_with_their_parent_and_run_after_it(tf, start_worker):
    n = len(tf.storage.shards)
    start_worker("--threads", "4")  # (at least as many as shards: one until_cancelled job runs in each)

    async def body(atf: AsyncTaskfire) -> Any:
        # Given a parent job in every shard, and a continuation of each
        parents = [await atf.enqueue(jobs.sleep_for, 0.1) for _ in range(n)]
        afters = [await atf.continue_with(p, jobs.echo, p) for p in parents]
        # and a batch, with a nested batch and a continuation
        async with atf.batch() as b:
            members = [b.enqueue(jobs.add, i, 1) for i in range(10)]
            with b.batch() as inner:
                nested = [inner.enqueue(jobs.add, i, 2) for i in range(3)]
        batch_after = await atf.continue_batch_with(b.id, jobs.echo, "after the batch")
        done = [await atf.wait(i, timeout=30) for i in [*afters, batch_after]]
        batch = await atf.wait_batch(b.id, timeout=30)
        return parents, afters, b.id, [*members, *nested, inner.id], batch_after, done, batch, \
            await atf.get_jobs(parents)

    parents, afters, batch_id, members, batch_after, done, batch, parent_jobs = run(tf, body)
    # Then each continuation is in its parent's shard, and ran after it, with its result
    assert {index_of(p, n) for p in parents} == set(range(n))
    assert [index_of(a, n) for a in afters] == [index_of(p, n) for p in parents]
    assert [d.state for d in done] == ["Succeeded"] * (n + 1)
    assert [d.result for d in done[:n]] == parents
    assert all(d.started_at >= p.finished_at for d, p in zip(done, parent_jobs, strict=False))
    # And a batch's members, nested batch and continuation are all in the batch's shard
    assert {index_of(i, n) for i in [*members, batch_after]} == {index_of(batch_id, n)}
    assert (batch.state, batch.succeeded) == ("Finished", 11)
    assert done[-1].started_at >= batch.finished_at
    # And a running job in any shard is asked to stop by an async cancel (the flag is
    # written under WATCH in its shard's slot)
    running = tf.enqueue_many(jobs.until_cancelled, [() for _ in range(n)])
    assert {index_of(i, n) for i in running} == set(range(n))
    wait_for(lambda: {j.state for j in tf.get_jobs(running)} == {"Processing"}, 20, "the jobs to run")

    async def cancel(atf: AsyncTaskfire) -> Any:
        return [await atf.cancel(i) for i in running], [await atf.wait(i, timeout=20) for i in running]

    asked, stopped = run(tf, cancel)
    assert asked == [True] * n and {(j.state, j.reason) for j in stopped} == {
        ("Deleted", "Cancelled by request: the job stopped")}


def test_an_async_tied_job_lands_in_the_shard_the_sync_client_would_use(tf):
    n = len(tf.storage.shards)

    async def body(atf: AsyncTaskfire) -> Any:
        invoices = [await atf.enqueue(jobs.send_invoice, k) for k in range(12)]  # unique per invoice
        mutexed = [await atf.enqueue(jobs.sync_customer, c, 0) for c in range(12)]  # a mutex per customer
        return invoices, mutexed

    invoices, mutexed = run(tf, body)
    assert len({index_of(i, n) for i in invoices}) > 1  # the keys spread over the shards
    # The sync client, enqueueing the same invoices, finds each one pending (its
    # uniqueness key is only seen by a script in the same shard)
    assert [tf.enqueue(jobs.send_invoice, k) for k in range(12)] == invoices
    # and puts each customer's job in the shard the async client chose
    assert [index_of(tf.enqueue(jobs.sync_customer, c, 0), n) for c in range(12)] == [index_of(i, n) for i in mutexed]


def test_async_verbs_on_a_cluster_reach_each_job_in_its_shard(tf, cluster):
    n = len(tf.storage.shards)
    for node in cluster.primaries():  # the async client loads the library where it is missing
        node.client.function_flush()

    async def body(atf: AsyncTaskfire) -> Any:
        # Given a scheduled job in every shard
        ids = [await atf.schedule(jobs.echo, 3600, i) for i in range(n)]
        for i, job_id in enumerate(ids):
            await atf.set_job_param(job_id, "tenant", {"id": i})
        params = [await atf.get_job_param(i, "tenant") for i in ids]
        moved = [await atf.change_state(i, Enqueued(reason="now"), "Scheduled") for i in ids]
        requeued = [await atf.requeue(i) for i in ids]
        cancelled = [await atf.cancel(i) for i in ids]
        again = [await atf.cancel(i) for i in ids]  # Deleted, not running: the WATCH path says no
        deleted = [await atf.delete(i) for i in [await atf.enqueue(jobs.echo, i) for i in range(n)]]
        return ids, params, moved, requeued, cancelled, again, deleted, await atf.get_jobs(ids)

    ids, params, moved, requeued, cancelled, again, deleted, read = run(tf, body)
    assert {index_of(i, n) for i in ids} == set(range(n))
    assert params == [{"id": i} for i in range(n)]
    assert moved == requeued == cancelled == deleted == [True] * n and again == [False] * n
    assert [j.state for j in read] == ["Deleted"] * n
    assert [tf.get_job(i).params for i in ids] == [{"tenant": {"id": i}} for i in range(n)]  # type: ignore[union-attr]


def test_a_later_job_of_another_shard_starts_long_before_a_flooded_shard_is_drained(tf, start_worker, tmp_path):
    # Given 1000 jobs of the high-priority queue, all in one shard (a batch's members
    # live with it), that take at least 5 s to drain on the worker's 4 threads
    runs_file = tmp_path / "runs.txt"
    runs_file.touch()
    flood = 1000
    bulk = ha_jobs.note_run.options(queue="bulk")
    with tf.batch() as b:
        members = [b.enqueue(bulk, 0.02) for _ in range(flood)]
    n = len(tf.storage.shards)
    flooded = index_of(b.id, n)
    assert {index_of(i, n) for i in members} == {flooded}
    start_worker("--queues", "bulk,low", "--threads", "4", modules=("tests.ha_jobs",),
                 env={"TASKFIRE_TEST_RUNS_FILE": str(runs_file)})
    wait_for(lambda: len(read_runs(runs_file)) >= 20, 30, "the worker to work through the flooded shard")
    # When a job of the low-priority queue is enqueued later into each other shard
    late = tf.enqueue_many(ha_jobs.note_run.options(queue="low"), [(0,)] * (n - 1))
    assert {index_of(i, n) for i in late} == set(range(n)) - {flooded}
    # Then each starts while most of the flooded shard's backlog is still waiting: the
    # worker visits every shard in turn, however long one shard's backlog is
    wait_for(lambda: set(late) <= {i for _, i in read_runs(runs_file)}, 30, "the later jobs to start")
    order = [i for _, i in read_runs(runs_file)]
    last = max(order.index(i) for i in late)
    waiting = flood - len(set(order[:last]) & set(members))
    report(f"cluster fairness: {waiting} of {flood} jobs of a flooded shard had not started when the later "
           f"low-priority jobs of the {n - 1} other shards had all started")
    assert waiting >= flood // 2, f"only {waiting} of {flood} jobs of the flooded shard were left"


def _rejoin(node: RedisProcess) -> None:
    """Starts a killed cluster node again, with its config and nodes.conf: the cluster
    tells it that its slots went to its replica, and it becomes that one's replica."""
    node.process = subprocess.Popen([REDIS_SERVER or "redis-server", str(node.home / "redis.conf")], cwd=node.home,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
    wait_for(node._answers, 20, "the node to start again")


def test_outcomes_wait_for_a_shard_without_primary_and_the_other_shards_are_stored_meanwhile(
        tf, cluster, start_worker, tmp_path):
    # Given a worker running a job of every shard three times over, each until the test
    # says (leases long enough that none lapses while a shard is away)
    n = len(tf.storage.shards)
    runs_file, gate = tmp_path / "runs.txt", tmp_path / "gate"
    runs_file.touch()
    worker = start_worker("--threads", str(3 * n), modules=("tests.ha_jobs",),
                          env={"TASKFIRE_TEST_RUNS_FILE": str(runs_file), "TASKFIRE_LEASE_TIMEOUT": "60"})
    ids = tf.enqueue_many(ha_jobs.note_run_until, [(str(gate),)] * (3 * n))
    wait_for(lambda: {i for _, i in read_runs(runs_file)} == set(ids), 30, "every job to start")
    # (the home shard keeps the servers' heartbeats: another shard's primary goes)
    candidates = [k for k in range(1, n) if cluster.replica_of(cluster.owner(tf.storage.shards[k].keys.queues))]
    assert candidates, "no shard but the home one has a primary with a replica"
    down = candidates[0]
    victim = cluster.owner(tf.storage.shards[down].keys.queues)
    replica = cluster.replica_of(victim)
    assert replica is not None
    held = [i for i in ids if index_of(i, n) == down]
    others = [i for i in ids if index_of(i, n) != down]
    # The other primaries serve their slots with one missing, and the replica waits for
    # the test's word: the shard stays without a primary until the test ends it
    nodes = cluster.alive()
    try:
        for node in nodes:
            node.client.config_set("cluster-require-full-coverage", "no")
        replica.client.config_set("cluster-replica-no-failover", "yes")
        # When the shard's primary is killed and then every job ends
        victim.kill()
        gate.touch()
        # Then the other shards' outcomes are stored while that shard has no primary
        wait_for(lambda: all_succeeded(tf, others), 30, "the other shards' jobs to succeed")
        assert cluster.role(replica) == "slave", "the shard's replica was promoted before the check"
        # And once its replica takes over, the shard's kept outcomes are stored too
        replica.client.execute_command("CLUSTER", "FAILOVER", "TAKEOVER")
        wait_for(lambda: cluster.role(replica) == "master", 30, "the replica to take over")
        keys = tf.storage.shards[down].keys  # (read on the new primary itself: no client's slot map in the way)
        wait_for(lambda: [replica.client.hget(keys.job(i), "state") for i in held] == [b"Succeeded"] * len(held), 60,
                 "the jobs of the shard that was away to succeed")
        # And no job was lost or ran twice
        assert Counter(i for _, i in read_runs(runs_file)) == Counter(ids)
        assert worker.proc.poll() is None
    finally:  # the cluster as it was: every primary with a replica, for the tests after this one
        if victim.process.poll() is not None:
            if cluster.role(replica) != "master":  # (the test failed before the takeover)
                replica.client.execute_command("CLUSTER", "FAILOVER", "TAKEOVER")
                wait_for(lambda: cluster.role(replica) == "master", 30, "the replica to take over")
            _rejoin(victim)
            wait_for(lambda: cluster.replica_of(replica) is victim, 60, "the old primary to rejoin as a replica")
        replica.client.config_set("cluster-replica-no-failover", "no")
        for node in nodes:
            node.client.config_set("cluster-require-full-coverage", "yes")


def test_a_shard_that_cannot_take_its_token_does_not_keep_the_others_waiting(tmp_path):
    # Given a worker's wait over three shards on three servers, woken by the first
    # (clients that do not retry a refused connection for seconds, as the cluster's do not)
    servers = [RedisProcess(tmp_path, []) for _ in range(3)]
    clients = [redis.Redis(port=s.port, socket_timeout=5, retry=Retry(NoBackoff(), 0)) for s in servers]
    shards = [Shard(i, c, None, f"redis://127.0.0.1:{s.port}", shard_prefix("{w}:", i))
              for i, (s, c) in enumerate(zip(servers, clients, strict=True))]
    waiter = ShardWaiter(shards, clients[0])
    try:
        keys = [shards[0].keys.worker_wake("w")]
        servers[0].client.lpush(keys[0], "1")
        assert waiter.wait(keys, 60) == 0  # the other two shards' blocks go on
        # When the second shard's server is gone before their blocks are ended
        servers[1].kill()
        waiter.end_others()
        # Then the third shard's block is ended all the same (it would block a minute)
        done, blocking = futures_wait(waiter.pending, timeout=20)
        assert not blocking, "a shard's block was not ended"
        assert [f.result() for f in done if f.exception() is None] == [True]
    finally:
        waiter.close()
        for s in servers:
            s.kill()
