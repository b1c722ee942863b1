"""The job body alone, for `benchmarks.compare`'s net Redis CPU per job: what every
library's jobs send Redis themselves, with no library around it.

    python -m benchmarks.body REDIS_URL COUNT [--threads T] [--sleep-ms S]

Sends COUNT unpipelined INCRs of `bench:body` through one redis-py client (a connection
per thread from its pool, as the jobs' bodies share their library's client), from T
threads, each INCR followed by a sleep of S ms when S > 0 (the 1 ms jobs). The harness
starts two of these processes at once, as the libraries run two worker processes, and
takes Redis's CPU time over them: that is the part of a library's Redis CPU per job which
is its body's, not the library's.
"""

from __future__ import annotations

import argparse
import threading
import time

import redis

KEY = "bench:body"


def send(client: redis.Redis, count: int, sleep_s: float) -> None:
    incr = client.incr
    for _ in range(count):
        incr(KEY)
        if sleep_s:
            time.sleep(sleep_s)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("url")
    p.add_argument("count", type=int)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--sleep-ms", type=float, default=0.0)
    args = p.parse_args()
    client = redis.Redis.from_url(args.url)
    shares = [args.count // args.threads + (i < args.count % args.threads) for i in range(args.threads)]
    threads = [threading.Thread(target=send, args=(client, n, args.sleep_ms / 1000)) for n in shares if n]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    client.close()


if __name__ == "__main__":
    main()
