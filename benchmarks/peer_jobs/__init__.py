"""Job modules for `python -m benchmarks.compare`: one per library, each importable by
that library's own worker CLI (the harness starts workers with cwd and PYTHONPATH set
to the repository root).

Every job body does the same Redis work: `incr` does one INCR on a counter; `incr_sleep`
does that INCR, then sleeps 1 ms; `stamp(sent)` and `late(due)` RPUSH how late they run
(seconds) onto a list. The Redis URL (with the library's logical db) comes from
BENCH_REDIS_URL, set by the harness.
"""
