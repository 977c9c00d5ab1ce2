--[[
rotp_convergence.lua -- the convergence study of the ROTP paper's Fig. 4 (Xu & Cheng, TPAMI 2023): the objective
<-X, P> (mean over the sets of the batch) against the number of unrolled iterations T, for each solver (sinkhorn,
badmm-e, badmm-q), with alpha0 = 0 (unbalanced OT) and alpha0 > 0 (fixed, the structure term on). One run per
(solver, alpha0) in the results DB (experiment "rotp-convergence"); each T is a step of that run with the metrics
eval/objective (mean over sets of <-X_s, P_s>), eval/objective_normalised (mean of <-X_s, P_s> / ||P_s||_1, which
compares the unbalanced Sinkhorn plans with the mass-1 BADMM plans), eval/mass (mean ||P_s||_1), eval/error (1 when
the forward raised, the objective is then NaN) and eval/cpu_seconds. The tables at the end print the curves.

Setting (the paper's): 50 sets x 500 samples x 100 features, entries ReLU(N(0, 1)) (non-negative, as after a ReLU
encoder), seeded by the run's seed; every alpha fixed to 1 (a1 = a2 = a3 = rho = 1, as the authors' runtime
script), uniform p0 and q0, alpha0 in {0, 1}; T in {1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 50, 100}. Each T is a fresh
forward with iters = T (the same fixed alphas at every iteration, so it is the first T iterations of any longer run),
in eval mode.

  rotlab run experiments/rotp_convergence.lua [quick=true] [db=results/rotp_convergence.db] [seeds=1] [sets=50]
      [n=500] [d=100] [ts=1,2,...,100] [a1=1] [a2=1] [a3=1] [rho=1] [inner=5] [alpha0=0,1]
      [solvers=sinkhorn,badmm-e,badmm-q] [progress=true|false]
  quick: 4 sets x 30 x 8, ts = 1,2,4,8,16,32, DB results/rotp_convergence_quick.db -- seconds.
Exit code 0 when every run FINISHED, 1 otherwise, 2 for a bad argument.
]]
local rl = require "rotlab"
local study = require "rotlab.rotp_study"

local SCRIPT = "rotp_convergence"
local SOLVERS = { "sinkhorn", "badmm-e", "badmm-q" }

local keys = {
  { name = "db", kind = "string", default = "results/rotp_convergence.db", quick = "results/rotp_convergence_quick.db",
    help = "results DB" },
  { name = "name", kind = "string", default = "rotp-convergence", help = "experiment name in the DB" },
  { name = "seeds", kind = "int", default = 1, min = 1, help = "number of seeds (data draws) 1..seeds" },
  { name = "sets", kind = "int", default = 50, quick = 4, min = 1, help = "sets per batch" },
  { name = "n", kind = "int", default = 500, quick = 30, min = 1, help = "samples per set N" },
  { name = "d", kind = "int", default = 100, quick = 8, min = 1, help = "feature dimension D" },
  { name = "ts", kind = "intlist", default = { 1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 50, 100 },
    quick = { 1, 2, 4, 8, 16, 32 }, min = 1, max = 100000, help = "numbers of iterations T" },
  { name = "a1", kind = "number", default = 1, min = 1e-30, help = "fixed a1" },
  { name = "a2", kind = "number", default = 1, min = 0, help = "fixed a2" },
  { name = "a3", kind = "number", default = 1, min = 0, help = "fixed a3" },
  { name = "rho", kind = "number", default = 1, min = 1e-30, help = "fixed BADMM step rho" },
  { name = "inner", kind = "int", default = 5, min = 0, help = "inner scaling steps (structured Sinkhorn only)" },
  { name = "alpha0", kind = "numlist", default = { 0, 1 }, min = 0, help = "alpha0 settings (0: no structure)" },
  { name = "solvers", kind = "list", default = SOLVERS, choices = SOLVERS, help = "solvers" },
  { name = "progress", kind = "bool", help = "progress bar on stderr (default: when it is a terminal)" },
}

local function train(cfg, seed, _, run)
  local s, X = study.sets(cfg.data, seed, cfg.sets, cfg.n, cfg.d)
  -- row indices of each set, for the per-set objective
  local idx = {}
  for b = 1, cfg.sets do
    local r = {}
    for i = 1, cfg.n do r[i] = (b - 1) * cfg.n + i end
    idx[b] = r
  end
  local Xs = {}
  for b = 1, cfg.sets do Xs[b] = X:rows(idx[b]) end
  for _, T in ipairs(cfg.ts) do
    local opts = { dim = cfg.d, solver = cfg.solver, iters = T, alpha0 = cfg.alpha0,
      fixed = { a1 = cfg.a1, a2 = cfg.a2, a3 = cfg.a3 } }
    if cfg.solver ~= "sinkhorn" then opts.fixed.rho = cfg.rho end
    if cfg.solver == "sinkhorn" and cfg.alpha0 > 0 then opts.inner = cfg.inner end
    local m = rl.pool.rotp(opts)
    m:eval()
    local t0 = os.clock()
    local ok, err = pcall(m.forward, m, s)
    run:metric(T, "eval", "cpu_seconds", os.clock() - t0)
    run:metric(T, "eval", "error", ok and 0 or 1)
    if ok then
      local P = m:plan("rows")
      local obj, objn, mass = 0, 0, 0
      for b = 1, cfg.sets do
        local Pb = P:rows(idx[b])
        local o, ms = -Pb:dot(Xs[b]), Pb:sum()
        obj, objn, mass = obj + o, objn + o / ms, mass + ms
      end
      run:metric(T, "eval", "objective", obj / cfg.sets)
      run:metric(T, "eval", "objective_normalised", objn / cfg.sets)
      run:metric(T, "eval", "mass", mass / cfg.sets)
    else
      run:metric(T, "eval", "objective", 0 / 0)
      run:metric(T, "eval", "objective_normalised", 0 / 0)
      run:metric(T, "eval", "mass", 0 / 0)
      run:artifact("error_T" .. T, { kind = "text", data = tostring(err) })
    end
    run:flush()
  end
end

local function report(spec, opts)
  local done = study.finished(spec)
  local headers, cols = { "T" }, {}
  for _, r in ipairs(done) do
    headers[#headers + 1] = ("%s a0=%g%s"):format(r.config.solver, r.config.alpha0, opts.seeds > 1 and
      (" s" .. r.seed) or "")
    cols[#cols + 1] = r
  end
  local function block(metric, title)
    local body = {}
    for _, T in ipairs(opts.ts) do
      local line = { T }
      for _, r in ipairs(cols) do
        local v = r.m["eval/" .. metric] and r.m["eval/" .. metric][T]
        line[#line + 1] = v and study.fmt(v, 6) or "-"
      end
      body[#body + 1] = line
    end
    print("\n" .. title)
    print(study.table(headers, body, true))
  end
  print(("ROTP convergence (paper Fig. 4): %d sets x %d x %d, ReLU(N(0,1)) entries, a1 = %g, a2 = %g, a3 = %g, " ..
    "rho = %g, inner = %d, %s build"):format(opts.sets, opts.n, opts.d, opts.a1, opts.a2, opts.a3, opts.rho,
    opts.inner, rl.real))
  block("objective", "objective <-X, P> (mean over sets) against T (NaN: the forward raised)")
  block("objective_normalised", "normalised objective <-X, P / ||P||_1> (mean over sets)")
  block("mass", "plan mass ||P||_1 (mean over sets)")
  local errs = {}
  for _, r in ipairs(cols) do
    for _, T in ipairs(opts.ts) do
      if r.m["eval/error"] and r.m["eval/error"][T] == 1 then
        errs[#errs + 1] = ("  %s a0=%g T=%d: %s"):format(r.config.solver, r.config.alpha0, T,
          study.artifact(spec.db, r.run.id, "error_T" .. T) or "?")
        break
      end
    end
  end
  if #errs > 0 then
    print("\nfirst error of each curve:")
    print(table.concat(errs, "\n"))
  end
end

return study.main(SCRIPT, keys, ..., function(opts)
  local configs = {}
  for _, solver in ipairs(opts.solvers) do
    for _, a0 in ipairs(opts.alpha0) do configs[#configs + 1] = { solver = solver, alpha0 = a0 } end
  end
  local seeds = {}
  for i = 1, opts.seeds do seeds[i] = i end
  local spec = {
    name = opts.name, script = "experiments/rotp_convergence.lua", db = opts.db, configs = configs, seeds = seeds,
    defaults = { sets = opts.sets, n = opts.n, d = opts.d, ts = opts.ts, a1 = opts.a1, a2 = opts.a2, a3 = opts.a3,
      rho = opts.rho, inner = opts.inner, data = "relu", real = rl.real },
    train = train, progress = opts.progress,
  }
  local summary = study.run(spec)
  print(("%s: %d runs finished, %d skipped (already in %s), %d failed, %.1f s"):format(SCRIPT, summary.finished,
    summary.skipped, opts.db, summary.failed, summary.seconds))
  report(spec, opts)
  return (summary.failed == 0 and summary.interrupted == 0) and 0 or 1
end)
