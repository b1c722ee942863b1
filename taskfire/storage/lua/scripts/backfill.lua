-- backfill.lua: builds an index that a store written by an older version lacks, one
-- bounded slice per call, from the index it derives from, in order of score:
--   'retries'  from `schedule`: each Scheduled job whose history shows it replaced a
--              failure (its last two entries: Failed, then Scheduled)
--   'failed'   from state:failed: each Failed job, by function and by exception type
--              (index_failure in lib/states.lua)
-- Jobs that enter or leave the source meanwhile index themselves (lib/states.lua), so the
-- walk only has to see what was there before it; seeing a job twice is harmless (ZADD and
-- the sizes count a job once). The walk's position is kept in `index-builds` (field: the
-- index; value: "<score> <n>", resume after the first n jobs of that score; "done" once
-- built), so each call looks at `limit` jobs at most, whatever the store holds.
--
-- ARGV  1 prefix, 2 index ('retries' or 'failed'), 3 limit (jobs looked at)
-- Keys  index-builds, schedule, retries, state:failed, failed-function:<fn>,
--       failed-exception:<type>, failed-functions, failed-exceptions, job:<id>(:history)
-- Returns {jobs looked at, 1 if the index is built else 0}

local index, limit = ARGV[2], tonumber(ARGV[3])
local position = redis.call('HGET', K.index_builds, index)
if position == 'done' then return { 0, 1 } end
local score, seen = '-inf', 0
if position then
  local s, n = string.match(position, '^(%S+) (%d+)$')
  score, seen = s or score, tonumber(n) or 0
end

local source = index == 'retries' and K.schedule or K.state('Failed')
local found = redis.call('ZRANGE', source, score, '+inf', 'BYSCORE', 'LIMIT', fmt(seen), fmt(limit), 'WITHSCORES')
local looked = #found / 2

local function was_a_retry(id)
  local last = redis.call('LRANGE', K.history(id), -2, -1)
  if #last < 2 then return false end
  local ok, before = pcall(cjson.decode, last[1])
  return ok and type(before) == 'table' and before.state == 'Failed'
end

for i = 1, #found, 2 do
  local id, at = found[i], found[i + 1]
  local state = redis.call('HGET', K.job(id), 'state')
  if index == 'retries' then
    if state == 'Scheduled' and was_a_retry(id) then redis.call('ZADD', K.retries, at, id) end
  elseif state == 'Failed' then
    index_failure(id, K.job(id), at)
  end
  -- the position after this job: its score, and how many jobs of that score are behind
  if at == score then seen = seen + 1 else score, seen = at, 1 end
end

if looked < limit then
  redis.call('HSET', K.index_builds, index, 'done')
  return { looked, 1 }
end
redis.call('HSET', K.index_builds, index, score .. ' ' .. fmt(seen))
return { looked, 0 }
