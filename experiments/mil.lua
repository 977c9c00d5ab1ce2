--[[
mil.lua -- the MIL benchmark of Ilse et al. 2018 as run in the ROTP paper's MIL section (Table 1): every pooling
rotlab has, on every MIL dataset found (Musk1, Musk2, Fox, Tiger, Elephant), 10-fold cross-validation repeated over
seeds. Model: per-feature standardisation (statistics of the training fold's instances), instance encoder
D -> 256 -> 128 -> 64 (Linear + ReLU + dropout 0.5 each), the pooling, a linear head to 2 classes (cross-entropy).
Adam, lr 5e-4, weight decay 5e-3, 50 epochs, mini-batches of 128 bags. The runner holds out a stratified tenth of
each training part as validation (logged, not used for selection); the score is the test accuracy after the last
epoch. Results go to one SQLite DB (experiment "mil", config keys dataset / pool / pool_opts); the Table 1 layout
is `rotlab report DB --table1` (datasets as columns), printed at the end.

  rotlab run experiments/mil.lua [data=DIR] [db=results/mil.db] [out=build/data/mil] [quick=true]
      [datasets=Musk1,Fox] [pools=mean,max,rotp] [folds=10] [seeds=5] [epochs=50] [standardize=true]
      [reconvert=false] [progress=true|false]

  data      the shared data directory (default: $ROTLAB_DATA, ../shared/data or ../../shared/data)
  out       where the converted HDF5 files go (converted when missing, or always with reconvert=true)
  quick     CI mode: Musk1 and Fox, 2 folds, 1 seed, 2 epochs, a handful of poolings, DB results/mil_quick.db,
            experiment "mil-quick" -- seconds, not minutes
  pools     keep only these pooling names (e.g. pools=attention,rotp)
ROTP (each solver, alpha0 in {0, learned}, T = 4 iterations), SWE and C-SWE are included when this build has
rl.pool.rotp / swe / cswe; otherwise a note says they were skipped.
]]
local rl = require "rotlab"
local experiment = require "rotlab.experiment"
local report = require "rotlab.report"
local mil = require "rotlab.mil"

local args = ... or {}

local function list_arg(v)
  if v == nil then return nil end
  local r = {}
  for s in tostring(v):gmatch("[^,]+") do r[#r + 1] = s end
  return r
end

local function int_arg(name, default)
  local v = args[name]
  if v == nil then return default end
  local i = math.tointeger(v)
  if not i or i < 1 then error(("mil: %s must be a positive integer, got %s"):format(name, tostring(v)), 0) end
  return i
end

local quick = args.quick == true
local data_dir = args.data or mil.default_data_dir()
if not data_dir then
  io.stderr:write("mil: no data directory (give data=DIR, set ROTLAB_DATA, or provide ../shared/data)\n")
  return 2
end
local db = args.db or (quick and "results/mil_quick.db" or "results/mil.db")
local out_dir = args.out or "build/data/mil"
local name = args.name or (quick and "mil-quick" or "mil")
local nfolds = int_arg("folds", quick and 2 or 10)
local nseeds = int_arg("seeds", quick and 1 or 5)
local epochs = int_arg("epochs", quick and 2 or 50)
local standardize = args.standardize ~= false

-- The protocol (constant over the table's rows; stored in every run's config).
local defaults = {
  epochs = epochs, batch_size = 128, lr = 5e-4, weight_decay = 5e-3,
  encoder = { 256, 128, 64 }, dropout = 0.5, standardize = standardize,
}

------------------------------------------------------------------------------------------------- poolings

-- Our choices where the papers leave a pooling's size open: SWE/C-SWE with 8 slices x 8 references (a 64-wide flat
-- embedding, the width of the other poolings); C-SWE bounds at half the SWGG of the first training batch.
local SWE_OPTS = { slices = 8, refs = 8 }
local CSWE_EPS_FRACTION = 0.5
local ROTP_ITERS = 4
-- Sizes the authors' MIL script sets (SDS-Lab/ROT-Pooling, backbones/attention_mil.py): attention and gated
-- attention with 64 hidden units (rotlab's default is 128), Set2Set with 2 processing steps (default 3); the others
-- use rotlab's defaults, which match it (DeepSet hidden = dim, dynamic pooling k = 3).
local BASELINE_OPTS = { attention = { hidden = 64 }, gated_attention = { hidden = 64 }, set2set = { steps = 2 } }

local function pool_list()
  local pools = {}
  local function add(pool, opts) pools[#pools + 1] = { pool = pool, pool_opts = opts } end
  for _, p in ipairs { "add", "mean", "max", "attention", "gated_attention", "mixed", "gated_mixed", "deepset",
    "set2set", "dynamic", "gnp" } do
    if rl.pool[p] then add(p, BASELINE_OPTS[p])
    else print(("mil: note: rl.pool.%s is not in this build; skipped"):format(p)) end
  end
  if rl.pool.rotp then
    for _, solver in ipairs { "sinkhorn", "badmm-e", "badmm-q" } do
      for _, a0 in ipairs { 0, "learn" } do add("rotp", { solver = solver, alpha0 = a0, iters = ROTP_ITERS }) end
    end
  else
    print("mil: note: rl.pool.rotp is not in this build (branch rotp not merged); ROTP rows skipped")
  end
  if rl.pool.swe then
    add("swe", { slices = SWE_OPTS.slices, refs = SWE_OPTS.refs })
  else
    print("mil: note: rl.pool.swe is not in this build (branch swe not merged); SWE row skipped")
  end
  if rl.pool.cswe then
    add("cswe", { slices = SWE_OPTS.slices, refs = SWE_OPTS.refs, eps_fraction = CSWE_EPS_FRACTION })
  else
    print("mil: note: rl.pool.cswe is not in this build (branch swe not merged); C-SWE row skipped")
  end
  return pools
end

local pools = pool_list()
if quick then -- a handful: two plain, two learned, and ROTP / SWE when present
  local keep = { mean = true, max = true, attention = true, gated_attention = true }
  local q, rotp_added = {}, false
  for _, p in ipairs(pools) do
    if keep[p.pool] or p.pool == "swe" or (p.pool == "rotp" and not rotp_added) then
      q[#q + 1] = p
      rotp_added = rotp_added or p.pool == "rotp"
    end
  end
  pools = q
end
local only = list_arg(args.pools)
if only then
  local want, q = {}, {}
  for _, p in ipairs(only) do want[p] = true end
  for _, p in ipairs(pools) do if want[p.pool] then q[#q + 1] = p end end
  for _, p in ipairs(only) do
    if not rl.pool[p] then io.stderr:write(("mil: unknown pooling '%s' (known: %s)\n"):format(p,
      table.concat(rl.pool.list(), ", "))) return 2 end
  end
  pools = q
end
if #pools == 0 then
  io.stderr:write("mil: no pooling selected\n")
  return 2
end

------------------------------------------------------------------------------------------------- model

-- Output width of a pooling for inputs of `width` columns: one eval-mode forward of a two-row set (so modules
-- with state, such as C-SWE's bounds, are not touched).
local function pooled_width(pool, width)
  pool:eval()
  local y = pool:forward(rl.sets(rl.full(0.5, 2, width), { 0, 2 }))
  pool:train()
  return y:shape()[2]
end

local function build(cfg, ds, split)
  local mods = {}
  if cfg.standardize then
    local mean, std = ds:feature_stats(split.train)
    mods[#mods + 1] = rl.nn.Standardize(mean, std)
  end
  local width = ds:dim()
  for _, h in ipairs(cfg.encoder) do
    mods[#mods + 1] = rl.nn.Linear(width, h)
    mods[#mods + 1] = rl.nn.ReLU()
    if cfg.dropout > 0 then mods[#mods + 1] = rl.nn.Dropout(cfg.dropout) end
    width = h
  end
  local popts = { dim = width }
  for k, v in pairs(cfg.pool_opts or {}) do popts[k] = v end
  local pool = rl.pool.make(cfg.pool, popts)
  mods[#mods + 1] = pool
  mods[#mods + 1] = rl.nn.Linear(pooled_width(pool, width), ds:num_classes())
  return rl.nn.Sequential(mods)
end

-- C-SWE needs no hook here: the runner does the primal-dual step after every optimizer step and logs the per-slice
-- SWGG (hard, soft), slack and duals as traces (keys cswe.swgg_hard, cswe.swgg_soft, cswe.slack, cswe.dual) and
-- their epoch means as train metrics (see rotlab.experiment).

------------------------------------------------------------------------------------------------- datasets

local found = mil.find(data_dir)
local wanted = list_arg(args.datasets) or (quick and { "Musk1", "Fox" } or nil)
local datasets = {}
if wanted then
  local by = {}
  for _, d in ipairs(found) do by[d.name] = d end
  for _, n in ipairs(wanted) do
    if by[n] then datasets[#datasets + 1] = by[n]
    else print(("mil: note: dataset %s not found under %s; skipped"):format(n, data_dir)) end
  end
else
  datasets = found
end
if #datasets == 0 then
  io.stderr:write(("mil: no MIL dataset found under %s\n"):format(data_dir))
  return 2
end

os.execute('mkdir -p "' .. out_dir .. '"')
local seeds = {}
for s = 1, nseeds do seeds[s] = s end

local t0 = rl.wall_time()
local total = { finished = 0, skipped = 0, failed = 0 }
for _, d in ipairs(datasets) do
  local h5 = out_dir .. "/" .. d.name .. ".h5"
  local f = io.open(h5, "rb")
  if f then f:close() end
  if not f or args.reconvert == true then
    local info = mil.convert(d.dir, h5, { name = d.name })
    print(("mil: %s: %d bags (%d positive), %d instances x %d features -> %s"):format(d.name, info.bags,
      info.positives, info.instances, info.dim, h5))
  end
  local configs = {}
  for _, p in ipairs(pools) do configs[#configs + 1] = { dataset = d.name, pool = p.pool, pool_opts = p.pool_opts } end
  local t1 = rl.wall_time()
  local summary = experiment.run {
    name = name,
    script = "experiments/mil.lua",
    data = h5,
    db = db,
    configs = configs,
    defaults = defaults,
    seeds = seeds,
    folds = nfolds,
    build = build,
    progress = args.progress,
  }
  for k in pairs(total) do total[k] = total[k] + summary[k] end
  print(("mil: %s: %d runs finished, %d skipped (already in %s), %d failed, %.1f s"):format(d.name,
    summary.finished, summary.skipped, db, summary.failed, rl.wall_time() - t1))
end
print(("mil: %d datasets x %d poolings x %d folds x %d seeds: %d finished, %d skipped, %d failed, wall %.1f s"):format(
  #datasets, #pools, nfolds, nseeds, total.finished, total.skipped, total.failed, rl.wall_time() - t0))
local rc = report.main({ "report", db, "--table1", "--experiment", name })
if total.failed > 0 then return 1 end
return rc
