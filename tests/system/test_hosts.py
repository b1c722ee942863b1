"""Many hosts on one machine: Redis on one network namespace, three worker hosts on
others, each with its own address on a bridged LAN, and real `taskfire worker` processes
started in them with `ip netns exec`. A host is cut off by taking its link down, as a
pulled cable would; a host's clock is skewed with libfaketime.

    redis namespace:  a throwaway redis-server on 0.0.0.0:16379 (the namespace's own
                      network: the machine's Redis is never reachable from it),
                      bridge "lan" 10.99.0.1/24,
                      and a point-to-point link to this test process (the observer)
    host1..host3:     eth0 10.99.0.11..13/24, bridged to "lan"

Needs root and iproute2 (`ip netns`): where they are missing, the tests fail on CI and
are skipped elsewhere, with the reason (tests/conftest.py `prerequisite_missing`).
"""

from __future__ import annotations

import ipaddress
import os
import random
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import redis

from taskfire import Taskfire
from taskfire.embedded import valkey_binary
from tests import scale_jobs as jobs
from tests.conftest import ROOT, WorkerHandle, prerequisite_missing, report, scoped_client, wait_for

IP = shutil.which("ip")
REDIS_PORT = 16379  # of the server this test starts in its own namespace
LAN = "10.99.0"
LEASE_RENEWED_AS_LOST = "Requeued: its worker stopped renewing the lease"


def ip(*args: str) -> None:
    done = subprocess.run([IP or "ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def why_no_netns() -> str | None:
    """None if this process can build network namespaces, else why not."""
    if IP is None:
        return "iproute2's `ip` is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"tfprobe-{secrets.token_hex(3)}"
    try:
        ip("netns", "add", probe)
    except RuntimeError as exc:
        return f"`ip netns add` does not work here ({exc})"
    ip("netns", "del", probe)
    return None


def free_subnet() -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """A /30 for the observer's link that no route of this machine uses."""
    used = []
    for line in subprocess.run([IP or "ip", "-4", "route", "show", "table", "all"], capture_output=True,
                               text=True).stdout.splitlines():
        word = line.split()[0] if line.split() else ""
        if word and word[0].isdigit():
            used.append(ipaddress.ip_network(word if "/" in word else word + "/32", strict=False))
    for _ in range(100):
        net = ipaddress.ip_network(f"10.{random.randint(100, 250)}.{random.randint(0, 255)}.{random.randrange(0, 256, 4)}/30")
        if not any(net.overlaps(u) for u in used):
            return net
    raise RuntimeError("no free /30 under 10.100.0.0/8 for the observer's link")


class Lan:
    """The namespaces, the links and the Redis server; `close` removes them all."""

    def __init__(self, data_dir: Path) -> None:
        tag = secrets.token_hex(3)  # parallel runs get their own names
        self.redis_ns = f"tf{os.getpid()}-{tag}-redis"
        self.hosts = {f"host{i}": f"tf{os.getpid()}-{tag}-host{i}" for i in (1, 2, 3)}
        self.observer_link = f"tf{tag}o"
        self.data_dir = data_dir
        self.server: subprocess.Popen[bytes] | None = None
        self.created: list[str] = []
        net = free_subnet()
        self.observer_ip, self.redis_observer_ip = (str(a) for a in net.hosts())
        self.worker_url = f"redis://{LAN}.1:{REDIS_PORT}/0"
        self.observer_url = f"redis://{self.redis_observer_ip}:{REDIS_PORT}/0"

    def build(self) -> None:
        for ns in (self.redis_ns, *self.hosts.values()):
            ip("netns", "add", ns)
            self.created.append(ns)
            ip("-n", ns, "link", "set", "lo", "up")
        r = self.redis_ns
        ip("-n", r, "link", "add", "lan", "type", "bridge")
        ip("-n", r, "addr", "add", f"{LAN}.1/24", "dev", "lan")
        ip("-n", r, "link", "set", "lan", "up")
        for i, (name, ns) in enumerate(self.hosts.items(), start=1):
            ip("link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", name, "netns", r)
            ip("-n", r, "link", "set", name, "master", "lan", "up")
            ip("-n", ns, "addr", "add", f"{LAN}.{10 + i}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
        ip("link", "add", self.observer_link, "type", "veth", "peer", "name", "observer", "netns", r)
        ip("addr", "add", f"{self.observer_ip}/30", "dev", self.observer_link)
        ip("link", "set", self.observer_link, "up")
        ip("-n", r, "addr", "add", f"{self.redis_observer_ip}/30", "dev", "observer")
        ip("-n", r, "link", "set", "observer", "up")
        self._start_redis()

    def _start_redis(self) -> None:
        binary = shutil.which("redis-server") or str(valkey_binary())
        self.data_dir.mkdir(parents=True, exist_ok=True)
        conf = self.data_dir / "server.conf"
        conf.write_text("\n".join([
            f"port {REDIS_PORT}", "bind 0.0.0.0", "protected-mode no", f'dir "{self.data_dir}"', "appendonly yes",
            'save ""', "maxmemory-policy noeviction", 'logfile "server.log"', "daemonize no"]) + "\n")
        self.server = subprocess.Popen([IP or "ip", "netns", "exec", self.redis_ns, binary, str(conf)],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
        client = redis.Redis.from_url(self.observer_url, socket_timeout=2, socket_connect_timeout=2)

        def answers() -> bool:
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                assert self.server is not None and self.server.poll() is None, (self.data_dir / "server.log").read_text()
                return False
        wait_for(answers, 20, "redis-server in its namespace")
        client.close()

    def cut(self, host: str) -> None:
        """Takes the host's only link down: the cable is pulled."""
        ip("-n", self.hosts[host], "link", "set", "eth0", "down")

    def reconnect(self, host: str) -> None:
        ip("-n", self.hosts[host], "link", "set", "eth0", "up")

    def close(self) -> None:
        if self.server is not None and self.server.poll() is None:
            self.server.send_signal(signal.SIGTERM)
            try:
                self.server.wait(20)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()
        for ns in self.created:
            subprocess.run([IP or "ip", "netns", "del", ns], capture_output=True)
        subprocess.run([IP or "ip", "link", "del", self.observer_link], capture_output=True)  # gone with its peer


def remove_orphans() -> None:
    """Deletes the namespaces of runs whose test process died without cleaning up."""
    listing = subprocess.run([IP or "ip", "netns", "list"], capture_output=True, text=True).stdout
    for match in re.finditer(r"^(tf(\d+)-[0-9a-f]{6}-\w+)", listing, re.MULTILINE):
        if not Path(f"/proc/{match.group(2)}").exists():
            subprocess.run([IP or "ip", "netns", "del", match.group(1)], capture_output=True)


@pytest.fixture(scope="module")
def lan(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lan]:
    reason = why_no_netns()
    if reason:
        prerequisite_missing(f"the many-hosts tests need network namespaces: {reason}",
                             "run the tests as root, with iproute2 (apt-get install iproute2)")
    remove_orphans()
    network = Lan(tmp_path_factory.mktemp("lan") / "redis")
    try:
        network.build()
        yield network
    finally:
        network.close()


@pytest.fixture
def lan_tf(lan: Lan, prefix: str) -> Iterator[Taskfire]:
    """A client on the observer's link, under the test's own prefix."""
    with scoped_client(lan.observer_url, prefix) as client:
        yield client


@pytest.fixture
def start_on(lan: Lan, prefix: str, tmp_path: Path) -> Iterator[Callable[..., WorkerHandle]]:
    """Starts `taskfire worker tests.scale_jobs --name HOST` inside a host's namespace."""
    handles: list[WorkerHandle] = []

    def start(host: str, *args: str, env: dict[str, str] | None = None) -> WorkerHandle:
        log = tmp_path / f"{host}.log"
        full_env = dict(os.environ, TASKFIRE_REDIS_URL=lan.worker_url, TASKFIRE_PREFIX=prefix,
                        TASKFIRE_LEASE_TIMEOUT="2", TASKFIRE_HEARTBEAT_INTERVAL="0.5",
                        TASKFIRE_SERVER_TIMEOUT="2", TASKFIRE_LOG_LEVEL="DEBUG", PYTHONUNBUFFERED="1")
        full_env.update(env or {})
        with open(log, "wb") as out:
            proc = subprocess.Popen([IP or "ip", "netns", "exec", lan.hosts[host], sys.executable, "-m", "taskfire",
                                     "worker", "tests.scale_jobs", "--name", host, *args],
                                    cwd=ROOT, env=full_env, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        handle = WorkerHandle(proc, log)
        handles.append(handle)
        return handle

    yield start
    for h in handles:
        h.kill()


def wait_started(*workers: WorkerHandle) -> None:
    for w in workers:
        wait_for(lambda: "taking jobs from" in w.output() or w.proc.poll() is not None, 30, "the worker to start")
        assert w.proc.poll() is None, w.output()


def runs(tf: Taskfire, ids: list[str]) -> dict[str, int]:
    """How many times each job started (its body counts its starts)."""
    r: Any = tf.storage.redis
    counts = r.hgetall(jobs.key(tf.prefix, "runs"))
    return {i: int(counts.get(i.encode(), 0)) for i in ids}


def hosts_of(tf: Taskfire, job_id: str) -> list[str]:
    """The host of each start of the job, in order."""
    r: Any = tf.storage.redis
    return [h.decode() for h in r.lrange(jobs.key(tf.prefix, "hosts:" + job_id), 0, -1)]


def job_states(tf: Taskfire, ids: list[str]) -> dict[str, str]:
    pipe = tf.storage.redis.pipeline(transaction=False)
    for i in ids:
        pipe.hget(tf.storage.keys.job(i), "state")
    return {i: (s or b"missing").decode() for i, s in zip(ids, pipe.execute(), strict=True)}


def states(tf: Taskfire, ids: list[str]) -> Counter[str]:
    return Counter(job_states(tf, ids).values())


def succeeded(tf: Taskfire, ids: list[str]) -> set[str]:
    return {i for i, s in job_states(tf, ids).items() if s == "Succeeded"}


def held_by(tf: Taskfire, host: str) -> list[str]:
    """Jobs in Processing under a lease of one of the host's worker processes."""
    r: Any = tf.storage.redis
    k = tf.storage.keys
    ids = [i.decode() for i in r.zrange(k.processing, 0, -1)]
    pipe = r.pipeline(transaction=False)
    for i in ids:
        pipe.hget(k.job(i), "lease")
    return [i for i, lease in zip(ids, pipe.execute(), strict=True) if lease and lease.decode().startswith(host + ":")]


def server_names(tf: Taskfire) -> set[str]:
    return {s.get("name", "") for s in tf.servers()}


def test_a_host_cut_off_under_load_has_its_jobs_recovered_and_rejoins_without_repeating_work(lan, lan_tf, start_on):
    tf = lan_tf
    workers = {h: start_on(h, "--threads", "4") for h in ("host1", "host2", "host3")}
    wait_started(*workers.values())
    wait_for(lambda: server_names(tf) == {"host1", "host2", "host3"}, 10, "three servers")

    # Given 150 jobs of 0.3 s running on three hosts
    wave1 = tf.enqueue_many(jobs.host_run, [(n, 0.3) for n in range(150)])
    expected = {jid: n * 2 for n, jid in enumerate(wave1)}
    wait_for(lambda: sum(runs(tf, wave1).values()) >= 30 and len(held_by(tf, "host2")) >= 2, 30,
             "host2 to be busy")

    # When host2's cable is pulled
    lan.cut("host2")
    cut_at = time.monotonic()
    in_flight = held_by(tf, "host2")  # nothing host2 does reaches Redis from now on
    done = succeeded(tf, wave1)
    finished_before = [i for i in wave1 if i in done]
    assert in_flight, "host2 held no job when it was cut off"

    # Then the other hosts take its jobs over once their leases lapse, and every job finishes
    wait_for(lambda: states(tf, wave1)["Succeeded"] == len(wave1), 90, "every job to succeed while host2 is away")
    recovered_in = time.monotonic() - cut_at
    wait_for(lambda: "host2" not in server_names(tf), 10, "host2 to be found dead")
    for jid in in_flight:
        job = tf.get_job(jid)
        assert job is not None and job.result == expected[jid]
        requeues = [e for e in job.history if e.reason == LEASE_RENEWED_AS_LOST]
        assert len(requeues) == 1 and requeues[0].data["worker"].startswith("host2:"), job.history
        assert hosts_of(tf, jid)[-1] != "host2"
    before_rejoin = runs(tf, wave1)

    # When host2 comes back
    lan.reconnect("host2")
    wait_for(lambda: "host2" in server_names(tf), 30, "host2 to rejoin")
    wave2 = tf.enqueue_many(jobs.host_run, [(n, 0.05) for n in range(1000, 1060)])
    expected.update({jid: n * 2 for n, jid in zip(range(1000, 1060), wave2)})
    wait_for(lambda: states(tf, wave2)["Succeeded"] == len(wave2), 60, "the second wave")

    # Then it works again, and repeats nothing that had finished
    assert "host2" in {h for jid in wave2 for h in hosts_of(tf, jid)}
    assert set(runs(tf, wave2).values()) == {1}
    after = runs(tf, wave1)
    assert {i: after[i] for i in finished_before} == {i: before_rejoin[i] for i in finished_before}
    assert all(n == 1 for i, n in after.items() if i not in in_flight)
    assert all(1 <= after[i] <= 2 for i in in_flight)  # at least once; never a third time
    for jid in wave1 + wave2:
        job = tf.get_job(jid)
        assert job is not None and job.state == "Succeeded"
        assert job.result == expected[jid]
        assert [e.state for e in job.history].count("Succeeded") == 1
    # host2 did try to store what it finished while cut off: refused (its leases were gone),
    # so each of those jobs kept the one outcome another host stored.
    ran_on_host2 = [i for i in in_flight if "host2" in hosts_of(tf, i)]
    assert ran_on_host2
    wait_for(lambda: all(i in workers["host2"].output() for i in ran_on_host2), 30,
             "host2 to report on the jobs it ran while cut off")
    twice = sum(1 for i in in_flight if after[i] == 2)
    report(f"many hosts: host2 cut off holding {len(in_flight)} job(s) (lease 2 s): all 150 jobs done "
           f"{recovered_in:.1f} s after the cut; {twice} of its jobs ran twice (at least once), "
           f"none of the {len(finished_before)} finished before the cut ran again")
    assert all(w.proc.poll() is None for w in workers.values())


def test_hosts_an_hour_ahead_and_behind_keep_leases_and_schedules_on_the_servers_clock(lan, lan_tf, start_on):
    tf = lan_tf
    lib = next(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"), None)
    assert lib is not None, "libfaketime is missing: .ci/run installs Debian's faketime package"
    skew = {"host1": 3600, "host3": -3600}
    workers = [start_on(h, "--threads", "4", env={"LD_PRELOAD": str(lib), "FAKETIME": f"{s:+d}",
                                                     "DONT_FAKE_MONOTONIC": "1"})
               for h, s in skew.items()]
    wait_started(*workers)

    # Given: their clocks really are an hour off the Redis server's (probed until each
    # host has answered: a probe goes to whichever host takes it)
    seen: dict[str, float] = {}

    def probe() -> bool:
        jid = tf.enqueue(jobs.clocks)
        job = wait_for(lambda: (j := tf.get_job(jid)) and j.state == "Succeeded" and j, 20, "a clock probe")
        seen[job.result["host"]] = (job.result["wall_ms"] - job.result["server_ms"]) / 1000
        return set(seen) == set(skew)

    wait_for(probe, 60, "a clock probe run on each skewed host", interval=0)
    assert set(seen) == {"host1", "host3"}
    for host, offset in seen.items():
        assert abs(offset - skew[host]) < 60, seen

    # When both run jobs three times longer than a lease (renewed every half second; each
    # host holds at most 4, so both hold some and 2 threads stay free)
    long_ids = tf.enqueue_many(jobs.host_run, [(n, 6.0) for n in range(6)])
    # ... and jobs are scheduled two seconds ahead, due by the server's clock
    scheduled = [tf.schedule(jobs.server_time_at_start, 2.0) for _ in range(10)]

    # Then no lease is taken for lapsed, and no scheduled job starts early or an hour late
    wait_for(lambda: states(tf, long_ids + scheduled)["Succeeded"] == 16, 40, "the long and the scheduled jobs")
    assert set(runs(tf, long_ids).values()) == {1}
    assert {h for i in long_ids for h in hosts_of(tf, i)} == {"host1", "host3"}
    lateness = []
    for jid in long_ids + scheduled:
        job = tf.get_job(jid)
        assert job is not None
        assert not [e for e in job.history if e.reason == LEASE_RENEWED_AS_LOST], job.history
    for jid in scheduled:
        job = tf.get_job(jid)
        assert job is not None and job.history[0].state == "Scheduled" and job.history[0].due is not None
        due_ms = int(job.history[0].due.timestamp() * 1000)
        lateness.append(job.result["started_ms"] - due_ms)
    assert min(lateness) >= 0, lateness
    report(f"clocks an hour ahead/behind: 6 jobs of 3 leases each ran once; 10 jobs scheduled 2 s ahead started "
           f"{statistics.median(lateness):.0f} ms (median), {max(lateness)} ms (max) after their due time")
    assert all(w.proc.poll() is None for w in workers)
