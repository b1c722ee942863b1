-- finish.lua: a worker process's step between jobs, in one call: stores the outcomes of
-- the jobs its threads ran (apply_change, each) and takes their next jobs (fetch_jobs).
-- ARGV  1 prefix, 2 number of changes n, then n changes (apply_change's arguments, one
--       after the other), then fetch_jobs's arguments.
-- Keys: those of transition.lua and fetch.lua.
-- Returns {code, previous state of each change, then the fetch reply}.

local now = now_ms()
local reply = {}
local a = 3
for _ = 1, tonumber(ARGV[2]) do
  local code, old, after = apply_change(a, now)
  reply[#reply + 1] = code
  reply[#reply + 1] = old
  a = after
end
for _, v in ipairs(fetch_jobs(a, now)) do reply[#reply + 1] = v end
return reply
