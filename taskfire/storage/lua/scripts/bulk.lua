-- bulk.lua: an operator's action over many jobs, one bounded slice per call, so that no
-- call holds Redis for long and none costs a round trip per job.
--
-- ARGV  1 prefix, 2 action, 3 limit (jobs looked at), 4 retention in seconds, 5 index cap,
--       6 offset into the state's index (requeue/delete; the others pop from their queue),
--       then per action:
--   'requeue' | 'delete'  7 state, 8 function ("" any), 9 exception type ("" any),
--                         10 queue ("" any), 11 "retries" to walk the `retries` index
--                         (Scheduled jobs waiting for a retry) instead of the state's,
--                         12 when the action began (ms): in an index scored by the time
--                         a job entered its state (failed, zset), only jobs that entered
--                         it by then, so that a requeued job that fails again while the
--                         action goes on is not requeued a second time
--   'move'                7 from queue, 8 to queue
--   'purge'               7 queue
-- Keys  job:<id>(:history), queue:<q>(:wake), schedule, retries, processing, state:<name>, stats
-- Returns {jobs changed, jobs looked at, next offset (requeue/delete)}; looked at = 0
-- means the action is done.

local action, limit = ARGV[2], tonumber(ARGV[3])
CALL.retention, CALL.cap = tonumber(ARGV[4]), tonumber(ARGV[5])
local now = now_ms()
local changed, looked = 0, 0

local function to_deleted(id, old, reason)
  transition(id, old, 'Deleted', now, { 'Deleted', entry(now, 'Deleted', reason, {}) },
    { final = true, retention = CALL.retention, cap = CALL.cap })
end

if action == 'move' or action == 'purge' then
  local from = ARGV[7]
  for _ = 1, limit do
    write_pushes()
    local id = redis.call('RPOP', K.queue(from))
    if not id then break end
    looked = looked + 1
    local state, queue = unpack(redis.call('HMGET', K.job(id), 'state', 'queue'))
    if state ~= 'Enqueued' or queue ~= from then  -- an id left behind: dropped
      redis.call('HINCRBY', K.queue_stats, from .. ':stale', -1)
    else
      changed = changed + 1
      if action == 'move' then
        local to = ARGV[8]
        transition(id, state, 'Enqueued', now,
          { 'Enqueued', entry(now, 'Enqueued', 'Moved from queue ' .. from .. ' by an operator', { queue = to }) },
          { queue = to })
      else
        to_deleted(id, state, 'Purged from queue ' .. from .. ' by an operator')
      end
    end
  end
  return { changed, looked, 0 }
end

-- requeue / delete: a slice of the state's index
local state, offset = ARGV[7], tonumber(ARGV[6])
local fn_filter, exc_filter, queue_filter = ARGV[8], ARGV[9], ARGV[10]
local kind = stored_index_kind(state)
local index, sorted = index_key(state, kind), kind ~= 'list'  -- (Enqueued is refused in Python)
if ARGV[11] == 'retries' then index = K.retries end  -- (its state is Scheduled: checked in Python)
local ids
if sorted and (kind == 'failed' or kind == 'zset') and ARGV[11] ~= 'retries' then
  ids = redis.call('ZRANGE', index, '-inf', ARGV[12], 'BYSCORE', 'LIMIT', offset, limit)
elseif sorted then
  ids = redis.call('ZRANGE', index, offset, offset + limit - 1)
else
  ids = redis.call('LRANGE', index, offset, offset + limit - 1)
end
local kept = 0  -- ids left in a sorted index, which the next slice must skip
for _, id in ipairs(ids) do
  looked = looked + 1
  local current, fn, error_type, queue = unpack(redis.call('HMGET', K.job(id), 'state', 'fn', 'error_type', 'queue'))
  if current == state and (fn_filter == '' or fn == fn_filter) and (exc_filter == '' or error_type == exc_filter)
      and (queue_filter == '' or queue == queue_filter) then
    changed = changed + 1
    if action == 'requeue' then
      transition(id, current, 'Enqueued', now,
        { 'Enqueued', entry(now, 'Enqueued', 'Requeued by an operator (bulk)', { queue = queue }) },
        { queue = queue })
    else
      to_deleted(id, current, 'Deleted by an operator (bulk)')
    end
  elseif current == state then
    kept = kept + 1
  elseif not current and sorted then
    redis.call('ZREM', index, id)  -- expired or gone: tidy the index
  elseif sorted then
    kept = kept + 1
  end
end
local next_offset
if sorted then next_offset = offset + kept else next_offset = offset + looked end
return { changed, looked, next_offset }
