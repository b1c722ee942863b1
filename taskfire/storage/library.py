"""taskfire's Lua, assembled into one Redis Functions library.

The shared code (`lua/lib/`, in the order of `SHARED`) is loaded once per server with
FUNCTION LOAD, and each script of `lua/scripts/` becomes one function of it, so the
shared definitions are made at load and not at every call, as they would be with
EVALSHA. Python writes the part of the library that must agree with it (key names and
each state's index kind, from keys.py), so nothing is spelled twice.

The library's name carries a hash of its code, so workers and clients of different
versions share a server without calling each other's scripts.

A Redis at `maxmemory` (noeviction) refuses every function unless it is flagged
`allow-oom`. The ones that move stored jobs along or remove them are (ALLOW_OOM): a full
Redis keeps running, finishing and deleting the jobs it holds, which write a little (a
history entry, a result) and let memory be freed as finished jobs expire, while what
creates jobs is refused, and with it the memory that has no bound (docs/operations.md,
"A full Redis").
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from .keys import lua_definitions

LUA = Path(__file__).with_name("lua")

#: The shared code, in load order: each file may use what the files before it define.
SHARED = ("base.lua", "gather.lua", "states.lua", "workflow.lua", "admission.lua", "changes.lua", "fetch.lua",
          "call.lua")

#: One function per script: lua/scripts/<name>.lua.
SCRIPT_NAMES = ("create", "fetch", "transition", "finish", "extend", "heartbeat", "recurring_claim",
                "recurring_fire", "continue", "batch_open", "bulk", "backfill", "wait")

#: Functions a full Redis still runs: taking, finishing, moving and deleting stored jobs,
#: renewing their leases, and the servers' heartbeats. Not create, continue, batch_open,
#: recurring_claim or recurring_fire: those make new jobs.
ALLOW_OOM = frozenset({"fetch", "transition", "finish", "extend", "heartbeat", "bulk"})


def _assemble() -> tuple[str, str]:
    """The library's code and its version (a hash of that code)."""
    shared = [lua_definitions()] + [(LUA / "lib" / name).read_text() for name in SHARED]
    bodies = {name: (LUA / "scripts" / f"{name}.lua").read_text() for name in SCRIPT_NAMES}
    version = hashlib.sha1("\0".join([*shared, *bodies.values()]).encode()).hexdigest()[:12]
    parts = [f"#!lua name=taskfire_{version}", *shared]
    for name, body in bodies.items():
        flags = "'allow-oom'" if name in ALLOW_OOM else ""
        parts.append(f"local function {name}_script()\n{body}\nend\n"
                     f"redis.register_function{{function_name = '{function_name(version, name)}', "
                     f"callback = function(keys, args) return run({name}_script, keys, args) end, "
                     f"flags = {{{flags}}}}}")
    return "\n".join(parts), version


def function_name(version: str, script: str) -> str:
    return f"tf_{version}_{script}"


LIBRARY, LIBRARY_VERSION = _assemble()
FUNCTIONS = {name: function_name(LIBRARY_VERSION, name) for name in SCRIPT_NAMES}
