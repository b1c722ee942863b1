-- wait.lua: a client is about to block until a job or batch reaches an outcome (tf.wait,
-- tf.wait_batch). The check and the mark are one step, so an outcome reached between
-- this call and the client's BLPOP still leaves the client its token.
--
-- ARGV  1 prefix, 2 kind ('job' or 'batch'), 3 its id
-- Keys  job:<id> or batch:<id>: `waited` counts the clients to wake (wake_waiters, in
--       lib/states.lua, pushes their tokens to <kind>:<id>:outcome and clears it); a
--       job's `h` gets the letter 'w', so that its changes read `waited`
-- Returns 1 it has an outcome (Succeeded, Failed after its last retry, Deleted or
-- another final state; a batch's outcome), 0 marked: the outcome will leave a token,
-- -1 no such job or batch.

local kind, id = ARGV[2], ARGV[3]
local key
local done
if kind == 'job' then
  key = K.job(id)
  local state, h = unpack(redis.call('HMGET', key, 'state', 'h'))
  if not state then return -1 end
  done = outcome(state, redis.call('PTTL', key) > 0) ~= nil
  if not done and h and not string.find(h, 'w', 2, true) then redis.call('HSET', key, 'h', h .. 'w') end
else
  key = K.batch(id)
  local state, result = unpack(redis.call('HMGET', key, 'state', 'outcome'))
  if not state then return -1 end
  done = result ~= false
end
if done then return 1 end
redis.call('HINCRBY', key, 'waited', 1)
return 0
