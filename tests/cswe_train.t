#!/usr/bin/env rotlab-double
-- Constrained training in the runner: rl.optim.primal_dual (layers found through Sequentials, names, errors) and
-- experiment.run on a model with C-SWE: the primal-dual step after every optimizer step (checked against the
-- projected updates recomputed from the logged traces), traces of L values per row at the chosen cadence
-- (trace_every), epoch means equal to the means of the traces, several constrained layers prefixed distinctly.
local rl = require "rotlab"
local experiment = require "rotlab.experiment"
local t = require("rotlab.tap")()

local points = "build/data/digit_points.h5"
if not io.open(points) then t:skip_all("build/data/digit_points.h5 missing (make data)") end
local dir = os.tmpname()
os.remove(dir)
os.execute("mkdir -p " .. dir)

local L, M = 3, 4
local RATES = { alpha = 0.5, lr_slack = 0.2, lr_dual = 0.3 }
local SPLIT = { train = 0.1, val = 0.05, test = 0.85 }
local EPOCHS, BS = 3, 32

local function cswe(dim, extra)
  local o = { dim = dim, slices = L, refs = M, eps_fraction = 0.7, output = "reference" }
  for k, v in pairs(RATES) do o[k] = v end
  for k, v in pairs(extra or {}) do o[k] = v end
  return rl.pool.cswe(o)
end

local function width(pool, dim)
  pool:eval()
  local w = pool:forward(rl.sets(rl.full(0.5, 2, dim), { 0, 2 })):shape()[2]
  pool:train()
  return w
end

-- Standardize -> C-SWE -> linear head
local function build(cfg, ds, split)
  local mean, std = ds:feature_stats(split.train)
  local pool = cswe(ds:dim(), cfg.cswe)
  return rl.nn.Sequential { rl.nn.Standardize(mean, std), pool, rl.nn.Linear(width(pool, ds:dim()), ds:num_classes()) }
end

---------------------------------------------------------------------------------------------- rl.optim.primal_dual

do
  local a, b = cswe(3), cswe(3)
  local net = rl.nn.Sequential { rl.nn.Linear(3, 3), a, rl.nn.Linear(width(a, 3), 2) }
  local pd = rl.optim.primal_dual(net)
  t:is(#pd.layers, 1, "primal_dual finds the one C-SWE layer of a Sequential")
  t:ok(pd.layers[1].module == a and pd.layers[1].path == "2" and pd.layers[1].name == "cswe",
    "one layer: path '2', name 'cswe'", ("%s %s"):format(pd.layers[1].path, pd.layers[1].name))
  local nested = rl.nn.Sequential { rl.nn.ReLU(), rl.nn.Sequential { a, rl.nn.ReLU() }, b }
  local ls = rl.optim.constrained_layers(nested)
  t:ok(#ls == 2 and ls[1].module == a and ls[2].module == b, "nested Sequentials walked depth first")
  t:ok(ls[1].name == "cswe@2.1" and ls[2].name == "cswe@3", "several layers: names cswe@<path>",
    (ls[1] and ls[1].name or "?") .. " " .. (ls[2] and ls[2].name or "?"))
  t:is(#rl.optim.constrained_layers(rl.nn.Sequential { rl.nn.Linear(2, 2) }), 0,
    "constrained_layers of a model without C-SWE is empty")
  t:is(#rl.optim.constrained_layers(a), 1, "a bare C-SWE layer is a model too")

  t:raises(function() rl.optim.primal_dual() end, "bad argument #1 to 'primal_dual' %(expected a module",
    "primal_dual(nil) rejected")
  t:raises(function() rl.optim.primal_dual(42) end, "expected a module or an rl.nn.Sequential, got number",
    "primal_dual(number) rejected")
  t:raises(function() rl.optim.primal_dual({ 1, 2 }) end, "got a table that is not a module",
    "primal_dual(plain table) rejected")
  t:raises(function() rl.optim.primal_dual(rl.nn.Sequential { rl.nn.Linear(2, 2), rl.pool.swe { dim = 2,
    slices = 2, refs = 2 } }) end, "has no constrained layer", "a model without constrained layer rejected (SWE is not)")
  t:raises(function() rl.optim.primal_dual(net, { lr_dual = 1 }) end, "bad argument #2 to 'primal_dual' %(no options",
    "primal_dual takes no options")
  local loop = rl.nn.Sequential { rl.nn.ReLU() }
  loop.modules[2] = loop
  t:raises(function() rl.optim.primal_dual(loop) end, "contains itself", "a cycle through modules rejected")
  local err
  t:raises(function() pd:step() end, "primal_dual.step: layer cswe %(position 2%): .*needs the SWGG of a training forward",
    "step before any training forward names the layer")
  t:raises(function() pd.step({}) end, "expected a primal_dual object", "step on something else rejected")
  local st = pd:state()
  t:ok(#st == 1 and st[1].swgg_hard == nil and st[1].eps == nil and st[1].dual:size() == L,
    "state before a forward: no SWGG, no eps yet, L duals")

  -- one forward + step by hand: the layer's update
  local x = rl.sets(rl.randn(rl.rng(3), 12, 3), { 0, 5, 12 })
  net:train()
  net:forward(x)
  local g, lam0, u0 = a:swgg().hard:clone(), a:dual():clone(), a:slack():clone()
  t:is(pd:step(), pd, "step returns the object")
  local eps = a:eps()
  local worst = 0
  for l = 1, L do
    local u = math.max(0, u0:get(l) - RATES.lr_slack * (RATES.alpha * u0:get(l) - lam0:get(l)))
    local lam = math.max(0, lam0:get(l) + RATES.lr_dual * (g:get(l) - eps:get(l) - u))
    worst = math.max(worst, math.abs(a:slack():get(l) - u), math.abs(a:dual():get(l) - lam))
  end
  t:ok(worst < 1e-12, ("pd:step() = projected slack then dual step of the layer (err %.1e)"):format(worst))
  t:is(pd.steps, 1, "pd.steps counts the steps")
  st = pd:state()[1]
  t:ok(st.swgg_soft:size() == L and st.eps:size() == L and st.slack:maxdiff(a:slack()) == 0,
    "state after a step: soft SWGG, eps, slack of the layer")
  err = select(2, pcall(rl.optim.primal_dual, "x"))
  t:ok(tostring(err):find("^bad argument") ~= nil, "errors are argument errors at the caller", tostring(err))
end

---------------------------------------------------------------------------------------------- the runner

local ds = rl.data.load(points)
local labels = ds:labels()
local split1 = rl.data.split(labels, { train = SPLIT.train, val = SPLIT.val, test = SPLIT.test, seed = 1,
  stratify = true })
local per_epoch = (#split1.train + BS - 1) // BS
local total = per_epoch * EPOCHS
t:diag(("%d training sets: %d steps per epoch, %d steps"):format(#split1.train, per_epoch, total))

local db = dir .. "/cswe.db"
local function run(name, configs, extra)
  local spec = { name = name, data = points, db = db, build = build, configs = configs, seeds = { 1 },
    split = SPLIT, defaults = { epochs = EPOCHS, batch_size = BS, lr = 1e-2 }, progress = false }
  for k, v in pairs(extra or {}) do spec[k] = v end
  return experiment.run(spec)
end

local s = run("pd", { { trace_every = 1 }, { trace_every = 3 }, { trace_every = 0 } })
t:is(s.finished, 3, "three constrained runs FINISHED")
local store = rl.db.open(db)
local runs = store:runs({ experiment = "pd" })
local by = {}
for _, r in ipairs(runs) do by[rl.json.decode(r.config_json).trace_every] = r end

local KEYS = { "cswe.dual", "cswe.slack", "cswe.swgg_hard", "cswe.swgg_soft" }
local function traces(r)
  local out = {}
  for _, row in ipairs(store:traces(r.id)) do
    out[row.key] = out[row.key] or {}
    out[row.key][row.step] = row
  end
  return out
end

local tr1 = traces(by[1])
local tr3 = traces(by[3])
do
  local steps_ok, n_ok = true, true
  for _, k in ipairs(KEYS) do
    for step = 1, total do
      local row = tr1[k] and tr1[k][step]
      if not row then steps_ok = false elseif row.n ~= L or #row.vals ~= L then n_ok = false end
    end
    local extra = 0
    for step in pairs(tr1[k] or {}) do if step < 1 or step > total then extra = extra + 1 end end
    steps_ok = steps_ok and extra == 0
  end
  t:ok(steps_ok, ("trace_every = 1: a row per step (1..%d) for each of %s"):format(total, table.concat(KEYS, ", ")))
  t:ok(n_ok, ("every trace row holds L = %d values"):format(L))
  local eps_rows = 0
  for _ in pairs(tr1["cswe.eps"] or {}) do eps_rows = eps_rows + 1 end
  t:ok(eps_rows == 1 and tr1["cswe.eps"][1] and tr1["cswe.eps"][1].n == L, "cswe.eps logged once, at step 1")

  local cadence_ok, want = true, 0
  for step = 1, total do
    local expect = (step - 1) % 3 == 0
    if expect then want = want + 1 end
    for _, k in ipairs(KEYS) do
      if (tr3[k] and tr3[k][step] ~= nil) ~= expect then cadence_ok = false end
    end
  end
  t:ok(cadence_ok, ("trace_every = 3: rows exactly at steps 1, 4, 7, ... (%d of %d steps)"):format(want, total))
  -- bitwise equal: the per-thread gradient sums use a fixed set -> thread assignment (schedule(static, 1))
  local worst = 0
  for _, k in ipairs(KEYS) do
    for step, row in pairs(tr3[k] or {}) do
      for l = 1, L do
        local a, b = row.vals[l], tr1[k][step].vals[l]
        worst = math.max(worst, math.abs(a - b) / math.max(1, math.abs(b)))
      end
    end
  end
  t:ok(worst == 0, ("the cadence does not change training: trace_every = 3 rows equal the trace_every = 1 rows "
    .. "(rel diff %.1e)"):format(worst))
  local n0 = #store:traces(by[0].id)
  t:is(n0, 0, "trace_every = 0: no trace rows")
end

-- the updates recomputed from the traces: lambda_s = [lambda_{s-1} + lr (g_s - eps - u_s)]_+ with
-- u_s = [u_{s-1} - lr_u (alpha u_{s-1} - lambda_{s-1})]_+ and lambda_0 = u_0 = 0
do
  local eps = tr1["cswe.eps"][1].vals
  local worst, lam, u = 0, {}, {}
  for l = 1, L do lam[l], u[l] = 0, 0 end
  for step = 1, total do
    local g = tr1["cswe.swgg_hard"][step].vals
    local lu, ll = tr1["cswe.slack"][step].vals, tr1["cswe.dual"][step].vals
    for l = 1, L do
      local nu = math.max(0, u[l] - RATES.lr_slack * (RATES.alpha * u[l] - lam[l]))
      local nl = math.max(0, lam[l] + RATES.lr_dual * (g[l] - eps[l] - nu))
      worst = math.max(worst, math.abs(nu - lu[l]), math.abs(nl - ll[l]))
      u[l], lam[l] = lu[l], ll[l]
    end
  end
  t:ok(worst < 1e-9, ("one primal-dual step after every optimizer step, from the step's hard SWGG (err %.1e)"):format(
    worst))
  local first, last = tr1["cswe.dual"][1].vals, tr1["cswe.dual"][total].vals
  local moved, nonneg = false, true
  for l = 1, L do
    if first[l] ~= last[l] then moved = true end
    for step = 1, total do
      if tr1["cswe.dual"][step].vals[l] < 0 or tr1["cswe.slack"][step].vals[l] < 0 then nonneg = false end
    end
  end
  t:ok(moved, "the duals change during training")
  t:ok(nonneg, "duals and slack stay >= 0")
  local any_pos = false
  for step = 1, total do
    for l = 1, L do if tr1["cswe.dual"][step].vals[l] > 0 then any_pos = true end end
  end
  t:ok(any_pos, "some dual becomes positive (the bound, 0.7 x the first SWGG, is violated at first)")
end

-- epoch metrics = mean over slices and steps of the epoch
do
  local function metric_map(r)
    local m = {}
    for _, row in ipairs(store:metrics(r.id, { split = "train" })) do m[row.name .. "@" .. row.step] = row.value end
    return m
  end
  local m1, m3, m0 = metric_map(by[1]), metric_map(by[3]), metric_map(by[0])
  local worst, present, across = 0, true, 0
  for _, q in ipairs { "swgg_hard", "swgg_soft", "slack", "dual" } do
    for epoch = 1, EPOCHS do
      local sum, n = 0, 0
      for step = (epoch - 1) * per_epoch + 1, epoch * per_epoch do
        for _, v in ipairs(tr1["cswe." .. q][step].vals) do sum, n = sum + v, n + 1 end
      end
      local v = m1[q .. "@" .. epoch]
      if v == nil then present = false else worst = math.max(worst, math.abs(v - sum / n)) end
      local v3, v0 = m3[q .. "@" .. epoch], m0[q .. "@" .. epoch]
      if v == nil or v3 == nil or v0 == nil then present = false
      else across = math.max(across, math.abs(v3 - v), math.abs(v0 - v)) end
    end
  end
  t:ok(present and across == 0, ("train metrics swgg_hard, swgg_soft, slack, dual per epoch, the same whatever "
    .. "trace_every is (diff %.1e)"):format(across))
  t:ok(worst < 1e-9, ("epoch metric = mean of the epoch's traces over slices and steps (err %.1e)"):format(worst))
end

-- spec.primal_dual = false: traces still logged, duals untouched
do
  local s2 = run("pd-off", { { trace_every = 2 } }, { primal_dual = false })
  t:is(s2.finished, 1, "primal_dual = false run FINISHED")
  local r = store:runs({ experiment = "pd-off" })[1]
  local zero, rows = true, 0
  for _, row in ipairs(store:traces(r.id, "cswe.dual")) do
    rows = rows + 1
    for _, v in ipairs(row.vals) do if v ~= 0 then zero = false end end
  end
  t:ok(rows > 0 and zero, "primal_dual = false: duals traced and still 0")
end

-- bad cadence: the run FAILED with a clear message
do
  local s3 = run("pd-bad", { { trace_every = -1 }, { trace_every = 1.5 }, { trace_every = "often" } })
  t:is(s3.failed, 3, "bad trace_every values fail their runs")
  local all = true
  for _, r in ipairs(store:runs({ experiment = "pd-bad" })) do
    all = all and r.status == "FAILED" and tostring(r.error):find("trace_every must be an integer >= 0") ~= nil
  end
  t:ok(all, "each FAILED with 'trace_every must be an integer >= 0'")
end

-- a model without constrained layers: no trace, no SWGG metric
do
  local s4 = run("pd-none", { {} }, { build = function(cfg, d)
    return rl.nn.Sequential { rl.pool.mean { dim = d:dim() }, rl.nn.Linear(d:dim(), d:num_classes()) }
  end })
  local r = store:runs({ experiment = "pd-none" })[1]
  t:ok(s4.finished == 1 and #store:traces(r.id) == 0 and #store:metrics(r.id, { name = "dual" }) == 0,
    "mean pooling: no traces, no dual metric")
end

-- two constrained layers side by side: distinct prefixes for traces and metrics
do
  local function concat_cols(a, b)
    local ta, tb = a:totable(), b:totable()
    for i, row in ipairs(ta) do for _, v in ipairs(tb[i]) do row[#row + 1] = v end end
    return rl.tensor(ta)
  end
  local Parallel = {}
  Parallel.__index = Parallel
  function Parallel:forward(x)
    local y1, y2 = self.modules[1]:forward(x), self.modules[2]:forward(x)
    self.w1 = y1:shape()[2]
    return concat_cols(y1, y2)
  end
  function Parallel:backward(x, g, need)
    local rows1, rows2 = {}, {}
    for i, row in ipairs(g:totable()) do
      rows1[i], rows2[i] = { table.unpack(row, 1, self.w1) }, { table.unpack(row, self.w1 + 1) }
    end
    local g1 = self.modules[1]:backward(x, rl.tensor(rows1), need)
    local g2 = self.modules[2]:backward(x, rl.tensor(rows2), need)
    if g1 and g2 then g1:add(g2) end
    return g1
  end
  function Parallel:parameters()
    local ps = {}
    for i, m in ipairs(self.modules) do
      for _, p in ipairs(m:parameters()) do ps[#ps + 1] = { name = i .. "." .. p.name, value = p.value, grad = p.grad } end
    end
    return ps
  end
  function Parallel:zero_grad() for _, m in ipairs(self.modules) do m:zero_grad() end return self end
  function Parallel:train(on) for _, m in ipairs(self.modules) do m:train(on) end return self end
  function Parallel:eval() for _, m in ipairs(self.modules) do m:eval() end return self end
  function Parallel:kind() return "parallel" end
  local function build2(cfg, d, split)
    local mean, std = d:feature_stats(split.train)
    local a, b = cswe(d:dim()), cswe(d:dim(), { lr_dual = 0.05 })
    local par = setmetatable({ modules = { a, b } }, Parallel)
    return rl.nn.Sequential { rl.nn.Standardize(mean, std), par,
      rl.nn.Linear(width(a, d:dim()) + width(b, d:dim()), d:num_classes()) }
  end
  local s5 = run("pd-two", { { trace_every = 2 } }, { build = build2, defaults = { epochs = 1, batch_size = BS,
    lr = 1e-2 } })
  t:is(s5.finished, 1, "two constrained layers: run FINISHED")
  local r = store:runs({ experiment = "pd-two" })[1]
  local keys = {}
  for _, row in ipairs(store:traces(r.id)) do keys[row.key] = (keys[row.key] or 0) + 1 end
  local want_rows = (per_epoch + 1) // 2
  local ok = true
  for _, p in ipairs { "cswe@2.1", "cswe@2.2" } do
    for _, q in ipairs { "swgg_hard", "swgg_soft", "slack", "dual" } do
      if keys[p .. "." .. q] ~= want_rows then ok = false end
    end
  end
  t:ok(ok and keys["cswe.dual"] == nil, ("traces cswe@2.1.* and cswe@2.2.*, %d rows each"):format(want_rows))
  local names = {}
  for _, m in ipairs(store:metrics(r.id, { split = "train" })) do names[m.name] = true end
  t:ok(names["cswe@2.1.dual"] and names["cswe@2.2.swgg_hard"] and not names["dual"],
    "metrics prefixed per layer (cswe@2.1.dual, cswe@2.2.swgg_hard, ...)")
  local d1 = store:traces(r.id, "cswe@2.1.dual")
  local d2 = store:traces(r.id, "cswe@2.2.dual")
  t:ok(d1[#d1].vals[1] ~= d2[#d2].vals[1], "the two layers keep their own duals")
end

store:close()
os.execute("rm -rf " .. dir)
os.exit(t:done())
