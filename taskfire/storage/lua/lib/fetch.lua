-- fetch.lua: a worker takes jobs, moving each to Processing under a lease in the same
-- step, so a job is never out of Redis's sight; every fetch first does a bounded share of
-- the cluster's timekeeping (due scheduled jobs, lapsed leases).

local TIMEKEEPING_BATCH = '100'  -- promotions and recoveries per call (as an argument)
local MAX_SKIPPED = 1000       -- stale queue entries skipped per call

-- The cluster's timekeeping, safe for any number of workers at once: enqueues due
-- scheduled jobs and requeues jobs whose lease lapsed (their worker died or lost Redis),
-- a bounded batch of each per call.
local function timekeeping(now, recoveries_allowed)
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', K.schedule, '-inf', fmt(now), 'LIMIT', '0', TIMEKEEPING_BATCH)) do
    local state, queue = unpack(redis.call('HMGET', K.job(id), 'state', 'queue'))
    if state == 'Scheduled' then
      transition(id, state, 'Enqueued', now,
        { 'Enqueued', entry(now, 'Enqueued', 'Scheduled time reached', { queue = queue }) },
        { queue = queue })
    else
      redis.call('ZREM', K.schedule, id)
    end
  end
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', K.processing, '-inf', fmt(now), 'LIMIT', '0', TIMEKEEPING_BATCH)) do
    local jk = K.job(id)
    local state, queue, owner = unpack(redis.call('HMGET', jk, 'state', 'queue', 'lease'))
    if state == 'Processing' then
      local n = redis.call('HINCRBY', jk, 'recoveries', 1)
      if n > recoveries_allowed then
        local data = { exception_type = 'taskfire.WorkerLost', worker = owner, recoveries = n,
          exception_message = 'its worker stopped renewing the lease ' .. n .. ' times (killed or cut off from Redis)' }
        transition(id, state, 'Failed', now,
          { 'Failed', entry(now, 'Failed', 'Abandoned: its worker was lost ' .. n .. ' times', data) },
          { fields = { 'error_type', 'taskfire.WorkerLost' } })
      else
        local data = { queue = queue, worker = owner, recoveries = n }
        transition(id, state, 'Enqueued', now,
          { 'Enqueued', entry(now, 'Enqueued', 'Requeued: its worker stopped renewing the lease', data) },
          { queue = queue, front = true })
      end
    else
      redis.call('ZREM', K.processing, id)
    end
  end
end

-- A job whose record cannot be read (a field that is not what taskfire wrote) fails,
-- with a reason naming the field, rather than break every other job's fetch or vanish
-- from its queue half-way; an operator can mend the record and requeue it.
local function fail_unreadable(id, why, now)
  local jk = K.job(id)
  local state = redis.call('HGET', jk, 'state')
  local reason = 'Unreadable record: ' .. why
  local data = { exception_type = 'taskfire.CorruptRecord', exception_message = why }
  local ok = pcall(transition, id, state, 'Failed', now, { 'Failed', entry(now, 'Failed', reason, data) },
    { fields = { 'error_type', 'taskfire.CorruptRecord' } })
  if not ok then  -- a record past transition() (its history cannot be implied): the least that shows it
    local h = redis.call('HGET', jk, 'h')
    redis.call('HSET', jk, 'state', 'Failed', 'error_type', 'taskfire.CorruptRecord',
      'h', '1' .. (h and string.sub(h, 2) or legacy_letters(jk)))
    redis.call('ZADD', K.state('Failed'), now, id)
    redis.call('RPUSH', K.history(id), entry(now, 'Failed', reason, data))
  end
end

-- Why an id popped from queue q does not stand for a job waiting there: nil if it does,
-- 'stale' if it was left behind by a job that moved on since (counted among the queue's
-- stale ids by apply_change, which the queue's length leaves out), or what is corrupt.
local function not_waiting(q, state, queue)
  if state == 'Enqueued' and queue == q then return nil end
  if state and not STATE_INDEX[state] and redis.call('HEXISTS', K.custom_states, state) == 0 then
    return "field 'state' holds no state"
  end
  if state == 'Enqueued' and (not queue or redis.call('SISMEMBER', K.queues, queue) == 0) then
    return "field 'queue' holds no queue"
  end
  redis.call('HINCRBY', K.queue_stats, q .. ':stale', -1)
  return 'stale'
end

-- Moves a job popped from queue q to Processing under a lease and appends its values to
-- `reply`. Returns 'taken', or 'stale' when it is not to run now (see not_waiting; a job
-- that must wait under its limit or rate; a record that cannot be read, failed).
local function take_popped(id, q, worker, lease, now, reply)
  local jk = K.job(id)
  local state, queue, fn, args, opts, retries, created, fetches, h = unpack(redis.call('HMGET', jk,
    'state', 'queue', 'fn', 'args', 'opts', 'retries', 'created', 'fetches', 'h'))
  local why = not_waiting(q, state, queue)
  if why then
    if why ~= 'stale' then fail_unreadable(id, why, now) end
    return 'stale'
  end
  local nan = (retries and not tonumber(retries) and 'retries') or (created and not tonumber(created) and 'created')
  if nan then
    fail_unreadable(id, "field '" .. nan .. "' holds no number", now)
    return 'stale'
  end
  if may_carry(h, 'l') then
    local f = {}
    f.limit, f.rate, f.limit_max, f.limit_since, f.limit_timeout, f.rate_max, f.rate_period = unpack(redis.call(
      'HMGET', jk, 'limit', 'rate', 'limit_max', 'limit_since', 'limit_timeout', 'rate_max', 'rate_period'))
    if (f.limit or f.rate) and not admit(id, f, now, lease) then return 'stale' end
  end
  fetches = fmt((tonumber(fetches) or 0) + 1)
  local token = worker .. ':' .. fetches
  if string.sub(h or '', 1, 1) == '0' then
    start_run(id, jk, now, token, now + lease, fetches)  -- the step most jobs take (states.lua)
  else
    transition(id, state, 'Processing', now, false,
      { token = token, lease = lease, fetches = fetches, worker = worker, h = h })
  end
  local n = #reply
  reply[n + 1], reply[n + 2], reply[n + 3], reply[n + 4] = id, token, fn or '', args or ''
  reply[n + 5], reply[n + 6], reply[n + 7], reply[n + 8] = q, opts or '', retries or '0', created or '0'
  return 'taken'
end

-- Takes the next job of queue q for a worker, moving it to Processing under a lease,
-- and appends its values to `reply`. Returns 'empty', 'stale' (nothing to run: see
-- take_popped), or 'taken'. Once an id is popped, no error may end the call before the
-- job is somewhere: one that taking it raises fails the job, with the error as its reason.
local function take(q, worker, lease, now, reply)
  write_pushes()
  local id = redis.call('RPOP', K.queue(q))
  if not id then return 'empty' end
  local ok, got = pcall(take_popped, id, q, worker, lease, now, reply)
  if ok then return got end
  -- (and if even that fails, its key holds no job record at all: the id is dropped)
  pcall(fail_unreadable, id, 'taking it failed: ' .. tostring(type(got) == 'table' and got.err or got), now)
  return 'stale'
end

-- The queues a worker asked for, less the paused ones: names in priority order, and
-- their weights if it asked as "name:weight".
local function fetchable(a)
  local paused = {}
  if redis.call('EXISTS', K.paused) == 1 then
    for _, q in ipairs(redis.call('SMEMBERS', K.paused)) do paused[q] = true end
  end
  local names, weights = {}, {}
  for i = a, #ARGV do
    local name, weight = string.match(ARGV[i], '^([^:]+):(%d+)$')
    name = name or ARGV[i]
    if not paused[name] then
      table.insert(names, name)
      weights[#names] = tonumber(weight)
    end
  end
  return names, weights
end

-- Takes up to `max` jobs, moving each to Processing under a lease: in strict queue
-- order, or, when the queues carry weights, from the non-empty ones in proportion to
-- their weights (a pseudo-random draw seeded by the caller). Paused queues are skipped.
-- Reads from ARGV[a] on: worker id, max jobs, lease in ms, recoveries allowed, pass-wake
-- ("1": when this worker is full and a queue still has jobs, leave a token for the next
-- idle worker), a random seed (1 to 2^31-2), then the queues ("name" or "name:weight")
-- in priority order to the end of ARGV.
-- Returns {now, next wake-up (-1 if none; computed only when nothing was taken), n,
--          then per job: id, lease token, fn, args, queue, opts, retries, created}
local function fetch_jobs(a, now)
  local worker, max, lease = ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  timekeeping(now, tonumber(ARGV[a + 3]))
  local names, weights = fetchable(a + 6)
  local reply = { now, -1, 0 }
  local taken, skipped = 0, 0
  local function took(got, q)
    if got == 'stale' then skipped = skipped + 1 return end
    taken = taken + 1
    tally('taken', q)
  end
  if weights[1] then
    local seed = tonumber(ARGV[a + 5])
    local open = {}  -- candidate indexes, dropped as their queues run dry
    for i = 1, #names do open[i] = i end
    while taken < max and skipped < MAX_SKIPPED and #open > 0 do
      local total = 0
      for _, i in ipairs(open) do total = total + weights[i] end
      seed = (seed * 16807) % 2147483647  -- Park-Miller
      local r = seed / 2147483647 * total
      local pick = #open
      for k, i in ipairs(open) do
        r = r - weights[i]
        if r < 0 then pick = k break end
      end
      local q = names[open[pick]]
      local got = take(q, worker, lease, now, reply)
      if got == 'empty' then table.remove(open, pick) else took(got, q) end
    end
    if taken >= max and ARGV[a + 4] == '1' then
      for _, i in ipairs(open) do
        if redis.call('LLEN', K.queue(names[i])) > 0 then wake(names[i]) break end
      end
    end
  else
    for _, q in ipairs(names) do
      while taken < max and skipped < MAX_SKIPPED do
        local got = take(q, worker, lease, now, reply)
        if got == 'empty' then break end
        took(got, q)
      end
      if taken >= max then
        if ARGV[a + 4] == '1' and redis.call('LLEN', K.queue(q)) > 0 then wake(q) end
        break
      end
    end
  end
  reply[3] = taken
  if taken == 0 then
    local heads = { redis.call('ZRANGE', K.schedule, 0, 0, 'WITHSCORES'),
                    redis.call('ZRANGE', K.processing, 0, 0, 'WITHSCORES') }
    for _, head in ipairs(heads) do
      if head[2] and (reply[2] == -1 or tonumber(head[2]) < reply[2]) then reply[2] = tonumber(head[2]) end
    end
  end
  return reply
end
