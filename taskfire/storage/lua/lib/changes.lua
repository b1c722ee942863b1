-- changes.lua: a state change asked for from Python (transition.lua, finish.lua). Reads its arguments
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
  local old, lease, h, cancel, logged = unpack(redis.call('HMGET', jk, 'state', 'lease', 'h', 'cancel', 'logged'))
  if not old then return 0, '', after end
  local expected, unless, token = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local mark = ',' .. old .. ','
  if (expected ~= '' and not string.find(expected, mark, 1, true)) or (unless ~= '' and string.find(unless, mark, 1, true)) then
    return -1, old, after
  end
  if token ~= '' and lease ~= token then return -2, old, after end

  local state, final = ARGV[a + 4], ARGV[a + 8] == '1'
  local retention, cap = tonumber(ARGV[a + 9]), tonumber(ARGV[a + 10])
  CALL.retention, CALL.cap = retention, cap
  local e = a + 13 + nfields * 2  -- the first entry
  local batch, conts, unique, limit, waited = false, false, false, false, false
  if may_carry(h, '[buclw]') then
    batch, conts, unique, limit, waited = unpack(redis.call('HMGET', jk, 'batch', 'conts', 'unique', 'limit', 'waited'))
  end
  if old == 'Processing' and final and nentries == 1 and string.sub(h or '', 1, 1) == '0'
      and STATE_INDEX[state] == 'list' and not (batch or conts or unique or limit or waited) then
    -- The step most jobs take at the end of their run: the final entry goes in the
    -- record (states.lua), and nothing follows the job.
    end_run(id, jk, cancel)
    count(state, now)
    enter_final(id, jk, state, retention, cap, false, logged, 'done', done_of(now, state, ARGV[e + 1]),
      unpack(ARGV, a + 12, a + 11 + nfields * 2))
    return 1, old, after
  end

  local queue = ARGV[a + 5]
  if old == 'Enqueued' then
    -- A waiting job leaves its id behind in its queue list: counted, so that the queue's
    -- length leaves it out (fetch and bulk.lua count it off when they pop it).
    local waited_in = redis.call('HGET', jk, 'queue')
    if waited_in then redis.call('HINCRBY', K.queue_stats, waited_in .. ':stale', 1) end
    if queue == '' then queue = waited_in end
  end
  if queue == '' then queue = redis.call('HGET', jk, 'queue') end
  local due = nil
  local d = ARGV[a + 7]
  if d ~= '' then
    if string.sub(d, 1, 1) == '+' then due = now + tonumber(string.sub(d, 2)) else due = tonumber(d) end
  end
  local fields = { unpack(ARGV, a + 12, a + 11 + nfields * 2) }
  local entries = {}
  for i = 0, nentries - 1 do
    entries[i * 2 + 1] = ARGV[e + i * 2]
    entries[i * 2 + 2] = stamp(now, ARGV[e + i * 2 + 1])
  end
  if due then
    -- The new state's entry records when it is due, known only now for a relative delay.
    entries[nentries * 2] = '{"due":' .. fmt(due) .. ',' .. string.sub(entries[nentries * 2], 2)
  end
  transition(id, old, state, now, entries, {
    queue = queue, front = ARGV[a + 6] == '1', due = due, fields = fields,
    final = final, retention = retention, cap = cap,
    batch = batch, conts = conts, unique = unique, limit = limit, waited = waited, h = h, cancel = cancel,
    logged = logged,
  })
  return 1, old, after
end
