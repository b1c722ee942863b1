-- extend.lua: renews the leases of all jobs a worker is running, in one call (and their
-- hold on a concurrency limit). A lease is renewed only while the job still carries the
-- worker's token: a job that was requeued, deleted or taken by another worker meanwhile
-- is reported back as lost. Jobs someone asked to cancel are reported too.
--
-- ARGV  1 prefix, 2 lease in ms, then job id / lease token pairs
-- Keys  job:<id>, processing, limit:<name>
-- Returns {ids whose lease is no longer the caller's, ids asked to cancel}.

local deadline = now_ms() + tonumber(ARGV[2])
local lost, cancel = {}, {}
for i = 3, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local lease, limit, cancelled = unpack(redis.call('HMGET', K.job(id), 'lease', 'limit', 'cancel'))
  if lease == token then
    redis.call('ZADD', K.processing, 'XX', deadline, id)
    if limit then redis.call('ZADD', K.limit(limit), 'XX', deadline, id) end
    if cancelled then table.insert(cancel, id) end
  else
    table.insert(lost, id)
  end
end
return { lost, cancel }
