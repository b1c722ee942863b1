-- gather.lua: what a call gathers and writes once, at its end.
--
-- Counters, final states' indexes and a queue's bookkeeping (its name in `queues`, its
-- counts of jobs in and out, its wake-up token) are written once per call, at its end
-- (flush), however many jobs the call moved: a bulk enqueue registers its queue once,
-- and a worker's call that stores several outcomes increments each counter once. Pushes
-- to a queue list are gathered too, and written as one LPUSH (RPUSH for the front) per
-- queue before the call reads any queue list (write_pushes) and at its end.
--
-- CALL.pending holds what is gathered, by part: counts, hourly, pushed and taken
-- {key = n}; index, back and front {key = {ids}}; cap {index key = length}. A part is
-- made on first use: every table a call makes is work for Lua's garbage collector,
-- which walks the whole library, and most calls need few parts.
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

-- Writes a gathered part, one command per key, and forgets it. A list keeps its order:
-- LPUSH a b leaves the list LPUSH a, LPUSH b would.
local function write_part(command, name)
  local t = CALL.pending[name]
  if t == nil then return end
  CALL.pending[name] = nil
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
  local pending = CALL.pending
  local counts, hourly, index, pushed, taken = pending.counts, pending.hourly, pending.index, pending.pushed,
    pending.taken
  if counts then
    for key, n in pairs(counts) do redis.call('INCRBY', key, fmt(n)) end
  end
  if hourly then
    for key, n in pairs(hourly) do
      if redis.call('INCRBY', key, fmt(n)) == n then redis.call('EXPIRE', key, HOURLY_STATS_TTL) end
    end
  end
  if index then
    local cap = pending.cap
    write_part('LPUSH', 'index')
    for key in pairs(index) do redis.call('LTRIM', key, '0', fmt(cap[key] - 1)) end
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
