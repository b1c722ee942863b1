-- base.lua: what every other file of the library uses. The library is assembled by
-- storage/library.py: first the names Python gives it (PREFIX, K: every key under the
-- call's prefix; STATE_INDEX: how each state's jobs are indexed; from storage/keys.py),
-- then lib/ in load order (base, gather, states, workflow, admission, changes, fetch,
-- call), then one function per script of scripts/.
--
-- Conventions
--   ARGV     the call's arguments, as a script sees them (begin sets them).
--   ARGV[1]  the key prefix. Job keys are discovered at run time (ids popped from
--            queues), so scripts cannot declare them up front; a prefix with a hash tag
--            ("{taskfire}:") keeps every key in one Cluster slot.
--   KEYS     the `queues` set, passed only so a Cluster client routes the call to the
--            slot that holds the prefix, and `slot-guard`, a key never written, so that
--            a Cluster moving the slot answers TRYAGAIN before a script runs on a node
--            holding only part of the keys (storage/scripts.py, declared_keys).
--   Times    milliseconds since the epoch, from the server clock (TIME), never the
--            caller's.
--   Layouts  each script's ARGV and reply are described at the top of its file and
--            built and read in Python by storage/wire.py alone.
--
-- What the scripts keep in the records (key names: storage/keys.py)
-- Keys
--   job:<id>            hash   fn, args, queue, state, created, [opts, retries, lease,
--                              started, fetches, recoveries, result]
--   job:<id>:history    list   JSON state entries, oldest first. Written at the job's
--                              first change of state: until then the creation entry
--                              is implied by the hash (created, queue, state) and the
--                              due time, which saves a key per waiting job
--   queue:<q>           list   job ids, pushed left, popped right (FIFO)
--   queue:<q>:wake      list   at most one token; idle workers block on it
--   queues              set    every queue name ever used
--   paused-queues       set    queues no worker takes from until resumed
--   queue-stats         hash   <q>:in, <q>:out: jobs that entered and left each queue;
--                              <q>:stale: ids in the queue list whose job moved on
--   limit:<name>        zset   jobs holding a concurrency limit or mutex, score = lease
--   limit:<name>:waiters list  jobs waiting for it (Scheduled until it frees or they time out)
--   rate:<name>         zset   recent starts of a rate-limited job, score = start time
--   unique:<key>        string the pending job holding a uniqueness key
--   job:<id>:log        list   log lines the job wrote (bounded)
--   schedule            zset   delayed jobs and retries, score = due time
--   processing          zset   running jobs, score = lease deadline
--   state:<name>        final states: capped list, newest first; other states: zset by time
--   custom-states       hash   name of each custom state ever entered -> 'list' (final) or
--                              'zset': the kind of its index, for lists and counts
--   stats:<name>        counter; stats:<name>:<hour> hourly counter that expires
--   servers / server:<id>  zset by heartbeat / hash of one server's facts
--   recurring           zset   recurring job ids, score = next run (+inf: disabled/never)
--   recurring-job:<id>  hash   fn, args, opts, queue, cron, tz, misfire, enabled, next,
--                              created, [last_run, last_job, error, source]
--   recurring:wake      list   at most one token; idle schedulers block on it
--   job:<id>:continuations    list  ids of jobs Awaiting this job (the job has conts=1)
--   job:<id>:outcome, batch:<id>:outcome  list  a token per client blocked in
--                              tf.wait/wait_batch, pushed when it reaches an outcome
--                              (`waited` in its hash counts those clients until then,
--                              and a job's h has 'w'); expires
--   batch:<id>          hash   total, succeeded, failed, deleted, outcome, state,
--                              created, [finished, batch (the enclosing batch)]
--   batch:<id>:jobs     list   its members' ids (jobs, and nested batches' ids)
--   batch:<id>:continuations  list  ids of jobs Awaiting this batch
--   batches             list   batch ids, newest first, capped like final states' indexes

local ARGV

local HOURLY_STATS_TTL = 8 * 24 * 3600
local COUNTED = { Succeeded = true, Failed = true, Deleted = true }
local UNFINISHED = { Enqueued = true, Scheduled = true, Processing = true, Awaiting = true }
local NO_FIELDS = {}  -- read only

-- A job's `h` field: its history's mode, then a letter for each thing it carries that
-- few jobs do, so that the hot path reads one field instead of every rare one.
--   mode     '0': the record stands for the history (no list yet); '1': the list holds
--            it (see states.lua)
--   letters  'b' a batch member, 'u' a uniqueness key, 'l' a limit, mutex or rate,
--            'c' continuations may be waiting for it, 'w' a client may be waiting
--            for its outcome (tf.wait: `waited` counts them)
-- A job from before h existed has none (false): every field is read for it.
local LETTER_OF = { batch = 'b', unique = 'u', limit = 'l', rate = 'l' }

-- The letters for the rare fields among the field/value pairs list[from..to].
local function letters_in(list, from, to)
  local letters = ''
  for i = from, to, 2 do
    local letter = LETTER_OF[list[i]]
    if letter and not string.find(letters, letter, 1, true) then letters = letters .. letter end
  end
  return letters
end

-- Whether h says the job may carry any of `letters` (a job without h may carry all).
local function may_carry(h, letters)
  return not h or string.find(h, letters) ~= nil
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- A number as a command argument or in text. redis.call itself would format a number
-- as a double ('%.17g', ~2.5k instructions), and so would Lua's concatenation ('%.14g');
-- the integer format costs a quarter of that, and the last one made (mostly the call's
-- `now`) is kept.
local fmt_last, fmt_text = nil, nil
local function fmt(n)
  if n ~= fmt_last then fmt_last, fmt_text = n, string.format('%d', n) end
  return fmt_text
end

-- A state entry written by Python arrives as a JSON object without its time; the time
-- is the server's, so it is spliced in here as the first member.
local function stamp(now, body)
  return '{"at":' .. fmt(now) .. ',' .. string.sub(body, 2)
end

-- An entry built by a script itself (promotion, recovery, fetch).
local function entry(now, state, reason, data, due)
  return stamp(now, cjson.encode({ state = state, reason = reason, data = data, due = due }))
end

-- Leaves at most one token in a queue's wake list, so that a worker blocked on it wakes
-- and fetches. Busy workers never pop tokens, so tokens cannot pile up.
local function wake(q)
  local wk = K.wake(q)
  if redis.call('LLEN', wk) == 0 then redis.call('LPUSH', wk, '1') end
end
