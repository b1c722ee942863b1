-- transition.lua: the one door for a state change asked for from Python (client API,
-- worker outcome, shutdown requeue). Checks the expected state and the lease, then
-- writes the history, counters, fields and state structures in one step.
--
-- ARGV  1 prefix, 2 job id,
--       3 states the job must be in, as ",A,B," ("" accepts any),
--       4 states it must not be in, same form,
--       5 lease token the caller must hold ("" for none),
--       6 new state, 7 queue ("" keeps the job's queue), 8 front ("1" puts an enqueued
--       job next in line), 9 due ("+<ms>" relative or "<ms>" absolute, for Scheduled),
--       10 final ("1" starts the retention TTL), 11 retention in seconds,
--       12 index cap (length of a final state's index list),
--       13 n fields, then n field/value pairs to set on the job hash,
--       then m entries, then m state/body pairs (JSON objects without their time)
-- Keys  job:<id>, job:<id>:history, queue:<q>(:wake), queues, schedule, processing,
--       state:<name>, stats:<name>
-- Returns {1, old} applied, {0, ""} no such job, {-1, old} not in an expected state,
--         {-2, old} the caller's lease is gone.

local id = ARGV[2]
local jk = K.job(id)
local old = redis.call('HGET', jk, 'state')
if not old then return { 0, '' } end
local function among(set) return string.find(set, ',' .. old .. ',', 1, true) ~= nil end
if (ARGV[3] ~= '' and not among(ARGV[3])) or (ARGV[4] ~= '' and among(ARGV[4])) then
  return { -1, old }
end
if ARGV[5] ~= '' and redis.call('HGET', jk, 'lease') ~= ARGV[5] then return { -2, old } end

local now = now_ms()
local state = ARGV[6]
local queue = ARGV[7]
if queue == '' then queue = redis.call('HGET', jk, 'queue') end
local due = nil
if ARGV[9] ~= '' then
  if string.sub(ARGV[9], 1, 1) == '+' then due = now + tonumber(string.sub(ARGV[9], 2))
  else due = tonumber(ARGV[9]) end
end

local nfields = tonumber(ARGV[13])
local at = 14
for i = 0, nfields - 1 do
  redis.call('HSET', jk, ARGV[at + i * 2], ARGV[at + i * 2 + 1])
end
at = at + nfields * 2
local nentries = tonumber(ARGV[at])
local entries = {}
for i = 0, nentries - 1 do
  entries[i + 1] = { ARGV[at + 1 + i * 2], stamp(now, ARGV[at + 2 + i * 2]) }
end
if due then
  -- The new state's entry records when it is due, known only now for a relative delay.
  local last = entries[nentries][2]
  entries[nentries][2] = '{"due":' .. fmt(due) .. ',' .. string.sub(last, 2)
end

transition(id, old, state, now, entries, {
  queue = queue, front = ARGV[8] == '1', due = due,
  final = ARGV[10] == '1', retention = tonumber(ARGV[11]), cap = tonumber(ARGV[12]),
})
return { 1, old }
