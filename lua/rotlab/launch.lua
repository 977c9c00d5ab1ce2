--[[
rotlab.launch -- `rotlab grid SCRIPT.lua`: runs a grid script with N worker processes on one machine, all writing
one SQLite database, or one shard of it (Slurm arrays).
  launch.main(argv) -> exit code: 0 every run of the grid (or shard) FINISHED; 1 some FAILED or left unfinished;
                       2 bad input (message on stderr); 128 + signal when stopped by SIGTERM/SIGINT
  launch.shard_from_env(env) -> {i, n} or nil, or raises (SLURM_ARRAY_TASK_ID / _MIN / _COUNT)
  launch.parse_shard(s) -> {i, n} or raises ("I/N", 1 <= I <= N)
  launch.shard_db(db, shard) -> the default shard DB path: results/x.db -> results/x.shard2-of-4.db

How it works: the launcher runs the script once in "plan" mode (rotlab.experiment context) to learn the spec and
its jobs, creates the DB, then starts N copies of this program (/proc/self/exe) as
`rotlab grid --worker SCRIPT --db DB --since T --stale S [--shard I/N] [key=value ...]`. Each worker claims runs
one at a time (an atomic BEGIN IMMEDIATE claim in the DB) until none is left. When a worker dies (a crash, kill -9)
the launcher marks its RUNNING run INTERRUPTED and starts a replacement (at most --max-restarts times); a
resumed grid (the default) skips FINISHED runs and reruns FAILED, INTERRUPTED and dead RUNNING ones.
]]
local rl = require "rotlab"
local results = require "db.results"
local experiment = require "rotlab.experiment"
local script = require "rotlab.script"

local launch = {}

-- Most worker processes one launcher starts.
launch.MAX_JOBS = 256
-- Most shards of one grid.
launch.MAX_SHARDS = 100000
-- Default number of replacement workers after worker deaths.
launch.MAX_RESTARTS = 3
-- Seconds between two looks at the workers (and progress updates).
launch.POLL_SECONDS = 0.1

local usage = [[
usage: rotlab grid SCRIPT.lua [--jobs N] [--shard I/N] [--db PATH] [--no-resume] [--stale SECONDS]
                              [--max-restarts K] [--threads K] [--quiet] [key=value ...]
Runs the grid script SCRIPT (a Lua file that builds a spec and calls require("rotlab.experiment").run(spec)) with
N worker processes on this machine, all writing one SQLite results DB (WAL, busy timeout, short transactions).
  --jobs N           worker processes (default 1, at most 256)
  --shard I/N        run only shard I of N: the runs at positions p with (p - 1) % N == I - 1 (configs x seeds x
                     folds order); default from SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT when set. A shard
                     writes its own DB: --db, else the spec's db with .shardI-of-N before .db. Keep it on a
                     node-local disk (never one SQLite DB shared over NFS) and merge: rotlab db merge OUT SHARDS...
  --db PATH          results DB (default: the spec's db)
  --resume           (the default) skip FINISHED runs, rerun FAILED, INTERRUPTED and dead RUNNING ones
  --no-resume        refuse to start when the DB already holds runs of this grid
  --stale SECONDS    a RUNNING run of another host whose heartbeat is older is dead (default 300); 0: the DB is
                     private to this machine, only live local processes hold runs
  --max-restarts K   replacement workers after worker deaths (default 3)
  --threads K        threads per worker (OpenMP and OpenBLAS); default: the CPUs this process may use divided by
                     N (at least 1), unless OMP_NUM_THREADS is set, which the workers then inherit. More threads
                     than cores across the workers only makes them wait for each other.
  --quiet            no progress line and no summary
  key=value          passed to the script as its `...` table (as with rotlab run)
Exit code 0 when every run is FINISHED, 1 when some FAILED or are left, 2 on bad input.]]
launch.usage = usage

local FLAGS = {
  ["--jobs"] = "value", ["--shard"] = "value", ["--db"] = "value", ["--resume"] = "flag", ["--no-resume"] = "flag",
  ["--stale"] = "value", ["--max-restarts"] = "value", ["--threads"] = "value", ["--quiet"] = "flag",
  ["--help"] = "flag", ["-h"] = "flag",
  -- internal: the launcher's workers
  ["--worker"] = "flag", ["--since"] = "value",
}

local function bad(msg) error({ bad = msg }, 0) end

-- Upper bound of --threads.
launch.MAX_THREADS = 1024

-- Threads per worker: the --threads value, else (unless the user set OMP_NUM_THREADS, which workers inherit) the
-- CPUs this process may use shared out over the workers. nil: leave the environment alone.
function launch.worker_threads(requested, jobs, getenv)
  if requested then return requested end
  if (getenv or os.getenv)("OMP_NUM_THREADS") then return nil end
  return math.max(1, rl.proc.cpus() // jobs)
end

local function int_option(opts, name, lo, hi, default)
  local v = opts[name]
  if v == nil then return default end
  local n = math.tointeger(tonumber(v))
  if not n or n < lo or n > hi then
    bad(("option --%s: expected an integer in %d..%d, got '%s'"):format(name, lo, hi, v))
  end
  return n
end

function launch.parse_shard(s)
  local i, n = tostring(s):match("^%s*(%d+)%s*/%s*(%d+)%s*$")
  i, n = math.tointeger(tonumber(i)), math.tointeger(tonumber(n))
  if not i or not n or n < 1 or n > launch.MAX_SHARDS or i < 1 or i > n then
    error(("bad shard '%s' (expected I/N with 1 <= I <= N <= %d, e.g. 2/8)"):format(tostring(s),
      launch.MAX_SHARDS), 0)
  end
  return { i, n }
end

function launch.shard_from_env(getenv)
  getenv = getenv or os.getenv
  local id = getenv("SLURM_ARRAY_TASK_ID")
  if not id or id == "" then return nil end
  local count, min = getenv("SLURM_ARRAY_TASK_COUNT"), getenv("SLURM_ARRAY_TASK_MIN") or "1"
  local i, n, m = math.tointeger(tonumber(id)), math.tointeger(tonumber(count or "")), math.tointeger(tonumber(min))
  if not i or not n or not m then
    error(("SLURM_ARRAY_TASK_ID=%s with SLURM_ARRAY_TASK_COUNT=%s, SLURM_ARRAY_TASK_MIN=%s: expected integers " ..
      "(or pass --shard I/N)"):format(id, tostring(count), min), 0)
  end
  local ok, shard = pcall(launch.parse_shard, ("%d/%d"):format(i - m + 1, n))
  if not ok then
    error(("SLURM_ARRAY_TASK_ID=%s, SLURM_ARRAY_TASK_MIN=%s, SLURM_ARRAY_TASK_COUNT=%s do not make a shard: %s " ..
      "(use a contiguous --array, or pass --shard I/N)"):format(id, min, count, shard), 0)
  end
  return shard
end

function launch.shard_db(db, shard)
  local base = db:gsub("%.db$", "")
  return ("%s.shard%d-of-%d.db"):format(base, shard[1], shard[2])
end

local function signal_number(name)
  return ({ TERM = 15, INT = 2, HUP = 1, QUIT = 3 })[name] or 15
end

-- Runs the script in plan mode: returns spec, jobs (all of them), or raises.
local function plan(path, params)
  local ctx = { mode = "plan" }
  experiment.context = ctx
  local ok, err = pcall(script.run, path, params, 1)
  experiment.context = { mode = "run" }
  if ok or not (experiment.is_stop(err) and err.what == "plan") then
    if ok then
      bad(("%s did not call experiment.run (a grid script builds a spec and calls " ..
        "require(\"rotlab.experiment\").run(spec))"):format(path))
    end
    bad(("%s: %s"):format(path, tostring(err)))
  end
  return ctx.plan.spec, ctx.plan.jobs
end

-- Counts of the jobs' statuses in the DB: finished, failed (since `since`), left (anything else).
local function tally(store, exp_id, jobs, since)
  local rows = {}
  for row in store.db:rows("SELECT run_key, status, finished FROM run WHERE experiment_id = ?", exp_id) do
    rows[row.run_key] = row
  end
  local c = { finished = 0, failed = 0, left = 0, present = 0 }
  for _, job in ipairs(jobs) do
    local r = rows[job.key]
    if r then c.present = c.present + 1 end
    if r and r.status == "FINISHED" then c.finished = c.finished + 1
    elseif r and r.status == "FAILED" and since and r.finished and r.finished >= since then c.failed = c.failed + 1
    else c.left = c.left + 1 end
  end
  return c
end

local function worker_main(opts, positional, params)
  if #positional ~= 1 then bad("--worker needs exactly one SCRIPT") end
  local ctx = { mode = "worker", db = opts.db, since = opts.since, stale_seconds = tonumber(opts.stale),
    shard = opts.shard and launch.parse_shard(opts.shard) or nil }
  experiment.context = ctx
  rl.proc.trap({ "TERM", "INT" })
  local ok, err = pcall(script.run, positional[1], params, 1)
  experiment.context = { mode = "run" }
  if not ok and experiment.is_stop(err) then
    if err.what == "worker" then return 0 end
    if err.what == "interrupted" then return 128 + signal_number(err.signal) end
  end
  if ok then
    io.stderr:write(("rotlab grid worker: %s did not call experiment.run\n"):format(positional[1]))
    return 2
  end
  io.stderr:write(("rotlab grid worker %d: %s\n"):format(rl.proc.pid(), tostring(err)))
  return 1
end

local function fmt_time(s)
  s = math.floor(s + 0.5)
  if s >= 3600 then return ("%dh%02dm"):format(s // 3600, (s % 3600) // 60) end
  if s >= 60 then return ("%dm%02ds"):format(s // 60, s % 60) end
  return ("%ds"):format(s)
end

local function launcher_main(opts, positional, params)
  if #positional == 0 then bad("missing SCRIPT") end
  if #positional > 1 then bad(("unexpected argument '%s' (one SCRIPT; script parameters are key=value)"):format(
    positional[2])) end
  local path = positional[1]
  local f = io.open(path, "r")
  if not f then bad(("cannot open script '%s'"):format(path)) end
  f:close()
  if opts.resume and opts["no-resume"] then bad("--resume and --no-resume exclude each other") end
  local jobs_n = int_option(opts, "jobs", 1, launch.MAX_JOBS, 1)
  local max_restarts = int_option(opts, "max-restarts", 0, 1000000, launch.MAX_RESTARTS)
  local threads = launch.worker_threads(int_option(opts, "threads", 1, launch.MAX_THREADS, nil), jobs_n)
  local stale = results.STALE_SECONDS
  if opts.stale then
    stale = tonumber(opts.stale)
    if not stale or stale < 0 or stale ~= stale or stale == math.huge then
      bad(("option --stale: expected a number of seconds >= 0, got '%s'"):format(opts.stale))
    end
  end
  local shard
  if opts.shard then
    local ok, s = pcall(launch.parse_shard, opts.shard)
    if not ok then bad("option --shard: " .. s) end
    shard = s
  else
    local ok, s = pcall(launch.shard_from_env)
    if not ok then bad(s) end
    shard = s
  end
  for _, p in ipairs(params) do
    local ok, err = pcall(script.parse_params, { p }, 1)
    if not ok then bad(err) end
  end

  local spec, all_jobs = plan(path, params)
  local jobs = experiment.shard_jobs(all_jobs, shard)
  local db_path = opts.db or (shard and launch.shard_db(spec.db, shard)) or spec.db
  local dir = db_path:match("^(.*)/[^/]+$")
  if dir and dir ~= "" then os.execute('mkdir -p "' .. dir:gsub('["\\$`]', "\\%0") .. '"') end
  local ok, store = pcall(rl.db.open, db_path)
  if not ok then bad(store) end
  local exp_id = store:experiment(spec.name, { script = spec.script or path })
  local since = store:now()
  local before = tally(store, exp_id, jobs, nil)
  if opts["no-resume"] and before.present > 0 then
    store:close()
    bad(("--no-resume: '%s' already holds %d run(s) of this grid (%d FINISHED); drop --no-resume to resume " ..
      "them, or choose another --db"):format(db_path, before.present, before.finished))
  end
  local scope = shard and ("shard %d/%d: %d of %d runs"):format(shard[1], shard[2], #jobs, #all_jobs)
    or ("%d runs"):format(#jobs)
  local quiet = opts.quiet
  local show = not quiet and rl.isatty(2)
  local t0 = rl.wall_time()
  local todo = #jobs - before.finished
  if todo == 0 then
    store:close()
    if not quiet then print(("grid %s (%s): every run already FINISHED in %s"):format(spec.name, scope, db_path)) end
    return 0
  end

  local exe = rl.proc.exe()
  local wargv = { exe, "grid", "--worker", path, "--db", db_path, "--since", since, "--stale", ("%.17g"):format(stale) }
  if shard then wargv[#wargv + 1] = "--shard"; wargv[#wargv + 1] = ("%d/%d"):format(shard[1], shard[2]) end
  for _, p in ipairs(params) do wargv[#wargv + 1] = p end

  rl.proc.trap({ "TERM", "INT" })
  local live, nlive, started, restarts, deaths = {}, 0, 0, 0, 0
  local function spawn()
    local pid = rl.proc.spawn(wargv, threads and { env = { OMP_NUM_THREADS = tostring(threads),
      OPENBLAS_NUM_THREADS = tostring(threads) } } or nil)
    live[pid] = true
    nlive = nlive + 1
    started = started + 1
  end
  for _ = 1, math.min(jobs_n, todo) do spawn() end

  local stopping, last_show = nil, -1
  while nlive > 0 do
    local pid, kind, code = rl.proc.wait(-1, true)
    if pid and live[pid] then
      live[pid] = nil
      nlive = nlive - 1
      if not (kind == "exit" and (code == 0 or (stopping and code >= 128))) then
        deaths = deaths + 1
        local why = kind == "signal" and ("was killed by signal %d"):format(code) or ("exited with code %d"):format(code)
        local n = store:interrupt_runs(pid, ("worker %d %s"):format(pid, why))
        if not quiet then
          io.stderr:write(("%srotlab grid: worker %d %s%s\n"):format(show and "\n" or "", pid, why,
            n > 0 and "; its run is marked INTERRUPTED" or ""))
        end
        if not stopping and restarts < max_restarts and tally(store, exp_id, jobs, since).left > 0 then
          restarts = restarts + 1
          spawn()
        end
      end
    elseif not pid then
      local sig = rl.proc.trapped()
      if sig and not stopping then
        stopping = sig
        for p in pairs(live) do rl.proc.kill(p, "TERM") end
      end
      local now = rl.wall_time()
      if show and now - last_show >= 0.5 then
        last_show = now
        local c = tally(store, exp_id, jobs, since)
        io.stderr:write(("\rgrid: %d/%d finished, %d failed, %d workers, %s\27[K"):format(c.finished, #jobs,
          c.failed, nlive, fmt_time(now - t0)))
      end
      rl.proc.sleep(launch.POLL_SECONDS)
    end
  end
  local c = tally(store, exp_id, jobs, since)
  store:close()
  local secs = rl.wall_time() - t0
  if not quiet then
    if show then io.stderr:write("\n") end
    print(("grid %s (%s): %d FINISHED (%d now, %d before), %d FAILED, %d left; %d worker(s), %d died; %.1f s; %s")
      :format(spec.name, scope, c.finished, c.finished - before.finished, before.finished, c.failed, c.left,
        started, deaths, secs, db_path))
  end
  if stopping then return 128 + signal_number(stopping) end
  return (c.failed == 0 and c.left == 0) and 0 or 1
end

function launch.main(argv)
  local ok, opts, positional, params = pcall(script.parse_args, argv, 2, FLAGS)
  if not ok then
    io.stderr:write(("rotlab grid: %s\n(see rotlab grid --help)\n"):format(opts))
    return 2
  end
  if opts.help or opts.h then
    print(usage)
    return 0
  end
  local rc
  ok, rc = pcall(opts.worker and worker_main or launcher_main, opts, positional, params)
  if ok then return rc end
  if type(rc) == "table" and rc.bad then
    io.stderr:write(("rotlab grid: %s\n(see rotlab grid --help)\n"):format(rc.bad))
    return 2
  end
  error(rc, 0)
end

return launch
