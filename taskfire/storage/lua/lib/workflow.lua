-- workflow.lua: continuations and batches. A job or batch whose outcome changes lets
-- the jobs awaiting it go (to their queue, or to Deleted) and counts itself in its batch,
-- whose own outcome may then change in turn.

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
      { 'Enqueued', entry(now, 'Enqueued', why, { queue = queue, parent = parent }) }, { queue = queue })
  else
    local why = 'Its parent ' .. describe(kind, parent) .. ' did not succeed (' .. result .. '), so it will not run'
    transition(id, 'Awaiting', 'Deleted', now,
      { 'Deleted', entry(now, 'Deleted', why, { parent = parent }) },
      { final = true, retention = CALL.retention, cap = CALL.cap })
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
      redis.call('EXPIRE', key, CALL.retention)
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
  local total, s, f, d, was, parent, waited = unpack(redis.call('HMGET', bk,
    'total', 'succeeded', 'failed', 'deleted', 'outcome', 'batch', 'waited'))
  was = was or nil
  local result = batch_outcome(total, s, f, d)
  if result == was then return end
  finish_batch(batch, result, now)
  if waited and result then wake_waiters('batch', batch, waited) end
  follow_up('batch', batch, was, result, parent or nil, now)
end

-- Lets the continuations and the batch of a job (or batch) whose outcome changed follow,
-- Lets the continuations and the batch of a job (or batch) whose outcome changed follow,
-- and theirs in turn, breadth first: chains of any length without deep recursion.
-- CALL.work is the queue of followers still to visit, while a follow-up runs.
follow_up = function(kind, id, before, after, batch, now)
  local item = { kind = kind, id = id, before = before, after = after, batch = batch }
  local work = CALL.work
  if work then table.insert(work, item) return end
  work = { item }
  CALL.work = work
  local i = 1
  while i <= #work do
    local w = work[i]
    i = i + 1
    if w.after then settle_continuations(w.kind, w.id, w.after, now) end
    if w.batch then batch_moved(w.batch, w.before, w.after, now) end
  end
  CALL.work = nil
end
