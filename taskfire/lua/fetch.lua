-- fetch.lua: takes up to N jobs for a worker, in strict queue order, and moves each to
-- Processing with a lease in the same step, so a job is never out of Redis's sight.
-- Before fetching it does the cluster's timekeeping, safe for any number of workers at
-- once: it enqueues due scheduled jobs and requeues jobs whose lease lapsed (their
-- worker died or lost Redis), a bounded batch of each per call.
--
-- ARGV  1 prefix, 2 worker id, 3 max jobs, 4 lease in ms, 5 recoveries allowed before a
--       job whose worker keeps dying is failed, 6.. queue names in priority order
-- Keys  schedule, processing, queue:<q>(:wake), queues, job:<id>, job:<id>:history,
--       state:failed, stats:failed
-- Returns {now, next wake-up (earliest due time or lease deadline, -1 if none), n,
--          then per job: id, lease token, fn, args, queue, opts, retries, created}

local BATCH = 100         -- promotions and recoveries per call
local MAX_SKIPPED = 1000  -- stale queue entries skipped per call

local now = now_ms()
local worker = ARGV[2]
local max = tonumber(ARGV[3])
local lease = tonumber(ARGV[4])
local recoveries_allowed = tonumber(ARGV[5])

for _, id in ipairs(redis.call('ZRANGEBYSCORE', K.schedule, '-inf', now, 'LIMIT', 0, BATCH)) do
  local state, queue = unpack(redis.call('HMGET', K.job(id), 'state', 'queue'))
  if state == 'Scheduled' then
    transition(id, state, 'Enqueued', now,
      { { 'Enqueued', entry(now, 'Enqueued', 'Scheduled time reached', { queue = queue }) } },
      { queue = queue })
  else
    redis.call('ZREM', K.schedule, id)
  end
end

for _, id in ipairs(redis.call('ZRANGEBYSCORE', K.processing, '-inf', now, 'LIMIT', 0, BATCH)) do
  local jk = K.job(id)
  local state, queue, owner = unpack(redis.call('HMGET', jk, 'state', 'queue', 'lease'))
  if state == 'Processing' then
    local n = redis.call('HINCRBY', jk, 'recoveries', 1)
    if n > recoveries_allowed then
      local data = { exception_type = 'taskfire.WorkerLost', worker = owner, recoveries = n,
        exception_message = 'its worker stopped renewing the lease ' .. n .. ' times (killed or cut off from Redis)' }
      transition(id, state, 'Failed', now,
        { { 'Failed', entry(now, 'Failed', 'Abandoned: its worker was lost ' .. n .. ' times', data) } }, {})
    else
      local data = { queue = queue, worker = owner, recoveries = n }
      transition(id, state, 'Enqueued', now,
        { { 'Enqueued', entry(now, 'Enqueued', 'Requeued: its worker stopped renewing the lease', data) } },
        { queue = queue, front = true })
    end
  else
    redis.call('ZREM', K.processing, id)
  end
end

local out = {}
local taken, skipped = 0, 0
for qi = 6, #ARGV do
  local q = ARGV[qi]
  local qk = K.queue(q)
  while taken < max and skipped < MAX_SKIPPED do
    local id = redis.call('RPOP', qk)
    if not id then break end
    local jk = K.job(id)
    local state, queue = unpack(redis.call('HMGET', jk, 'state', 'queue'))
    if state == 'Enqueued' and queue == q then
      local token = worker .. ':' .. redis.call('HINCRBY', jk, 'fetches', 1)
      transition(id, state, 'Processing', now,
        { { 'Processing', entry(now, 'Processing', nil, { worker = worker }) } },
        { token = token, lease = lease })
      local fn, args, opts, retries, created = unpack(redis.call('HMGET', jk, 'fn', 'args', 'opts', 'retries', 'created'))
      table.insert(out, id)
      table.insert(out, token)
      table.insert(out, fn)
      table.insert(out, args)
      table.insert(out, q)
      table.insert(out, opts or '')
      table.insert(out, retries or '0')
      table.insert(out, created)
      taken = taken + 1
    else
      skipped = skipped + 1  -- deleted, requeued elsewhere, expired: its id was left behind
    end
  end
  if taken >= max then
    -- This worker is full but the queue is not empty: pass the wake-up on.
    if redis.call('LLEN', qk) > 0 then wake(q) end
    break
  end
end

local next_wake = -1
local head = redis.call('ZRANGE', K.schedule, 0, 0, 'WITHSCORES')
if head[2] then next_wake = tonumber(head[2]) end
head = redis.call('ZRANGE', K.processing, 0, 0, 'WITHSCORES')
if head[2] and (next_wake == -1 or tonumber(head[2]) < next_wake) then next_wake = tonumber(head[2]) end

local reply = { now, next_wake, taken }
for i = 1, #out do reply[3 + i] = out[i] end
return reply
