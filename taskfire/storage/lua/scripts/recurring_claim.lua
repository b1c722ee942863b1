-- recurring_claim.lua: hands due recurring jobs to one scheduler. Each id taken is pushed
-- ahead by the claim time, so the other schedulers skip it while this one computes its
-- next run; if this scheduler dies, the claim lapses and another fires the run late.
-- The run itself happens in recurring_fire.lua, guarded by the job's `next` field.
--
-- ARGV  1 prefix, 2 most ids to take, 3 claim time in ms
-- Keys  recurring, recurring-job:<id>
-- Returns {now, earliest next run left (-1 if none), n,
--          then per id: id, fn, cron, tz, misfire, next}

local now = now_ms()
local reply = { now, -1, 0 }
local ids = redis.call('ZRANGEBYSCORE', K.recurring, '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(ids) do
  local fn, cron, tz, misfire, nxt, enabled = unpack(redis.call('HMGET', K.recurring_job(id),
    'fn', 'cron', 'tz', 'misfire', 'next', 'enabled'))
  if not fn or enabled ~= '1' or not nxt then
    redis.call('ZADD', K.recurring, 'inf', id)  -- removed or disabled under our feet
  elseif not tonumber(nxt) then
    -- A hand-edited or corrupt hash: set aside, visibly, so the others still run.
    redis.call('HSET', K.recurring_job(id), 'enabled', '0',
      'error', 'disabled: its next run ' .. string.format('%q', nxt) .. ' is not a time; add_or_update it again')
    redis.call('ZADD', K.recurring, 'inf', id)
  else
    redis.call('ZADD', K.recurring, now + tonumber(ARGV[3]), id)
    for _, v in ipairs({ id, fn, cron or '', tz or 'UTC', misfire or 'relaxed', nxt }) do
      table.insert(reply, v)
    end
    reply[3] = reply[3] + 1
  end
end
local head = redis.call('ZRANGE', K.recurring, 0, 0, 'WITHSCORES')
if head[2] and head[2] ~= 'inf' then reply[2] = tonumber(head[2]) end
return reply
