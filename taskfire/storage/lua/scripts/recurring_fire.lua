-- recurring_fire.lua: one run of a recurring job, all or nothing: creates its job(s),
-- records the run, and moves the next run on. A run is fired only if the job's `next`
-- field still holds the tick the caller computed from, so a tick never fires twice,
-- however many schedulers raced for it.
--
-- ARGV  1 prefix, 2 recurring id, 3 expected next run ("" for a run by hand, which
--       leaves the schedule and the error alone), 4 new next run (ms, "" for none), 5 the
--       scheduling error to show ("" clears it), 6 reason for the jobs' history, 7 n, then n pairs: job id, tick (ms)
-- Keys  recurring, recurring-job:<id>, job:<id>, job:<id>:history, queue:<q>(:wake), queues
-- Returns the number of jobs created, or -1 if the run was not due any more (fired by
-- another scheduler, rescheduled, disabled or removed).

local id, expected = ARGV[2], ARGV[3]
local rk = K.recurring_job(id)
local fn, args, opts, queue, nxt, enabled, controls = unpack(redis.call('HMGET', rk,
  'fn', 'args', 'opts', 'queue', 'next', 'enabled', 'controls'))
if not fn then return -1 end
if expected ~= '' and (nxt ~= expected or enabled ~= '1') then return -1 end

local now = now_ms()
local n = tonumber(ARGV[7])
for i = 0, n - 1 do
  local job_id, tick = ARGV[8 + i * 2], ARGV[9 + i * 2]
  local fields = { 'fn', fn, 'args', args, 'recurring', id, 'tick', tick }
  if opts and opts ~= '' then table.insert(fields, 'opts'); table.insert(fields, opts) end
  if controls and controls ~= '' then  -- the function's mutex, limits and rate, as fields
    for k, v in pairs(cjson.decode(controls)) do table.insert(fields, k); table.insert(fields, v) end
  end
  create_enqueued(job_id, queue, now, fields, ARGV[6], { queue = queue, recurring = id })
end
if n > 0 then
  redis.call('HSET', rk, 'last_run', fmt(now), 'last_job', ARGV[6 + n * 2])
end
if expected ~= '' then
  if ARGV[5] ~= '' then redis.call('HSET', rk, 'error', ARGV[5]) else redis.call('HDEL', rk, 'error') end
  if ARGV[4] ~= '' then
    redis.call('HSET', rk, 'next', ARGV[4])
    redis.call('ZADD', K.recurring, ARGV[4], id)
  else
    redis.call('HDEL', rk, 'next')
    redis.call('ZADD', K.recurring, 'inf', id)
  end
end
return n
