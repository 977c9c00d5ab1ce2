--[[
rotp_stability.lua -- the numerical-stability sweep of the ROTP paper's Fig. 7 (Xu & Cheng, TPAMI 2023): a1 and
a2 = a3 swept over {1e-5, ..., 1e4} as fixed values, with alpha0 = 0 (unbalanced OT) and alpha0 > 0 (fixed, the
structure term on), for each solver (sinkhorn, badmm-e, badmm-q) in our default form and in the authors' form
(compat = "reference"). Every grid cell is one run of the results DB (experiment "rotp-stability"); per cell and
set it records whether the forward raised, NaN/Inf entries of the output, of the plan and of the input gradient,
and the plan mass ||P||_1. The table at the end gives, per solver and alpha0 setting, the counts over the sweep and
max | ||P||_1 - 1 |; the maps (maps=true) give ||P||_1 per cell like the paper's figure.

Setting of the paper's figure (the authors' visualization_stability.py): one set of N = 10 samples x D = 5
features, T = 500 iterations, rho = 1, a0 = 1 for the structured runs, uniform p0 and q0. Our data are
non-negative (ReLU of N(0, 1) entries, as after a ReLU encoder; the authors' script feeds N(0, 1) directly), seeded
by the run's seed.

  rotlab run experiments/rotp_stability.lua [quick=true] [db=results/rotp_stability.db] [seeds=1] [sets=1]
      [n=10] [d=5] [iters=500] [inner=5] [rho=1] [alpha0=0,1] [exps=-5,...,4] [solvers=sinkhorn,badmm-e,badmm-q]
      [compat=none,reference] [maps=true] [progress=true|false]
  quick: iters = 20, exps = -5,-2,1,4 (16 cells), DB results/rotp_stability_quick.db -- a few seconds.
Mass: ||P||_1 = sum of all D x N entries of the plan pool:plan() returns (the solver's P, before the column
normalisation of the paper's eq. 5), accumulated in double; an overflowing plan (an entry = inf) counts as an Inf
plan and not in the mass columns. BADMM plans have mass 1 by construction; the Sinkhorn plans solve the unbalanced
problem, whose optimum has mass about exp(max x / (a1 + a2 + a3)) when every alpha is small.
Exit code 0 when every run FINISHED, 1 otherwise, 2 for a bad argument.
]]
local rl = require "rotlab"
local study = require "rotlab.rotp_study"

local SCRIPT = "rotp_stability"
local SOLVERS = { "sinkhorn", "badmm-e", "badmm-q" }

local keys = {
  { name = "db", kind = "string", default = "results/rotp_stability.db", quick = "results/rotp_stability_quick.db",
    help = "results DB" },
  { name = "name", kind = "string", default = "rotp-stability", help = "experiment name in the DB" },
  { name = "seeds", kind = "int", default = 1, min = 1, help = "number of seeds (data draws) 1..seeds" },
  { name = "sets", kind = "int", default = 1, min = 1, help = "sets per draw (the paper: 1)" },
  { name = "n", kind = "int", default = 10, min = 1, help = "samples per set N" },
  { name = "d", kind = "int", default = 5, min = 1, help = "feature dimension D" },
  { name = "iters", kind = "int", default = 500, quick = 20, min = 1, help = "unrolled iterations T" },
  { name = "inner", kind = "int", default = 5, min = 0, help = "inner scaling steps (structured Sinkhorn only)" },
  { name = "rho", kind = "number", default = 1, min = 1e-12, help = "BADMM step rho" },
  { name = "alpha0", kind = "numlist", default = { 0, 1 }, min = 0, help = "alpha0 settings (0: no structure)" },
  { name = "exps", kind = "intlist", default = { -5, -4, -3, -2, -1, 0, 1, 2, 3, 4 }, quick = { -5, -2, 1, 4 },
    min = -30, max = 30, help = "log10 of the swept a1 and a2 = a3" },
  { name = "solvers", kind = "list", default = SOLVERS, choices = SOLVERS, help = "solvers" },
  { name = "compat", kind = "list", default = { "none", "reference" }, choices = { "none", "reference" },
    help = "update forms: ours (none) and the authors' (reference)" },
  { name = "maps", kind = "bool", default = true, help = "print the ||P||_1 map of each row" },
  { name = "progress", kind = "bool", help = "progress bar on stderr (default: when it is a terminal)" },
}

-- One grid cell: forward (and backward) of a freshly built layer on the seed's sets; logs the counts.
local function train(cfg, seed, _, run)
  local s = study.sets(cfg.data, seed, cfg.sets, cfg.n, cfg.d)
  local opts = { dim = cfg.d, solver = cfg.solver, iters = cfg.iters, alpha0 = cfg.alpha0, compat = cfg.compat,
    fixed = { a1 = cfg.a1, a2 = cfg.a23, a3 = cfg.a23 } }
  if cfg.solver ~= "sinkhorn" then opts.fixed.rho = cfg.rho end
  if cfg.solver == "sinkhorn" and cfg.alpha0 > 0 then opts.inner = cfg.inner end
  local m = rl.pool.rotp(opts)
  local function log(name, v) run:metric(0, "sweep", name, v) end
  local ok, y = pcall(m.forward, m, s)
  log("error", ok and 0 or 1)
  if not ok then
    run:artifact("error", { kind = "text", data = tostring(y) })
    return
  end
  local ynan, yinf = study.nonfinite(y)
  run:trace(0, "out", y)
  log("out_nan", ynan)
  log("out_inf", yinf)
  local pnan, pinf, dev, lo, hi = 0, 0, nil, nil, nil
  for _, P in ipairs(m:plan()) do
    local a, b = study.nonfinite(P)
    if a > 0 then
      pnan = pnan + 1
    elseif b > 0 then
      pinf = pinf + 1
    else
      local mass = P:sum()
      dev = math.max(dev or 0, math.abs(mass - 1))
      lo, hi = math.min(lo or math.huge, mass), math.max(hi or -math.huge, mass)
    end
  end
  log("plan_nan", pnan)
  log("plan_inf", pinf)
  if dev then
    log("mass_dev", dev)
    log("mass_min", lo)
    log("mass_max", hi)
  end
  -- the gradient w.r.t. the input of a random linear loss (the training path through the same iterations)
  local W = rl.randn(rl.rng(seed + 7919), cfg.sets, cfg.d)
  local gok, gx = pcall(m.backward, m, s, W)
  if not gok then
    log("grad_error", 1)
    run:artifact("grad_error", { kind = "text", data = tostring(gx) })
  else
    local gnan, ginf = study.nonfinite(gx)
    log("grad_error", 0)
    log("grad_nonfinite", gnan + ginf)
  end
end

local function row_label(c) return c.solver .. (c.compat == "reference" and " (authors')" or "") end

-- Largest change of the output along the a2 = a3 axis at fixed a1 (0: a2 and a3 have no effect on the layer).
local function spread(outs)
  local ref, worst = nil, 0
  for _, y in ipairs(outs) do
    local finite = true
    for _, v in ipairs(y) do finite = finite and v == v and v ~= math.huge and v ~= -math.huge end
    if finite then
      if not ref then
        ref = y
      else
        for i, v in ipairs(y) do worst = math.max(worst, math.abs(v - ref[i])) end
      end
    end
  end
  return worst
end

local function report(spec, opts)
  local done = study.finished(spec)
  local rows, order, maps = {}, {}, {}
  local messages, message_order = {}, {}
  for _, r in ipairs(done) do
    local c, m = r.config, r.m
    local key = row_label(c) .. "|" .. c.alpha0
    local row = rows[key]
    if not row then
      row = { label = row_label(c), alpha0 = c.alpha0, cells = 0, err = 0, ynan = 0, yinf = 0, pnan = 0, pinf = 0,
        gbad = 0, dev = nil, lo = nil, hi = nil, outs = {} }
      rows[key] = row
      order[#order + 1] = key
      maps[key] = {}
    end
    local function v(name) return m["sweep/" .. name] and m["sweep/" .. name][0] end
    row.cells = row.cells + 1
    local cell
    if v("error") == 1 then
      row.err = row.err + 1
      cell = "ERR"
      local msg = (study.artifact(spec.db, r.run.id, "error") or "?"):gsub("value %d+ is", "value is")
      if not messages[msg] then message_order[#message_order + 1] = msg end
      messages[msg] = (messages[msg] or 0) + 1
    else
      row.ynan, row.yinf = row.ynan + v("out_nan"), row.yinf + v("out_inf")
      row.pnan, row.pinf = row.pnan + v("plan_nan"), row.pinf + v("plan_inf")
      row.gbad = row.gbad + ((v("grad_error") == 1 or (v("grad_nonfinite") or 0) > 0) and 1 or 0)
      if v("mass_dev") then
        row.dev = math.max(row.dev or 0, v("mass_dev"))
        row.lo = math.min(row.lo or math.huge, v("mass_min"))
        row.hi = math.max(row.hi or -math.huge, v("mass_max"))
      end
      if v("plan_nan") > 0 then cell = "NaN"
      elseif v("plan_inf") > 0 then cell = "inf"
      else cell = study.fmt(v("mass_max"), 3) end
      local group = c.a1 .. "|" .. r.seed
      row.outs[group] = row.outs[group] or {}
      table.insert(row.outs[group], r.t.out and r.t.out[0])
    end
    local ck = c.a1 .. "|" .. c.a23
    maps[key][ck] = maps[key][ck] and (maps[key][ck] .. "/" .. cell) or cell
  end
  local out = {}
  for _, k in ipairs(order) do
    local r = rows[k]
    local sp = 0
    for _, outs in pairs(r.outs) do sp = math.max(sp, spread(outs)) end
    out[#out + 1] = { r.label, r.alpha0, r.cells, r.err, r.ynan, r.yinf, r.pnan, r.pinf, r.gbad, r.dev or "-",
      r.lo or "-", r.hi or "-", sp }
  end
  print(("ROTP stability sweep (paper Fig. 7): a1, a2 = a3 in 1e%d..1e%d, T = %d, %d set(s) of %d x %d, %d seed(s), " ..
    "rho = %g, %s build"):format(opts.exps[1], opts.exps[#opts.exps], opts.iters, opts.sets, opts.n, opts.d,
    opts.seeds, opts.rho, rl.real))
  print(study.table({ "solver", "alpha0", "cells", "errors", "NaN out", "Inf out", "NaN plans", "Inf plans",
    "bad grads", "max|mass-1|", "mass min", "mass max", "a2,a3 effect" }, out))
  print("mass = ||P||_1, the sum of the D x N entries of each set's plan (pool:plan(), before eq. 5's column\n" ..
    "  normalisation), in double; max|mass-1|, mass min and max over the sets and cells whose plan is finite.\n" ..
    "errors: cells whose forward raised; NaN/Inf out: output entries; NaN/Inf plans: set plans with such an\n" ..
    "  entry; bad grads: cells whose input gradient is not finite; a2,a3 effect: the largest change of the output\n" ..
    "  along the a2 = a3 axis at fixed a1 (0: the layer ignores a2 and a3).")
  for _, msg in ipairs(message_order) do print(("  %d x error: %s"):format(messages[msg], msg)) end
  if opts.maps then
    for _, k in ipairs(order) do
      local r = rows[k]
      local title = ("%s, alpha0 = %g: ||P||_1 per cell (rows a1, columns a2 = a3%s)"):format(r.label, r.alpha0,
        opts.seeds * opts.sets > 1 and "; max over sets, seeds separated by /" or "")
      local hdr, body, same = { "a1 \\ a2=a3" }, {}, nil
      for _, e in ipairs(opts.exps) do hdr[#hdr + 1] = ("1e%d"):format(e) end
      for _, e1 in ipairs(opts.exps) do
        local line = { ("1e%d"):format(e1) }
        for _, e2 in ipairs(opts.exps) do
          local cell = maps[k][10.0 ^ e1 .. "|" .. 10.0 ^ e2] or "-"
          line[#line + 1] = cell
          if same == nil then same = cell elseif same ~= cell then same = false end
        end
        body[#body + 1] = line
      end
      if same then
        print(("\n%s: %s in every cell"):format(title, same))
      else
        print("\n" .. title)
        print(study.table(hdr, body, true))
      end
    end
  end
  return #done
end

return study.main(SCRIPT, keys, ..., function(opts)
  local configs = {}
  for _, solver in ipairs(opts.solvers) do
    for _, compat in ipairs(opts.compat) do
      for _, a0 in ipairs(opts.alpha0) do
        for _, e1 in ipairs(opts.exps) do
          for _, e2 in ipairs(opts.exps) do
            configs[#configs + 1] = { solver = solver, compat = compat, alpha0 = a0, a1 = 10.0 ^ e1, a23 = 10.0 ^ e2 }
          end
        end
      end
    end
  end
  local seeds = {}
  for i = 1, opts.seeds do seeds[i] = i end
  local spec = {
    name = opts.name, script = "experiments/rotp_stability.lua", db = opts.db, configs = configs, seeds = seeds,
    defaults = { iters = opts.iters, inner = opts.inner, rho = opts.rho, n = opts.n, d = opts.d, sets = opts.sets,
      data = "relu", real = rl.real },
    train = train, progress = opts.progress,
  }
  local summary = study.run(spec)
  print(("%s: %d runs finished, %d skipped (already in %s), %d failed, %.1f s"):format(SCRIPT, summary.finished,
    summary.skipped, opts.db, summary.failed, summary.seconds))
  report(spec, opts)
  return (summary.failed == 0 and summary.interrupted == 0) and 0 or 1
end)
