-- gather.lua: what a call gathers and writes once, at its end.
--
-- Counters, final states' indexes and a queue's bookkeeping (its name in `queues`, its
-- counts of jobs in and out, its wake-up token) are written once per call, at its end
-- (flush), however many jobs the call moved: a bulk enqueue registers its queue once,
-- and a worker's call that stores several outcomes increments each counter once. Pushes
-- to a queue list are gathered too, and written as one LPUSH (RPUSH for the front) per
-- queue before the call reads any queue list (write_pushes) and at its end.
--
-- CALL.pending holds what is gathered, by part: counts {state = n}, pushed and taken
-- {queue = n}; index {state = {ids}} and cap {state = length}; back and front
-- {queue = {ids}}. Keys are built once per part when it is written, not once per job.
-- A part is made on first use: every table a call makes is work for Lua's garbage
-- collector, which walks the whole library, and most calls need few parts.
--
-- CALL holds everything one call keeps between its steps; begin() (call.lua) makes it
-- anew for every call, since a library's upvalues outlive calls and a call that raised
-- may have left it half-way:
--   pending    gathered parts (above)
--   work       continuations and batches still to follow up (workflow.lua)
--   retention  seconds a final job is kept, and cap, the length of a final state's
--   cap        index, for scripts that delete jobs on their own (from their arguments)
local CALL = nil

local function part(name)
  local pending = CALL.pending
  local t = pending[name]
  if t == nil then
    t = {}
    pending[name] = t
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

-- Writes a gathered part, one command per key (named by `key_of` its part's key), and
-- forgets it; returns {key = length after} for list commands. A list keeps its order:
-- LPUSH a b leaves the list LPUSH a, LPUSH b would.
local function write_part(command, name, key_of)
  local t = CALL.pending[name]
  if t == nil then return nil end
  CALL.pending[name] = nil
  local lengths = {}
  for key, values in pairs(t) do
    local length
    for i = 1, #values, 1000 do
      length = redis.call(command, key_of(key), unpack(values, i, math.min(i + 999, #values)))
    end
    lengths[key] = length
  end
  return lengths
end

local function push(q, id, front)
  gather(front and 'front' or 'back', q, id)
  tally('pushed', q)
end

-- Queues a call found empty before it pushed to them: only those need registering in
-- `queues` (a queue, once used, stays there).
local function note_fresh(lengths, name)
  if lengths == nil then return end
  local values = CALL.fresh_of[name]
  for q, length in pairs(lengths) do
    if length == #values[q] then part('fresh')[q] = true end
  end
end

local function write_pushes()
  local pending = CALL.pending
  if pending.back == nil and pending.front == nil then return end
  CALL.fresh_of = { back = pending.back, front = pending.front }
  note_fresh(write_part('LPUSH', 'back', K.queue), 'back')
  note_fresh(write_part('RPUSH', 'front', K.queue), 'front')
end

-- Counts a job entering a state: its counter and the current hour's bucket, written at
-- the end of the call (hours since the epoch, from the call's `now`).
local function count(state, now)
  if not COUNTED[state] then return end
  tally('counts', state)
  CALL.hour = math.floor(now / 3600000)
end

local function add_to_index(state, id, cap)
  gather('index', state, id)
  part('cap')[state] = cap
end

local function flush()
  write_pushes()
  local pending = CALL.pending
  local counts, index, pushed, taken, fresh = pending.counts, pending.index, pending.pushed, pending.taken,
    pending.fresh
  if counts then
    local hour = ':' .. fmt(CALL.hour)
    for state, n in pairs(counts) do
      local total = K.stat(state)
      redis.call('INCRBY', total, fmt(n))
      if redis.call('INCRBY', total .. hour, fmt(n)) == n then redis.call('EXPIRE', total .. hour, HOURLY_STATS_TTL) end
    end
  end
  if index then
    local cap = pending.cap
    write_part('LPUSH', 'index', K.state)
    for state in pairs(index) do redis.call('LTRIM', K.state(state), '0', fmt(cap[state] - 1)) end
  end
  if pushed then
    for q, n in pairs(pushed) do
      if fresh and fresh[q] then redis.call('SADD', K.queues, q) end
      redis.call('HINCRBY', K.queue_stats, q .. ':in', fmt(n))
      wake(q)
    end
  end
  if taken then
    for q, n in pairs(taken) do redis.call('HINCRBY', K.queue_stats, q .. ':out', fmt(n)) end
  end
end
