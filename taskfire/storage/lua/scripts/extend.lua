-- extend.lua: renews the leases of all jobs a worker is running, in one call (and their
-- hold on a concurrency limit). A lease is renewed only while the job is still running
-- under the worker's token: a job that was requeued, deleted or taken by another worker
-- meanwhile is reported back as lost (its record keeps the token of its last run, so
-- the state is checked too). Jobs someone asked to cancel are reported too.
--
-- ARGV  1 prefix, 2 lease in ms, then job id / lease token pairs
-- Keys  job:<id>, processing, limit:<name>
-- Returns {ids whose lease is no longer the caller's, ids asked to cancel}.

local deadline = now_ms() + tonumber(ARGV[2])
local lost, cancel = {}, {}
for i = 3, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local lease, limit, cancelled, state = unpack(redis.call('HMGET', K.job(id), 'lease', 'limit', 'cancel', 'state'))
  if lease == token and state == 'Processing' then
    redis.call('ZADD', K.processing, 'XX', deadline, id)
    if limit then redis.call('ZADD', K.limit(limit), 'XX', deadline, id) end
    if cancelled then table.insert(cancel, id) end
  else
    table.insert(lost, id)
  end
end
return { lost, cancel }
