-- heartbeat.lua: records that a server is alive and forgets servers that stopped
-- beating. Their running jobs need nothing here: those leases lapse on their own and the
-- next fetch requeues them.
--
-- ARGV  1 prefix, 2 server id, 3 server timeout in ms, then field/value pairs describing
--       the server (host, pid, queues, ...)
-- Keys  servers, server:<id>
-- Returns {now, ids of the servers found dead, 1 if an operator asked this server to
-- quiet (take no new jobs) else 0}

local now = now_ms()
local timeout = tonumber(ARGV[3])
local sk = K.server(ARGV[2])
redis.call('ZADD', K.servers, now, ARGV[2])
redis.call('HSET', sk, 'heartbeat', fmt(now))
for i = 4, #ARGV, 2 do redis.call('HSET', sk, ARGV[i], ARGV[i + 1]) end
redis.call('PEXPIRE', sk, timeout * 2)

local quiet = redis.call('HGET', sk, 'quiet_request') and 1 or 0
local dead = redis.call('ZRANGEBYSCORE', K.servers, '-inf', now - timeout)
for _, id in ipairs(dead) do
  redis.call('ZREM', K.servers, id)
  redis.call('DEL', K.server(id))
end
return { now, dead, quiet }
