#!/usr/bin/env rotlab-double
-- rl.proc, the process glue of the grid launcher: spawn (env, output files, process groups), wait, kill, alive
-- (zombies count as dead), sleep, exe, pid, signal traps, and every call's bad-argument errors.
local rl = require "rotlab"
local p = rl.proc
local t = require("rotlab.tap")()

local out = os.tmpname()
local pid = p.spawn({ "sh", "-c", 'echo "$ROTLAB_T1-${HOME:-nohome}"; exit 3' },
  { env = { ROTLAB_T1 = "set", HOME = false }, stdout = out })
local got, kind, code = p.wait(pid)
t:ok(got == pid and kind == "exit" and code == 3, "wait returns the exit code", ("%s %s %s"):format(got, kind, code))
local f = io.open(out)
t:is(f:read("a"), "set-nohome\n", "env sets and removes variables; stdout goes to the file")
f:close()
os.remove(out)

pid = p.spawn({ "sleep", "30" }, { pgroup = true })
t:is(p.wait(pid, true), nil, "wait(pid, true) on a running child returns nil")
t:ok(p.alive(pid), "a running child is alive")
t:ok(p.kill(-pid, "KILL"), "kill of its process group")
got, kind, code = p.wait(pid)
t:ok(kind == "signal" and code == 9, "wait reports the signal")
t:ok(not p.alive(pid), "a reaped child is not alive")

pid = p.spawn({ "sh", "-c", "exit 0" })
p.sleep(0.2) -- it exits; not reaped yet: a zombie
t:ok(not p.alive(pid), "a zombie (exited, not reaped) counts as dead")
p.wait(pid)

t:ok(p.exe():match("^/.*rotlab"), "exe is this program's absolute path", p.exe())
t:ok(math.type(p.pid()) == "integer" and p.alive(p.pid()), "pid is this process")
local t0 = rl.wall_time()
p.sleep(0.05)
t:ok(rl.wall_time() - t0 >= 0.045, "sleep sleeps")
t:is(p.trapped(), nil, "no trapped signal yet")
t:ok(p.trap({ "USR1" }), "trap USR1")
p.kill(p.pid(), "USR1")
t:is(p.trapped(), "USR1", "a trapped signal is recorded instead of killing the process")
local ok, msg = p.kill(999999999 // 1000, 0)
t:ok(ok == false and type(msg) == "string", "kill of a missing process returns false and the reason", msg)

t:raises(function() p.spawn({}) end, "expected a non%-empty list", "spawn of an empty list")
t:raises(function() p.spawn({ 1 }) end, "entry 1 is not a string", "spawn of a non-string")
t:raises(function() p.spawn("sh") end, "table expected", "spawn of a string")
t:raises(function() p.spawn({ "/nonexistent/prog" }) end, "cannot start '/nonexistent/prog'", "spawn of a missing file")
t:raises(function() p.spawn({ "sh" }, { env = { ["A=B"] = "x" } }) end, "bad variable name", "spawn env name")
t:raises(function() p.spawn({ "sh" }, { env = { A = 1 } }) end, "expected NAME = string or false", "spawn env value")
t:raises(function() p.spawn({ "sh" }, { pgrp = true }) end, "unknown option 'pgrp'", "spawn unknown option")
t:raises(function() p.kill(1, "NOPE") end, "unknown signal 'NOPE'", "kill with an unknown signal")
t:raises(function() p.kill(0, "TERM") end, "expected a process id", "kill of pid 0")
t:raises(function() p.wait(0) end, "expected a process id or %-1", "wait of pid 0")
t:raises(function() p.wait(999999) end, "wait: process 999999", "wait of a non-child")
t:raises(function() p.alive(-1) end, "expected a process id", "alive of -1")
t:raises(function() p.sleep(-1) end, "expected seconds in 0%.%.1e6", "sleep of -1")
t:raises(function() p.trap({ "KILL" }) end, "cannot be trapped", "trap KILL")
os.exit(t:done())
