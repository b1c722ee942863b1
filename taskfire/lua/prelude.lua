-- prelude.lua: shared by every taskfire script (storage.py prepends it to each one).
--
-- Conventions
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
--   schedule            zset   delayed jobs and retries, score = due time
--   processing          zset   running jobs, score = lease deadline
--   state:<name>        final states: capped list, newest first; other states: zset by time
--   stats:<name>        counter; stats:<name>:<hour> hourly counter that expires
--   servers / server:<id>  zset by heartbeat / hash of one server's facts

local PREFIX = ARGV[1]

local K = {
  queues = PREFIX .. 'queues',
  schedule = PREFIX .. 'schedule',
  processing = PREFIX .. 'processing',
  servers = PREFIX .. 'servers',
}
function K.job(id) return PREFIX .. 'job:' .. id end
function K.history(id) return PREFIX .. 'job:' .. id .. ':history' end
function K.queue(q) return PREFIX .. 'queue:' .. q end
function K.wake(q) return PREFIX .. 'queue:' .. q .. ':wake' end
function K.state(name) return PREFIX .. 'state:' .. string.lower(name) end
function K.stat(name) return PREFIX .. 'stats:' .. string.lower(name) end
function K.server(id) return PREFIX .. 'server:' .. id end

local HOURLY_STATS_TTL = 8 * 24 * 3600
local COUNTED = { Succeeded = true, Failed = true, Deleted = true }

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function fmt(n) return string.format('%d', n) end

-- A state entry written by Python arrives as a JSON object without its time; the time
-- is the server's, so it is spliced in here as the first member.
local function stamp(now, body)
  return '{"at":' .. fmt(now) .. ',' .. string.sub(body, 2)
end

-- An entry built by a script itself (promotion, recovery, fetch).
local function entry(now, state, reason, data, due)
  local e = { at = now, state = state, reason = reason, data = data, due = due }
  return cjson.encode(e)
end

-- Leaves at most one token in a queue's wake list, so that a worker blocked on it wakes
-- and fetches. Busy workers never pop tokens, so tokens cannot pile up.
local function wake(q)
  local wk = K.wake(q)
  if redis.call('LLEN', wk) == 0 then redis.call('LPUSH', wk, '1') end
end

local function push(q, id, front)
  if front then redis.call('RPUSH', K.queue(q), id) else redis.call('LPUSH', K.queue(q), id) end
  redis.call('SADD', K.queues, q)
  wake(q)
end

local function count(state, now)
  if not COUNTED[state] then return end
  redis.call('INCR', K.stat(state))
  local hourly = K.stat(state) .. ':' .. fmt(math.floor(now / 3600000))
  if redis.call('INCR', hourly) == 1 then redis.call('EXPIRE', hourly, HOURLY_STATS_TTL) end
end

-- Undoes what entering `state` did, except for queue lists: an id left behind in a
-- queue is skipped at fetch because the job's state (or queue) no longer matches.
local function leave_state(id, state)
  if state == 'Enqueued' then return end
  if state == 'Scheduled' then
    redis.call('ZREM', K.schedule, id)
  elseif state == 'Processing' then
    redis.call('ZREM', K.processing, id)
    redis.call('HDEL', K.job(id), 'lease')
  elseif redis.call('PERSIST', K.job(id)) == 1 then
    -- Only final states carry a TTL. Their index is a capped list that keeps the stale
    -- id (readers skip it); removing it would cost a scan.
    redis.call('PERSIST', K.history(id))
  else
    redis.call('ZREM', K.state(state), id)
  end
end

-- opts: queue, front (bool) for Enqueued; due (ms) for Scheduled; token, lease (ms) for
-- Processing; final (bool), retention (s), cap (index length) for the others
local function enter_state(id, state, now, opts)
  local jk = K.job(id)
  redis.call('HSET', jk, 'state', state)
  if state == 'Enqueued' then
    redis.call('HSET', jk, 'queue', opts.queue)
    push(opts.queue, id, opts.front)
  elseif state == 'Processing' then
    redis.call('HSET', jk, 'lease', opts.token, 'started', fmt(now))
    redis.call('ZADD', K.processing, now + opts.lease, id)
  elseif state == 'Scheduled' then
    local head = redis.call('ZRANGE', K.schedule, 0, 0, 'WITHSCORES')
    redis.call('ZADD', K.schedule, opts.due, id)
    -- Idle workers sleep until the earliest due time; an earlier one must wake them.
    if head[2] == nil or opts.due < tonumber(head[2]) then
      wake(redis.call('HGET', jk, 'queue'))
    end
  elseif opts.final then
    redis.call('EXPIRE', jk, opts.retention)
    redis.call('EXPIRE', K.history(id), opts.retention)
    local index = K.state(state)
    redis.call('LPUSH', index, id)
    redis.call('LTRIM', index, 0, opts.cap - 1)
  else
    redis.call('ZADD', K.state(state), now, id)
  end
end

-- Writes the creation entry a job's history implied until its first change of state.
local function materialize_history(id, old, hk)
  if redis.call('EXISTS', hk) == 1 then return end
  local created, queue = unpack(redis.call('HMGET', K.job(id), 'created', 'queue'))
  local due = nil
  if old == 'Scheduled' then due = tonumber(redis.call('ZSCORE', K.schedule, id)) end
  redis.call('RPUSH', hk, entry(tonumber(created), old, nil, { queue = queue }, due))
end

-- Moves a job to a new state: the history entries (every elected candidate, last one
-- the new state), the counters, and the structures of the old and new state.
local function transition(id, old, state, now, entries, opts)
  local hk = K.history(id)
  materialize_history(id, old, hk)
  leave_state(id, old)
  for i = 1, #entries do
    redis.call('RPUSH', hk, entries[i][2])
    count(entries[i][1], now)
  end
  enter_state(id, state, now, opts)
end
