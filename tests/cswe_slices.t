#!/usr/bin/env rotlab
-- experiments/cswe_slices.lua in quick mode (L in {1, 4}, 1 seed, 2 epochs) into a temporary DB: one FINISHED run
-- per configuration (mean, SWE and C-SWE at each L), C-SWE traces in the DB, the accuracy-vs-L table printed with
-- the DB's numbers, a rerun skips everything, `rotlab report` works on the DB, bad arguments exit 2.
local rl = require "rotlab"
local json = require "rotlab.json"
local t = require("rotlab.tap")()

local points = ROTLAB_ROOT .. "/build/data/digit_points.h5"
if not io.open(points) then t:skip_all("build/data/digit_points.h5 missing (make data)") end

local tmp = os.tmpname()
os.remove(tmp)
assert(os.execute("mkdir -p '" .. tmp .. "'"))
local db = tmp .. "/slices.db"

local bin = "rotlab"
do
  local p = io.popen("command -v rotlab 2>/dev/null")
  local found = p:read("l")
  p:close()
  if not found or found == "" then bin = ROTLAB_ROOT .. "/build/bin/rotlab" end
end
local function sh(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
local function run(words)
  local p = io.popen(table.concat(words, " ") .. " 2>&1")
  local out = p:read("a")
  local _, _, code = p:close()
  return code, out
end
local function quick(...)
  local argv = { sh(bin), "run", sh(ROTLAB_ROOT .. "/experiments/cswe_slices.lua"), "quick=true", "progress=false",
    sh("db=" .. db), sh("data=" .. points) }
  for _, a in ipairs { ... } do argv[#argv + 1] = sh(a) end
  return run(argv)
end

local t0 = rl.wall_time()
local code, out = quick()
local seconds = rl.wall_time() - t0
t:is(code, 0, "quick cswe_slices run exits 0", out)
t:diag(("quick cswe_slices run: %.1f s"):format(seconds))
t:ok(out:find("5 runs finished, 0 skipped"), "5 runs: mean, SWE x 2, C-SWE x 2", out)

local store = rl.db.open(db, { readonly = true })
local runs = store:runs({ experiment = "cswe_slices-quick" })
local count, finished = {}, true
local acc_of, id_of = {}, {}
for _, r in ipairs(runs) do
  local cfg = json.decode(r.config_json)
  local key = cfg.pool .. "/" .. tostring(cfg.slices)
  count[key] = (count[key] or 0) + 1
  finished = finished and r.status == "FINISHED"
  local acc = store:metrics(r.id, { split = "test", name = "acc" })
  acc_of[key] = acc[#acc] and acc[#acc].value
  id_of[key] = r.id
end
local want = { "mean/nil", "swe/1", "swe/4", "cswe/1", "cswe/4" }
local one_each = #runs == #want
for _, k in ipairs(want) do one_each = one_each and count[k] == 1 end
t:ok(one_each, "one run per configuration (" .. table.concat(want, ", ") .. ")")
t:ok(finished, "every run FINISHED")

-- traces: C-SWE runs have them (L values per row), the others none
do
  local ok = true
  for _, k in ipairs { "cswe/1", "cswe/4" } do
    local L = tonumber(k:match("/(%d+)$"))
    local rows = store:traces(id_of[k], "cswe.dual")
    if #rows == 0 then ok = false end
    for _, r in ipairs(rows) do if r.n ~= L then ok = false end end
    if #store:metrics(id_of[k], { split = "train", name = "swgg_hard" }) ~= 2 then ok = false end
  end
  t:ok(ok, "C-SWE runs: cswe.dual traces with L values per row, swgg_hard per epoch")
  t:ok(#store:traces(id_of["swe/4"]) == 0 and #store:traces(id_of["mean/nil"]) == 0, "SWE and mean: no traces")
end

-- the printed table holds the DB's numbers
do
  t:ok(out:find("Test accuracy %(%%%) vs number of slices L"), "table title printed")
  local head = out:match("\n(pool%s+L = 1%s+L = 4)\n")
  t:ok(head ~= nil, "table header: pool, L = 1, L = 4", out)
  local function cells(label)
    local line = out:match("\n" .. label .. "%s+([^\n]+)")
    local v = {}
    for x in (line or ""):gmatch("([%d%.]+) %(n=1%)") do v[#v + 1] = x end
    return v
  end
  local function pct(a) return ("%.1f"):format(100 * a) end
  local m, s, c = cells("mean"), cells("SWE"), cells("C%-SWE")
  t:ok(#m == 2 and m[1] == pct(acc_of["mean/nil"]) and m[2] == m[1], "mean row: the mean run's accuracy in each column",
    table.concat(m, " "))
  t:ok(#s == 2 and s[1] == pct(acc_of["swe/1"]) and s[2] == pct(acc_of["swe/4"]), "SWE row: the runs' accuracies",
    table.concat(s, " "))
  t:ok(#c == 2 and c[1] == pct(acc_of["cswe/1"]) and c[2] == pct(acc_of["cswe/4"]), "C-SWE row: the runs' accuracies",
    table.concat(c, " "))
  t:ok(out:find("\ndual lambda%s+[%d%.]+ %(n=1%)%s+[%d%.]+ %(n=1%)"), "C-SWE constraint table printed")
end
store:close()

code, out = quick()
t:ok(code == 0 and out:find("0 runs finished, 5 skipped"), "a rerun skips the FINISHED runs", out)
code, out = run { sh(bin), "report", sh(db) }
t:ok(code == 0 and out:find("cswe") and out:find("test/acc"), "rotlab report works on the DB", out)

for _, bad in ipairs { { "slices=0", "slices: bad value '0'" }, { "pools=max", "unknown pooling 'max'" },
  { "data=" .. tmp .. "/none.h5", "none%.h5 not found" }, { "output=wide", "output must be reference or flat" },
  { "lr=-1", "lr must be a positive number" } } do
  code, out = quick(bad[1])
  t:ok(code == 2 and out:find(bad[2]), ("bad argument %s: exit 2 with a message"):format(bad[1]), out)
end

os.execute("rm -rf '" .. tmp .. "'")
os.exit(t:done())
