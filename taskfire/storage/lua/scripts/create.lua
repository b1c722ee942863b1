-- create.lua: creates jobs, each Enqueued or Scheduled.
-- One call creates many jobs, so bulk enqueues cost one round trip per chunk.
--
-- ARGV  1 prefix, 2 repeated ("1" when the caller sends this call again after a dropped
--       connection lost its reply), 3 number of jobs, then per job: id, fn, args
--       (msgpack), queue, opts (msgpack or ""), due, n, then n field/value pairs (job
--       parameters, batch, controls)
--       due: "" to enqueue now, "+<ms>" for a delay from the server's now, "<ms>" for
--       an absolute time
-- Keys  job:<id>, queue:<q>, queue:<q>:wake, queues, schedule, batch:<id>:jobs
-- Returns {created, then for each job not created because a pending job holds its
-- uniqueness key: its position (1-based) and that job's id}. Ids are made by the caller:
-- a repeated call skips the ids its first try created, so nothing is created twice,
-- and a first try (random ids) checks none.
--
-- A new job's record is written with its state in one HSET, with h = '0': no history
-- list until it leaves the happy path (see lib/states.lua).

local now = now_ms()
local created_at = fmt(now)
local repeated = ARGV[2] == '1'
local n = tonumber(ARGV[3])
local created = 0
local duplicates = {}

-- The job a uniqueness key is held by, if it is pending and not this one; else this job
-- takes the key.
local function holder_of(id, key)
  local uk = K.unique(key)
  local other = redis.call('GET', uk)
  if other and other ~= id and UNFINISHED[redis.call('HGET', K.job(other), 'state') or ''] then return other end
  redis.call('SET', uk, id)
  return nil
end

local base = 4
for position = 1, n do
  local id, fn, args, queue, opts, due = ARGV[base], ARGV[base + 1], ARGV[base + 2],
    ARGV[base + 3], ARGV[base + 4], ARGV[base + 5]
  local nextra = tonumber(ARGV[base + 6])
  local h = '0' .. letters_in(ARGV, base + 7, base + 6 + nextra * 2)
  local fields = { 'fn', fn, 'args', args, 'created', created_at, 'h', h }  -- (Enqueued adds the queue)
  local holder, batch = nil, nil
  for i = base + 7, base + 6 + nextra * 2, 2 do
    local field, value = ARGV[i], ARGV[i + 1]
    fields[#fields + 1] = field
    fields[#fields + 1] = value
    if field == 'unique' then holder = holder_of(id, value)
    elseif field == 'batch' then batch = value end
  end
  base = base + 7 + nextra * 2
  local jk = K.job(id)
  if holder then
    duplicates[#duplicates + 1] = position
    duplicates[#duplicates + 1] = holder
  elseif not repeated or redis.call('EXISTS', jk) == 0 then
    created = created + 1
    if opts ~= '' then
      fields[#fields + 1] = 'opts'
      fields[#fields + 1] = opts
    end
    if batch then redis.call('RPUSH', K.batch_jobs(batch), id) end
    if due == '' then
      enter_state(id, jk, 'Enqueued', now, { queue = queue, fields = fields })
    else
      local at
      if string.sub(due, 1, 1) == '+' then at = now + tonumber(string.sub(due, 2)) else at = tonumber(due) end
      fields[#fields + 1] = 'queue'
      fields[#fields + 1] = queue
      enter_state(id, jk, 'Scheduled', now, { due = at, fields = fields })
    end
  end
end
return { created, unpack(duplicates) }
