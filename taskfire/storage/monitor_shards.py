"""The read model of a sharded store: each shard's Monitor asked in turn, counts summed
and pages merged, so the client's list verbs and the dashboard show one system.

What is global lives in the home shard (servers, recurring jobs, job metrics, index
builds) and is read there. A page of a state's jobs takes `offset + limit` ids from each
shard and merges them in the state's order (by score; lists, which hold no score, by the
time in the ids), so a deep page costs more than on one shard, but stays bounded. Counts
are read shard after shard, not at one instant: under load they add up to a total no
single moment had, as counts read in two round trips already could.
"""

from __future__ import annotations

import heapq
from typing import Any, Sequence

from .monitor import Monitor, QueueFacts

_SCORED = {"schedule": False, "processing": False, "zset": True, "failed": True}  # kind -> newest first


def _page(rows: list[tuple[Any, str]], offset: int, limit: int) -> list[str]:
    return [i for _, i in rows[offset:offset + limit]]


class ShardedMonitor(Monitor):
    """Monitor's verbs over every shard (see the module's docstring). Those it does not
    override are the home shard's: a job's or batch's own reads route by id
    (Monitor.keys_of), and the global ones (servers, job metrics, index builds) live there."""

    def __init__(self, monitors: Sequence[Monitor]) -> None:
        self.monitors = list(monitors)
        self.home = self.monitors[0]
        super().__init__(self.home.redis, self.home.keys, self.home.keys_of)

    # -- jobs by state -------------------------------------------------------------

    def index_kind(self, state: str) -> str | None:
        for m in self.monitors:
            kind = m.index_kind(state)
            if kind is not None:
                return kind
        return None

    def job_ids_in_state(self, state: str, offset: int, limit: int, queue: str | None = None) -> list[str]:
        kind = self.index_kind(state)
        if kind is None:
            return []
        if kind == "queue":  # next to run first: each shard's, oldest first by the time in the ids
            merged = heapq.merge(*(m.job_ids_in_state(state, 0, offset + limit, queue) for m in self.monitors),
                                 key=lambda i: i[:12])
            return list(merged)[offset:offset + limit]
        if kind in _SCORED:
            key_of = {"schedule": lambda m: m.keys.schedule, "processing": lambda m: m.keys.processing}.get(
                kind, lambda m: m.keys.state(state))
            newest_first = _SCORED[kind]
            rows = []
            for m in self.monitors:
                read = m.redis.zrevrange if newest_first else m.redis.zrange
                found: list[tuple[bytes, float]] = read(key_of(m), 0, offset + limit - 1,  # type: ignore[assignment]
                                                        withscores=True)
                rows += [(score, i.decode()) for i, score in found]
            rows.sort(reverse=newest_first)
            return _page(rows, offset, limit)
        # lists (final and custom final states), newest first: by the time in the ids
        merged = heapq.merge(*(m.job_ids_in_state(state, 0, offset + limit) for m in self.monitors),
                             key=lambda i: i[:12], reverse=True)
        return list(merged)[offset:offset + limit]

    def custom_states(self) -> dict[str, str]:
        found: dict[str, str] = {}
        for m in self.monitors:
            found.update(m.custom_states())
        return dict(sorted(found.items()))

    def failed_ids(self, offset: int, limit: int, *, function: str | None = None,
                   exception: str | None = None) -> list[tuple[str, int]]:
        rows = [(at, i) for m in self.monitors
                for i, at in m.failed_ids(0, offset + limit, function=function, exception=exception)]
        rows.sort(reverse=True)
        return [(i, at) for at, i in rows[offset:offset + limit]]

    def retry_ids(self, offset: int, limit: int) -> list[tuple[str, int]]:
        rows = sorted((due, i) for m in self.monitors for i, due in m.retry_ids(0, offset + limit))
        return [(i, due) for due, i in rows[offset:offset + limit]]

    def failure_groups(self) -> tuple[dict[str, int], dict[str, int]]:
        functions: dict[str, int] = {}
        exceptions: dict[str, int] = {}
        for m in self.monitors:
            f, e = m.failure_groups()
            for k, n in f.items():
                functions[k] = functions.get(k, 0) + n
            for k, n in e.items():
                exceptions[k] = exceptions.get(k, 0) + n

        def ranked(h: dict[str, int]) -> dict[str, int]:
            return dict(sorted(h.items(), key=lambda kv: (-kv[1], kv[0])))

        return ranked(functions), ranked(exceptions)

    def running(self, limit: int) -> list[tuple[str, str, str, int | None]]:
        return self.home.running(limit) if len(self.monitors) == 1 else [
            r for m in self.monitors for r in m.running(limit)][:limit]

    # -- counts --------------------------------------------------------------------

    def counts(self) -> dict[str, Any]:
        """Every shard's counts, summed (servers and recurring jobs: the home shard's)."""
        parts = [m.counts() for m in self.monitors]
        out = parts[0]
        queues: dict[str, dict[str, Any]] = {q["name"]: dict(q) for q in out["queues"]}
        for p in parts[1:]:
            for name, n in p["states"].items():
                out["states"][name] = out["states"].get(name, 0) + n
            for name, n in p["kept"].items():
                out["kept"][name] += n
            out["custom_states"] += [c for c in p["custom_states"] if c not in out["custom_states"]]
            for q in p["queues"]:
                mine = queues.setdefault(q["name"], {"name": q["name"], "length": 0, "paused": False})
                mine["length"] += q["length"]
                mine["paused"] = mine["paused"] or q["paused"]
            for name, n in p["totals"].items():
                out["totals"][name] += n
            out["retries"] += p["retries"]
            for series in ("succeeded", "failed"):
                out["hourly"][series] = [a + b for a, b in zip(out["hourly"][series], p["hourly"][series],
                                                               strict=True)]
        out["queues"] = [queues[name] for name in sorted(queues)]
        return out

    # -- queues --------------------------------------------------------------------

    def queue_facts(self) -> list[QueueFacts]:
        facts: dict[str, QueueFacts] = {}
        for m in self.monitors:
            for f in m.queue_facts():
                was = facts.get(f.name)
                if was is None:
                    facts[f.name] = f
                    continue
                oldest = [t for t in (was.oldest_created_ms, f.oldest_created_ms) if t is not None]
                facts[f.name] = QueueFacts(f.name, was.length + f.length, was.paused or f.paused,
                                           min(oldest) if oldest else None, was.jobs_in + f.jobs_in,
                                           was.jobs_out + f.jobs_out)
        return [facts[name] for name in sorted(facts)]

    def queue_names(self) -> list[str]:
        return sorted({q for m in self.monitors for q in m.queue_names()})

    def queue_lengths(self) -> dict[str, int]:
        lengths: dict[str, int] = {}
        for m in self.monitors:
            for q, n in m.queue_lengths().items():
                lengths[q] = lengths.get(q, 0) + n
        return dict(sorted(lengths.items()))

    # -- batches -------------------------------------------------------------------

    def read_batches(self, offset: int, limit: int) -> list[tuple[str, dict[bytes, bytes]]]:
        """Newest first, by the time in the batch ids."""
        merged = heapq.merge(*(m.read_batches(0, offset + limit) for m in self.monitors),
                             key=lambda row: row[0][:12], reverse=True)
        return list(merged)[offset:offset + limit]
