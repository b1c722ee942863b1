-- prelude.lua: shared by every taskfire script. storage.py loads the prelude and every
-- script as one Redis Functions library (FUNCTION LOAD, once per server): each script
-- file becomes the body of one function, so the prelude's definitions are made once,
-- not at every call as they would be with EVALSHA. Each function runs its script through
-- run(): begin(), the script, then flush() (what was gathered during the call).
--
-- Conventions
--   KEYS, ARGV  the call's keys and arguments, as a script sees them (begin sets them).
--   ARGV[1]  the key prefix. Every key is spelled by K below, the Lua twin of keys.py.
--            Job keys are discovered at run time (ids popped from queues), so scripts
--            cannot declare them up front; a prefix with a hash tag ("{taskfire}:")
--            keeps every key in one Cluster slot.
--   KEYS[1]  the `queues` set, passed only so a Cluster client routes the call to the
--            slot that holds the prefix.
--   Times    milliseconds since the epoch, from the server clock (TIME), never the
--            caller's.
--
-- Keys
--   job:<id>            hash   fn, args, queue, state, created, [opts, retries, lease,
--                              started, fetches, recoveries, result]
--   job:<id>:history    list   JSON state entries, oldest first. Written at the job's
--                              first change of state: until then the creation entry
--                              is implied by the hash (created, queue, state) and the
--                              due time, which saves a key per waiting job
--   queue:<q>           list   job ids, pushed left, popped right (FIFO)
--   queue:<q>:wake      list   at most one token; idle workers block on it
--   queues              set    every queue name ever used
--   paused-queues       set    queues no worker takes from until resumed
--   queue-stats         hash   <q>:in, <q>:out: jobs that entered and left each queue
--   limit:<name>        zset   jobs holding a concurrency limit or mutex, score = lease
--   limit:<name>:waiters list  jobs waiting for it (Scheduled until it frees or they time out)
--   rate:<name>         zset   recent starts of a rate-limited job, score = start time
--   unique:<key>        string the pending job holding a uniqueness key
--   job:<id>:log        list   log lines the job wrote (bounded)
--   schedule            zset   delayed jobs and retries, score = due time
--   processing          zset   running jobs, score = lease deadline
--   state:<name>        final states: capped list, newest first; other states: zset by time
--   custom-states       hash   name of each custom state ever entered -> 'list' (final) or
--                              'zset': the kind of its index, for lists and counts
--   stats:<name>        counter; stats:<name>:<hour> hourly counter that expires
--   servers / server:<id>  zset by heartbeat / hash of one server's facts
--   recurring           zset   recurring job ids, score = next run (+inf: disabled/never)
--   recurring-job:<id>  hash   fn, args, opts, queue, cron, tz, misfire, enabled, next,
--                              created, [last_run, last_job, error, source]
--   recurring:wake      list   at most one token; idle schedulers block on it
--   job:<id>:continuations    list  ids of jobs Awaiting this job (the job has conts=1)
--   batch:<id>          hash   total, succeeded, failed, deleted, outcome, state,
--                              created, [finished, batch (the enclosing batch)]
--   batch:<id>:jobs     list   its members' ids (jobs, and nested batches' ids)
--   batch:<id>:continuations  list  ids of jobs Awaiting this batch
--   batches             list   batch ids, newest first, capped like final states' indexes

local KEYS, ARGV
local PREFIX  -- ARGV[1]

-- The keys with fixed names, for PREFIX (begin sets them).
local K = {}
local function name_keys()
  K.queues = PREFIX .. 'queues'
  K.schedule = PREFIX .. 'schedule'
  K.processing = PREFIX .. 'processing'
  K.servers = PREFIX .. 'servers'
  K.recurring = PREFIX .. 'recurring'
  K.paused = PREFIX .. 'paused-queues'
  K.queue_stats = PREFIX .. 'queue-stats'
  K.batches = PREFIX .. 'batches'
  K.custom_states = PREFIX .. 'custom-states'
end
function K.recurring_job(id) return PREFIX .. 'recurring-job:' .. id end
function K.batch(id) return PREFIX .. 'batch:' .. id end
function K.limit(name) return PREFIX .. 'limit:' .. name end
function K.waiters(name) return PREFIX .. 'limit:' .. name .. ':waiters' end
function K.rate(name) return PREFIX .. 'rate:' .. name end
function K.unique(key) return PREFIX .. 'unique:' .. key end
function K.log(id) return PREFIX .. 'job:' .. id .. ':log' end
function K.batch_jobs(id) return PREFIX .. 'batch:' .. id .. ':jobs' end
-- The jobs awaiting a parent: a job (kind 'job') or a batch (kind 'batch').
function K.continuations(kind, id) return PREFIX .. kind .. ':' .. id .. ':continuations' end
function K.job(id) return PREFIX .. 'job:' .. id end
function K.history(id) return PREFIX .. 'job:' .. id .. ':history' end
function K.queue(q) return PREFIX .. 'queue:' .. q end
function K.wake(q) return PREFIX .. 'queue:' .. q .. ':wake' end
function K.state(name) return PREFIX .. 'state:' .. string.lower(name) end
function K.stat(name) return PREFIX .. 'stats:' .. string.lower(name) end
function K.server(id) return PREFIX .. 'server:' .. id end

local HOURLY_STATS_TTL = 8 * 24 * 3600
local COUNTED = { Succeeded = true, Failed = true, Deleted = true }
local BUILT_IN = { Succeeded = true, Failed = true, Deleted = true, Awaiting = true }
local UNFINISHED = { Enqueued = true, Scheduled = true, Processing = true, Awaiting = true }
local NO_FIELDS = {}  -- read only

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- A number as a command argument or in text. redis.call itself would format a number
-- as a double ('%.17g', ~2.5k instructions), and so would Lua's concatenation ('%.14g');
-- the integer format costs a quarter of that, and the last one made (mostly the call's
-- `now`) is kept.
local fmt_last, fmt_text = nil, nil
local function fmt(n)
  if n ~= fmt_last then fmt_last, fmt_text = n, string.format('%d', n) end
  return fmt_text
end

-- A state entry written by Python arrives as a JSON object without its time; the time
-- is the server's, so it is spliced in here as the first member.
local function stamp(now, body)
  return '{"at":' .. fmt(now) .. ',' .. string.sub(body, 2)
end

-- An entry built by a script itself (promotion, recovery, fetch).
local function entry(now, state, reason, data, due)
  return stamp(now, cjson.encode({ state = state, reason = reason, data = data, due = due }))
end

-- Leaves at most one token in a queue's wake list, so that a worker blocked on it wakes
-- and fetches. Busy workers never pop tokens, so tokens cannot pile up.
local function wake(q)
  local wk = K.wake(q)
  if redis.call('LLEN', wk) == 0 then redis.call('LPUSH', wk, '1') end
end

-- Counters, final states' indexes and a queue's bookkeeping (its name in `queues`, its
-- counts of jobs in and out, its wake-up token) are written once per call, at its end
-- (flush), however many jobs the call moved: a bulk enqueue registers its queue once,
-- and a worker's call that stores several outcomes increments each counter once. Pushes
-- to a queue list are gathered too, and written as one LPUSH (RPUSH for the front) per
-- queue before the call reads any queue list (write_pushes) and at its end.
--
-- PENDING holds what is gathered, by part: counts, hourly, pushed and taken {key = n};
-- index, back and front {key = {ids}}; cap {index key = length}. A part is made on first
-- use: every table a call makes is work for Lua's garbage collector, which walks the
-- whole library, and most calls need few parts.
local PENDING = nil

local function part(name)
  local t = PENDING[name]
  if t == nil then
    t = {}
    PENDING[name] = t
  end
  return t
end

local function tally(name, key)
  local t = part(name)
  t[key] = (t[key] or 0) + 1
end

local function gather(name, key, value)
  local t = part(name)
  local values = t[key]
  if values == nil then t[key] = { value } else values[#values + 1] = value end
end

-- Writes a gathered part, one command per key, and forgets it. A list keeps its order:
-- LPUSH a b leaves the list LPUSH a, LPUSH b would.
local function write_part(command, name)
  local t = PENDING[name]
  if t == nil then return end
  PENDING[name] = nil
  for key, values in pairs(t) do
    for i = 1, #values, 1000 do redis.call(command, key, unpack(values, i, math.min(i + 999, #values))) end
  end
end

local function push(q, id, front)
  gather(front and 'front' or 'back', K.queue(q), id)
  tally('pushed', q)
end

local function write_pushes()
  write_part('LPUSH', 'back')
  write_part('RPUSH', 'front')
end

local function count(state, now)
  if not COUNTED[state] then return end
  local total = K.stat(state)
  tally('counts', total)
  tally('hourly', total .. ':' .. fmt(math.floor(now / 3600000)))
end

local function add_to_index(index, id, cap)
  gather('index', index, id)
  part('cap')[index] = cap
end

local function flush()
  write_pushes()
  local counts, hourly, index, pushed, taken = PENDING.counts, PENDING.hourly, PENDING.index, PENDING.pushed,
    PENDING.taken
  if counts then
    for key, n in pairs(counts) do redis.call('INCRBY', key, fmt(n)) end
  end
  if hourly then
    for key, n in pairs(hourly) do
      if redis.call('INCRBY', key, fmt(n)) == n then redis.call('EXPIRE', key, HOURLY_STATS_TTL) end
    end
  end
  if index then
    write_part('LPUSH', 'index')
    for key in pairs(index) do redis.call('LTRIM', key, '0', fmt(PENDING.cap[key] - 1)) end
  end
  if pushed then
    for q, n in pairs(pushed) do
      redis.call('SADD', K.queues, q)
      redis.call('HINCRBY', K.queue_stats, q .. ':in', fmt(n))
      wake(q)
    end
  end
  if taken then
    for q, n in pairs(taken) do redis.call('HINCRBY', K.queue_stats, q .. ':out', fmt(n)) end
  end
end

-- Undoes what entering `state` did, except for queue lists: an id left behind in a
-- queue is skipped at fetch because the job's state (or queue) no longer matches.
local function leave_state(id, state)
  if state == 'Enqueued' then return false end
  if state == 'Scheduled' then
    redis.call('ZREM', K.schedule, id)
  elseif state == 'Processing' then
    redis.call('ZREM', K.processing, id)
    redis.call('HDEL', K.job(id), 'lease', 'cancel')
  elseif redis.call('PERSIST', K.job(id)) == 1 then
    -- Only final states carry a TTL. Their index is a capped list that keeps the stale
    -- id (readers skip it); removing it would cost a scan.
    redis.call('PERSIST', K.history(id))
    redis.call('PERSIST', K.log(id))
    return true
  else
    redis.call('ZREM', K.state(state), id)
  end
  return false
end

-- opts: queue, front (bool) for Enqueued; due (ms) for Scheduled; token, lease (ms),
-- fetches for Processing; final (bool), retention (s), cap (index length) for the others;
-- fields: more field/value pairs for the job hash, written with the state
local function enter_state(id, state, now, opts)
  local jk = K.job(id)
  local fields = opts.fields or {}
  if state == 'Enqueued' then
    redis.call('HSET', jk, 'state', state, 'queue', opts.queue, unpack(fields))
    push(opts.queue, id, opts.front)
  elseif state == 'Processing' then
    redis.call('HSET', jk, 'state', state, 'lease', opts.token, 'started', fmt(now),
      'fetches', opts.fetches, unpack(fields))
    redis.call('ZADD', K.processing, fmt(now + opts.lease), id)
  elseif state == 'Scheduled' then
    redis.call('HSET', jk, 'state', state, unpack(fields))
    local head = redis.call('ZRANGE', K.schedule, 0, 0, 'WITHSCORES')
    redis.call('ZADD', K.schedule, opts.due, id)
    -- Idle workers sleep until the earliest due time; an earlier one must wake them.
    if head[2] == nil or opts.due < tonumber(head[2]) then
      wake(redis.call('HGET', jk, 'queue'))
    end
  else
    redis.call('HSET', jk, 'state', state, unpack(fields))
    if not BUILT_IN[state] then
      redis.call('HSETNX', K.custom_states, state, opts.final and 'list' or 'zset')
    end
    if opts.final then
      local ttl = fmt(opts.retention)
      redis.call('EXPIRE', jk, ttl)
      redis.call('EXPIRE', K.history(id), ttl)
      redis.call('EXPIRE', K.log(id), ttl)
      add_to_index(K.state(state), id, opts.cap)
    else
      redis.call('ZADD', K.state(state), now, id)
    end
  end
end

-- Creates a job in the Enqueued state with its first history entry, for jobs a script
-- makes itself (recurring runs). fields: fn, args, [opts] and any extra pairs.
local function create_enqueued(id, queue, now, fields, reason, data)
  redis.call('HSET', K.job(id), 'created', fmt(now), unpack(fields))
  redis.call('RPUSH', K.history(id), entry(now, 'Enqueued', reason, data))
  enter_state(id, 'Enqueued', now, { queue = queue })
end

-- The creation entry a job's history implied until its first change of state, or nil
-- if it was written already. Only a job still in its first state (Enqueued or Scheduled)
-- can lack one.
local function creation_entry(id, old, hk, created, queue)
  if (old ~= 'Enqueued' and old ~= 'Scheduled') or redis.call('EXISTS', hk) == 1 then return nil end
  if not created then
    created, queue = unpack(redis.call('HMGET', K.job(id), 'created', 'queue'))
  end
  local due = nil
  if old == 'Scheduled' then due = tonumber(redis.call('ZSCORE', K.schedule, id)) end
  return entry(tonumber(created), old, nil, { queue = queue }, due)
end

-- What a state means to the jobs and batches that wait on a job: nil while the job may
-- still run, else 'succeeded', 'failed' (retries exhausted: an operator may still
-- requeue it) or 'deleted' (Deleted, or any other final state).
local function outcome(state, final)
  if state == 'Succeeded' then return 'succeeded' end
  if state == 'Failed' then return 'failed' end
  if state == 'Deleted' or final then return 'deleted' end
  return nil
end

-- What a script needs to delete a job on its own (a continuation of a deleted parent);
-- scripts called with these settings (apply_change, continue) set them.
local SETTINGS = { retention = 86400, cap = 10000 }

local follow_up  -- below: a transition may release continuations, which transition
local release_limit  -- below: leaving Processing frees a limit, which wakes a waiter

-- Moves a job to a new state: the history entries (every elected candidate, last one
-- the new state), the counters, and the structures of the old and new state; then, if
-- its outcome changed, its continuations and its batch follow.
-- opts.created/opts.origin (the job's creation time and queue) spare a read when the
-- caller has them.
local function transition(id, old, state, now, entries, opts)
  local hk = K.history(id)
  local values = { creation_entry(id, old, hk, opts.created, opts.origin) }
  local was_final = leave_state(id, old)
  for i = 1, #entries do
    table.insert(values, entries[i][2])
    -- A replaced candidate is history, not an outcome: only a failure (which a retry
    -- replaced) counts, so a run elected from Succeeded to WaitingAck is not counted twice.
    if i == #entries or entries[i][1] == 'Failed' then count(entries[i][1], now) end
  end
  redis.call('RPUSH', hk, unpack(values))
  enter_state(id, state, now, opts)
  if old == 'Processing' then
    local limit = opts.limit  -- read already by apply_change
    if limit == nil then limit = redis.call('HGET', K.job(id), 'limit') end
    if limit then release_limit(limit, id, now) end
  end
  local before, after = outcome(old, was_final), outcome(state, opts.final)
  if before ~= after then
    local batch, conts, unique = opts.batch, opts.conts, opts.unique  -- read already by apply_change
    if batch == nil then batch, conts, unique = unpack(redis.call('HMGET', K.job(id), 'batch', 'conts', 'unique')) end
    if unique and after and redis.call('GET', K.unique(unique)) == id then redis.call('DEL', K.unique(unique)) end
    if batch or conts then follow_up('job', id, before, after, batch or nil, now) end
  end
end

local function push_all(key, values)
  for i = 1, #values, 1000 do
    redis.call('RPUSH', key, unpack(values, i, math.min(i + 999, #values)))
  end
end

-- What an awaiting job does when its parent reaches `result`: 'enqueue', 'delete' or
-- 'wait' (an only-on-success continuation of a failed parent: it may yet be requeued).
local function decide(on, result)
  if result == 'succeeded' or on == 'finished' then return 'enqueue' end
  if result == 'deleted' then return 'delete' end
  return 'wait'
end

local function describe(kind, id) return kind .. ' ' .. id end

-- Moves an awaiting job on, to its queue or to Deleted, as `action` says.
local function release(id, action, kind, parent, result, now)
  if action == 'enqueue' then
    local queue = redis.call('HGET', K.job(id), 'queue')
    local why = 'Its parent ' .. describe(kind, parent) .. ' ' .. result
    transition(id, 'Awaiting', 'Enqueued', now,
      { { 'Enqueued', entry(now, 'Enqueued', why, { queue = queue, parent = parent }) } }, { queue = queue })
  else
    local why = 'Its parent ' .. describe(kind, parent) .. ' did not succeed (' .. result .. '), so it will not run'
    transition(id, 'Awaiting', 'Deleted', now,
      { { 'Deleted', entry(now, 'Deleted', why, { parent = parent }) } },
      { final = true, retention = SETTINGS.retention, cap = SETTINGS.cap })
  end
end

local function settle_continuations(kind, parent, result, now)
  local ck = K.continuations(kind, parent)
  local children = redis.call('LRANGE', ck, 0, -1)
  if #children == 0 then return end
  local waiting = {}
  for _, child in ipairs(children) do
    local state, on = unpack(redis.call('HMGET', K.job(child), 'state', 'on'))
    if state == 'Awaiting' then  -- else deleted or requeued by hand meanwhile
      local action = decide(on, result)
      if action == 'wait' then table.insert(waiting, child) else release(child, action, kind, parent, result, now) end
    end
  end
  redis.call('DEL', ck)
  push_all(ck, waiting)
  if #waiting == 0 and kind == 'job' then redis.call('HDEL', K.job(parent), 'conts') end
end

-- A batch's outcome once every member has one: 'failed' if any failed (it may still be
-- requeued), else 'deleted' if any was deleted, else 'succeeded'; nil while any runs.
local function batch_outcome(total, s, f, d)
  s, f, d = tonumber(s) or 0, tonumber(f) or 0, tonumber(d) or 0
  if s + f + d < tonumber(total) then return nil end
  if f > 0 then return 'failed' end
  if d > 0 then return 'deleted' end
  return 'succeeded'
end

-- Records a batch's outcome (nil: running again). A batch that succeeded or was deleted
-- expires after the retention period, as a job would; a failed one waits for its operator.
local function finish_batch(batch, result, now)
  local bk = K.batch(batch)
  if result then
    redis.call('HSET', bk, 'outcome', result, 'state', 'Finished', 'finished', fmt(now))
  else
    redis.call('HSET', bk, 'state', 'Started')
    redis.call('HDEL', bk, 'outcome', 'finished')
  end
  for _, key in ipairs({ bk, K.batch_jobs(batch) }) do
    if result == 'succeeded' or result == 'deleted' then
      redis.call('EXPIRE', key, SETTINGS.retention)
    else
      redis.call('PERSIST', key)
    end
  end
end

-- A member of `batch` went from outcome `before` to `after`: counts it, and if the
-- batch's own outcome changed, records it and lets the batch's followers follow.
local function batch_moved(batch, before, after, now)
  local bk = K.batch(batch)
  if redis.call('EXISTS', bk) == 0 then return end  -- the batch expired
  if before then redis.call('HINCRBY', bk, before, -1) end
  if after then redis.call('HINCRBY', bk, after, 1) end
  local total, s, f, d, was, parent = unpack(redis.call('HMGET', bk,
    'total', 'succeeded', 'failed', 'deleted', 'outcome', 'batch'))
  was = was or nil
  local result = batch_outcome(total, s, f, d)
  if result == was then return end
  finish_batch(batch, result, now)
  follow_up('batch', batch, was, result, parent or nil, now)
end

-- Lets the continuations and the batch of a job (or batch) whose outcome changed follow,
-- and theirs in turn, breadth first: chains of any length without deep recursion.
local WORK = nil
follow_up = function(kind, id, before, after, batch, now)
  local item = { kind = kind, id = id, before = before, after = after, batch = batch }
  if WORK then table.insert(WORK, item) return end
  WORK = { item }
  local i = 1
  while i <= #WORK do
    local w = WORK[i]
    i = i + 1
    if w.after then settle_continuations(w.kind, w.id, w.after, now) end
    if w.batch then batch_moved(w.batch, w.before, w.after, now) end
  end
  WORK = nil
end

-- A state change asked for from Python (transition.lua, finish.lua). Reads its arguments
-- from ARGV[a] on:
--   job id; states the job must be in, as ",A,B," ("" accepts any); states it must not be
--   in, same form; lease token the caller must hold ("" for none); new state; queue (""
--   keeps the job's); front ("1" puts an enqueued job next in line); due ("+<ms>" or
--   "<ms>", for Scheduled); final ("1" starts the retention TTL); retention in seconds;
--   index cap; n, then n field/value pairs for the job hash; m, then m state/body pairs
--   (JSON objects without their time)
-- Returns code (1 applied, 0 no such job, -1 not in an expected state, -2 the caller's
-- lease is gone), the previous state, and the index of the first argument after its own.
local function apply_change(a, now)
  local id = ARGV[a]
  local nfields = tonumber(ARGV[a + 11])
  local nentries = tonumber(ARGV[a + 12 + nfields * 2])
  local after = a + 13 + nfields * 2 + nentries * 2
  local jk = K.job(id)
  local old, lease, queue, batch, conts, unique, limit = unpack(redis.call('HMGET', jk,
    'state', 'lease', 'queue', 'batch', 'conts', 'unique', 'limit'))
  if not old then return 0, '', after end
  local function among(set) return string.find(set, ',' .. old .. ',', 1, true) ~= nil end
  if (ARGV[a + 1] ~= '' and not among(ARGV[a + 1])) or (ARGV[a + 2] ~= '' and among(ARGV[a + 2])) then
    return -1, old, after
  end
  if ARGV[a + 3] ~= '' and lease ~= ARGV[a + 3] then return -2, old, after end

  local state = ARGV[a + 4]
  SETTINGS.retention, SETTINGS.cap = tonumber(ARGV[a + 9]), tonumber(ARGV[a + 10])
  if ARGV[a + 5] ~= '' then queue = ARGV[a + 5] end
  local due = nil
  local d = ARGV[a + 7]
  if d ~= '' then
    if string.sub(d, 1, 1) == '+' then due = now + tonumber(string.sub(d, 2)) else due = tonumber(d) end
  end
  local fields = {}
  for i = a + 12, a + 11 + nfields * 2 do table.insert(fields, ARGV[i]) end
  local entries = {}
  local e = a + 13 + nfields * 2
  for i = 0, nentries - 1 do
    entries[i + 1] = { ARGV[e + i * 2], stamp(now, ARGV[e + i * 2 + 1]) }
  end
  if due then
    -- The new state's entry records when it is due, known only now for a relative delay.
    local last = entries[nentries][2]
    entries[nentries][2] = '{"due":' .. fmt(due) .. ',' .. string.sub(last, 2)
  end
  transition(id, old, state, now, entries, {
    queue = queue, front = ARGV[a + 6] == '1', due = due, fields = fields,
    final = ARGV[a + 8] == '1', retention = tonumber(ARGV[a + 9]), cap = tonumber(ARGV[a + 10]),
    batch = batch, conts = conts, unique = unique, limit = limit,
  })
  return 1, old, after
end

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
        { { 'Enqueued', entry(now, 'Enqueued', 'Scheduled time reached', { queue = queue }) } },
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
          { { 'Failed', entry(now, 'Failed', 'Abandoned: its worker was lost ' .. n .. ' times', data) } },
          { fields = { 'error_type', 'taskfire.WorkerLost' } })
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
end

-- A job left Processing: its place under the limit is free, and the longest-waiting job
-- still waiting for it goes to the front of its queue.
release_limit = function(limit, id, now)
  redis.call('ZREM', K.limit(limit), id)
  while true do
    local waiter = redis.call('LPOP', K.waiters(limit))
    if not waiter then return end
    local state, wants = unpack(redis.call('HMGET', K.job(waiter), 'state', 'limit'))
    if state == 'Scheduled' and wants == limit then
      local queue = redis.call('HGET', K.job(waiter), 'queue')
      transition(waiter, state, 'Enqueued', now,
        { { 'Enqueued', entry(now, 'Enqueued', limit .. ' is free', { queue = queue }) } },
        { queue = queue, front = true })
      return
    end
  end
end

-- Whether a job may start now under its concurrency limit (or mutex) and rate limit; if
-- not, it waits as Scheduled: for the limit, until a holder leaves (or its wait times
-- out); for the rate, until the oldest start in the window is a period old. A job whose
-- limit wait timed out fails. Returns true if it may start (and holds its places).
local function admit(id, f, now, lease)
  local limit, rate = f.limit, f.rate
  if limit then
    local lk = K.limit(limit)
    redis.call('ZREMRANGEBYSCORE', lk, '-inf', now)  -- holders whose worker died
    if redis.call('ZCARD', lk) >= tonumber(f.limit_max) then
      local since = tonumber(f.limit_since) or now
      local timeout = tonumber(f.limit_timeout) or 600000
      if now - since >= timeout then
        local data = { exception_type = 'taskfire.LimitTimeout',
          exception_message = 'waited ' .. math.floor((now - since) / 1000) .. ' s for ' .. limit }
        transition(id, 'Enqueued', 'Failed', now,
          { { 'Failed', entry(now, 'Failed', 'Gave up waiting for ' .. limit, data) } },
          { fields = { 'error_type', 'taskfire.LimitTimeout' } })
      else
        local holder = redis.call('ZRANGE', lk, 0, 0)[1] or '?'
        transition(id, 'Enqueued', 'Scheduled', now,
          { { 'Scheduled', entry(now, 'Scheduled', 'Waiting for ' .. limit .. ' (held by job ' .. holder .. ')',
              {}, since + timeout) } },
          { due = since + timeout, fields = { 'limit_since', fmt(since) } })
        redis.call('RPUSH', K.waiters(limit), id)
      end
      return false
    end
  end
  if rate then
    local rk = K.rate(rate)
    local period = tonumber(f.rate_period)
    redis.call('ZREMRANGEBYSCORE', rk, '-inf', now - period)
    if redis.call('ZCARD', rk) >= tonumber(f.rate_max) then
      local oldest = tonumber(redis.call('ZRANGE', rk, 0, 0, 'WITHSCORES')[2])
      local due = oldest + period
      transition(id, 'Enqueued', 'Scheduled', now,
        { { 'Scheduled', entry(now, 'Scheduled', 'Rate limit ' .. rate .. ': ' .. f.rate_max .. ' starts per '
            .. (period / 1000) .. ' s', {}, due) } },
        { due = due })
      return false
    end
    redis.call('ZADD', rk, now, id .. ':' .. now)
    redis.call('PEXPIRE', rk, period)
  end
  if limit then
    redis.call('ZADD', K.limit(limit), now + lease, id)
    redis.call('HDEL', K.job(id), 'limit_since')
  end
  return true
end

-- Takes the next job of queue q for a worker, moving it to Processing under a lease.
-- Returns 'empty', 'stale' (an id left behind by a job deleted or moved since), or the
-- job's reply values.
local function take(q, worker, lease, now)
  write_pushes()
  local id = redis.call('RPOP', K.queue(q))
  if not id then return 'empty' end
  local state, queue, fn, args, opts, retries, created, fetches, limit, rate = unpack(redis.call('HMGET', K.job(id),
    'state', 'queue', 'fn', 'args', 'opts', 'retries', 'created', 'fetches', 'limit', 'rate'))
  if state ~= 'Enqueued' or queue ~= q then return 'stale' end
  if limit or rate then
    local f = { limit = limit or nil, rate = rate or nil }
    f.limit_max, f.limit_since, f.limit_timeout, f.rate_max, f.rate_period = unpack(redis.call('HMGET', K.job(id),
      'limit_max', 'limit_since', 'limit_timeout', 'rate_max', 'rate_period'))
    if not admit(id, f, now, lease) then return 'stale' end
  end
  fetches = fmt((tonumber(fetches) or 0) + 1)
  local token = worker .. ':' .. fetches
  transition(id, state, 'Processing', now,
    { { 'Processing', entry(now, 'Processing', nil, { worker = worker }) } },
    { token = token, lease = lease, fetches = fetches, created = created, origin = queue })
  return { id, token, fn or '', args or '', q, opts or '', retries or '0', created or '0' }
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
  local function took(got)
    if got == 'stale' then skipped = skipped + 1 return end
    for _, v in ipairs(got) do table.insert(reply, v) end
    taken = taken + 1
    tally('taken', got[5])
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
      local got = take(names[open[pick]], worker, lease, now)
      if got == 'empty' then table.remove(open, pick) else took(got) end
    end
    if taken >= max and ARGV[a + 4] == '1' then
      for _, i in ipairs(open) do
        if redis.call('LLEN', K.queue(names[i])) > 0 then wake(names[i]) break end
      end
    end
  else
    for _, q in ipairs(names) do
      while taken < max and skipped < MAX_SKIPPED do
        local got = take(q, worker, lease, now)
        if got == 'empty' then break end
        took(got)
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

-- Starts a call: its arguments, its prefix's keys, and fresh per-call state (a library's
-- upvalues outlive calls, and a call that raised may have left them half-way).
local function begin(keys, args)
  KEYS, ARGV = keys, args
  if args[1] ~= PREFIX then
    PREFIX = args[1]
    name_keys()
  end
  WORK = nil
  PENDING = {}
  SETTINGS.retention, SETTINGS.cap = 86400, 10000
end

-- Runs one script as a call: begin, the script, then flush. A script that raises half-way
-- keeps what it wrote (Redis has no rollback), so flush runs then too: every job it
-- created or moved reaches its queue list and is counted, as if it had run alone.
local function run(script, keys, args)
  begin(keys, args)
  local ok, reply = pcall(script)
  flush()
  if not ok then error(reply, 0) end
  return reply
end
