-- continue.lua: creates a job that runs after a parent (a job or a batch) finishes. The
-- parent's state is read and the continuation attached in one step, so a parent that
-- finishes meanwhile cannot be missed: a parent already done releases it at once.
--
-- ARGV  1 prefix, 2 parent kind ('job' or 'batch'), 3 parent id, 4 on ('succeeded': run
--       only if the parent succeeded; 'finished': run whatever its outcome), 5 retention
--       in seconds, 6 index cap, then the job: 7 id, 8 fn, 9 args, 10 queue, 11 opts,
--       12 n, then n field/value pairs (job parameters)
-- Keys  job:<id>, job:<id>:history, job/batch:<parent>(:continuations), state:awaiting,
--       queue:<q>(:wake), queues
-- Returns 1 created, 0 already created (a repeated call), -1 no such parent.

local kind, parent, on = ARGV[2], ARGV[3], ARGV[4]
CALL.retention, CALL.cap = tonumber(ARGV[5]), tonumber(ARGV[6])
local id, fn, args, queue, opts = ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11]
local result
if kind == 'job' then
  local state = redis.call('HGET', K.job(parent), 'state')
  if not state then return -1 end
  result = outcome(state, redis.call('PTTL', K.job(parent)) > 0)
else
  local state, out = unpack(redis.call('HMGET', K.batch(parent), 'state', 'outcome'))
  if not state then return -1 end
  result = out or nil
end
local jk = K.job(id)
if redis.call('EXISTS', jk) == 1 then return 0 end

local now = now_ms()
local last = 12 + tonumber(ARGV[12]) * 2
redis.call('HSET', jk, 'fn', fn, 'args', args, 'queue', queue, 'created', fmt(now),
  'parent', parent, 'parent_kind', kind, 'on', on, 'h', '1' .. letters_in(ARGV, 13, last), unpack(ARGV, 13, last))
if opts ~= '' then redis.call('HSET', jk, 'opts', opts) end
local waits_for = 'Waiting for ' .. describe(kind, parent) .. (on == 'finished' and ' to finish' or ' to succeed')
redis.call('RPUSH', K.history(id), entry(now, 'Awaiting', waits_for, { parent = parent, on = on }))
enter_state(id, jk, 'Awaiting', now, {})
local action = result and decide(on, result) or 'wait'
if action == 'wait' then
  redis.call('RPUSH', K.continuations(kind, parent), id)
  if kind == 'job' then
    local pk = K.job(parent)
    local h = redis.call('HGET', pk, 'h')
    redis.call('HSET', pk, 'conts', '1')
    if h and not string.find(h, 'c', 2, true) then redis.call('HSET', pk, 'h', h .. 'c') end
  end
else
  release(id, action, kind, parent, result, now)
end
return 1
