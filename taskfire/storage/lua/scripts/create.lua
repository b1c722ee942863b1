-- create.lua: creates jobs, each Enqueued or Scheduled.
-- One call creates many jobs, so bulk enqueues cost one round trip per chunk.
--
-- ARGV  1 prefix, 2 number of jobs, then per job: id, fn, args (msgpack), queue, opts
--       (msgpack or ""), due, n, then n field/value pairs (job parameters, batch)
--       due: "" to enqueue now, "+<ms>" for a delay from the server's now, "<ms>" for
--       an absolute time
-- Keys  job:<id>, queue:<q>, queue:<q>:wake, queues, schedule, batch:<id>:jobs
-- Returns {created, then for each job not created because a pending job holds its
-- uniqueness key: its position (1-based) and that job's id}. An id that already exists
-- is skipped: ids are made by the caller, so a call repeated after a dropped connection
-- creates nothing twice.

local now = now_ms()
local created_at = fmt(now)
local n = tonumber(ARGV[2])
local created = 0
local duplicates = {}

-- Ids are new (random) unless this call repeats one whose reply a dropped connection
-- lost: one EXISTS over every job key spares a check per job in the usual case.
local keys, base = {}, 3
for position = 1, n do
  keys[position] = K.job(ARGV[base])
  base = base + 7 + tonumber(ARGV[base + 6]) * 2
end
local repeated = false
for i = 1, n, 1000 do
  if redis.call('EXISTS', unpack(keys, i, math.min(i + 999, n))) > 0 then repeated = true end
end

base = 3
for position = 1, n do
  local id, fn, args, queue, opts, due = ARGV[base], ARGV[base + 1], ARGV[base + 2],
    ARGV[base + 3], ARGV[base + 4], ARGV[base + 5]
  local nextra = tonumber(ARGV[base + 6])
  local extra = NO_FIELDS
  if nextra > 0 then
    extra = {}
    for i = base + 7, base + 6 + nextra * 2 do extra[#extra + 1] = ARGV[i] end
  end
  base = base + 7 + nextra * 2
  local jk = keys[position]
  local holder = nil
  for i = 1, #extra, 2 do
    if extra[i] == 'unique' then
      local uk = K.unique(extra[i + 1])
      local other = redis.call('GET', uk)
      if other and other ~= id and UNFINISHED[redis.call('HGET', K.job(other), 'state') or ''] then
        holder = other
      else
        redis.call('SET', uk, id)
      end
    end
  end
  if holder then
    table.insert(duplicates, position)
    table.insert(duplicates, holder)
  elseif not repeated or redis.call('EXISTS', jk) == 0 then
    created = created + 1
    -- The record is written with the state, in one HSET.
    local fields = { 'fn', fn, 'args', args, 'queue', queue, 'created', created_at, unpack(extra) }
    if opts ~= '' then
      fields[#fields + 1] = 'opts'
      fields[#fields + 1] = opts
    end
    for i = 1, #extra, 2 do
      if extra[i] == 'batch' then redis.call('RPUSH', K.batch_jobs(extra[i + 1]), id) end
    end
    -- No history list yet: the first change of state writes the creation entry.
    if due == '' then
      enter_state(id, 'Enqueued', now, { queue = queue, fields = fields })
    else
      local at
      if string.sub(due, 1, 1) == '+' then at = now + tonumber(string.sub(due, 2)) else at = tonumber(due) end
      enter_state(id, 'Scheduled', now, { due = at, fields = fields })
    end
  end
end
return { created, unpack(duplicates) }
