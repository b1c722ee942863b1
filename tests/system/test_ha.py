"""High availability on Redis's own engines: a Sentinel failover under load (with and
without waiting for a replica), and a real three-primary Redis Cluster. Every server is a
Debian `redis-server` this file starts on free loopback ports and kills afterwards."""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, cast

import pytest
import redis

from taskfire import ConfigError, Cron, EnqueueError, Failed, ReplicationTimeout, Succeeded, Taskfire
from taskfire.embedded import free_port
from taskfire.storage import TRANSIENT_ERRORS, FetchRequest
from taskfire_dashboard import create_app
from tests import ha_jobs, jobs
from tests.conftest import ROOT, prerequisite_missing, report, traces, wait_for
from tests.integration.test_worker import settled

REDIS_SERVER = shutil.which("redis-server")
REDIS_CLI = shutil.which("redis-cli")


def require(*tools: tuple[str | None, str]) -> None:
    """Sentinel and Cluster need Debian's redis-server (and redis-cli to form a cluster)."""
    for found, name in tools:
        if found is None:
            prerequisite_missing(f"the Sentinel and Cluster tests need Debian's {name} on PATH",
                                 "apt-get install redis-server (it brings redis-cli)")

PASSWORD = "data-secret"          # the primary's and replica's requirepass
SENTINEL_PASSWORD = "watch-secret"  # the sentinels' own
SERVICE = "mymaster"


class RedisProcess:
    """One redis-server (or sentinel) with its own config file and directory."""

    def __init__(self, home: Path, lines: list[str], *, sentinel: bool = False, password: str | None = None) -> None:
        taken = {int(line.split()[1]) for line in lines if line.startswith("cluster-port ")}
        self.port = free_port()
        while self.port in taken:  # (free_port can give the cluster bus's port again)
            self.port = free_port()
        self.home = home / f"{'sentinel' if sentinel else 'redis'}-{self.port}"
        self.home.mkdir(parents=True)
        config = self.home / "redis.conf"
        config.write_text("\n".join([f"port {self.port}", "bind 127.0.0.1", f'dir "{self.home}"',
                                     'logfile "log"', 'save ""', *lines]) + "\n")
        self.process = subprocess.Popen([REDIS_SERVER or "redis-server", str(config),
                                         *(["--sentinel"] if sentinel else [])],
                                        cwd=self.home, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        self.client = redis.Redis(port=self.port, password=password, socket_timeout=5)
        wait_for(self._answers, 20, f"redis-server on port {self.port} to answer")

    def _answers(self) -> bool:
        assert self.process.poll() is None, (self.home / "log").read_text()
        try:
            return bool(self.client.ping())
        except redis.ConnectionError:
            return False

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


class LaggingLink:
    """The replication link through a relay that holds the primary's stream back `lag`
    seconds, as a slow link between sites would. `cut()` drops what is still in transit,
    as a primary host losing power would: bytes it had not sent never arrive. (A process
    killed on a healthy host loses nothing in transit: its kernel still sends them.)"""

    def __init__(self, target_port: int, lag: float) -> None:
        self.target_port = target_port
        self.lag = lag
        self.cut_off = threading.Event()
        self.sockets: list[socket.socket] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.cut_off.is_set():
            try:
                replica, _ = self.listener.accept()
            except OSError:
                return
            try:
                primary = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                replica.close()
                continue
            self.sockets += [replica, primary]
            threading.Thread(target=self._forward, args=(replica, primary, 0.0), daemon=True).start()
            threading.Thread(target=self._forward, args=(primary, replica, self.lag), daemon=True).start()

    def _forward(self, src: socket.socket, dst: socket.socket, lag: float) -> None:
        held: queue.SimpleQueue[tuple[float, bytes]] = queue.SimpleQueue()

        def send() -> None:
            while True:
                due, data = held.get()
                if self.cut_off.wait(max(0.0, due - time.monotonic())) or not data:
                    return
                with contextlib.suppress(OSError):
                    dst.sendall(data)

        threading.Thread(target=send, daemon=True).start()
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            held.put((time.monotonic() + lag, data))
            if not data:
                return

    def cut(self) -> None:
        self.cut_off.set()
        self.listener.close()
        for s in self.sockets:
            with contextlib.suppress(OSError):
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                s.close()


class SentinelGroup:
    """A primary, a replica and three sentinels (quorum 2) that fail over after 1 s of silence."""

    def __init__(self, home: Path, lag: float) -> None:
        data = [f"requirepass {PASSWORD}", f"masterauth {PASSWORD}", "appendonly no",
                "repl-diskless-sync-delay 0", "maxmemory-policy noeviction"]
        self.primary = RedisProcess(home, data, password=PASSWORD)
        self.link = LaggingLink(self.primary.port, lag) if lag else None
        upstream = self.link.port if self.link else self.primary.port
        self.replica = RedisProcess(home, [*data, f"replicaof 127.0.0.1 {upstream}"], password=PASSWORD)
        wait_for(lambda: self.replica.client.info("replication")["master_link_status"] == "up", 20,
                 "the replica to sync")
        watch = [f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary.port} 2",
                 f"sentinel auth-pass {SERVICE} {PASSWORD}",
                 f"sentinel down-after-milliseconds {SERVICE} 1000",
                 f"sentinel failover-timeout {SERVICE} 3000",
                 f"requirepass {SENTINEL_PASSWORD}", f"sentinel sentinel-pass {SENTINEL_PASSWORD}"]
        self.sentinels = [RedisProcess(home, watch, sentinel=True, password=SENTINEL_PASSWORD) for _ in range(3)]
        wait_for(self._watching, 30, "each sentinel to see the replica and the two other sentinels")
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        self.url = f"redis+sentinel://:{PASSWORD}@{hosts}/{SERVICE}/0?sentinel_password={SENTINEL_PASSWORD}"

    def _watching(self) -> bool:
        views = [cast(dict[str, Any], s.client.sentinel_master(SERVICE)) for s in self.sentinels]
        return all(v["num-slaves"] == 1 and v["num-other-sentinels"] == 2 for v in views)

    def primary_port(self) -> int | None:
        """The primary's port according to the first sentinel that answers."""
        for s in self.sentinels:
            with contextlib.suppress(redis.RedisError):
                return int(cast(tuple[str, int], s.client.sentinel_get_master_addr_by_name(SERVICE))[1])
        return None

    def crash_primary(self) -> None:
        """The primary's host fails: its replication stream in transit is lost with it."""
        if self.link:
            self.link.cut()
        self.primary.kill()

    def kill(self) -> None:
        for p in (*self.sentinels, self.replica, self.primary):
            p.kill()
        if self.link:
            self.link.cut()


@pytest.fixture
def sentinel_group(tmp_path: Path) -> Iterator[Callable[[float], SentinelGroup]]:
    require((REDIS_SERVER, "redis-server"))
    groups: list[SentinelGroup] = []

    def start(lag: float) -> SentinelGroup:
        groups.append(SentinelGroup(tmp_path / "servers", lag))
        return groups[-1]

    yield start
    for g in groups:
        g.kill()


class Enqueuer(threading.Thread):
    """A client enqueueing jobs one at a time (at most 200 a second) until stopped. It
    notes when each enqueue returned: acknowledged, stored but not confirmed by a replica
    (ReplicationTimeout), or failed (Redis unreachable)."""

    def __init__(self, tf: Taskfire, pause: float) -> None:
        super().__init__(daemon=True)
        self.tf = tf
        self.pause = pause
        self.acked: list[tuple[float, str]] = []
        self.unconfirmed: list[tuple[float, str]] = []
        self.failures = 0
        self.unexpected: list[BaseException] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(0.005):
            try:
                self.acked.append((time.time(), self.tf.enqueue(ha_jobs.note_run, self.pause)))
            except ReplicationTimeout as exc:
                self.unconfirmed.append((time.time(), exc.job_ids[0]))
            except (EnqueueError, *TRANSIENT_ERRORS):  # not acknowledged (it may have been stored)
                self.failures += 1
            except BaseException as exc:  # noqa: BLE001 - the test fails on it, with the error
                self.unexpected.append(exc)
                return

    def stored_after(self, moment: float) -> list[str]:
        return [i for t, i in sorted(self.acked + self.unconfirmed) if t > moment]


def existing(tf: Taskfire, ids: list[str]) -> dict[str, str]:
    """{id: state} of the jobs that exist, in one round trip."""
    pipe = tf.storage.redis.pipeline(transaction=False)
    for i in ids:
        pipe.hget(tf.storage.keys_of(i).job(i), "state")
    return {i: s.decode() for i, s in zip(ids, pipe.execute(), strict=True) if s}


def all_succeeded(tf: Taskfire, ids: list[str]) -> bool:
    with contextlib.suppress(*TRANSIENT_ERRORS):
        return set(existing(tf, ids).values()) == {"Succeeded"}
    return False


def read_runs(path: Path) -> list[tuple[float, str]]:
    """(start time, job id) of every run the workers noted (tests/ha_jobs.py)."""
    return [(float(t), i) for t, i in (line.split() for line in path.read_text().splitlines())]


@pytest.mark.parametrize("wait_replicas, lag_ms", [(0, 0), (0, 50), (1, 50)],
                         ids=["no-wait", "no-wait-lagging-replica", "wait-lagging-replica"])
def test_workers_follow_a_sentinel_failover_under_load(sentinel_group, start_worker_on, prefix, tmp_path,
                                                       wait_replicas, lag_ms):
    # Given a primary, a replica (its link lagging `lag_ms` behind, or not) and three
    # sentinels; a worker server with two processes of two threads, and a client
    # enqueueing 30 ms jobs faster than they run, so that a backlog builds up
    group = sentinel_group(lag_ms / 1000)
    runs_file = tmp_path / "runs.txt"
    runs_file.touch()
    worker = start_worker_on(group.url, "--processes", "2", "--threads", "2", modules=("tests.ha_jobs",),
                             env={"TASKFIRE_TEST_RUNS_FILE": str(runs_file)})
    wait_for(lambda: len(worker.children()) == 2, 20, "two worker processes")
    processes = sorted(worker.children())
    tf = Taskfire(group.url, prefix=prefix, wait_replicas=wait_replicas, wait_timeout_ms=500)
    dashboard = create_app(group.url, prefix=prefix).test_client()
    assert dashboard.get("/api/stats").status_code == 200
    enqueuer = Enqueuer(tf, pause=0.03)
    loaded = time.monotonic() + 2.0  # two seconds of load, whatever the pace
    enqueuer.start()
    wait_for(lambda: time.monotonic() > loaded and len(enqueuer.acked) >= 20
             and all_succeeded(tf, [i for _, i in enqueuer.acked[:20]]), 30, "the first jobs to run")

    # When the primary's host fails under load
    old_primary = group.primary.port
    killed_at, killed_mono = time.time(), time.monotonic()
    group.crash_primary()

    # Then the sentinels promote the replica; the client and the workers follow it
    wait_for(lambda: group.primary_port() == group.replica.port, 30, "the sentinels to promote the replica")
    promoted = time.monotonic() - killed_mono
    # (a job fetched before the kill starts within milliseconds, and none can be fetched
    # until the promotion, a second at least: a start half a second on is a new fetch)
    resumed = killed_at + 0.5
    wait_for(lambda: any(t > resumed for t, _ in read_runs(runs_file)), 30, "a job to start after the failover")
    wait_for(lambda: len(enqueuer.stored_after(killed_at)) >= (3 if wait_replicas else 50), 30,
             "jobs enqueued after the failover")
    enqueuer.stopping.set()
    enqueuer.join(10)
    assert not enqueuer.unexpected, enqueuer.unexpected
    acked = [i for _, i in enqueuer.acked]
    survivors = set(existing(tf, acked + [i for _, i in enqueuer.unconfirmed]))
    wait_for(lambda: all_succeeded(tf, list(survivors)), 60, "every surviving job to succeed on the new primary")
    # ... by the same worker processes, reconnected rather than replaced
    assert worker.proc.poll() is None
    assert sorted(worker.children()) == processes
    assert "Redis is back" in worker.output()
    assert group.primary_port() != old_primary
    # ... and the dashboard, made before the failover, reads the new primary
    stats = dashboard.get("/api/stats").get_json()
    assert stats["states"]["Processing"] == 0 and stats["states"]["Succeeded"] >= len(survivors)

    runs = read_runs(runs_file)
    ran = {i for _, i in runs}
    absent = [i for i in acked if i not in survivors]
    never_ran = [i for i in absent if i not in ran]
    if wait_replicas or not lag_ms:
        # Every job a replica confirmed survived the failover; and with a direct link, a
        # primary killed on a healthy host lost nothing acknowledged either (its kernel
        # still sent what Redis had written): docs/high-availability.md's "0 of ..."
        assert absent == [], f"{len(absent)} acknowledged jobs lost: {absent[:5]}"
    if wait_replicas:
        # With its only replica promoted, the new primary has none: enqueues are stored
        # but not confirmed, and say so
        assert enqueuer.unconfirmed and all(t > killed_at for t, _ in enqueuer.unconfirmed)
    enqueued_again = min(t for t, _ in enqueuer.acked + enqueuer.unconfirmed if t > killed_at) - killed_at
    started_again = min(t for t, _ in runs if t > resumed) - killed_at
    report(f"sentinel failover, wait_replicas={wait_replicas}, replica link lag {lag_ms} ms: after the primary "
           f"died, replica promoted at {promoted:.2f} s, first enqueue acknowledged at {enqueued_again:.2f} s, "
           f"first job started at {started_again:.2f} s; {len(acked)} jobs acknowledged, {len(absent)} absent "
           f"after the failover ({len(never_ran)} of them never ran), {len(runs) - len(ran)} runs repeated, "
           f"{enqueuer.failures} enqueues failed during the outage")


def test_sentinel_urls_are_parsed_or_refused_by_name():
    from taskfire.storage.connection import parse
    t = parse("redis+sentinel://user:p%40ss@h1:26380,[::1],h3/mymaster/2?sentinel_password=s")
    assert (t.nodes, t.username, t.password, t.service, t.db, t.sentinel_password) == (
        [("h1", 26380), ("::1", 26379), ("h3", 26379)], "user", "p@ss", "mymaster", 2, "s")
    with pytest.raises(ConfigError, match="monitored primary's name"):
        Taskfire("redis+sentinel://h1:26379")
    with pytest.raises(ConfigError, match="unknown option.*colour") as refused:
        Taskfire("redis+sentinel://h1/mymaster?sentinel_password=hush&colour=red")
    assert "hush" not in str(refused.value)
    with pytest.raises(ConfigError, match=r"unknown scheme 'sentinel'.*redis\+sentinel://"):
        Taskfire("sentinel://:secret@h1/mymaster")
    with pytest.raises(ConfigError) as refused:
        Taskfire("redis+cluster://:secret@h1/3", prefix="{t}:")
    assert "only database 0" in str(refused.value) and "secret" not in str(refused.value)


def test_waiting_for_a_replica_that_is_not_there_raises_but_keeps_the_job(tf, server, prefix):
    # Given a server without replicas and a client that asks for one
    waiting = Taskfire(server.url, prefix=prefix, wait_replicas=1, wait_timeout_ms=20)
    # When it enqueues one job, many, or a batch
    with pytest.raises(ReplicationTimeout, match="only 0 of 1 replica") as one:
        waiting.enqueue(jobs.add, 1, 2)
    with pytest.raises(ReplicationTimeout, match="and 1,199 more") as many:
        waiting.enqueue_many(jobs.add, [(i, i) for i in range(1200)])  # three script calls, one WAIT
    with pytest.raises(ReplicationTimeout), waiting.batch() as b:
        b.enqueue(jobs.add, 3, 4)
    # Then every job was stored all the same: the error is about durability, not storage
    ids = one.value.job_ids + many.value.job_ids
    assert len(ids) == 1201 and set(existing(tf, ids).values()) == {"Enqueued"}
    assert tf.get_batch(b.id).total == 1
    # And TASKFIRE_WAIT_REPLICAS and TASKFIRE_WAIT_TIMEOUT_MS set the same for a client
    # given neither; an argument wins over its variable
    r = tf.storage.redis
    waits = lambda: r.info("commandstats").get("cmdstat_wait", {}).get("calls", 0)  # noqa: E731
    with pytest.MonkeyPatch.context() as env:
        env.setenv("TASKFIRE_WAIT_REPLICAS", "1")
        env.setenv("TASKFIRE_WAIT_TIMEOUT_MS", "25")
        before = waits()
        with pytest.raises(ReplicationTimeout, match=r"only 0 of 1 replica\(s\) acknowledged it within 25 ms"):
            Taskfire(server.url, prefix=prefix).enqueue(jobs.add, 5, 6)
        assert waits() == before + 1
        Taskfire(server.url, prefix=prefix, wait_replicas=0).enqueue(jobs.add, 7, 8)
        assert waits() == before + 1
    # And a wait with no time limit, or a count that is not a number, is refused by name
    with pytest.raises(ConfigError, match="WAIT 0 would block forever"):
        Taskfire(server.url, prefix=prefix, wait_replicas=1, wait_timeout_ms=0)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("TASKFIRE_WAIT_REPLICAS", "one")
        with pytest.raises(ConfigError, match="TASKFIRE_WAIT_REPLICAS='one'"):
            Taskfire(server.url, prefix=prefix)


# -- Redis Cluster -------------------------------------------------------------------


class Cluster:
    """Three primaries (no replicas) joined by `redis-cli --cluster create`."""

    def __init__(self, home: Path) -> None:
        self.nodes = [RedisProcess(home, ["cluster-enabled yes", "cluster-config-file nodes.conf",
                                          f"cluster-port {free_port()}",  # not port + 10000: may be > 65535
                                          "cluster-node-timeout 2000", "appendonly no",
                                          "maxmemory-policy noeviction"]) for _ in range(3)]
        subprocess.run([REDIS_CLI or "redis-cli", "--cluster", "create",
                        *(f"127.0.0.1:{n.port}" for n in self.nodes), "--cluster-yes"],
                       check=True, capture_output=True, timeout=60)
        wait_for(lambda: all(n.client.cluster("info")["cluster_state"] == "ok" for n in self.nodes), 30,
                 "the cluster to be ok on every node")
        self.url = f"redis+cluster://127.0.0.1:{self.nodes[0].port},127.0.0.1:{self.nodes[1].port}"

    def kill(self) -> None:
        for n in self.nodes:
            n.kill()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    require((REDIS_SERVER, "redis-server"), (REDIS_CLI, "redis-cli"))
    c = Cluster(tmp_path_factory.mktemp("cluster"))
    yield c
    c.kill()


@pytest.fixture
def tagged(prefix: str) -> str:
    return "{" + prefix.rstrip(":") + "}:"


def run_worker_briefly(url: str, prefix: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, TASKFIRE_REDIS_URL=url, TASKFIRE_PREFIX=prefix)
    return subprocess.run([sys.executable, "-m", "taskfire", "worker", "tests.jobs"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def test_a_cluster_needs_a_hash_tagged_prefix_and_its_own_scheme(cluster):
    with pytest.raises(ConfigError, match="has no hash tag.*'{taskfire}:'"):
        Taskfire(cluster.url)
    with pytest.raises(ConfigError, match="has no hash tag"):
        Taskfire(cluster.url, prefix="{}taskfire:")  # an empty tag hashes the whole key
    refused = run_worker_briefly(cluster.url, "taskfire:")
    assert refused.returncode == 2 and "has no hash tag" in refused.stderr
    plain = run_worker_briefly(f"redis://127.0.0.1:{cluster.nodes[0].port}/0", "{taskfire}:")
    assert plain.returncode == 2 and "is a Redis Cluster node: use redis+cluster://" in plain.stderr


def test_jobs_run_unchanged_on_a_cluster(cluster, tagged, start_worker_on):
    # Given a client and a worker on a three-primary cluster, under a hash-tagged prefix
    tf = Taskfire(cluster.url, prefix=tagged)
    start_worker_on(cluster.url, "--processes", "2", "--threads", "4", env={"TASKFIRE_PREFIX": tagged})
    # Then fire-and-forget, bulk, scheduled, retried, continued, batched and recurring jobs all run
    single = jobs.add.enqueue(2, 3)
    bulk = jobs.add.enqueue_many([(i, 1) for i in range(1200)])  # three script calls in one pipeline
    scheduled = jobs.echo.schedule(1.0, "later")
    retried = jobs.fail_times.enqueue(1)
    continued = jobs.echo.continue_with(single, "after")
    with tf.batch() as b:
        for i in range(3):
            b.enqueue(jobs.add, i, i)
    tf.recurring.add_or_update("tick", jobs.record_fired, Cron.every_second(), args=("tick",))
    assert settled(tf, single).result == 5
    assert settled(tf, continued).result == "after"
    j = settled(tf, scheduled)
    assert j.result == "later" and j.history[0].due is not None and j.started_at >= j.history[0].due  # not early
    j = settled(tf, retried)
    assert j.result == "succeeded on attempt 2"
    assert [e.state for e in j.history] == ["Enqueued", "Processing", "Failed", "Scheduled", "Enqueued",
                                            "Processing", "Succeeded"]
    wait_for(lambda: all_succeeded(tf, bulk), 60, "1,200 bulk jobs")
    wait_for(lambda: tf.get_batch(b.id).state == "Finished", 20, "the batch to finish")
    fired = wait_for(lambda: [t for t in traces(tf, "fired") if t.startswith("tick:")], 20, "a recurring run")
    assert tf.get_job(fired[0].split(":", 1)[1]) is not None
    # And a client that waits for a replica, where no primary has one, is told so
    waiting = Taskfire(cluster.url, prefix=tagged, wait_replicas=1, wait_timeout_ms=20)
    with pytest.raises(ReplicationTimeout) as unconfirmed:
        waiting.enqueue(jobs.add, 1, 1)
    assert settled(tf, unconfirmed.value.job_ids[0]).result == 2


def test_the_dashboard_and_operators_work_on_a_cluster(cluster, tagged):
    # Given jobs in several states on a cluster (moved there by hand: no worker)
    tf = Taskfire(cluster.url, prefix=tagged)
    done = jobs.add.enqueue(1, 1)
    broken = jobs.add.enqueue(2, 2)
    fetched = tf.storage.fetch(FetchRequest("by-hand", ["default"], 2, 60_000, 5)).jobs
    assert {f.id for f in fetched} == {done, broken}  # (from two shards: in no set order)
    waiting = jobs.add.enqueue_many([(i, i) for i in range(3)])
    assert tf.change_state(done, Succeeded(duration_ms=1.0), "Processing", result=2)
    assert tf.change_state(broken, Failed(reason="boom", exception_type="ValueError"), "Processing")
    tf.recurring.add_or_update("nightly", jobs.record_fired, Cron.daily(2), args=("nightly",))
    app = create_app(tf)
    app.config["TESTING"] = True
    client = app.test_client()
    # Then every page and API read answers from the cluster
    stats = client.get("/api/stats").get_json()
    assert stats["states"] == {"Enqueued": 3, "Scheduled": 0, "Processing": 0, "Awaiting": 0,
                               "Succeeded": 1, "Failed": 1, "Deleted": 0}
    assert stats["queues"] == [{"name": "default", "length": 3, "paused": False}] and stats["recurring"] == 1
    failed = client.get("/api/jobs/state/Failed").get_json()["jobs"]
    assert [r["id"] for r in failed] == [broken] and failed[0]["error"] == "ValueError"
    listed = [r["id"] for r in client.get("/api/jobs/state/Enqueued?queue=default").get_json()["jobs"]]
    assert sorted(listed) == sorted(waiting)  # in creation order to the millisecond only, across shards
    assert client.get(f"/api/jobs/{done}").get_json()["result"] == 2
    for page in ("/", "/jobs/state/Succeeded", "/jobs/state/Enqueued?queue=default", f"/jobs/{broken}",
                 "/recurring", "/servers", "/queues", "/metrics"):
        response = client.get(page)
        assert response.status_code == 200, (page, response.get_data(as_text=True)[:500])
    assert 'taskfire_jobs{state="Failed"} 1' in client.get("/metrics").get_data(as_text=True)
    # And operators' actions (scripts, WATCH/MULTI, pipelines) work too
    assert tf.queues.pause("default") and tf.queues.list()[0].paused
    assert tf.queues.resume("default")
    assert tf.recurring.disable("nightly") and not tf.recurring.get("nightly").enabled
    assert tf.recurring.enable("nightly")
    assert tf.requeue_all("Failed").changed == 1
    assert tf.queues.purge("default").changed == 4
    assert tf.cancel(done) is False and tf.delete(done)
