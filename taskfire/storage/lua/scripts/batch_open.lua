-- batch_open.lua: creates batches, before their jobs (create.lua, same MULTI), so no
-- member can finish before its batch counts it. Parents come before their nested
-- batches; a nested batch is one member of its parent.
--
-- ARGV  1 prefix, 2 retention in seconds, 3 length of the batches index, 4 number of
--       batches, then per batch: id, total members, parent batch id ("" for none)
-- Keys  batch:<id>, batch:<id>:jobs, batches
-- Returns the number of batches created.

local now = now_ms()
local created = 0
CALL.retention = tonumber(ARGV[2])
for i = 0, tonumber(ARGV[4]) - 1 do
  local id, total, parent = ARGV[5 + i * 3], ARGV[6 + i * 3], ARGV[7 + i * 3]
  local bk = K.batch(id)
  if redis.call('EXISTS', bk) == 0 then
    created = created + 1
    redis.call('HSET', bk, 'total', total, 'succeeded', 0, 'failed', 0, 'deleted', 0,
      'state', 'Started', 'created', fmt(now))
    redis.call('LPUSH', K.batches, id)
    if parent ~= '' then
      redis.call('HSET', bk, 'batch', parent)
      redis.call('RPUSH', K.batch_jobs(parent), id)
    end
    if tonumber(total) == 0 then  -- nothing to wait for
      finish_batch(id, 'succeeded', now)
      follow_up('batch', id, nil, 'succeeded', parent ~= '' and parent or nil, now)
    end
  end
end
if created > 0 then redis.call('LTRIM', K.batches, 0, tonumber(ARGV[3]) - 1) end
return created
