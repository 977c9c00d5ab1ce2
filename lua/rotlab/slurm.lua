--[[
rotlab.slurm -- `rotlab slurm SCRIPT.lua --array N`: writes a Slurm array job that runs a grid script in N shards
(`rotlab grid --shard I/N`, each into a node-local SQLite DB copied to a shared directory when done) and a merge
job that depends on it (`rotlab db merge`, then `rotlab report`), plus a submit script.
  slurm.main(argv) -> exit code (0; 1 when --submit fails; 2 on bad input)
  slurm.write(opts) -> {array =, merge =, submit =} paths      opts: see the usage text (plain Lua values)
Files in DIR (default slurm/<experiment name>): array.sbatch, merge.sbatch, submit.sh; logs/ and shards/ are
created. Shard I's DB is DIR/shards/shard-I-of-N.db; a rerun of task I starts from it (resume). Never point
several processes of several nodes at one SQLite file over NFS: that is what the shard DBs avoid.
]]
local rl = require "rotlab"
local experiment = require "rotlab.experiment"
local script = require "rotlab.script"

local slurm = {}

-- Most array tasks (Slurm's own MaxArraySize defaults to 1001).
slurm.MAX_ARRAY = 100000

local usage = [[
usage: rotlab slurm SCRIPT.lua --array N [--jobs J] [--dir DIR] [--db OUT.db] [--partition P] [--time T]
                               [--mem M] [--sbatch "OPTIONS"] [--local-dir D] [--submit] [key=value ...]
Writes DIR/array.sbatch (a Slurm array of N tasks: task I runs `rotlab grid SCRIPT --shard I/N --jobs J` into a
node-local DB, then copies it to DIR/shards/shard-I-of-N.db), DIR/merge.sbatch (runs after the whole array:
`rotlab db merge OUT.db` of the shards, then `rotlab report OUT.db`) and DIR/submit.sh (sbatch of both, the merge
with --dependency=afterany on the array).
  --array N         number of shards (array tasks), 1..100000
  --jobs J          worker processes per task (default 1; also --cpus-per-task)
  --dir DIR         where the scripts, logs/ and shards/ go (default slurm/<experiment name>)
  --db OUT.db       the merged DB (default: the spec's db)
  --partition P, --time T, --mem M     the matching #SBATCH lines
  --sbatch "OPTS"   more #SBATCH options, whitespace-separated (e.g. "--account=lab --qos=long")
  --local-dir D     node-local directory of the running shard DBs (default ${TMPDIR:-/tmp})
  --submit          run submit.sh now (needs sbatch)
  key=value         passed to the script (as with rotlab run)
Exit code 0, 1 when --submit fails, 2 on bad input.]]

local FLAGS = {
  ["--array"] = "value", ["--jobs"] = "value", ["--dir"] = "value", ["--db"] = "value", ["--partition"] = "value",
  ["--time"] = "value", ["--mem"] = "value", ["--sbatch"] = "value", ["--local-dir"] = "value",
  ["--submit"] = "flag", ["--help"] = "flag", ["-h"] = "flag",
}

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function absolute(path)
  if path:sub(1, 1) == "/" then return path end
  path = path:gsub("^%./", "")
  local cwd = os.getenv("PWD")
  if not cwd or cwd == "" then
    local p = io.popen("pwd")
    cwd = p:read("l")
    p:close()
  end
  if path == "." or path == "" then return cwd end
  return (cwd .. "/" .. path:gsub("/%.$", "")):gsub("/%./", "/")
end

local function write_file(path, text, mode)
  local f, err = io.open(path, "w")
  if not f then error(("cannot write '%s': %s"):format(path, err), 0) end
  f:write(text)
  f:close()
  if mode then os.execute(("chmod %s %s"):format(mode, q(path))) end
end

local function bad(msg) error({ bad = msg }, 0) end

-- opts: script, params (list of key=value), array, jobs, dir, out_db, name, partition, time, mem, sbatch,
-- local_dir, exe, workdir (all paths absolute)
function slurm.write(o)
  local extra = {}
  if o.partition then extra[#extra + 1] = "#SBATCH --partition=" .. o.partition end
  if o.time then extra[#extra + 1] = "#SBATCH --time=" .. o.time end
  if o.mem then extra[#extra + 1] = "#SBATCH --mem=" .. o.mem end
  for w in (o.sbatch or ""):gmatch("%S+") do extra[#extra + 1] = "#SBATCH " .. w end
  local extra_lines = #extra > 0 and (table.concat(extra, "\n") .. "\n") or ""
  local params = {}
  for _, p in ipairs(o.params) do params[#params + 1] = q(p) end
  local param_words = #params > 0 and (" " .. table.concat(params, " ")) or ""
  local N = o.array
  os.execute(("mkdir -p %s %s"):format(q(o.dir .. "/logs"), q(o.dir .. "/shards")))

  local array = o.dir .. "/array.sbatch"
  write_file(array, ([[
#!/bin/bash
# rotlab grid '%s' as a Slurm array (written by rotlab slurm): task I runs shard I/%d with %d worker(s) into a
# node-local SQLite DB, then copies it through SQLite (consistent even after a kill) to the shared shards/ dir.
#SBATCH --job-name=rotlab-%s
#SBATCH --array=1-%d
#SBATCH --cpus-per-task=%d
#SBATCH --output=%s/logs/shard-%%a.out
%sset -u
ROTLAB=%s
I=$SLURM_ARRAY_TASK_ID
N=%d
SHARED=%s/shards/shard-$I-of-$N.db
LOCAL_DIR=%s
mkdir -p "$LOCAL_DIR"
LOCAL="$LOCAL_DIR/rotlab-${SLURM_ARRAY_JOB_ID:-$SLURM_JOB_ID}-$I.db"
trap 'echo "rotlab: shard $I received SIGTERM, saving its DB"' TERM
cd %s || exit 1
rm -f "$LOCAL" "$LOCAL-wal" "$LOCAL-shm"
# a rerun of this task resumes from its earlier shard DB
if [ -f "$SHARED" ]; then "$ROTLAB" db merge "$LOCAL" "$SHARED" > /dev/null || exit 1; fi
rc=0
"$ROTLAB" grid %s --shard "$I/$N" --jobs %d --db "$LOCAL" --stale 0%s || rc=$?
rm -f "$SHARED.tmp"
if "$ROTLAB" db merge "$SHARED.tmp" "$LOCAL" > /dev/null; then mv -f "$SHARED.tmp" "$SHARED"; else rc=1; fi
rm -f "$LOCAL" "$LOCAL-wal" "$LOCAL-shm"
exit $rc
]]):format(o.name, N, o.jobs, o.name, N, o.jobs, o.dir, extra_lines, q(o.exe), N, q(o.dir),
    o.local_dir and q(o.local_dir) or '"${TMPDIR:-/tmp}"', q(o.workdir), q(o.script), o.jobs, param_words), "0755")

  local merge = o.dir .. "/merge.sbatch"
  local keep = {}
  for _, l in ipairs(extra) do if not l:find("^#SBATCH %-%-mem") then keep[#keep + 1] = l end end
  write_file(merge, ([[
#!/bin/bash
# Merges the shard DBs of rotlab grid '%s' into one results DB, then prints the report (written by rotlab slurm).
#SBATCH --job-name=rotlab-%s-merge
#SBATCH --output=%s/logs/merge.out
%sset -u
ROTLAB=%s
N=%d
cd %s || exit 1
shopt -s nullglob
shards=(%s/shards/shard-*-of-$N.db)
echo "rotlab: merging ${#shards[@]} of $N shard DBs into "%s
[ ${#shards[@]} -gt 0 ] || exit 1
"$ROTLAB" db merge %s "${shards[@]}" || exit 1
"$ROTLAB" report %s || true
[ ${#shards[@]} -eq $N ]
]]):format(o.name, o.name, o.dir, #keep > 0 and (table.concat(keep, "\n") .. "\n") or "", q(o.exe), N,
    q(o.workdir), q(o.dir), q(o.out_db), q(o.out_db), q(o.out_db)), "0755")

  local submit = o.dir .. "/submit.sh"
  write_file(submit, ([[
#!/bin/sh
# Submits the shard array and, after it (whatever its tasks' exit codes), the merge job (written by rotlab slurm).
set -e
cd %s
mkdir -p %s %s
array=$(sbatch --parsable %s)
array=${array%%%%;*}
merge=$(sbatch --parsable --dependency=afterany:$array %s)
merge=${merge%%%%;*}
echo "$array $merge" > %s
echo "rotlab: submitted array job $array (%d shards) and merge job $merge"
]]):format(q(o.workdir), q(o.dir .. "/logs"), q(o.dir .. "/shards"), q(array), q(merge), q(o.dir .. "/jobs"), N),
    "0755")
  return { array = array, merge = merge, submit = submit }
end

local function main(argv)
  local ok, opts, positional, params = pcall(script.parse_args, argv, 2, FLAGS)
  if not ok then bad(opts) end
  if opts.help or opts.h then
    print(usage)
    return 0
  end
  if #positional == 0 then bad("missing SCRIPT") end
  if #positional > 1 then bad(("unexpected argument '%s'"):format(positional[2])) end
  local path = positional[1]
  local f = io.open(path, "r")
  if not f then bad(("cannot open script '%s'"):format(path)) end
  f:close()
  if not opts.array then bad("missing --array N (the number of shards)") end
  local function int(name, lo, hi, default)
    local v = opts[name]
    if v == nil then return default end
    local n = math.tointeger(tonumber(v))
    if not n or n < lo or n > hi then
      bad(("option --%s: expected an integer in %d..%d, got '%s'"):format(name, lo, hi, v))
    end
    return n
  end
  local array = int("array", 1, slurm.MAX_ARRAY)
  local jobs = int("jobs", 1, require("rotlab.launch").MAX_JOBS, 1)
  for _, name in ipairs { "partition", "time", "mem" } do
    if opts[name] and opts[name]:find("%s") then bad(("option --%s: no spaces allowed"):format(name)) end
  end
  for _, p in ipairs(params) do
    local pok, err = pcall(script.parse_params, { p }, 1)
    if not pok then bad(err) end
  end
  -- the script's spec (its name and db), as the launcher sees it
  local ctx = { mode = "plan" }
  experiment.context = ctx
  local rok, err = pcall(script.run, path, params, 1)
  experiment.context = { mode = "run" }
  if rok then bad(("%s did not call experiment.run"):format(path)) end
  if not (experiment.is_stop(err) and err.what == "plan") then bad(("%s: %s"):format(path, tostring(err))) end
  local spec, all = ctx.plan.spec, ctx.plan.jobs
  local dir = absolute(opts.dir or ("slurm/" .. spec.name:gsub("[^%w_.-]", "_")))
  local files = slurm.write{
    script = absolute(path), params = params, array = array, jobs = jobs, dir = dir, name = spec.name,
    out_db = absolute(opts.db or spec.db), partition = opts.partition, time = opts.time, mem = opts.mem,
    sbatch = opts.sbatch, local_dir = opts["local-dir"], exe = rl.proc.exe(), workdir = absolute("."),
  }
  print(("rotlab slurm: %d runs in %d shards (about %d per task)%s"):format(#all, array, math.ceil(#all / array),
    array > #all and "; more shards than runs: some tasks have nothing to do" or ""))
  print(("wrote %s\n      %s\n      %s"):format(files.array, files.merge, files.submit))
  if not opts.submit then
    print("submit with: sh " .. q(files.submit))
    return 0
  end
  local sok, _, code = os.execute("sh " .. q(files.submit))
  if not sok then
    io.stderr:write(("rotlab slurm: submit.sh failed (exit %s); is sbatch on PATH and the cluster up?\n"):format(
      tostring(code)))
    return 1
  end
  return 0
end

function slurm.main(argv)
  local ok, rc = pcall(main, argv)
  if ok then return rc end
  if type(rc) == "table" and rc.bad then
    io.stderr:write(("rotlab slurm: %s\n(see rotlab slurm --help)\n"):format(rc.bad))
    return 2
  end
  io.stderr:write(("rotlab slurm: %s\n"):format(tostring(rc)))
  return 2
end

return slurm
