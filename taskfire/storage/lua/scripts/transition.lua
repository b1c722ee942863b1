-- transition.lua: the one door for a state change asked for from Python (client API,
-- worker shutdown): checks the expected state and the lease, then writes the history,
-- counters, fields and state structures in one step. Arguments: see apply_change in
-- lib/changes.lua, from ARGV[2].
-- Keys  job:<id>, job:<id>:history, queue:<q>(:wake), queues, schedule, processing,
--       state:<name>, stats:<name>
-- Returns {code, previous state}: code 1 applied, 0 no such job, -1 not in an expected
-- state, -2 the caller's lease is gone.

local code, old = apply_change(2, now_ms())
return { code, old }
