-- finish.lua: a worker's step between two jobs, in one call: stores the outcome of the
-- job it ran (apply_change, from ARGV[2]) and takes its next job (fetch_jobs, with the
-- arguments that follow). Keys: those of transition.lua and fetch.lua.
-- Returns {code, previous state, then the fetch reply}.

local now = now_ms()
local code, old, after = apply_change(2, now)
local reply = fetch_jobs(after, now)
table.insert(reply, 1, old)
table.insert(reply, 1, code)
return reply
