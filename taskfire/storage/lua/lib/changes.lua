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
  local old, lease, queue, batch, conts, unique, limit = unpack(redis.call('HMGET', jk,
    'state', 'lease', 'queue', 'batch', 'conts', 'unique', 'limit'))
  if not old then return 0, '', after end
  local function among(set) return string.find(set, ',' .. old .. ',', 1, true) ~= nil end
  if (ARGV[a + 1] ~= '' and not among(ARGV[a + 1])) or (ARGV[a + 2] ~= '' and among(ARGV[a + 2])) then
    return -1, old, after
  end
  if ARGV[a + 3] ~= '' and lease ~= ARGV[a + 3] then return -2, old, after end

  local state = ARGV[a + 4]
  CALL.retention, CALL.cap = tonumber(ARGV[a + 9]), tonumber(ARGV[a + 10])
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
