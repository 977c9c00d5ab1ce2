#!/usr/bin/env rotlab-double
-- `rotlab slurm`: the generated array, merge and submit scripts (always checked, and run by hand as Slurm would
-- run them), then the real thing on a single-node Slurm on localhost: munged, slurmctld and slurmd started by this
-- test in a private directory (own munge key and socket, own ports), the array + dependent merge job submitted,
-- waited for (bounded), the merged DB checked, the daemons stopped. Debian's slurmctld, slurmd, slurm-client and
-- munge are installed with apt-get when missing (root only; set ROTLAB_NO_APT=1 to forbid it). When the daemons
-- cannot be had or started, the Slurm checks are skipped and the reason is printed.
local rl = require "rotlab"
local u = dofile((ROTLAB_ROOT or ".") .. "/tests/fixtures/gridutil.lua")
local t = require("rotlab.tap")()

local dir = u.tmpdir()
local GRID = { "seeds=2", "epochs=2", "ms=5" } -- 40 runs

local function read(path)
  local f = io.open(path)
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

-- the reference: the same grid in one process
local ref = dir .. "/ref.db"
local _, rc = u.rotlab({ "grid", u.tiny, "--jobs", "2", "db=" .. ref, table.unpack(GRID) })
t:is(rc, 0, "the reference grid runs")
local function report_of(db)
  local rows = require("rotlab.report").table(db)
  local out = {}
  for _, r in ipairs(rows) do out[#out + 1] = ("%s n=%d %.12g %.12g"):format(r.config_json, r.n, r.mean, r.std) end
  return table.concat(out, "\n")
end

---------------------------------------------------------------------------------------------- the scripts

local sdir = dir .. "/sl-local"
local merged = dir .. "/local-merged.db"
local out, code = u.rotlab({ "slurm", u.tiny, "--array", "3", "--jobs", "2", "--dir", sdir, "--db", merged,
  "--time", "10:00", "--sbatch", "--account=lab --qos=short", "db=" .. dir .. "/base.db", table.unpack(GRID) })
t:ok(code == 0 and out:find("40 runs in 3 shards"), "rotlab slurm writes the scripts", out)
local array, merge_s, submit = read(sdir .. "/array.sbatch"), read(sdir .. "/merge.sbatch"), read(sdir .. "/submit.sh")
t:ok(array and merge_s and submit, "array.sbatch, merge.sbatch and submit.sh exist")
array, merge_s, submit = array or "", merge_s or "", submit or ""
t:ok(array:find("#SBATCH %-%-array=1%-3\n") and array:find("#SBATCH %-%-cpus%-per%-task=2\n") and
  array:find("#SBATCH %-%-time=10:00\n") and array:find("#SBATCH %-%-account=lab\n#SBATCH %-%-qos=short\n"),
  "array.sbatch: the array, cpus, time and extra #SBATCH lines", array)
t:ok(array:find('grid .*tiny_grid%.lua\' %-%-shard "%$I/%$N" %-%-jobs 2 %-%-db "%$LOCAL" %-%-stale 0'),
  "each task runs its shard into a node-local DB", array)
t:ok(array:find('db merge "%$SHARED%.tmp" "%$LOCAL"') and array:find('mv %-f "%$SHARED%.tmp" "%$SHARED"'),
  "and copies it through SQLite to the shared shards/ dir", array)
t:ok(merge_s:find("db merge '" .. merged:gsub("%p", "%%%0") .. "'"), "merge.sbatch merges into --db", merge_s)
t:ok(submit:find("%-%-dependency=afterany:%$array"), "submit.sh makes the merge job depend on the array", submit)
for _, name in ipairs { "array.sbatch", "merge.sbatch" } do
  local o, k = u.sh("bash -n " .. u.q(sdir .. "/" .. name))
  t:ok(k == 0, name .. " is valid bash", o)
end
local o, k = u.sh("sh -n " .. u.q(sdir .. "/submit.sh"))
t:ok(k == 0, "submit.sh is valid sh", o)

-- run them by hand, as Slurm would: three tasks, then the merge
local tasks_ok = true
for i = 1, 3 do
  local ot, kt = u.sh(("cd %s && SLURM_ARRAY_TASK_ID=%d SLURM_ARRAY_JOB_ID=77 TMPDIR=%s bash %s"):format(u.q(dir), i,
    u.q(dir), u.q(sdir .. "/array.sbatch")))
  if kt ~= 0 then tasks_ok = false; t:diag(ot) end
end
t:ok(tasks_ok, "the three array tasks run (by hand) and exit 0")
o, k = u.sh(("cd %s && bash %s"):format(u.q(dir), u.q(sdir .. "/merge.sbatch")))
t:ok(k == 0 and o:find("merging 3 of 3 shard DBs"), "the merge script merges the 3 shard DBs", o)
t:is(report_of(merged), report_of(ref), "the merged report equals the one-process grid's")
t:ok(select(2, u.sh("ls " .. u.q(dir) .. "/rotlab-77-*")) ~= 0, "no node-local DB is left behind")
-- a rerun task resumes from its shard DB
local ot, kt = u.sh(("cd %s && SLURM_ARRAY_TASK_ID=2 SLURM_ARRAY_JOB_ID=78 TMPDIR=%s bash %s"):format(u.q(dir),
  u.q(dir), u.q(sdir .. "/array.sbatch")))
t:ok(kt == 0 and ot:find("every run already FINISHED"), "a rerun task resumes from its shard DB (nothing to redo)",
  ot)

-- bad input
local function bad(args, pattern, name)
  local bo, bk = u.rotlab(args)
  t:ok(bk == 2 and bo:find(pattern), name .. " -> exit 2 with a clear message", ("exit %s: %s"):format(bk, bo))
end
bad({ "slurm", u.tiny }, "missing %-%-array N", "slurm without --array")
bad({ "slurm", u.tiny, "--array", "0" }, "option %-%-array: expected an integer in 1%.%.100000", "--array 0")
bad({ "slurm", dir .. "/nosuch.lua", "--array", "2" }, "cannot open script", "slurm with a missing script")
bad({ "slurm", u.tiny, "--array", "2", "--frobnicate" }, "unknown option", "slurm with an unknown flag")
bad({ "slurm", u.tiny, "--array", "2", "--time", "1 day" }, "no spaces allowed", "--time with a space")

---------------------------------------------------------------------------------------------- a real Slurm on localhost

local function have(tool) return select(2, u.sh("command -v " .. tool)) == 0 end
local TOOLS = { "munged", "slurmctld", "slurmd", "sbatch", "sinfo", "squeue" }
local function missing_tools()
  local m = {}
  for _, tool in ipairs(TOOLS) do if not have(tool) and not have("/usr/sbin/" .. tool) then m[#m + 1] = tool end end
  return m
end

local skip_reason
local miss = missing_tools()
if #miss > 0 then
  local uid = u.sh("id -u"):gsub("%s", "")
  if os.getenv("ROTLAB_NO_APT") == "1" then
    skip_reason = ("Slurm tools missing (%s) and ROTLAB_NO_APT=1"):format(table.concat(miss, ", "))
  elseif uid ~= "0" or not have("apt-get") then
    skip_reason = ("Slurm tools missing (%s); installing them needs root and apt-get"):format(table.concat(miss, ", "))
  else
    t:diag("installing slurmctld slurmd slurm-client munge with apt-get")
    local cmd = "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurmctld slurmd " ..
      "slurm-client munge"
    local ao, ak = u.sh(cmd)
    if ak ~= 0 then ao, ak = u.sh("apt-get update -qq && " .. cmd) end
    miss = missing_tools()
    if #miss > 0 then
      skip_reason = ("cannot install the Slurm tools (%s): %s"):format(table.concat(miss, ", "), ao:sub(-300))
    end
  end
end

local daemons = {}
local sdir2 = dir .. "/slurm"
local env
local function stop_daemons()
  for i = #daemons, 1, -1 do
    rl.proc.kill(daemons[i].pid, "TERM")
    local dead = u.wait_for(function() return rl.proc.wait(daemons[i].pid, true) ~= nil end, 10)
    if not dead then
      rl.proc.kill(daemons[i].pid, "KILL")
      rl.proc.wait(daemons[i].pid)
    end
  end
  daemons = {}
end

if not skip_reason then
  -- private state: munge key and socket, config, spool and state dirs, logs (munged insists on 0700 dirs)
  os.execute(("mkdir -p %s/state %s/spool && chmod 700 %s"):format(u.q(sdir2), u.q(sdir2), u.q(sdir2)))
  u.sh(("dd if=/dev/urandom of=%s/munge.key bs=1024 count=1 && chmod 400 %s/munge.key"):format(u.q(sdir2), u.q(sdir2)))
  local host = u.sh("hostname -s"):gsub("%s", "")
  local port = 20000 + rl.proc.pid() % 20000
  local conf = sdir2 .. "/slurm.conf"
  local f = assert(io.open(conf, "w"))
  f:write(([[
ClusterName=rotlabtest
SlurmctldHost=%s(127.0.0.1)
AuthType=auth/munge
AuthInfo=socket=%s/munge.sock
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmctldPidFile=%s/slurmctld.pid
SlurmdPidFile=%s/slurmd.pid
SlurmdSpoolDir=%s/spool
StateSaveLocation=%s/state
SlurmctldPort=%d
SlurmdPort=%d
SlurmUser=root
SlurmdUser=root
SlurmctldLogFile=%s/slurmctld.log
SlurmdLogFile=%s/slurmd.log
ReturnToService=2
MpiDefault=none
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
NodeName=%s NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN
PartitionName=debug Nodes=%s Default=YES MaxTime=INFINITE State=UP
]]):format(host, sdir2, sdir2, sdir2, sdir2, sdir2, port, port + 1, sdir2, sdir2, host, host))
  f:close()
  env = { SLURM_CONF = conf }
  local function start(name, argv)
    local log = sdir2 .. "/" .. name .. ".out"
    local ok, pid = pcall(rl.proc.spawn, argv, { env = env, stdout = log, stderr = log })
    if not ok then return false, pid end
    daemons[#daemons + 1] = { name = name, pid = pid }
    return true
  end
  local ok, err = start("munged", { "munged", "-F", "--force", "--socket=" .. sdir2 .. "/munge.sock",
    "--key-file=" .. sdir2 .. "/munge.key", "--pid-file=" .. sdir2 .. "/munged.pid",
    "--log-file=" .. sdir2 .. "/munged.log", "--seed-file=" .. sdir2 .. "/munged.seed" })
  if ok and not u.wait_for(function() return io.open(sdir2 .. "/munge.sock") ~= nil or
      select(2, u.sh("test -S " .. u.q(sdir2 .. "/munge.sock"))) == 0 end, 10) then
    ok, err = false, "munged did not create its socket: " .. (read(sdir2 .. "/munged.out") or "")
  end
  if ok then ok, err = start("slurmctld", { "slurmctld", "-D", "-f", conf }) end
  if ok then ok, err = start("slurmd", { "slurmd", "-D", "-f", conf, "-N", host }) end
  if ok then
    local up = u.wait_for(function()
      local s = u.sh(("SLURM_CONF=%s sinfo -h -o %%T"):format(u.q(conf)))
      return s:find("idle")
    end, 30)
    if not up then
      ok, err = false, "the node did not become idle: " .. u.sh(("SLURM_CONF=%s sinfo; tail -5 %s/slurmctld.log %s/slurmd.log")
        :format(u.q(conf), u.q(sdir2), u.q(sdir2)))
    end
  end
  if not ok then
    skip_reason = "cannot start a single-node Slurm on localhost: " .. tostring(err)
    stop_daemons()
  end
end

if skip_reason then
  t:diag("SKIP the real Slurm checks: " .. skip_reason)
  t:ok(true, "a real Slurm on localhost # SKIP " .. skip_reason:gsub("\n", " "):sub(1, 200))
else
  -- the daemons are stopped whatever happens in here
  local fine, err = pcall(function()
    local cdir = dir .. "/sl-real"
    local cmerged = dir .. "/slurm-merged.db"
    local t0 = rl.wall_time()
    out, code = u.sh(("cd %s && SLURM_CONF=%s %s slurm %s --array 4 --jobs 1 --dir %s --db %s db=%s %s --submit")
      :format(u.q(dir), u.q(env.SLURM_CONF), u.q(u.exe), u.q(u.tiny), u.q(cdir), u.q(cmerged), u.q(dir .. "/base.db"),
        table.concat(GRID, " ")))
    t:ok(code == 0 and out:find("submitted array job %d+ %(4 shards%) and merge job %d+"),
      "rotlab slurm --submit submits the array and the merge job", out)
    local done = u.wait_for(function()
      local q = u.sh(("SLURM_CONF=%s squeue -h"):format(u.q(env.SLURM_CONF)))
      return q:gsub("%s", "") == "" and (read(cdir .. "/logs/merge.out") or ""):find("runs: ")
    end, 120)
    local secs = rl.wall_time() - t0
    t:ok(done, ("the array and the merge job ran to the end (%.1f s)"):format(secs),
      (read(cdir .. "/logs/merge.out") or "no merge.out") .. u.sh(("SLURM_CONF=%s squeue; tail -20 %s/slurmctld.log")
        :format(u.q(env.SLURM_CONF), u.q(sdir2))))
    local shard_logs = ""
    for i = 1, 4 do shard_logs = shard_logs .. (read(cdir .. "/logs/shard-" .. i .. ".out") or "") end
    local _, nshards = shard_logs:gsub("shard %d/4: 10 of 40 runs%): 10 FINISHED", "")
    t:is(nshards, 4, "each of the 4 array tasks ran its 10 runs")
    local m = read(cdir .. "/logs/merge.out") or ""
    t:ok(m:find("merging 4 of 4 shard DBs") and m:find("runs: 40 FINISHED"), "the merge job merged 4 shards and " ..
      "printed the report", m)
    t:is(u.scalar(cmerged, "SELECT count(*) FROM run WHERE status = 'FINISHED'"), 40, "the merged DB holds the 40 runs")
    t:is(report_of(cmerged), report_of(ref), "its report equals the one-process grid's")
    t:diag(("Slurm on localhost: 4 shards x 10 runs + merge, %.1f s from submit to merged report"):format(secs))
  end)
  if not fine then t:ok(false, "the Slurm checks ran without error", err) end
  stop_daemons()
  t:ok(#daemons == 0, "the Slurm daemons are stopped")
end

u.cleanup()
os.exit(t:done())
