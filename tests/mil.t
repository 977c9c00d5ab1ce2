#!/usr/bin/env rotlab
-- experiments/mil.lua in quick mode (2 datasets, 2 folds, 1 seed, 2 epochs, a handful of poolings) into a temporary
-- DB: every (dataset, pooling, fold) run is FINISHED with its metrics logged, and the Table 1 report renders.
-- Skipped when the shared data directory (../shared/data) is absent.
local rl = require "rotlab"
local json = require "rotlab.json"
local mil = require "rotlab.mil"
local report = require "rotlab.report"
local t = require("rotlab.tap")()

local data_dir = mil.default_data_dir()
if not data_dir or not mil.files_dir(data_dir .. "/Musk1") or not mil.files_dir(data_dir .. "/Fox") then
  t:skip_all("no shared MIL data (../shared/data with Musk1 and Fox; or set ROTLAB_DATA)")
end

local tmp = os.tmpname()
os.remove(tmp)
assert(os.execute("mkdir -p '" .. tmp .. "'"))
local db = tmp .. "/mil.db"

local bin = "rotlab"
do
  local p = io.popen("command -v rotlab 2>/dev/null")
  local found = p:read("l")
  p:close()
  if not found or found == "" then bin = ROTLAB_ROOT .. "/build/bin/rotlab" end
end
local function sh(s) return "'" .. s:gsub("'", "'\\''") .. "'" end
local function run_quick(...)
  local argv = { bin, "run", sh(ROTLAB_ROOT .. "/experiments/mil.lua"), "quick=true", "progress=false",
    sh("data=" .. data_dir), sh("db=" .. db), sh("out=" .. tmp .. "/h5") }
  for _, a in ipairs { ... } do argv[#argv + 1] = sh(a) end
  local p = io.popen(table.concat(argv, " ") .. " 2>&1")
  local out = p:read("a")
  local _, _, code = p:close()
  return code, out
end

local t0 = rl.wall_time()
local code, out = run_quick()
local seconds = rl.wall_time() - t0
t:is(code, 0, "quick MIL run exits 0", out)
t:diag(("quick MIL run: %.1f s"):format(seconds))
t:ok(seconds < 120, "quick mode takes seconds, not minutes", seconds)

-- the DB: one FINISHED run per (dataset, pooling, fold), each with its per-epoch metrics
local store = rl.db.open(db, { readonly = true })
local runs = store:runs({ experiment = "mil-quick" })
local by, datasets, pools = {}, {}, {}
local all_finished, all_logged = true, true
for _, r in ipairs(runs) do
  local cfg = json.decode(r.config_json)
  local key = cfg.dataset .. "/" .. cfg.pool .. "/" .. tostring(r.fold)
  by[key] = (by[key] or 0) + 1
  datasets[cfg.dataset] = true
  pools[cfg.pool] = true
  if r.status ~= "FINISHED" then all_finished = false end
  local acc = store:metrics(r.id, { split = "test", name = "acc" })
  local loss = store:metrics(r.id, { split = "train", name = "loss" })
  if #acc ~= cfg.epochs or #loss ~= cfg.epochs then all_logged = false end
end
local npools = 0
for _ in pairs(pools) do npools = npools + 1 end
t:ok(datasets.Musk1 and datasets.Fox, "quick mode runs Musk1 and Fox")
t:ok(npools >= 4 and pools.mean and pools.attention, "a handful of poolings (at least 4)", npools)
local complete = true
for ds in pairs(datasets) do
  for p in pairs(pools) do
    for fold = 1, 2 do if by[ds .. "/" .. p .. "/" .. fold] ~= 1 then complete = false end end
  end
end
t:ok(complete and #runs == 2 * npools * 2, "one run per (dataset, pooling, fold): 2 x pools x 2 folds", #runs)
t:ok(all_finished, "every run is FINISHED")
t:ok(all_logged, "every run logged test/acc and train/loss at every epoch")
local cfg1 = json.decode(runs[1].config_json)
t:ok(cfg1.epochs == 2 and cfg1.batch_size == 128 and cfg1.lr == 5e-4 and cfg1.weight_decay == 5e-3 and
  cfg1.dropout == 0.5 and table.concat(cfg1.encoder, ",") == "256,128,64" and cfg1.standardize == true,
  "the protocol is in every run's config (Adam 5e-4, wd 5e-3, batch 128, encoder 256-128-64, dropout 0.5)")
store:close()

-- the printed Table 1 and the report API
t:ok(out:find("\npool[%w_ ]*%s+Fox%s+Musk1%s+avg rank\n"), "the run ends with the Table 1 (datasets as columns)", out)
local pivot = report.pivot(db, { experiment = "mil-quick" })
t:is(table.concat(pivot.cols, ","), "Fox,Musk1", "report.pivot: datasets as columns")
t:is(#pivot.rows, npools, "report.pivot: one row per pooling")
local cells_ok = true
for _, r in ipairs(pivot.rows) do
  for _, c in ipairs(pivot.cols) do
    local cell = r.cells[c]
    if not cell or #cell.values ~= 2 or not (cell.mean >= 0 and cell.mean <= 1) then cells_ok = false end
  end
end
t:ok(cells_ok, "every cell: two folds, an accuracy in [0, 1]")
local md = report.render_pivot(pivot, "markdown")
t:ok(md:find("^| pool[%w_ ]* | Fox | Musk1 | avg rank |") and md:find("%*%*[%d.]+ ± [%d.]+%*%*¹"),
  "markdown Table 1 with the best cell bold", md)

-- a rerun skips the finished runs
code, out = run_quick()
t:ok(code == 0 and out:find("0 runs finished, " .. npools * 2 .. " skipped"), "a rerun skips every finished run", out)
-- a bad argument is refused
code, out = run_quick("pools=nosuch")
t:ok(code == 2 and out:find("unknown pooling 'nosuch'"), "unknown pooling: exit 2", out)
code, out = run_quick("folds=0")
t:ok(code ~= 0 and out:find("folds must be a positive integer"), "bad folds: refused", out)

os.execute("rm -rf '" .. tmp .. "'")
os.exit(t:done())
