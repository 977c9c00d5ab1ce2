--[[
rotlab -- `require "rotlab"`: the public Lua API (DESIGN section 7). The C binding lives in `rotlab.core`;
this file gathers it and the pure-Lua parts into one table.
]]
local core = require "rotlab.core"

local rl = {}
for k, v in pairs(core) do
  if type(k) == "string" and not k:find("^_") then rl[k] = v end
end
rl.core = core
rl.version = "0.1.0"

rl.nn = require "rotlab.nn"
rl.pool = require "rotlab.pool"
rl.optim = require "rotlab.optim"
rl.data = require "rotlab.data"
rl.h5 = rl.data.h5
rl.db = require "rotlab.db"
rl.sqlite = rl.db.sqlite
rl.json = require "rotlab.json"
rl.grid = require "rotlab.grid"
rl.proc = { spawn = core.proc_spawn, wait = core.proc_wait, kill = core.proc_kill, alive = core.proc_alive,
  sleep = core.proc_sleep, exe = core.proc_exe, pid = core.proc_pid, cpus = core.proc_cpus,
  trap = core.proc_trap, trapped = core.proc_trapped }

return rl
