-- admission.lua: job controls at fetch time: concurrency limits and mutexes (a sorted
-- set of holders per limit, scored by their lease, and a list of waiters), and rate
-- limits (a sorted set of recent starts).

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
        { 'Enqueued', entry(now, 'Enqueued', limit .. ' is free', { queue = queue }) },
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
          { 'Failed', entry(now, 'Failed', 'Gave up waiting for ' .. limit, data) },
          { fields = { 'error_type', 'taskfire.LimitTimeout' } })
      else
        local holder = redis.call('ZRANGE', lk, 0, 0)[1] or '?'
        transition(id, 'Enqueued', 'Scheduled', now,
          { 'Scheduled', entry(now, 'Scheduled', 'Waiting for ' .. limit .. ' (held by job ' .. holder .. ')',
              {}, since + timeout) },
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
        { 'Scheduled', entry(now, 'Scheduled', 'Rate limit ' .. rate .. ': ' .. f.rate_max .. ' starts per '
            .. (period / 1000) .. ' s', {}, due) },
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
