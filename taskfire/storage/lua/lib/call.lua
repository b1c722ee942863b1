-- call.lua: how each function of the library runs its script.

-- Starts a call: its arguments, its prefix's keys, and fresh per-call state (a library's
-- upvalues outlive calls, and a call that raised may have left them half-way).
local function begin(keys, args)
  ARGV = args
  if args[1] ~= PREFIX then
    PREFIX = args[1]
    K.name_fixed()
  end
  CALL = { pending = {}, work = nil, retention = 86400, cap = 10000 }
end

-- Runs one script as a call: begin, the script, then flush. A script that raises half-way
-- keeps what it wrote (Redis has no rollback), so flush runs then too: every job it
-- created or moved reaches its queue list and is counted, as if it had run alone.
local function run(script, keys, args)
  begin(keys, args)
  local ok, reply = pcall(script)
  flush()
  if not ok then error(reply, 0) end
  return reply
end
