"""How `benchmarks.compare` reports: the figures it measures (Metric), what a run
collected (Results), and the Markdown table and the bar chart made of them."""

from __future__ import annotations

import argparse
import math
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from . import env2
from .peers import PEERS, DriverPeer
from .workers import KILL_GRACE_S

BUSY_THREADS = 16  # workload 9: threads (or coroutines) per worker process


# -- metrics and how they print ------------------------------------------------------

@dataclass(frozen=True)
class Metric:
    key: str
    title: str
    unit: str
    fmt: str
    higher_is_better: bool


METRICS = [
    Metric("enqueue", "1. enqueue, one call per job", "jobs/s", "{:,.0f}", True),
    Metric("bulk", "2. enqueue, bulk API", "jobs/s", "{:,.0f}", True),
    Metric("process", "3. processing, 2 worker processes", "jobs/s", "{:,.0f}", True),
    Metric("latency_p50", "4. idle pickup latency p50", "ms", "{:,.2f}", False),
    Metric("latency_p99", "4. idle pickup latency p99", "ms", "{:,.2f}", False),
    Metric("memory", "5. Redis memory per enqueued job", "bytes", "{:,.0f}", False),
    Metric("late_p50", "6. scheduled-job lateness p50", "ms", "{:,.1f}", False),
    Metric("late_p99", "6. scheduled-job lateness p99", "ms", "{:,.1f}", False),
    Metric("process_1ms", "7. processing 1 ms jobs, 2 worker processes", "jobs/s", "{:,.0f}", True),
    Metric("cost_commands", "8. Redis commands per job (top level)", "cmds", "{:,.1f}", False),
    Metric("cost_script_calls", "8. Redis calls inside scripts per job", "calls", "{:,.1f}", False),
    Metric("cost_cpu_us", "8. Redis CPU per job", "µs", "{:,.1f}", False),
    Metric("cost_round_trips", "8. round trips per job", "trips", "{:,.2f}", False),
    Metric("cost_process_cpu_us", "8. Redis CPU per processed job, gross", "µs", "{:,.1f}", False),
    Metric("cost_process_cpu_net_us", "8. Redis CPU per processed job, net of the job body", "µs", "{:,.1f}", False),
    Metric("busy_process_cpu_us", "9. Redis CPU per processed 1 ms job, 16 threads, gross", "µs", "{:,.1f}", False),
    Metric("busy_process_cpu_net_us", "9. Redis CPU per processed 1 ms job, 16 threads, net of the job body", "µs",
           "{:,.1f}", False),
]
METRIC = {m.key: m for m in METRICS}
#: the finer per-job cost figures, split by phase (only in the second table and the JSON)
COST_DETAIL = [
    ("cost_enqueue_commands", "commands, enqueue (one call per job)", "{:,.1f}"),
    ("cost_process_commands", "commands, processing", "{:,.1f}"),
    ("cost_enqueue_script_calls", "calls inside scripts, enqueue", "{:,.1f}"),
    ("cost_process_script_calls", "calls inside scripts, processing", "{:,.1f}"),
    ("cost_enqueue_cpu_us", "Redis CPU µs, enqueue", "{:,.1f}"),
    ("cost_body_cpu_us", "Redis CPU µs, the job body alone (2 processes, 1 INCR per job)", "{:,.1f}"),
    ("cost_enqueue_round_trips", "round trips, enqueue", "{:,.2f}"),
    ("cost_process_round_trips", "round trips, processing", "{:,.2f}"),
    ("cost_evalsha", "EVALSHA/EVAL/FCALL calls (top level)", "{:,.1f}"),
    ("busy_process_commands", "commands, processing 1 ms jobs, 16 threads (workload 9)", "{:,.1f}"),
    ("busy_process_script_calls", "calls inside scripts, processing 1 ms jobs, 16 threads", "{:,.1f}"),
    ("busy_process_round_trips", "round trips, processing 1 ms jobs, 16 threads", "{:,.2f}"),
    ("busy_body_cpu_us", "Redis CPU µs, the job body alone (2 processes x 16 threads, INCR + 1 ms)", "{:,.1f}"),
]


@dataclass
class Results:
    values: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # lib -> metric -> reps
    notes: dict[str, dict[str, str]] = field(default_factory=dict)          # lib -> metric -> note
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    not_run: dict[str, str] = field(default_factory=dict)                  # lib -> why

    def add(self, lib: str, key: str, value: float) -> None:
        self.values.setdefault(lib, {}).setdefault(key, []).append(value)

    def note(self, lib: str, key: str, text: str) -> None:
        self.notes.setdefault(lib, {})[key] = text


# -- reporting ----------------------------------------------------------------------

def cell(values: list[float] | None, fmt: str, note: str = "") -> str:
    if not values:
        return f"n/a ({note})" if note else "n/a"
    text = fmt.format(statistics.median(values))
    if len(values) > 1:
        text += f" ({fmt.format(min(values))}–{fmt.format(max(values))})"
    return text


def markdown(results: Results, libs: list[str], args: argparse.Namespace, server: str, when: str) -> str:
    present = [m for m in METRICS if any(results.values.get(lib, {}).get(m.key) for lib in libs)
               or any(m.key in results.notes.get(lib, {}) for lib in libs)]
    where = " (through the proxy)" if args.latency_ms else " (loopback)"
    lines = [
        (f"Run: {when}, {server}, --jobs {args.jobs:,}, --reps {args.reps}, "
         f"latency {args.latency_ms:g} ms each way{where}, {os.cpu_count()} CPUs. "
         f"Median of the repetitions (min–max)."),
        "",
        "| workload | unit | " + " | ".join(libs) + " |",
        "|---|---|" + "---:|" * len(libs),
    ]
    for m in present:
        cells = ["not run" if lib in results.not_run else
                 cell(results.values.get(lib, {}).get(m.key), m.fmt, results.notes.get(lib, {}).get(m.key, ""))
                 for lib in libs]
        lines.append(f"| {m.title} | {m.unit} | " + " | ".join(cells) + " |")
    if any(results.values.get(lib, {}).get(key) for lib in libs for key, _, _ in COST_DETAIL):
        lines += ["", "Per-job Redis cost by phase (workloads 8 and 9):", "",
                  "| per job | " + " | ".join(libs) + " |", "|---|" + "---:|" * len(libs)]
        for key, title, fmt in COST_DETAIL:
            if not any(results.values.get(lib, {}).get(key) for lib in libs):
                continue
            lines.append(f"| {title} | " + " | ".join(cell(results.values.get(lib, {}).get(key), fmt)
                                                    for lib in libs) + " |")
    lines += ["", "Notes:"]
    for lib in libs:
        cls = PEERS[lib]
        notes = results.notes.get(lib, {})
        parts = [f"workers: {cls.workers_note}"]
        parts.append(f"bulk: {cls.bulk}" if cls.bulk else "bulk: no bulk API")
        for key in ("enqueue", "process", "process_1ms", "latency", "cost", "cost_1ms_16"):
            k = {"cost": "cost_commands", "latency": "latency_p50", "cost_1ms_16": "busy_process_cpu_us"}.get(key, key)
            if k in notes:
                parts.append(f"{key}: {notes[k]}")
        if cls.no_schedule:
            parts.append(f"scheduled: not run ({cls.no_schedule})")
        if cls.killed_on_stop:
            parts.append(f"stopping: killed {KILL_GRACE_S:.0f} s after SIGTERM, once its jobs are done and measured: "
                         f"{cls.killed_on_stop}")
        lines.append(f"- **{lib}**: " + "; ".join(parts) + ".")
    lines.append("- Memory is measured after workload 1's one-call enqueues (no worker running). "
                 "Cost: commands exclude the harness's own; each job's body is 1 INCR. Net of the job body: "
                 "gross minus the Redis CPU per job of the body alone, measured right after the library's run "
                 "by `benchmarks.body` through the same proxy: as many unpipelined INCRs from 2 processes "
                 f"(in workload 9 from {BUSY_THREADS} threads each, 1 ms sleep after each INCR; 1 thread for a "
                 "library without threads).")
    second = [lib for lib in libs if issubclass(PEERS[lib], DriverPeer) and lib not in results.not_run]
    if second and env2.versions():
        lines.append(f"- Second environment ({env2.VENV.name}, benchmarks/constraints-bench2.txt): "
                     + ", ".join(f"{k} {v}" for k, v in env2.versions().items()) + ".")
    if results.not_run:
        lines += ["", "Not run:"] + [f"- {lib}: {why}" for lib, why in results.not_run.items()]
    if results.failures:
        lines += ["", "Failures:"] + [f"- {f}" for f in results.failures]
    if results.warnings:
        lines += ["", "Warnings:"] + [f"- {w}" for w in results.warnings]
    return "\n".join(lines) + "\n"


def chart(results: Results, libs: list[str], path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    present = [m for m in METRICS if any(results.values.get(lib, {}).get(m.key) for lib in libs)]
    if not present:
        return
    cols = 3
    rows = math.ceil(len(present) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.4 * rows), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, m in zip(axes.flat, present):
        names, medians, low, high, cols_ = [], [], [], [], []
        for i, lib in enumerate(libs):
            vals = results.values.get(lib, {}).get(m.key)
            if not vals:
                continue
            med = statistics.median(vals)
            names.append(lib)
            medians.append(med)
            low.append(med - min(vals))
            high.append(max(vals) - med)
            cols_.append(colors[i % len(colors)])
        bars = ax.bar(names, medians, yerr=[low, high], capsize=3, color=cols_)
        for bar, med in zip(bars, medians):
            ax.annotate(m.fmt.format(med), (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize=7, xytext=(0, 2), textcoords="offset points")
        better = "higher" if m.higher_is_better else "lower"
        ax.set_title(f"{m.title}\n({m.unit}, {better} is better)", fontsize=9)
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
        ax.tick_params(axis="y", labelsize=8)
        ax.margins(y=0.15)
        if min(medians) > 0 and max(medians) / min(medians) > 100:
            ax.set_yscale("log")
            ax.set_title(f"{m.title}\n({m.unit}, log scale, {better} is better)", fontsize=9)
    for ax in list(axes.flat)[len(present):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)
