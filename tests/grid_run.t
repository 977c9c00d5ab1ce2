#!/usr/bin/env rotlab-double
-- `rotlab grid`: N worker processes on one DB, resume (finished skipped; failed, interrupted and dead runs rerun;
-- live runs of other workers left alone), heartbeats, a killed worker replaced, shards from Slurm's environment,
-- 8 concurrent writers without 'database is locked' or a lost row, and the commands' bad-input exits (code 2).
-- The concurrent-writers phase lasts WRITER_SECONDS: 10 s by default so `make test` stays fast, 60 s (the issue's
-- minute) when ROTLAB_LONG_TESTS=1.
local rl = require "rotlab"
local u = dofile((ROTLAB_ROOT or ".") .. "/tests/fixtures/gridutil.lua")
local t = require("rotlab.tap")()

local WRITER_SECONDS = os.getenv("ROTLAB_LONG_TESTS") == "1" and 60 or 10
local WRITERS = 8

local dir = u.tmpdir()
local function grid(args)
  local a = { "grid", u.tiny }
  for _, x in ipairs(args) do a[#a + 1] = x end
  return u.rotlab(a)
end

---------------------------------------------------------------------------------------------- jobs

local db = dir .. "/jobs.db"
local out, code = grid{ "--jobs", "3", "db=" .. db, "seeds=2", "ms=10" }
t:is(code, 0, "grid --jobs 3 exits 0", out)
t:ok(out:find("40 FINISHED %(40 now, 0 before%), 0 FAILED, 0 left; 3 worker%(s%), 0 died"), "summary line", out)
t:is(u.scalar(db, "SELECT count(*) FROM run WHERE status = 'FINISHED'"), 40, "every run of the 20 x 2 grid FINISHED")
t:is(u.scalar(db, "SELECT count(DISTINCT pid) FROM run"), 3, "three workers shared the runs")
t:is(u.scalar(db, "SELECT count(*) FROM metric"), 40 * 3 * 2, "3 epochs x 2 metrics per run, no row lost or doubled")
t:is(u.scalar(db, "SELECT count(*) FROM trace"), 40 * 3, "one trace row per epoch")
t:is(u.scalar(db, "PRAGMA journal_mode"), "wal", "the DB is in WAL mode")
t:is(u.scalar(db, "SELECT count(*) FROM run WHERE config_json LIKE '%\"inner\"%' AND config_json NOT LIKE " ..
  "'%sinkhorn%'"), 0, "the conditional axis inner exists only for the Sinkhorn solver")

local hb = u.scalar(db, "SELECT max(heartbeat) FROM run")
out, code = grid{ "--jobs", "2", "db=" .. db, "seeds=2", "ms=10" }
t:ok(code == 0 and out:find("every run already FINISHED"), "a second grid (resume) has nothing to do", out)
t:is(u.scalar(db, "SELECT max(heartbeat) FROM run"), hb, "and touches no run")

---------------------------------------------------------------------------------------------- resume

-- leave the DB as a crash would: failed, interrupted, dead-RUNNING and missing runs; one live run elsewhere
local c = rl.sqlite.open(db)
c:exec("PRAGMA foreign_keys = ON") -- deleting a run deletes its rows, as in the store
local ids = {}
for _, r in ipairs(c:query("SELECT id FROM run ORDER BY id")) do ids[#ids + 1] = r.id end
local host = require("db.results").hostname()
local sleeper = rl.proc.spawn({ "sleep", "60" })
for i = 1, 4 do c:query("UPDATE run SET status = 'FAILED', error = 'x' WHERE id = ?", ids[i]) end
for i = 5, 7 do c:query("UPDATE run SET status = 'INTERRUPTED' WHERE id = ?", ids[i]) end
for i = 8, 9 do c:query("UPDATE run SET status = 'RUNNING', host = ?, pid = 999999 WHERE id = ?", host, ids[i]) end
c:query("UPDATE run SET status = 'RUNNING', host = ?, pid = ?, heartbeat = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') " ..
  "WHERE id = ?", host, sleeper, ids[10])
c:query("DELETE FROM metric WHERE run_id IN (?, ?, ?)", ids[1], ids[5], ids[8])
c:query("DELETE FROM run WHERE id = ?", ids[11])
c:close()
out, code = grid{ "--jobs", "2", "db=" .. db, "seeds=2", "ms=10" }
t:is(code, 1, "resume with a run held by a live process elsewhere: exit 1 (one left)", out)
t:ok(out:find("39 FINISHED %(10 now, 29 before%), 0 FAILED, 1 left"), "10 runs rerun: failed, interrupted, dead, " ..
  "missing", out)
t:is(u.scalar(db, "SELECT status FROM run WHERE id = ?", ids[10]), "RUNNING", "the live run is not reset")
t:is(u.scalar(db, "SELECT pid FROM run WHERE id = ?", ids[10]), sleeper, "nor taken over")
t:is(u.scalar(db, "SELECT count(*) FROM metric WHERE run_id IN (?, ?, ?)", ids[1], ids[5], ids[8]), 18,
  "rerun runs have their metrics again")
rl.proc.kill(sleeper, "KILL")
rl.proc.wait(sleeper)
out, code = grid{ "--jobs", "2", "db=" .. db, "seeds=2", "ms=10" }
t:ok(code == 0 and out:find("40 FINISHED %(1 now, 39 before%)"), "once its process is gone, the run is rerun", out)
t:is(u.scalar(db, "SELECT count(*) FROM run"), 40, "still one row per run key")
t:is(u.scalar(db, "SELECT count(*) FROM metric"), 40 * 3 * 2, "and no doubled metric")

-- failed runs: recorded, not retried within the grid, retried by the next one
local fdb = dir .. "/fail.db"
out, code = grid{ "--jobs", "2", "db=" .. fdb, "seeds=1", "ms=0", "fail=max" }
t:is(code, 1, "a grid with failing runs exits 1", out)
local nmax = u.scalar(fdb, "SELECT count(*) FROM run WHERE config_json LIKE '%\"pool\":\"max\"%'")
t:ok(out:find(("%d FAILED"):format(nmax)), "the summary counts the FAILED runs", out)
local _, nlines = out:gsub("run failed %(config", "")
t:is(nlines, nmax, "each failing run was tried once within the grid")
t:is(u.scalar(fdb, "SELECT count(*) FROM run WHERE status = 'FAILED' AND error LIKE '%planned failure of max%'"),
  nmax, "the FAILED rows keep the error")
out, code = grid{ "--jobs", "2", "db=" .. fdb, "seeds=1", "ms=0" }
t:ok(code == 0 and out:find(("20 FINISHED %%(%d now"):format(nmax)), "the next grid reruns the FAILED runs", out)

---------------------------------------------------------------------------------------------- heartbeats, dead workers

local hdb = dir .. "/heartbeat.db"
local log = dir .. "/heartbeat.log"
local pid = u.spawn_rotlab({ "grid", u.tiny, "--jobs", "1", "db=" .. hdb, "configs=1", "seeds=1", "epochs=1",
  "ms=3000", "heartbeat=0.1" }, { stdout = log, stderr = log })
local first
local ok = u.wait_for(function()
  first = u.scalar(hdb, "SELECT heartbeat FROM run WHERE status = 'RUNNING'")
  return first ~= nil
end, 20)
t:ok(ok, "the run is RUNNING")
local later
ok = u.wait_for(function()
  later = u.scalar(hdb, "SELECT heartbeat FROM run WHERE status = 'RUNNING'")
  return later and later > first
end, 10)
t:ok(ok, "its heartbeat advances during the epoch", ("%s -> %s"):format(tostring(first), tostring(later)))
t:is(u.scalar(hdb, "SELECT count(*) FROM metric"), 0, "while no metric row is written yet")
rl.proc.kill(-pid, "KILL")
rl.proc.wait(pid)
local dead = u.rows(hdb, "SELECT id, status, pid, heartbeat FROM run")[1]
t:is(dead.status, "RUNNING", "kill -9 of the whole grid leaves the run RUNNING (its row tells)")
rl.proc.sleep(0.3)
t:is(u.scalar(hdb, "SELECT heartbeat FROM run"), dead.heartbeat, "its heartbeat stops")
-- the same dead run, seen as another host's: only the heartbeat's age tells
c = rl.sqlite.open(hdb)
c:query("UPDATE run SET host = 'node-elsewhere', heartbeat = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')")
c:close()
local hargs = { "db=" .. hdb, "configs=1", "seeds=1", "epochs=1", "ms=0" }
out, code = grid{ "--jobs", "1", table.unpack(hargs) }
t:ok(code == 1 and out:find("0 FINISHED.*1 left"), "a fresh heartbeat of another host holds the run", out)
rl.proc.sleep(1.2)
out, code = grid{ "--jobs", "1", "--stale", "1", table.unpack(hargs) }
t:ok(code == 0 and out:find("1 FINISHED %(1 now"), "once older than --stale, it is taken over and finished", out)

-- a worker killed mid-run: its run is marked INTERRUPTED, a replacement worker finishes the grid
local kdb = dir .. "/kill.db"
log = dir .. "/kill.log"
pid = u.spawn_rotlab({ "grid", u.tiny, "--jobs", "2", "db=" .. kdb, "seeds=2", "ms=60" }, { stdout = log, stderr = log })
local victim
ok = u.wait_for(function()
  victim = u.rows(kdb, "SELECT id, pid FROM run WHERE status = 'RUNNING' AND id > 4 LIMIT 1")[1]
  return victim ~= nil
end, 20)
t:ok(ok, "workers are running")
rl.proc.kill(victim.pid, "KILL")
local kind, st
_, kind, st = rl.proc.wait(pid)
local f = io.open(log)
out = f:read("a")
f:close()
t:ok(kind == "exit" and st == 0, "the grid still exits 0", out)
-- (the kill may land between two runs of the worker: then no run is left to mark INTERRUPTED)
t:ok(out:find(("worker %d was killed by signal 9"):format(victim.pid), 1, true), "the launcher says which worker died",
  out)
t:ok(out:find("40 FINISHED %(40 now, 0 before%), 0 FAILED, 0 left; 3 worker%(s%), 1 died"),
  "a replacement worker was started and every run FINISHED", out)
local vr = u.rows(kdb, "SELECT status, pid FROM run WHERE id = ?", victim.id)[1]
t:ok(vr.status == "FINISHED" and vr.pid ~= victim.pid, "the killed worker's run was finished by another worker")
t:is(u.scalar(kdb, "SELECT count(*) FROM metric"), 40 * 3 * 2, "no doubled or missing metric row")

-- SIGTERM (Ctrl-C, Slurm's time limit): workers mark their runs INTERRUPTED and the launcher exits 128 + 15
local tdb = dir .. "/term.db"
log = dir .. "/term.log"
pid = u.spawn_rotlab({ "grid", u.tiny, "--jobs", "2", "db=" .. tdb, "configs=2", "seeds=1", "epochs=1", "ms=5000" },
  { stdout = log, stderr = log })
ok = u.wait_for(function() return u.scalar(tdb, "SELECT count(*) FROM run WHERE status = 'RUNNING'") == 2 end, 20)
t:ok(ok, "two runs are RUNNING")
rl.proc.kill(-pid, "TERM")
_, kind, st = rl.proc.wait(pid)
t:ok(kind == "exit" and st == 143, "SIGTERM: the launcher exits 143", ("%s %s"):format(kind, st))
t:is(u.scalar(tdb, "SELECT count(*) FROM run WHERE status = 'INTERRUPTED' AND error = 'signal TERM'"), 2,
  "both runs are marked INTERRUPTED (signal TERM)")
out, code = grid{ "db=" .. tdb, "configs=2", "seeds=1", "epochs=1", "ms=0" }
t:ok(code == 0 and out:find("2 FINISHED %(2 now"), "and a resumed grid finishes them", out)

-- the same script in one process: rotlab run
local rdb = dir .. "/run.db"
out, code = u.rotlab({ "run", u.tiny, "db=" .. rdb, "seeds=1", "ms=0" })
t:is(code, 0, "rotlab run SCRIPT runs the grid script in this process", out)
t:ok(u.scalar(rdb, "SELECT count(*) FROM run WHERE status = 'FINISHED'") == 20 and
  u.scalar(rdb, "SELECT count(DISTINCT pid) FROM run") == 1, "20 runs FINISHED by one process")
out, code = grid{ "--jobs", "2", "db=" .. rdb, "seeds=2", "ms=0" }
t:ok(code == 0 and out:find("40 FINISHED %(20 now, 20 before%)"), "rotlab grid resumes what rotlab run did", out)

---------------------------------------------------------------------------------------------- shards from Slurm's env

local sdb = dir .. "/env.db"
out, code = u.sh(("SLURM_ARRAY_TASK_ID=3 SLURM_ARRAY_TASK_MIN=1 SLURM_ARRAY_TASK_COUNT=4 %s grid %s db=%s seeds=1 ms=0")
  :format(u.q(u.exe), u.q(u.tiny), u.q(sdb)))
t:ok(code == 0 and out:find("shard 3/4: 5 of 20 runs"), "SLURM_ARRAY_TASK_ID/COUNT select the shard", out)
local shard_db = dir .. "/env.shard3-of-4.db"
t:is(u.scalar(shard_db, "SELECT count(*) FROM run WHERE status = 'FINISHED'"), 5, "written to DB.shard3-of-4.db")
out, code = u.sh(("SLURM_ARRAY_TASK_ID=0 SLURM_ARRAY_TASK_MIN=0 SLURM_ARRAY_TASK_COUNT=4 %s grid %s db=%s seeds=1 " ..
  "ms=0 --shard 3/4"):format(u.q(u.exe), u.q(u.tiny), u.q(sdb)))
t:ok(code == 0 and out:find("every run already FINISHED in .*shard3%-of%-4"), "--shard wins over the environment", out)

---------------------------------------------------------------------------------------------- concurrent writers

do
  local wdb = dir .. "/writers.db"
  rl.db.open(wdb):close()
  local pids, outs = {}, {}
  local t0 = rl.wall_time()
  for w = 1, WRITERS do
    outs[w] = dir .. "/writer" .. w .. ".out"
    pids[w] = rl.proc.spawn({ u.exe, "run", u.root .. "/tests/fixtures/writer.lua", "db=" .. wdb, "id=" .. w,
      "seconds=" .. WRITER_SECONDS }, { stdout = outs[w], stderr = outs[w] })
  end
  local all_ok, runs, rows, text = true, 0, 0, ""
  for w = 1, WRITERS do
    local _, k, s = rl.proc.wait(pids[w])
    local fh = io.open(outs[w])
    local o = fh:read("a")
    fh:close()
    text = text .. o
    if not (k == "exit" and s == 0) then all_ok = false end
    local r, m = o:match("runs=(%d+) rows=(%d+) errors=0")
    if r then runs, rows = runs + tonumber(r), rows + tonumber(m) else all_ok = false end
  end
  local secs = rl.wall_time() - t0
  t:ok(all_ok, ("%d writers for %d s: every one exited 0 with no error"):format(WRITERS, WRITER_SECONDS), text)
  t:ok(not text:find("locked"), "no 'database is locked'", text)
  t:ok(runs > WRITERS, ("they committed %d runs, %d metric rows in %.1f s"):format(runs, rows, secs))
  t:is(u.scalar(wdb, "SELECT count(*) FROM run WHERE status = 'FINISHED'"), runs, "every committed run is in the DB")
  t:is(u.scalar(wdb, "SELECT count(*) FROM metric"), rows, "every committed metric row is in the DB (none lost)")
  t:is(u.scalar(wdb, "PRAGMA integrity_check"), "ok", "integrity_check ok")
end

---------------------------------------------------------------------------------------------- bad input: exit 2

local function bad(args, pattern, name)
  local o, k = u.rotlab(args)
  t:ok(k == 2 and o:find(pattern), name .. " -> exit 2 with a clear message", ("exit %s: %s"):format(k, o))
end
local v3 = dir .. "/v3.db"
do
  local raw = rl.sqlite.open(v3)
  raw:exec("CREATE TABLE meta (key, value); PRAGMA user_version = 3")
  raw:close()
end
local noexp = dir .. "/norun.lua"
f = io.open(noexp, "w")
f:write("return 0\n")
f:close()
bad({ "grid" }, "missing SCRIPT", "grid without a script")
bad({ "grid", dir .. "/nosuch.lua" }, "cannot open script", "grid with a missing script")
bad({ "grid", u.tiny, "--bogus" }, "unknown option '%-%-bogus'", "grid with an unknown flag")
bad({ "grid", u.tiny, "--jobs", "0" }, "option %-%-jobs: expected an integer in 1%.%.256, got '0'", "--jobs 0")
bad({ "grid", u.tiny, "--jobs", "two" }, "option %-%-jobs", "--jobs two")
bad({ "grid", u.tiny, "--jobs" }, "option %-%-jobs needs a value", "--jobs without a value")
bad({ "grid", u.tiny, "--shard", "0/4" }, "bad shard '0/4' %(expected I/N with 1 <= I <= N", "--shard 0/4")
bad({ "grid", u.tiny, "--shard", "5/4" }, "bad shard '5/4'", "--shard 5/4")
bad({ "grid", u.tiny, "--shard", "a/b" }, "bad shard 'a/b'", "--shard a/b")
bad({ "grid", u.tiny, "--stale", "-1" }, "option %-%-stale", "--stale -1")
bad({ "grid", u.tiny, "extra" }, "unexpected argument 'extra'", "a stray argument")
bad({ "grid", noexp }, "did not call experiment%.run", "a script that never calls experiment.run")
bad({ "grid", u.tiny, "--db", v3, "seeds=1" }, "schema version 3 is newer than this rotlab", "a newer schema")
bad({ "grid", u.tiny, "--no-resume", "db=" .. db, "seeds=2" }, "already holds 40 run%(s%) of this grid",
  "--no-resume on a DB with runs")
bad({ "grid", u.tiny, "--resume", "--no-resume" }, "exclude each other", "--resume with --no-resume")
out, code = u.sh(("SLURM_ARRAY_TASK_ID=x SLURM_ARRAY_TASK_COUNT=4 %s grid %s"):format(u.q(u.exe), u.q(u.tiny)))
t:ok(code == 2 and out:find("SLURM_ARRAY_TASK_ID=x"), "a bad SLURM_ARRAY_TASK_ID -> exit 2", out)
out, code = u.sh(("SLURM_ARRAY_TASK_ID=7 SLURM_ARRAY_TASK_COUNT=4 %s grid %s"):format(u.q(u.exe), u.q(u.tiny)))
t:ok(code == 2 and out:find("do not make a shard"), "SLURM_ARRAY_TASK_ID beyond the count -> exit 2", out)
bad({ "run", dir .. "/nosuch.lua" }, "cannot open script", "run with a missing script")
bad({ "run", "--bogus" }, "unknown option", "run with a flag")
bad({ "run", u.tiny, "notkv" }, "expected key=value", "run with a bad parameter")
bad({ "query" }, "expected DB and one SQL statement", "query without arguments")
bad({ "query", dir .. "/nosuch.db", "SELECT 1" }, "no such results DB", "query of a missing DB")
bad({ "query", db, "SELEKT 1" }, "syntax error", "query with bad SQL")
bad({ "query", db, "DELETE FROM run" }, "readonly", "query that writes")
bad({ "query", db, "SELECT 1", "--format", "xml" }, "expected text, csv or json", "query --format xml")
bad({ "query", db, "SELECT 1", "--bogus" }, "unknown option", "query with an unknown flag")
bad({ "query", v3, "SELECT 1" }, "newer than this rotlab", "query of a newer schema")
bad({ "db" }, "usage: rotlab db merge", "db without a subcommand")
bad({ "db", "split" }, "unknown subcommand 'split'", "db with an unknown subcommand")
bad({ "db", "merge", dir .. "/out.db" }, "missing SHARD%.db", "merge without shards")
bad({ "db", "merge", dir .. "/out.db", dir .. "/nosuch.db" }, "no such shard DB", "merge of a missing shard")
bad({ "db", "merge", dir .. "/out.db", v3 }, "newer than this rotlab", "merge of a newer schema")
bad({ "db", "merge", "--bogus", dir .. "/out.db", db }, "unknown option", "merge with an unknown flag")
bad({ "db", "merge", db, db }, "is the output DB itself", "merge of a DB into itself")
---------------------------------------------------------------------------------------------- worker threads

-- each worker logs the thread count it was given (OMP_NUM_THREADS, OPENBLAS_NUM_THREADS)
local envgrid = dir .. "/env_grid.lua"
local fh = assert(io.open(envgrid, "w"))
fh:write([[
local args = ...
require("rotlab.experiment").run{ name = "env", db = args.db, configs = { { k = 1 }, { k = 2 } },
  train = function(cfg, seed, fold, run)
    run:metric(1, "train", "omp", tonumber(os.getenv("OMP_NUM_THREADS") or "-1"))
    run:metric(1, "train", "blas", tonumber(os.getenv("OPENBLAS_NUM_THREADS") or "-1"))
    run:flush()
  end }
]])
fh:close()
local function env_grid(prefix, extra, name)
  local edb = dir .. "/env_" .. name .. ".db"
  local o, k = u.sh(("%s %s grid %s --jobs 2 %s db=%s"):format(prefix, u.q(u.exe), u.q(envgrid), extra, u.q(edb)))
  t:is(k, 0, "env grid (" .. name .. ") exits 0", o)
  return u.scalar(edb, "SELECT min(value) FROM metric WHERE name = 'omp'"),
    u.scalar(edb, "SELECT max(value) FROM metric WHERE name = 'omp'"),
    u.scalar(edb, "SELECT min(value) FROM metric WHERE name = 'blas'")
end
local share = math.max(1, rl.proc.cpus() // 2)
local lo, hi, blas = env_grid("env -u OMP_NUM_THREADS -u OPENBLAS_NUM_THREADS", "", "default")
t:ok(lo == share and hi == share and blas == share, ("--jobs 2 on %d CPUs: %d thread(s) per worker"):format(
  rl.proc.cpus(), share), ("omp %s..%s, blas %s"):format(lo, hi, blas))
lo, hi, blas = env_grid("env -u OMP_NUM_THREADS", "--threads 3", "given")
t:ok(lo == 3 and hi == 3 and blas == 3, "--threads 3 reaches every worker", ("omp %s..%s, blas %s"):format(lo, hi, blas))
lo, hi = env_grid("env OMP_NUM_THREADS=5", "", "inherited")
t:ok(lo == 5 and hi == 5, "a user's OMP_NUM_THREADS is inherited, not overridden", ("omp %s..%s"):format(lo, hi))
t:ok(math.type(rl.proc.cpus()) == "integer" and rl.proc.cpus() >= 1, "rl.proc.cpus() is a positive integer")
bad({ "grid", u.tiny, "--threads", "0" }, "option %-%-threads: expected an integer in 1%.%.1024", "--threads 0")
bad({ "grid", u.tiny, "--threads", "two" }, "option %-%-threads", "--threads two")

for _, cmd in ipairs { "grid", "slurm", "query", "run", "report" } do
  local o, k = u.rotlab({ cmd, "--help" })
  t:ok(k == 0 and o:find("usage: rotlab " .. cmd), "rotlab " .. cmd .. " --help", o)
end
local o, k = u.rotlab({ "db", "merge", "--help" })
t:ok(k == 0 and o:find("usage: rotlab db merge"), "rotlab db merge --help", o)

u.cleanup()
os.exit(t:done())
