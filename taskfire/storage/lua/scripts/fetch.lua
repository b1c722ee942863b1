-- fetch.lua: takes up to N jobs for a worker, in strict queue order, and moves each to
-- Processing with a lease in the same step, so a job is never out of Redis's sight. It
-- first does the cluster's timekeeping (due scheduled jobs, lapsed leases). Arguments:
-- see fetch_jobs in lib/fetch.lua, from ARGV[2].
-- Keys  schedule, processing, queue:<q>(:wake), queues, job:<id>, job:<id>:history,
--       state:failed, stats:failed
-- Returns {now, next wake-up (earliest due time or lease deadline, -1 if none), n,
--          then per job: id, lease token, fn, args, queue, opts, retries, created}

return fetch_jobs(2, now_ms())
