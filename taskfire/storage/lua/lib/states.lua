-- states.lua: entering and leaving a state, by the kind of index the state keeps
-- (STATE_INDEX, from storage/keys.py; a custom state's kind is custom_index(final)),
-- and transition(): the one way a job moves, with its history, counters and followers.
--
-- A job's history. While a job follows the happy path (created, run once, finished),
-- its record says all its history would: `created` (and the queue, and a delayed job's
-- due time), `started` and the lease (whose token names the worker), and `done`, its
-- final state's entry (see done_of). Such a job has h = '0' and no history list, which spares every
-- job a list, its writes and its expiry. The first step off that path (a retry, a
-- failure, a custom state, an operator's action, a recovery) writes the implied entries
-- out, then its own, and sets h = '1': from then on every step appends to the list. A
-- job created before h existed (h absent) keeps the older rule: its list was written at
-- its first change of state.

-- Each index kind: how a job enters it and leaves it. enter(id, jk, state, now, opts)
-- writes the record's state with opts.fields (field/value pairs) in one HSET;
-- leave(id, jk, state, opts) undoes the rest and says whether the state was final.
--   opts: queue, front (bool) for Enqueued; due (ms) and retry (true: it replaces a
--   failure, so it is listed in `retries` too) for Scheduled; token, lease (ms), fetches
--   for Processing; retention (s) and cap (index length) for final states;
--   cancel, logged, history: what the caller read of the record (nil: not read)
local INDEX = {}

-- A queue list. Leaving it needs nothing: an id left behind in a queue is skipped at
-- fetch because the job's state (or queue) no longer matches.
INDEX.queue = {
  enter = function(id, jk, state, now, opts)
    redis.call('HSET', jk, 'state', state, 'queue', opts.queue, unpack(opts.fields or NO_FIELDS))
    push(opts.queue, id, opts.front)
  end,
  leave = function() return false end,
}

INDEX.schedule = {
  enter = function(id, jk, state, now, opts)
    redis.call('HSET', jk, 'state', state, unpack(opts.fields or NO_FIELDS))
    local head = redis.call('ZRANGE', K.schedule, 0, 0, 'WITHSCORES')
    redis.call('ZADD', K.schedule, opts.due, id)
    if opts.retry then redis.call('ZADD', K.retries, opts.due, id) end
    -- Idle workers sleep until the earliest due time; an earlier one must wake them.
    if head[2] == nil or opts.due < tonumber(head[2]) then
      wake(redis.call('HGET', jk, 'queue'))
    end
  end,
  leave = function(id)
    redis.call('ZREM', K.schedule, id)
    redis.call('ZREM', K.retries, id)
    return false
  end,
}

-- A run starts: the job is Processing under a lease until `deadline`. (Also the whole
-- of the step most jobs take at fetch: see fetch.lua.)
local function start_run(id, jk, now, token, deadline, fetches, ...)
  redis.call('HSET', jk, 'state', 'Processing', 'lease', token, 'started', fmt(now), 'fetches', fetches, ...)
  redis.call('ZADD', K.processing, fmt(deadline), id)
end

-- A run ends. The lease stays in the record (its token names the worker that ran the
-- job); a cancellation request (`cancel`: false if the caller knows there is none) does not.
local function end_run(id, jk, cancel)
  redis.call('ZREM', K.processing, id)
  if cancel ~= false then redis.call('HDEL', jk, 'cancel') end
end

INDEX.processing = {
  enter = function(id, jk, state, now, opts)
    start_run(id, jk, now, opts.token, now + opts.lease, opts.fetches, unpack(opts.fields or NO_FIELDS))
  end,
  leave = function(id, jk, state, opts)
    end_run(id, jk, opts.cancel)
    return false
  end,
}

-- A final state: the record (and its history and log, if it has them: false if the
-- caller knows they do not exist) expire after the retention period, and the index is a
-- capped list that keeps a stale id when the job moves on (readers skip it; removing it
-- would cost a scan).
local function enter_final(id, jk, state, retention, cap, history, logged, ...)
  redis.call('HSET', jk, 'state', state, ...)
  local ttl = fmt(retention)
  redis.call('EXPIRE', jk, ttl)
  if history ~= false then redis.call('EXPIRE', K.history(id), ttl) end
  if logged ~= false then redis.call('EXPIRE', K.log(id), ttl) end
  add_to_index(state, id, cap)
end

INDEX.list = {
  enter = function(id, jk, state, now, opts)
    enter_final(id, jk, state, opts.retention, opts.cap, opts.history, opts.logged, unpack(opts.fields or NO_FIELDS))
  end,
  leave = function(id, jk)
    redis.call('PERSIST', jk)
    redis.call('PERSIST', K.history(id))
    redis.call('PERSIST', K.log(id))
    return true
  end,
}

-- Any other state: a sorted set by the time the job entered it.
INDEX.zset = {
  enter = function(id, jk, state, now, opts)
    redis.call('HSET', jk, 'state', state, unpack(opts.fields or NO_FIELDS))
    redis.call('ZADD', K.state(state), now, id)
  end,
  leave = function(id, jk, state)
    redis.call('ZREM', K.state(state), id)
    return false
  end,
}

-- Failed: a sorted set by the time the job failed, as INDEX.zset, and the job in its
-- function's and its exception type's sets too (with their sizes), so that failures are
-- found by function or exception at any depth. Only failures pay for it; the fields it
-- reads are written by then (error_type comes with the failure's fields).
local function index_failure(id, jk, at)
  local fn, error_type = unpack(redis.call('HMGET', jk, 'fn', 'error_type'))
  if fn and redis.call('ZADD', K.failed_by_function(fn), at, id) == 1 then
    redis.call('HINCRBY', K.failed_functions, fn, 1)
  end
  if error_type and error_type ~= '' and redis.call('ZADD', K.failed_by_exception(error_type), at, id) == 1 then
    redis.call('HINCRBY', K.failed_exceptions, error_type, 1)
  end
end

local function unindex_failure(id, jk)
  local fn, error_type = unpack(redis.call('HMGET', jk, 'fn', 'error_type'))
  for _, by in ipairs({ { fn, K.failed_by_function, K.failed_functions },
                        { error_type, K.failed_by_exception, K.failed_exceptions } }) do
    local name = by[1]
    if name and name ~= '' and redis.call('ZREM', by[2](name), id) == 1
        and redis.call('HINCRBY', by[3], name, -1) <= 0 then
      redis.call('HDEL', by[3], name)
    end
  end
end

INDEX.failed = {
  enter = function(id, jk, state, now, opts)
    INDEX.zset.enter(id, jk, state, now, opts)
    index_failure(id, jk, now)
  end,
  leave = function(id, jk, state)
    redis.call('ZREM', K.state(state), id)
    unindex_failure(id, jk)
    return false
  end,
}

local function enter_state(id, jk, state, now, opts)
  local kind = STATE_INDEX[state]
  if kind == nil then  -- a custom state: its kind is registered when a job first enters it
    kind = custom_index(opts.final)
    redis.call('HSETNX', K.custom_states, state, kind)
  end
  INDEX[kind].enter(id, jk, state, now, opts)
end

-- Returns whether the state left was final.
local function leave_state(id, jk, state, opts)
  local kind = STATE_INDEX[state]
  if kind == nil then  -- a custom state: only a final one's record carries a TTL
    kind = redis.call('TTL', jk) >= 0 and 'list' or 'zset'
  end
  return INDEX[kind].leave(id, jk, state, opts)
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
  local jk = K.job(id)
  redis.call('HSET', jk, 'created', fmt(now), 'h', '1' .. letters_in(fields, 1, #fields), unpack(fields))
  redis.call('RPUSH', K.history(id), entry(now, 'Enqueued', reason, data))
  enter_state(id, jk, 'Enqueued', now, { queue = queue })
end

-- The worker a lease token names ("<worker id>:<fetches>").
local function worker_of(token)
  return string.match(token or '', '^(.*):[^:]*$') or token
end

-- A final state's entry as the record keeps it: its time, then the entry without its
-- state (the record's own), e.g. 1765000000000{"data":{"duration_ms":1.5}}, which keeps
-- the value within a small hash's limit (hash-max-listpack-value, 64 bytes) for most
-- jobs, so their record stays compact.
-- `body` is an entry as Python sends it (no time: the time is `now`) or as stamp() made it.
local function done_of(now, state, body)
  local at, unstamped = string.match(body, '^{"at":(%d+),(.*)$')
  if at then body = '{' .. unstamped else at = fmt(now) end
  local head = '{"state":"' .. state .. '"'
  if string.sub(body, 1, #head) ~= head then return stamp(tonumber(at), body) end  -- (not from taskfire's Python)
  local rest = string.sub(body, #head + 2)
  return at .. (rest == '' and '{}' or '{' .. rest)
end

-- The entry of a final state whose record keeps it (`done`, from done_of), as a list entry.
local function done_entry(done, state)
  local at, rest = string.match(done, '^(%d+)({.*)$')
  if not at then return done end
  return '{"at":' .. at .. ',"state":"' .. state .. '"' .. (rest == '{}' and '}' or ',' .. string.sub(rest, 2))
end

-- The entries a job's record implies (h = '0', see above), in order, as the history
-- list's first values. `old` is the state the job is in now.
local function implied_history(id, jk, old)
  local created, queue, started, lease, done, state = unpack(redis.call('HMGET', jk, 'created', 'queue', 'started',
    'lease', 'done', 'state'))
  local first, due = 'Enqueued', nil
  if old == 'Scheduled' then  -- never promoted: a promotion is a step off the happy path
    first, due = 'Scheduled', tonumber(redis.call('ZSCORE', K.schedule, id))
  end
  local values = { entry(tonumber(created), first, nil, { queue = queue }, due) }
  if started then values[2] = entry(tonumber(started), 'Processing', nil, { worker = worker_of(lease) }) end
  if done then values[#values + 1] = done_entry(done, state) end
  return values
end

-- The letters (see h, in base.lua) of a job from before h existed, read off its record.
local function legacy_letters(jk)
  local batch, unique, limit, rate, conts, waited = unpack(redis.call('HMGET', jk, 'batch', 'unique', 'limit', 'rate',
    'conts', 'waited'))
  return (batch and 'b' or '') .. (unique and 'u' or '') .. ((limit or rate) and 'l' or '') .. (conts and 'c' or '')
    .. (waited and 'w' or '')
end

-- The creation entry of a job from before h existed, if its first change of state had
-- not written it yet (only a job still in its first state can lack one).
local function legacy_creation_entry(id, jk, old)
  if (old ~= 'Enqueued' and old ~= 'Scheduled') or redis.call('EXISTS', K.history(id)) == 1 then return {} end
  local created, queue = unpack(redis.call('HMGET', jk, 'created', 'queue'))
  local due = nil
  if old == 'Scheduled' then due = tonumber(redis.call('ZSCORE', K.schedule, id)) end
  return { entry(tonumber(created), old, nil, { queue = queue }, due) }
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

-- Wakes the clients blocked in tf.wait / tf.wait_batch until a job (or batch) reached an
-- outcome: one token each in <kind>:<id>:outcome, as many as wait.lua counted in the
-- record's `waited` field, which is cleared. Tokens nobody takes (a waiter that gave up)
-- expire. A job nobody waits for pays nothing: its `h` has no 'w', so it is never read.
local WAITER_TOKEN_TTL = 60
local function wake_waiters(kind, id, waited)
  local key = K.outcome(kind, id)
  local left = tonumber(waited)
  local tokens = {}
  for i = 1, math.min(left, 1000) do tokens[i] = '1' end
  while left > 0 do  -- a token per waiter, however many, in pushes Lua's stack can carry
    redis.call('RPUSH', key, unpack(tokens, 1, math.min(left, 1000)))
    left = left - 1000
  end
  redis.call('EXPIRE', key, WAITER_TOKEN_TTL)
  redis.call('HDEL', kind == 'job' and K.job(id) or K.batch(id), 'waited')
end

local follow_up  -- workflow.lua: a transition may release continuations, which transition
local release_limit  -- admission.lua: leaving Processing frees a limit, which wakes a waiter

-- The entry a fetch records, made only when the history is written out.
local function processing_entries(now, worker)
  return { 'Processing', entry(now, 'Processing', nil, { worker = worker }) }
end

-- Writes the history of a step (see the top of this file): returns whether the record
-- stands for it (nothing written), else appends the entries (and the implied ones first)
-- and notes in opts.fields that the list now holds the history. `entries` is flat: state,
-- entry, state, entry, ..., the new state's last; false for a fetch's own entry.
local function record_history(id, jk, old, state, now, entries, opts)
  local h = opts.h
  if h == nil then h = redis.call('HGET', jk, 'h') or false end
  local mode = h and string.sub(h, 1, 1)
  local quiet = mode == '0' and (entries == false or #entries == 2)
    and ((old == 'Enqueued' and state == 'Processing') or (old == 'Processing' and opts.final))
  if quiet then
    if entries then  -- (false: a fetch, whose record says it all)
      count(entries[1], now)
      opts.fields = opts.fields or {}
      table.insert(opts.fields, 'done')
      table.insert(opts.fields, done_of(now, entries[1], entries[2]))
    end
    opts.history = false
    return
  end
  if entries == false then entries = processing_entries(now, opts.worker) end
  local values
  if mode == '0' then values = implied_history(id, jk, old)
  elseif mode then values = {}
  else values = legacy_creation_entry(id, jk, old) end
  local n = #entries
  for i = 1, n, 2 do
    values[#values + 1] = entries[i + 1]
    -- A replaced candidate is history, not an outcome: only a failure (which a retry
    -- replaced) counts, so a run elected from Succeeded to WaitingAck is not counted twice.
    if i == n - 1 then
      count(entries[i], now)
    elseif entries[i] == 'Failed' then
      count('Failed', now)
      opts.retry = true  -- what replaced the failure is a retry (listed in `retries` if Scheduled)
    end
  end
  redis.call('RPUSH', K.history(id), unpack(values))
  if mode ~= '1' then
    opts.fields = opts.fields or {}
    table.insert(opts.fields, 'h')
    table.insert(opts.fields, '1' .. (h and string.sub(h, 2) or legacy_letters(jk)))
  end
  opts.history = true
end

-- Moves a job to a new state: its history (every elected candidate, last one the new
-- state), the counters, and the structures of the old and new state; then, if its
-- outcome changed, its continuations and its batch follow. opts also carries what the
-- caller read of the record (h, limit, batch, conts, unique, cancel, logged), which
-- spares reading it again.
local function transition(id, old, state, now, entries, opts)
  local jk = K.job(id)
  record_history(id, jk, old, state, now, entries, opts)
  local was_final = leave_state(id, jk, old, opts)
  enter_state(id, jk, state, now, opts)
  if old == 'Processing' then
    local limit = opts.limit
    if limit == nil then limit = redis.call('HGET', jk, 'limit') end
    if limit then release_limit(limit, id, now) end
  end
  local before, after = outcome(old, was_final), outcome(state, opts.final)
  if before ~= after then
    local batch, conts, unique, waited = opts.batch, opts.conts, opts.unique, opts.waited
    if batch == nil then
      batch, conts, unique, waited = unpack(redis.call('HMGET', jk, 'batch', 'conts', 'unique', 'waited'))
    end
    if unique and after and redis.call('GET', K.unique(unique)) == id then redis.call('DEL', K.unique(unique)) end
    if waited and after then wake_waiters('job', id, waited) end
    if batch or conts then follow_up('job', id, before, after, batch or nil, now) end
  end
end
