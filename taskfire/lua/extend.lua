-- extend.lua: renews the leases of all jobs a worker is running, in one call. A lease is
-- renewed only while the job still carries the worker's token: a job that was requeued,
-- deleted or taken by another worker meanwhile is reported back as lost.
--
-- ARGV  1 prefix, 2 lease in ms, then job id / lease token pairs
-- Keys  job:<id>, processing
-- Returns the ids whose lease is no longer the caller's.

local deadline = now_ms() + tonumber(ARGV[2])
local lost = {}
for i = 3, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  if redis.call('HGET', K.job(id), 'lease') == token then
    redis.call('ZADD', K.processing, 'XX', deadline, id)
  else
    table.insert(lost, id)
  end
end
return lost
