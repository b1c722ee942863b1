"""`python -m benchmarks.scaling --cluster`: how evenly a sharded store spreads Redis's
work over a Redis Cluster's primaries, and what a job costs each primary against one
Redis (issue 19).

Starts three redis-server nodes in cluster mode (three primaries, no replicas: the CPU
of replication is not taskfire's) and one plain redis-server, on free loopback ports.
The same mixed load runs on each: --jobs no-op jobs over six queues, `hot` carrying half
of them and five others a tenth each, a fifth of each queue's jobs enqueued one call at
a time and the rest with enqueue_many, run by one worker (--processes x --threads) that
serves every queue. For each Redis it reads INFO cpu (used_cpu_sys + used_cpu_user)
before the enqueues and after the last job finished: the CPU seconds each primary
spent, and per job it holds. Then the idle pickup latency (enqueue to start, a worker
blocked on every shard) on the cluster and on the single Redis.

Projected capacity: jobs/s = Σ over primaries of 1e6 / (Redis CPU µs per job on that
primary), each primary's core busy with its share of an even spread; one Redis is
1e6 / its µs per job; 6 primaries is twice the 3-primary sum, a projection, not a
measurement. On a 2-core machine the workers, four Redis servers and this harness share
the CPU, so the throughput itself is not what a cluster would reach: the figures that
carry over are the split and the cost per job.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from taskfire import Taskfire
from taskfire.embedded import free_port, valkey_binary
from taskfire.storage.shards import index_of

from . import jobs
from .core import ROOT, stop, wait_until

QUEUES = {"hot": 0.5, "q1": 0.1, "q2": 0.1, "q3": 0.1, "q4": 0.1, "q5": 0.1}


class Node:
    """One redis-server on a free loopback port, in its own directory."""

    def __init__(self, home: Path, cluster: bool, binary: str) -> None:
        self.port = free_port()
        self.dir = home / f"redis-{self.port}"
        self.dir.mkdir(parents=True)
        lines = [f"port {self.port}", "bind 127.0.0.1", f'dir "{self.dir}"', 'save ""', "appendonly no",
                 'logfile "log"']
        if cluster:
            lines += ["cluster-enabled yes", "cluster-config-file nodes.conf", f"cluster-port {free_port()}",
                      "cluster-node-timeout 2000"]
        (self.dir / "redis.conf").write_text("\n".join(lines) + "\n")
        self.process = subprocess.Popen([binary, str(self.dir / "redis.conf")], cwd=self.dir,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
        self.client = redis.Redis(port=self.port)
        wait_until(self._answers, 20)

    def _answers(self) -> bool:
        try:
            return bool(self.client.ping())
        except redis.ConnectionError:
            return False

    def cpu(self) -> float:
        info: Any = self.client.info("cpu")
        return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])

    def script_seconds(self) -> float:
        """Seconds Redis spent in taskfire's scripts (INFO commandstats, FCALL, their inner
        calls included): the work jobs cost, without the background (cron, the cluster
        bus) that INFO cpu also counts."""
        stats: Any = self.client.info("commandstats")
        return float(stats.get("cmdstat_fcall", {}).get("usec", 0)) / 1e6

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


def server_binary(server: str) -> str:
    """redis-server from PATH, or the embedded Valkey (`--server valkey`)."""
    if server == "valkey":
        return str(valkey_binary())
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server not found on PATH (apt-get install redis-server, or --server valkey)")
    return binary


def make_cluster(home: Path, binary: str) -> list[Node]:
    nodes = [Node(home, cluster=True, binary=binary) for _ in range(3)]
    subprocess.run([shutil.which("redis-cli") or "redis-cli", "--cluster", "create",
                    *(f"127.0.0.1:{n.port}" for n in nodes), "--cluster-yes"],
                   check=True, capture_output=True, timeout=60)
    wait_until(lambda: all(n.client.cluster("info")["cluster_state"] == "ok" for n in nodes), 30)
    return nodes


def one_node_cluster(home: Path, binary: str) -> Node:
    """A cluster of one primary holding every slot: Redis's cluster mode (a slot check on
    every key a script touches) without sharding, the baseline that isolates sharding's
    own cost."""
    node = Node(home, cluster=True, binary=binary)
    node.client.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
    wait_until(lambda: node.client.cluster("info")["cluster_state"] == "ok", 30)
    return node


#: The control's plain commands: what taskfire's scripts do most (hashes, sorted sets,
#: lists), sent by redis-benchmark over keys in a range of a million.
CONTROL_COMMANDS = "set,get,lpush,rpop,hset,zadd"


def cluster_mode_cost(plain: Node, lone: Node, rounds: int = 3) -> tuple[float, float]:
    """Redis's own cost of cluster mode, with no taskfire in it: the same redis-benchmark
    run against the plain server and the one-node cluster (both holding what the
    taskfire rounds left, as big a keyspace each), Redis CPU µs per command on each
    (medians of `rounds` runs, in turns). Cluster mode keeps every key in its slot's
    index, and that costs more as the keyspace grows; this is the share of the gap
    between a primary and one Redis that no client can take away."""
    tool = shutil.which("redis-benchmark")
    if tool is None:
        raise SystemExit("redis-benchmark not found on PATH (apt-get install redis-tools)")
    count = 200_000
    per_command: dict[int, list[float]] = {plain.port: [], lone.port: []}
    for _ in range(rounds):
        for node in (plain, lone):
            before = node.cpu()
            subprocess.run([tool, "-p", str(node.port), "-n", str(count), "-c", "8", "-P", "4", "-r", "1000000",
                            "-q", "-t", CONTROL_COMMANDS], check=True, capture_output=True, timeout=300)
            per_command[node.port].append((node.cpu() - before) * 1e6 / (count * len(CONTROL_COMMANDS.split(","))))
    return statistics.median(per_command[plain.port]), statistics.median(per_command[lone.port])


def start_worker(url: str, prefix: str, processes: int, threads: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ, TASKFIRE_REDIS_URL=url, TASKFIRE_PREFIX=prefix, TASKFIRE_LOG_LEVEL="WARNING")
    return subprocess.Popen([sys.executable, "-m", "taskfire", "worker", "benchmarks.jobs", "--queues",
                             ",".join(QUEUES), "--processes", str(processes), "--threads", str(threads)],
                            cwd=ROOT, env=env, start_new_session=True)


def run_load(url: str, prefix: str, n: int, processes: int, threads: int) -> list[str]:
    """Enqueues the mixed load, runs it to the end; the jobs' ids."""
    tf = Taskfire(url, prefix=prefix)
    ids: list[str] = []
    for q, share in QUEUES.items():
        fn = jobs.noop.options(queue=q)
        count = int(n * share)
        singles = count // 5
        ids += [fn.enqueue() for _ in range(singles)]
        for start in range(0, count - singles, 1000):
            ids += fn.enqueue_many([() for _ in range(min(1000, count - singles - start))])
    done_keys = [s.keys.stat("Succeeded") for s in tf.storage.shards]
    worker = start_worker(url, prefix, processes, threads)
    try:
        # every 50 ms, one GET per shard: the harness's own load stays out of the figures
        deadline = time.monotonic() + 900
        while sum(int(tf.storage.redis.get(k) or 0) for k in done_keys) < len(ids):
            if time.monotonic() > deadline:
                raise SystemExit("benchmark timed out")
            time.sleep(0.05)
    finally:
        stop(worker)
        tf.close()
    return ids


def pickup_latency(url: str, prefix: str, samples: int) -> tuple[float, float]:
    """Idle pickup latency (ms, p50 and p99): enqueue to the job's start, the worker idle."""
    tf = Taskfire(url, prefix=prefix)
    r = tf.storage.redis
    key = prefix + "bench:latency"
    worker = subprocess.Popen([sys.executable, "-m", "taskfire", "worker", "benchmarks.jobs", "--threads", "4"],
                              cwd=ROOT, env=dict(os.environ, TASKFIRE_REDIS_URL=url, TASKFIRE_PREFIX=prefix,
                                                 TASKFIRE_LOG_LEVEL="WARNING"), start_new_session=True)
    try:
        tf.enqueue(jobs.stamp, time.time())
        wait_until(lambda: r.llen(key) == 1, 60)
        r.delete(key)
        for i in range(samples):
            time.sleep(0.02)  # the worker goes idle again
            tf.enqueue(jobs.stamp, time.time())
            wait_until(lambda i=i: r.llen(key) == i + 1, 10)
        values = sorted(float(v) * 1000 for v in r.lrange(key, 0, -1))
        return statistics.median(values), values[int(len(values) * 0.99) - 1]
    finally:
        stop(worker)
        tf.close()


def placement_policies(n: int, shards: int = 3) -> dict[str, list[int]]:
    """Jobs per shard for this load's calls (a fifth of each queue one call at a time, the
    rest in calls of 1,000) under each policy an untied job could be placed by: the
    figures the choice was made from (no Redis needed: placement is the client's)."""
    import random
    import zlib

    calls: list[tuple[str, int]] = []
    for q, share in QUEUES.items():
        count = int(n * share)
        singles = count // 5
        calls += [(q, 1)] * singles
        calls += [(q, min(1000, count - singles - s)) for s in range(0, count - singles, 1000)]
    random.Random(19).shuffle(calls)
    policies: dict[str, list[int]] = {}
    by_queue = [0] * shards
    for q, size in calls:
        by_queue[zlib.crc32(q.encode()) % shards] += size
    policies["hash of the queue name"] = by_queue
    per_call = [0] * shards
    for k, (_, size) in enumerate(calls):
        per_call[k % shards] += size
    policies["round-robin per call"] = per_call
    by_id = [0] * shards
    rng = random.Random(7)
    for _, size in calls:
        for _ in range(size):
            by_id[rng.getrandbits(48) % shards] += 1
    policies["hash of the job id"] = by_id
    fewest = [0] * shards
    for _, size in calls:
        for _ in range(size):
            fewest[fewest.index(min(fewest))] += 1
    policies["fewest placed so far (taskfire's)"] = fewest
    return policies


def chart(path: Path, capacity: dict[int, float]) -> bool:
    try:
        import matplotlib  # a benchmark's tool, not taskfire's dependency (pip install matplotlib)
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    xs = list(capacity)
    ax.bar([str(x) for x in xs], [capacity[x] for x in xs], color=["#888", "#3572b0", "#9cc3e6"])
    for i, x in enumerate(xs):
        ax.text(i, capacity[x], f"{capacity[x]:,.0f}", ha="center", va="bottom")
    ax.set_xlabel("Redis Cluster primaries (1 = a single Redis; 6 projected)")
    ax.set_ylabel("jobs/s (projected from Redis CPU per job)")
    ax.set_title("taskfire capacity by primaries")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return True


def main(args: argparse.Namespace) -> None:
    home = Path(tempfile.mkdtemp(prefix="taskfire-cluster-scaling-"))
    binary = server_binary(args.server)
    nodes = make_cluster(home, binary)
    single = Node(home, cluster=False, binary=binary)
    lone = one_node_cluster(home, binary)
    info: Any = single.client.info("server")
    version = str(info.get("valkey_version") or info.get("redis_version", "?"))  # Valkey says 7.2.4 in the latter
    url = "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in nodes)
    spent = [0.0] * len(nodes)
    scripts = [0.0] * len(nodes)
    held = {n.port: 0 for n in nodes}
    base = {"single": [0.0, 0.0, 0.0], "lone": [0.0, 0.0, 0.0]}  # CPU s, script s, jobs
    ratios: list[float] = []  # per round: cluster µs/job over one Redis's

    def on_cluster(rnd: int) -> float:
        prefix = f"{{scale{rnd}}}:"
        tf = Taskfire(url, prefix=prefix)
        owner = {sh.index: next(n for n in nodes if n.port == tf.storage.redis.get_node_from_key(  # type: ignore[attr-defined]
            sh.keys.queues).port) for sh in tf.storage.shards}
        tf.close()
        before = [(n.cpu(), n.script_seconds()) for n in nodes]
        ids = run_load(url, prefix, args.jobs, args.processes, args.threads)
        for k, (n, b) in enumerate(zip(nodes, before, strict=True)):
            spent[k] += n.cpu() - b[0]
            scripts[k] += n.script_seconds() - b[1]
        for i in ids:
            held[owner[index_of(i, len(owner))].port] += 1
        return sum(n.cpu() - b[0] for n, b in zip(nodes, before, strict=True)) * 1e6 / len(ids)

    def on_one(name: str, node: Node, node_url: str, prefix: str) -> float:
        before = node.cpu(), node.script_seconds()
        ids = run_load(node_url, prefix, args.jobs, args.processes, args.threads)
        cpu = node.cpu() - before[0]
        base[name][0] += cpu
        base[name][1] += node.script_seconds() - before[1]
        base[name][2] += len(ids)
        return cpu * 1e6 / len(ids)

    try:
        for rnd in range(args.rounds):  # the order turns each round: no load always runs first
            runs = [lambda: on_cluster(rnd),
                    lambda: on_one("single", single, f"redis://127.0.0.1:{single.port}/0", f"scale{rnd}:"),
                    lambda: on_one("lone", lone, f"redis+cluster://127.0.0.1:{lone.port}", f"{{scale{rnd}}}:")]
            got = {}
            for k in range(3):
                got[(rnd + k) % 3] = runs[(rnd + k) % 3]()
            ratios.append(got[0] / got[1])
        control = cluster_mode_cost(single, lone)
        cluster_latency = pickup_latency(url, "{lat}:", args.samples)
        single_latency = pickup_latency(f"redis://127.0.0.1:{single.port}/0", "lat:", args.samples)
    finally:
        for n in [*nodes, single, lone]:
            n.stop()
        shutil.rmtree(home, ignore_errors=True)
    single_cpu, single_scripts, single_jobs = base["single"]
    lone_cpu, lone_scripts, lone_jobs = base["lone"]
    single_us, single_script_us = single_cpu * 1e6 / single_jobs, single_scripts * 1e6 / single_jobs
    lone_us, lone_script_us = lone_cpu * 1e6 / lone_jobs, lone_scripts * 1e6 / lone_jobs

    mean = sum(spent) / len(spent)
    per_job = [s * 1e6 / max(1, held[n.port]) for s, n in zip(spent, nodes, strict=True)]
    capacity = {1: 1e6 / single_us, 3: sum(1e6 / us for us in per_job)}  # 1: a plain Redis
    capacity[6] = capacity[3] * 2
    lines = [f"taskfire on a 3-primary {Path(binary).name} {version} Cluster vs one server ({os.cpu_count()} CPUs, "
             f"loopback), {args.jobs:,} "
             f"no-op jobs a round, {args.rounds} rounds, over {len(QUEUES)} queues (`hot` half of them), a fifth enqueued one call each; "
             f"worker --processes {args.processes} --threads {args.threads}.", "",
             "| primary | jobs it held | Redis CPU s | vs the mean | Redis CPU µs/job | in scripts µs/job |",
             "|---|---:|---:|---:|---:|---:|"]
    for n, s, us, sc in zip(nodes, spent, per_job, scripts, strict=True):
        lines.append(f"| 127.0.0.1:{n.port} | {held[n.port]:,} | {s:.2f} | {(s - mean) / mean:+.0%} | {us:.1f} "
                     f"| {sc * 1e6 / max(1, held[n.port]):.1f} |")
    lines += [f"| one Redis (not a cluster) | {single_jobs:,.0f} | {single_cpu:.2f} | | "
              f"{single_us:.1f} | {single_script_us:.1f} |",
              f"| one primary in cluster mode (one shard) | {lone_jobs:,.0f} | {lone_cpu:.2f} "
              f"| | {lone_us:.1f} | {lone_script_us:.1f} |", "",
              "| primaries | projected jobs/s (Σ 1e6 / µs per job) |", "|---:|---:|"]
    lines += [f"| {p}{' (projected)' if p == 6 else ''} | {c:,.0f} |" for p, c in capacity.items()]
    primary_us = sum(spent) * 1e6 / max(1, sum(held.values()))
    lines += ["", "| Redis CPU per job, a primary (mean) over | ratio |", "|---|---:|",
              f"| one Redis, not in cluster mode | {primary_us / single_us:.2f} |",
              f"| one node in cluster mode, one shard (what sharding adds) | {primary_us / lone_us:.2f} |",
              f"| control, no taskfire: redis-benchmark {CONTROL_COMMANDS} over a million keys, cluster-mode node "
              f"over the plain one ({control[1]:.2f} / {control[0]:.2f} µs per command) | {control[1] / control[0]:.2f} |"]
    lines += ["", f"Idle pickup latency p50 / p99: cluster {cluster_latency[0]:.2f} / {cluster_latency[1]:.2f} ms "
                  f"(a blocked thread per shard), one Redis {single_latency[0]:.2f} / {single_latency[1]:.2f} ms."]
    lines += ["", "Untied jobs' placement, this load's calls under each policy (jobs per shard; the largest "
                  "shard's excess over an even third):", "", "| policy | shard 0 | shard 1 | shard 2 | largest vs even |",
              "|---|---:|---:|---:|---:|"]
    for name, counts in placement_policies(args.jobs).items():
        even = sum(counts) / len(counts)
        lines.append(f"| {name} | {' | '.join(f'{c:,}' for c in counts)} | {(max(counts) - even) / even:+.1%} |")
    lines.append("")
    lines.append(f"Rounds: {args.rounds} (figures above are totals over them); cluster Redis CPU per job over one "
                 f"Redis's, round by round: {', '.join(f'{r:.2f}' for r in ratios)}.")
    spread = max(abs(s - mean) / mean for s in spent)
    lines.append(f"Largest deviation from the mean primary CPU: {spread:.0%} (the bound is ±25%).")
    if args.chart and chart(Path(args.chart), capacity):
        lines.append(f"Chart: {args.chart}")
    print("\n".join(lines))
