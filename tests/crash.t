#!/usr/bin/env rotlab-double
-- Crash safety: a grid (launcher and workers) killed with SIGKILL at random points, again and again, leaves a
-- consistent DB each time (integrity ok, no half-written run: a run's rows are whole epochs, its status tells), and
-- a resumed grid completes every run, each FINISHED exactly once (counted by a trigger on the run table).
-- Two phases: epochs that sleep (kills land mostly mid-epoch) and epochs that only write (kills land mostly inside
-- SQLite transactions). The kill times are random: the seed is printed (set ROTLAB_CRASH_SEED to replay one).
local rl = require "rotlab"
local u = dofile((ROTLAB_ROOT or ".") .. "/tests/fixtures/gridutil.lua")
local t = require("rotlab.tap")()

local seed = tonumber(os.getenv("ROTLAB_CRASH_SEED") or "") or (os.time() % 100000)
math.randomseed(seed)
t:diag(("kill times from seed %d (ROTLAB_CRASH_SEED=%d replays them)"):format(seed, seed))

local dir = u.tmpdir()

-- The invariants that must hold after any kill; returns a list of violations.
local function violations(db, epochs)
  local bad = {}
  local ic = u.scalar(db, "PRAGMA integrity_check")
  if ic ~= "ok" then bad[#bad + 1] = "integrity_check: " .. tostring(ic) end
  local fk = u.rows(db, "PRAGMA foreign_key_check")
  if #fk > 0 then bad[#bad + 1] = ("%d foreign key violations"):format(#fk) end
  for _, r in ipairs(u.rows(db, "SELECT r.id, r.status, " ..
    "(SELECT count(*) FROM metric m WHERE m.run_id = r.id) AS nm, " ..
    "(SELECT count(*) FROM trace x WHERE x.run_id = r.id) AS nt, " ..
    "(SELECT coalesce(max(step), 0) FROM metric m WHERE m.run_id = r.id) AS last FROM run r")) do
    local whole = r.nm % 2 == 0 and r.nt == r.nm // 2 and r.last == r.nt
    if not whole then
      bad[#bad + 1] = ("run %d (%s): %d metric and %d trace rows up to epoch %d: not whole epochs"):format(r.id,
        r.status, r.nm, r.nt, r.last)
    elseif r.status == "FINISHED" and r.nt ~= epochs then
      bad[#bad + 1] = ("run %d FINISHED with %d of %d epochs"):format(r.id, r.nt, epochs)
    end
  end
  return bad
end

local function phase(name, args, epochs, nruns, kills, lo, hi)
  local db = dir .. "/" .. name .. ".db"
  -- the DB first, with a log of every transition to FINISHED
  local store = rl.db.open(db)
  store.db:exec("CREATE TABLE finish_log (run_key TEXT NOT NULL); " ..
    "CREATE TRIGGER log_finish AFTER UPDATE OF status ON run WHEN NEW.status = 'FINISHED' AND " ..
    "OLD.status <> 'FINISHED' BEGIN INSERT INTO finish_log VALUES (NEW.run_key); END")
  store:close()
  local gargs = { "grid", u.tiny, "--jobs", "2", "db=" .. db }
  for _, a in ipairs(args) do gargs[#gargs + 1] = a end
  local all_consistent, problems, progress = true, {}, {}
  local t0 = rl.wall_time()
  for k = 1, kills do
    local log = dir .. "/" .. name .. ".log"
    local pid = u.spawn_rotlab(gargs, { stdout = log, stderr = log })
    local delay = lo + (hi - lo) * math.random()
    rl.proc.sleep(delay)
    rl.proc.kill(-pid, "KILL")
    local _, kind = rl.proc.wait(pid)
    -- let the group's workers die too (they are in the same group: already killed); give the kernel a moment
    rl.proc.sleep(0.02)
    progress[#progress + 1] = ("%.0fms:%s:%d"):format(delay * 1000, kind == "signal" and "killed" or "ended",
      u.scalar(db, "SELECT count(*) FROM run WHERE status = 'FINISHED'"))
    for _, v in ipairs(violations(db, epochs)) do
      all_consistent = false
      problems[#problems + 1] = ("after kill %d: %s"):format(k, v)
    end
  end
  t:diag(("%s: kill delay:kind:finished runs -> %s"):format(name, table.concat(progress, " ")))
  t:ok(all_consistent, ("%s: the DB is consistent after each of %d random SIGKILLs"):format(name, kills),
    table.concat(problems, "\n"))
  local stuck = u.scalar(db, "SELECT count(*) FROM run WHERE status = 'RUNNING'")
  local out, code = u.rotlab(gargs)
  local secs = rl.wall_time() - t0
  t:ok(code == 0, ("%s: the resumed grid completes (exit 0)"):format(name), out)
  t:diag(("%s: %d RUNNING rows of dead workers before the resume; %.1f s in all"):format(name, stuck, secs))
  t:is(u.scalar(db, "SELECT count(*) FROM run WHERE status = 'FINISHED'"), nruns,
    ("%s: all %d runs FINISHED"):format(name, nruns))
  t:is(u.scalar(db, "SELECT count(*) FROM run"), nruns, ("%s: one row per run"):format(name))
  t:is(u.scalar(db, "SELECT count(DISTINCT run_key) FROM finish_log"), nruns, ("%s: every run FINISHED"):format(name))
  t:is(u.scalar(db, "SELECT count(*) FROM finish_log"), nruns, ("%s: ... exactly once"):format(name))
  t:is(u.scalar(db, "SELECT count(*) FROM metric"), nruns * epochs * 2, ("%s: no lost or doubled metric row"):format(
    name))
  local v = violations(db, epochs)
  t:ok(#v == 0, ("%s: consistent at the end"):format(name), table.concat(v, "\n"))
end

-- sleeping epochs: 100 runs x 3 epochs x 20 ms (about 3 s of work for 2 workers), kills after 0.05-0.4 s
phase("sleepy", { "seeds=5", "epochs=3", "ms=20" }, 3, 100, 8, 0.05, 0.4)
-- writing epochs: 100 runs x 50 epochs, no sleep (5000 flushes), kills after 20-150 ms (mostly inside transactions)
phase("writes", { "seeds=5", "epochs=50", "ms=0" }, 50, 100, 8, 0.02, 0.15)

u.cleanup()
os.exit(t:done())
