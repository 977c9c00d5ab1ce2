--[[
rotp_equivalence.lua -- Proposition 1 of the ROTP paper (Xu & Cheng, TPAMI 2023): with the settings of its table
the ROTP layer (alpha0 = 0) reproduces mean, max and attention pooling; and the approximation-error curves of
Fig. 6. One run per (pooling, solver) in the results DB (experiment "rotp-equivalence"), logging
  eval/prop1_err       (step 0) max_d |f_d - g_d| at the table's setting, f the layer's output (eq. 5), g the
                       pooling it should reproduce, with T = iters iterations and "large" alphas A = 1e4
  eval/q0_dev, p0_dev  (step 0) max |marginal - prior| of the normalised plan P / ||P||_1 at that setting
  eval/err_T           (step T) the same error against the number of iterations T (A = 1e4)
  eval/err_A           (step k) the same error against the size A = 10^k of the large alphas (T = iters)
The settings, per pooling (A = 1e4 in the table; "small" = 10 / A = 1e-3):
  mean       a1 = a2 = a3 = A, q0 uniform; BADMM rho = 500 (the authors' visualization_proposition.py)
  max        a1 = small, a2 = A, a3 = 0; BADMM rho = 0.1
  attention  q0 = attention weights softmax_n(w^T tanh(V x_n)) (the layer's learned q0 at its seeded init);
             a1 = A / 10 (BADMM-Q: A), a2 = a3 = A^2; BADMM rho = 500. Every solver solves the regularised
             problem, whose sample marginal is q0 only when a3 >> a1 (the regulariser pulls toward uniform; the
             authors' BADMM, compat = "reference", pins the marginals to the priors whatever the alphas)
Data: the paper's toy setting, one set of N = 10 samples x D = 5 features, U[0, 1) entries (no ties for max),
seeded by the run's seed.

Fig. 6 is reproduced as the error against the number of iterations T (the depth of the unrolled layer), and, in a
second table, against the size A of the large alphas.

  rotlab run experiments/rotp_equivalence.lua [quick=true] [db=results/rotp_equivalence.db] [seeds=1] [sets=1]
      [n=10] [d=5] [iters=500] [ts=1,2,5,10,20,50,100,200,500] [aexps=0,1,2,3,4] [tol=1e-3]
      [poolings=mean,max,attention] [solvers=sinkhorn,badmm-e,badmm-q] [progress=true|false]
  quick: iters = 100, ts = 1,10,100, aexps = 0,2,4, DB results/rotp_equivalence_quick.db -- seconds.
Exit code 0 when every run FINISHED, 1 otherwise, 2 for a bad argument.
]]
local rl = require "rotlab"
local study = require "rotlab.rotp_study"

local SCRIPT = "rotp_equivalence"
local SOLVERS = { "sinkhorn", "badmm-e", "badmm-q" }
local POOLINGS = { "mean", "max", "attention" }
-- The size of the "large" alphas of the table and the BADMM step of the large-alpha settings (the authors' script).
local A_TABLE = 1e4
local RHO_LARGE, RHO_SMALL = 500, 0.1

local keys = {
  { name = "db", kind = "string", default = "results/rotp_equivalence.db", quick = "results/rotp_equivalence_quick.db",
    help = "results DB" },
  { name = "name", kind = "string", default = "rotp-equivalence", help = "experiment name in the DB" },
  { name = "seeds", kind = "int", default = 1, min = 1, help = "number of seeds (data draws) 1..seeds" },
  { name = "sets", kind = "int", default = 1, min = 1, help = "sets per draw" },
  { name = "n", kind = "int", default = 10, min = 1, help = "samples per set N" },
  { name = "d", kind = "int", default = 5, min = 1, help = "feature dimension D" },
  { name = "iters", kind = "int", default = 500, quick = 100, min = 1, help = "iterations T of the table" },
  { name = "ts", kind = "intlist", default = { 1, 2, 5, 10, 20, 50, 100, 200, 500 }, quick = { 1, 10, 100 },
    min = 1, max = 100000, help = "T values of the error-vs-T curve" },
  { name = "aexps", kind = "intlist", default = { 0, 1, 2, 3, 4 }, quick = { 0, 2, 4 }, min = 0, max = 8,
    help = "log10 A values of the error-vs-A curve" },
  { name = "tol", kind = "number", default = 1e-3, min = 0, help = "tolerance of the Proposition 1 table" },
  { name = "poolings", kind = "list", default = POOLINGS, choices = POOLINGS, help = "poolings to reproduce" },
  { name = "solvers", kind = "list", default = SOLVERS, choices = SOLVERS, help = "solvers" },
  { name = "progress", kind = "bool", help = "progress bar on stderr (default: when it is a terminal)" },
}

-- Layer options of the table's setting for (pooling, solver) with large alphas of size A.
local function setting(pooling, solver, A, T, D, seed)
  local small = 10 / A
  local o = { dim = D, solver = solver, iters = T }
  local badmm = solver ~= "sinkhorn"
  if pooling == "mean" then
    o.fixed = { a1 = A, a2 = A, a3 = A }
    if badmm then o.fixed.rho = RHO_LARGE end
  elseif pooling == "max" then
    o.fixed = { a1 = small, a2 = A, a3 = 0 }
    if badmm then o.fixed.rho = RHO_SMALL end
  else
    o.q0 = "learn"
    o.rng = rl.rng(seed + 104729)
    -- BADMM-Q's quadratic term needs a larger a1 than the entropy to hold the plan at q0 p0^T
    o.fixed = { a1 = solver == "badmm-q" and A or A / 10, a2 = A * A, a3 = A * A }
    if badmm then o.fixed.rho = RHO_LARGE end
  end
  return o
end

-- The pooling the layer should reproduce, per set (B x D, as a Lua table of rows).
local function target(pooling, layer, X, B, N, D)
  local x = X:totable()
  local out = {}
  local att
  if pooling == "attention" then
    local V, w = layer:param("q0.V"), layer:param("q0.w")
    local H = X:matmul(V, false, true):totable() -- rows x hidden
    local wt = w:totable()[1]
    att = {}
    for b = 1, B do
      local sc, smax = {}, -math.huge
      for i = 1, N do
        local r, v = (b - 1) * N + i, 0
        for h = 1, #wt do v = v + math.tanh(H[r][h]) * wt[h] end
        sc[i], smax = v, math.max(smax, v)
      end
      local Z = 0
      for i = 1, N do sc[i] = math.exp(sc[i] - smax); Z = Z + sc[i] end
      for i = 1, N do att[(b - 1) * N + i] = sc[i] / Z end
    end
  end
  for b = 1, B do
    local g = {}
    for d = 1, D do
      local acc = pooling == "max" and -math.huge or 0
      for i = 1, N do
        local r = (b - 1) * N + i
        local v = x[r][d]
        if pooling == "mean" then acc = acc + v / N
        elseif pooling == "max" then acc = math.max(acc, v)
        else acc = acc + att[r] * v end
      end
      g[d] = acc
    end
    out[b] = g
  end
  return out, att
end

local function max_err(y, g)
  local e = 0
  for b, row in ipairs(y:totable()) do
    for d, v in ipairs(row) do
      local diff = math.abs(v - g[b][d])
      if diff ~= diff then return 0 / 0 end
      e = math.max(e, diff)
    end
  end
  return e
end

-- max |P1 - q0| and max |P^T 1 - p0| of each normalised plan (q0: uniform or the attention weights).
local function marginal_devs(layer, att, N, D)
  local q0dev, p0dev = 0, 0
  for b, P in ipairs(layer:plan()) do -- D x N
    local p = P:totable()
    local mass = P:sum()
    for i = 1, N do
      local s = 0
      for d = 1, D do s = s + p[d][i] end
      local q = att and att[(b - 1) * N + i] or 1 / N
      q0dev = math.max(q0dev, math.abs(s / mass - q))
    end
    for d = 1, D do
      local s = 0
      for i = 1, N do s = s + p[d][i] end
      p0dev = math.max(p0dev, math.abs(s / mass - 1 / D))
    end
  end
  return q0dev, p0dev
end

local function train(cfg, seed, _, run)
  local s, X = study.sets(cfg.data, seed, cfg.sets, cfg.n, cfg.d)
  local function err_at(A, T)
    local layer = rl.pool.rotp(setting(cfg.pooling, cfg.solver, A, T, cfg.d, seed))
    local y = layer:forward(s)
    local g, att = target(cfg.pooling, layer, X, cfg.sets, cfg.n, cfg.d)
    return max_err(y, g), layer, att
  end
  local e, layer, att = err_at(A_TABLE, cfg.iters)
  run:metric(0, "eval", "prop1_err", e)
  local q0dev, p0dev = marginal_devs(layer, att, cfg.n, cfg.d)
  run:metric(0, "eval", "q0_dev", q0dev)
  run:metric(0, "eval", "p0_dev", p0dev)
  for _, T in ipairs(cfg.ts) do run:metric(T, "eval", "err_T", (err_at(A_TABLE, T))) end
  for _, k in ipairs(cfg.aexps) do run:metric(k, "eval", "err_A", (err_at(10.0 ^ k, cfg.iters))) end
end

local function describe(pooling, solver)
  local o = setting(pooling, solver, A_TABLE, 1, 1, 0)
  local f = o.fixed
  local parts = { ("a1=%g a2=%g a3=%g"):format(f.a1, f.a2, f.a3) }
  if f.rho then parts[#parts + 1] = ("rho=%g"):format(f.rho) end
  if o.q0 then parts[#parts + 1] = "q0=attention" end
  return table.concat(parts, " ")
end

local function report(spec, opts)
  local done = study.finished(spec)
  local rows = {}
  for _, r in ipairs(done) do
    local c, m = r.config, r.m
    local e = m["eval/prop1_err"][0]
    rows[#rows + 1] = { c.pooling, c.solver .. (opts.seeds > 1 and (" s" .. r.seed) or ""), describe(c.pooling, c.solver),
      c.iters, study.fmt(e, 3), e <= opts.tol and "yes" or "NO", study.fmt(m["eval/q0_dev"][0], 3),
      study.fmt(m["eval/p0_dev"][0], 3) }
  end
  print(("Proposition 1 (alpha0 = 0, output eq. 5): max |f - pooling| per pooling and solver, %d set(s) of %d x %d, " ..
    "U[0,1) entries, %s build"):format(opts.sets, opts.n, opts.d, rl.real))
  print(study.table({ "pooling", "solver", "setting", "T", "max err", ("<= %g"):format(opts.tol), "|P1-q0|",
    "|P'1-p0|" }, rows))
  print("|P1-q0|, |P'1-p0|: the largest deviation of the normalised plan's sample and feature marginals from q0 and" ..
    " p0\n  (max pooling needs the sample marginal to move onto the arg-max samples, away from q0).")
  local function curve(metric, xs, label, xfmt)
    local headers = { "pooling/solver \\ " .. label }
    for _, x in ipairs(xs) do headers[#headers + 1] = xfmt(x) end
    local body = {}
    for _, r in ipairs(done) do
      local line = { r.config.pooling .. "/" .. r.config.solver .. (opts.seeds > 1 and (" s" .. r.seed) or "") }
      for _, x in ipairs(xs) do
        local v = r.m["eval/" .. metric] and r.m["eval/" .. metric][x]
        line[#line + 1] = v and study.fmt(v, 3) or "-"
      end
      body[#body + 1] = line
    end
    return study.table(headers, body, true)
  end
  print(("\nFig. 6: approximation error max |f - pooling| against the number of iterations T (A = %g)"):format(A_TABLE))
  print(curve("err_T", opts.ts, "T", function(x) return tostring(x) end))
  print(("\napproximation error against the size A of the large alphas (small ones 10 / A), T = %d"):format(opts.iters))
  print(curve("err_A", opts.aexps, "A", function(k) return ("1e%d"):format(k) end))
end

return study.main(SCRIPT, keys, ..., function(opts)
  local configs = {}
  for _, p in ipairs(opts.poolings) do
    for _, solver in ipairs(opts.solvers) do configs[#configs + 1] = { pooling = p, solver = solver } end
  end
  local seeds = {}
  for i = 1, opts.seeds do seeds[i] = i end
  local spec = {
    name = opts.name, script = "experiments/rotp_equivalence.lua", db = opts.db, configs = configs, seeds = seeds,
    defaults = { sets = opts.sets, n = opts.n, d = opts.d, iters = opts.iters, ts = opts.ts, aexps = opts.aexps,
      a_table = A_TABLE, rho_large = RHO_LARGE, rho_small = RHO_SMALL, data = "uniform", real = rl.real },
    train = train, progress = opts.progress,
  }
  local summary = study.run(spec)
  print(("%s: %d runs finished, %d skipped (already in %s), %d failed, %.1f s"):format(SCRIPT, summary.finished,
    summary.skipped, opts.db, summary.failed, summary.seconds))
  report(spec, opts)
  return (summary.failed == 0 and summary.interrupted == 0) and 0 or 1
end)
