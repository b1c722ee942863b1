-- states.lua: entering and leaving a state, by the kind of index the state keeps
-- (STATE_INDEX, from storage/keys.py; a custom state's kind is custom_index(final)),
-- and transition(): the one way a job moves, with its history, counters and followers.

-- Each index kind: how a job enters it and leaves it. enter(id, state, now, opts) writes
-- the record's state and opts.fields (more field/value pairs) with it; leave(id, state)
-- undoes the rest and says whether the state was final.
--   opts: queue, front (bool) for Enqueued; due (ms) for Scheduled; token, lease (ms),
--   fetches for Processing; retention (s) and cap (index length) for final states
local INDEX = {}

-- A queue list. Leaving it needs nothing: an id left behind in a queue is skipped at
-- fetch because the job's state (or queue) no longer matches.
INDEX.queue = {
  enter = function(id, state, now, opts)
    redis.call('HSET', K.job(id), 'state', state, 'queue', opts.queue, unpack(opts.fields or NO_FIELDS))
    push(opts.queue, id, opts.front)
  end,
  leave = function() return false end,
}

INDEX.schedule = {
  enter = function(id, state, now, opts)
    local jk = K.job(id)
    redis.call('HSET', jk, 'state', state, unpack(opts.fields or NO_FIELDS))
    local head = redis.call('ZRANGE', K.schedule, 0, 0, 'WITHSCORES')
    redis.call('ZADD', K.schedule, opts.due, id)
    -- Idle workers sleep until the earliest due time; an earlier one must wake them.
    if head[2] == nil or opts.due < tonumber(head[2]) then
      wake(redis.call('HGET', jk, 'queue'))
    end
  end,
  leave = function(id)
    redis.call('ZREM', K.schedule, id)
    return false
  end,
}

INDEX.processing = {
  enter = function(id, state, now, opts)
    redis.call('HSET', K.job(id), 'state', state, 'lease', opts.token, 'started', fmt(now),
      'fetches', opts.fetches, unpack(opts.fields or NO_FIELDS))
    redis.call('ZADD', K.processing, fmt(now + opts.lease), id)
  end,
  leave = function(id)
    redis.call('ZREM', K.processing, id)
    redis.call('HDEL', K.job(id), 'lease', 'cancel')
    return false
  end,
}

-- A final state: the record, its history and log expire after the retention period, and
-- the index is a capped list that keeps a stale id when the job moves on (readers skip
-- it; removing it would cost a scan).
INDEX.list = {
  enter = function(id, state, now, opts)
    local jk = K.job(id)
    redis.call('HSET', jk, 'state', state, unpack(opts.fields or NO_FIELDS))
    local ttl = fmt(opts.retention)
    redis.call('EXPIRE', jk, ttl)
    redis.call('EXPIRE', K.history(id), ttl)
    redis.call('EXPIRE', K.log(id), ttl)
    add_to_index(K.state(state), id, opts.cap)
  end,
  leave = function(id)
    redis.call('PERSIST', K.job(id))
    redis.call('PERSIST', K.history(id))
    redis.call('PERSIST', K.log(id))
    return true
  end,
}

-- Any other state: a sorted set by the time the job entered it.
INDEX.zset = {
  enter = function(id, state, now, opts)
    redis.call('HSET', K.job(id), 'state', state, unpack(opts.fields or NO_FIELDS))
    redis.call('ZADD', K.state(state), now, id)
  end,
  leave = function(id, state)
    redis.call('ZREM', K.state(state), id)
    return false
  end,
}

local function enter_state(id, state, now, opts)
  local kind = STATE_INDEX[state]
  if kind == nil then  -- a custom state: its kind is registered when a job first enters it
    kind = custom_index(opts.final)
    redis.call('HSETNX', K.custom_states, state, kind)
  end
  INDEX[kind].enter(id, state, now, opts)
end

-- Returns whether the state left was final.
local function leave_state(id, state)
  local kind = STATE_INDEX[state]
  if kind == nil then  -- a custom state: only a final one's record carries a TTL
    kind = redis.call('TTL', K.job(id)) >= 0 and 'list' or 'zset'
  end
  return INDEX[kind].leave(id, state)
end

-- The kind of a state's index as stored: a custom state's from the registry (or, in a
-- store from before the registry, from the index's own type).
local function stored_index_kind(state)
  local kind = STATE_INDEX[state] or redis.call('HGET', K.custom_states, state)
  if kind then return kind end
  return redis.call('TYPE', K.state(state))['ok'] == 'list' and 'list' or 'zset'
end

local function index_key(state, kind)
  if kind == 'schedule' then return K.schedule end
  if kind == 'processing' then return K.processing end
  return K.state(state)
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

local follow_up  -- workflow.lua: a transition may release continuations, which transition
local release_limit  -- admission.lua: leaving Processing frees a limit, which wakes a waiter

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
