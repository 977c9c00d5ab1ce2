#!/usr/bin/env rotlab-double
-- ROTP pooling (rl.pool.rotp): finite-difference checks of every parameter and of the input for each solver and
-- configuration, implicit vs unrolled gradients at convergence, permutation invariance (Theorem 1), the limits of
-- Proposition 1, the stability sweep of the paper's Fig. 7, and the error paths of every public entry.
local rl = require "rotlab"
local gc = require "rotlab.gradcheck"
local t = require("rotlab.tap")()
local rotp = rl.pool.rotp or rl.core.pool_rotp

local function batch(seed, sizes, D)
  local g = rl.rng(seed)
  local off = { 0 }
  for i, n in ipairs(sizes) do off[i + 1] = off[i] + n end
  return rl.sets(rl.rand(g, off[#off], D), off), off
end

local function opts(base, extra)
  local o = {}
  for k, v in pairs(base) do o[k] = v end
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

local function describe(o)
  local keys = {}
  for k, v in pairs(o) do
    if k ~= "rng" and k ~= "dim" then
      local s = type(v) == "table" and "{...}" or tostring(v)
      keys[#keys + 1] = k .. "=" .. s
    end
  end
  table.sort(keys)
  return table.concat(keys, " ")
end

------------------------------------------------------------------ finite differences
do
  local D = 4
  local s = batch(3, { 1, 3, 5 }, D)
  local configs = {
    { solver = "sinkhorn" }, { solver = "sinkhorn", output = "reference" },
    { solver = "sinkhorn", compat = "reference" },
    { solver = "badmm-e" }, { solver = "badmm-q", output = "reference" },
    { solver = "sinkhorn", alpha0 = "learn" }, { solver = "sinkhorn", alpha0 = "learn", inner = 0 },
    { solver = "sinkhorn", alpha0 = "learn", compat = "reference", inner = 3 },
    { solver = "sinkhorn", alpha0 = "learn", compat = "reference", iters = 2 },
    { solver = "badmm-e", alpha0 = "learn" }, { solver = "badmm-q", alpha0 = "learn" },
    { solver = "badmm-e", alpha0 = "learn", structure = "reference", output = "reference" },
    { solver = "badmm-q", q0 = "learn", p0 = "learn" },
    { solver = "sinkhorn", q0 = "learn", p0 = "learn", alpha0 = "learn" },
    { solver = "badmm-e", q0 = "learn", alpha0 = "learn", compat = "reference" },
    { solver = "sinkhorn", shared = true, iters = 6 },
    { solver = "badmm-e", entries = { a1 = 2 }, iters = 4 },
    { solver = "badmm-q", alpha0 = 0.5, fixed = { a2 = 0 } },
    -- a3 = 0 and a tiny step: some rows of the plan carry mass below exp(-700), so the reverse takes their softmax
    -- as exp(lt - leta) (ROTP_LOG_MARGIN_FLOOR)
    { solver = "badmm-e", iters = 3, fixed = { a3 = 0, rho = 3e-4 } },
    { solver = "badmm-q", iters = 3, fixed = { a3 = 0, rho = 3e-4 } },
  }
  for _, c in ipairs(configs) do
    local o = opts(c, { dim = D, rng = rl.rng(5) })
    gc.check(t, rotp(o), s, "FD " .. describe(c), { tol = 1e-6 })
  end
end

------------------------------------------------------------------ a fixed sample prior q0 = {w1, ..., wN}
do
  local D = 4
  local s = batch(13, { 3, 3, 3 }, D)
  for _, c in ipairs { { solver = "sinkhorn" }, { solver = "badmm-e" }, { solver = "badmm-q" },
    { solver = "sinkhorn", alpha0 = "learn" }, { solver = "badmm-e", compat = "reference" } } do
    local o = opts(c, { dim = D, q0 = { 1, 2, 3 }, rng = rl.rng(5) })
    gc.check(t, rotp(o), s, "FD fixed q0 " .. describe(c), { tol = 1e-6 })
  end
  -- with large alphas the plan is q0 p0^T, so the output is the q0-weighted mean of each set (Prop. 1 with q0)
  local x = s:values()
  local w = { 0.2, 0.5, 0.3 }
  for _, c in ipairs { { solver = "sinkhorn" }, { solver = "badmm-e" }, { solver = "badmm-q" },
    { solver = "badmm-e", compat = "reference" }, { solver = "badmm-q", compat = "reference" } } do
    -- every default solver solves the regularised problem, whose sample marginal is q0 only when a3 >> a1 (the
    -- entropy pulls toward uniform); the authors' BADMM (compat) pins the marginals to the priors whatever the
    -- alphas, and its BADMM-Q drifts from this plan over hundreds of iterations at rho = 500 (rho = 1e4 holds it)
    local solver = c.solver
    local fixed = c.compat and { a1 = 1e4, a2 = 1e4, a3 = 1e4, rho = solver == "badmm-q" and 1e4 or 500 }
      or { a1 = 1e3, a2 = 1e8, a3 = 1e8, rho = solver ~= "sinkhorn" and 500 or nil }
    local m = rotp { dim = D, solver = solver, iters = solver == "sinkhorn" and 20 or 300, q0 = { 2, 5, 3 },
      fixed = fixed, compat = c.compat }
    if c.compat then solver = solver .. " (compat)" end
    local y, e = m:forward(s), 0
    for b = 1, 3 do
      for d = 1, D do
        local want = 0
        for i = 1, 3 do want = want + w[i] * x:get(3 * (b - 1) + i, d) end
        e = math.max(e, math.abs(y:get(b, d) - want))
      end
    end
    t:ok(e < 1e-3, ("fixed q0 = {2, 5, 3} with large alphas: %s gives the weighted mean 0.2/0.5/0.3 (err %.1e)")
      :format(solver, e))
  end
  t:raises(function() rotp { dim = D, q0 = { 1, 2 } }:forward(s) end,
    "set 1 has 3 rows, but the fixed prior q0 has 2 entries", "fixed q0: a set of another size is an error")
  t:raises(function() rotp { dim = D, q0 = { 1, -2, 3 } } end, "option 'q0': entry 2 must be a finite number > 0",
    "fixed q0: a negative weight")
  t:raises(function() rotp { dim = D, q0 = { 1, 0 / 0 } } end, "option 'q0': entry 2 must be a finite number > 0",
    "fixed q0: NaN")
  t:raises(function() rotp { dim = D, q0 = {} } end, "a fixed prior is a list of 1..64 weights, got 0", "fixed q0: empty")
  local long = {}
  for i = 1, 65 do long[i] = 1 end
  t:raises(function() rotp { dim = D, q0 = long } end, "1..64 weights, got 65", "fixed q0: too long")
  t:raises(function() rotp { dim = D, q0 = { 1, "a" } } end, "entry 2 must be a finite number", "fixed q0: a string")
end

------------------------------------------------------------------ implicit vs unrolled at convergence
do
  local D = 5
  local s = batch(7, { 4, 9 }, D)
  local base = { dim = D, solver = "sinkhorn", iters = 300, shared = true, init = { a1 = 0.5, a2 = 1.5, a3 = 0.8 } }
  local mu = rotp(opts(base, { rng = rl.rng(1) }))
  local mi = rotp(opts(base, { grad = "implicit", rng = rl.rng(1) }))
  local W = rl.randn(rl.rng(2), 2, D)
  local yu, yi = mu:forward(s), mi:forward(s)
  t:ok(yu:maxdiff(yi) == 0, "implicit mode runs the same forward")
  local gxu, gxi = mu:backward(s, W), mi:backward(s, W)
  local scale = math.max(gxu:max(), -gxu:min())
  t:ok(gxu:maxdiff(gxi) / scale < 1e-8, ("implicit dL/dx equals unrolled at T = 300 (rel %.1e)"):format(gxu:maxdiff(gxi) / scale))
  for _, p in ipairs { "a1", "a2", "a3" } do
    local a, b = mu:grad(p), mi:grad(p)
    local e = a:maxdiff(b) / math.max(1e-12, math.abs(a:get(1)))
    t:ok(e < 1e-8, ("implicit dL/d%s equals unrolled at T = 300 (rel %.1e)"):format(p, e))
  end
  -- and the implicit gradient is itself exact for the fixed point: finite differences at large T
  gc.check(t, rotp(opts(base, { grad = "implicit", rng = rl.rng(1) })), s, "FD implicit T=300", { tol = 1e-6 })
end

------------------------------------------------------------------ no input gradient: the same parameter gradients
-- backward(input, grad, false) skips the paths to x alone -- the structure term's (through c1, c2, the normalisers),
-- the priors', the output's direct one and the solvers' dL/dx: every parameter's gradient must be what the full
-- backward gives.
do
  local D = 5
  local s = batch(11, { 6, 9, 4 }, D)
  local W = rl.randn(rl.rng(3), 3, D)
  for _, o in ipairs { { solver = "sinkhorn", alpha0 = "learn", q0 = "learn" }, { solver = "badmm-e", alpha0 = "learn" },
    { solver = "badmm-q", alpha0 = "learn", p0 = "learn" }, { solver = "badmm-e", q0 = "learn" },
    { solver = "sinkhorn", q0 = "learn", p0 = "learn" }, { solver = "sinkhorn", compat = "reference", output = "reference" },
    { solver = "badmm-q", q0 = "learn" }, { solver = "badmm-e", p0 = "learn", output = "reference" },
    { solver = "sinkhorn", grad = "implicit", q0 = "learn" } } do
    local base = opts({ dim = D, iters = 3 }, o)
    local mf, mn = rotp(opts(base, { rng = rl.rng(5) })), rotp(opts(base, { rng = rl.rng(5) }))
    mf:forward(s)
    mn:forward(s)
    local gx = mf:backward(s, W, true)
    local none = mn:backward(s, W, false)
    local worst, names = 0, {}
    for i, p in ipairs(mf:parameters()) do
      local q = mn:parameters()[i]
      local scale = math.max(1e-300, p.grad:max(), -p.grad:min())
      worst = math.max(worst, p.grad:maxdiff(q.grad) / scale)
      names[#names + 1] = p.name
    end
    t:ok(gx ~= nil and none == nil and #names > 0 and worst < 1e-12,
      ("%s: backward without the input gradient gives the same gradients of %s (max rel diff %.1e)")
        :format(describe(o), table.concat(names, ", "), worst))
  end
end

------------------------------------------------------------------ Theorem 1: permutation invariance
do
  local D = 6
  local s, off = batch(9, { 3, 8, 5 }, D)
  local x = s:values()
  local perm = rl.rng(4)
  local rows = {}
  for b = 1, #off - 1 do
    local n = off[b + 1] - off[b]
    local p = perm:permutation(n)
    for i = 1, n do rows[#rows + 1] = off[b] + p[i] end
  end
  local sp = rl.sets(x:rows(rows), off)
  for _, c in ipairs { { solver = "sinkhorn" }, { solver = "badmm-e" }, { solver = "badmm-q" },
    { solver = "sinkhorn", alpha0 = "learn", q0 = "learn" }, { solver = "badmm-e", alpha0 = "learn", p0 = "learn" },
    { solver = "badmm-q", alpha0 = "learn", compat = "reference" } } do
    local m = rotp(opts(c, { dim = D, rng = rl.rng(3) }))
    local y1 = m:forward(s):clone()
    local y2 = m:forward(sp)
    t:ok(y1:maxdiff(y2) < 1e-12, ("permuting rows within sets leaves the output unchanged (%s; diff %.1e)")
      :format(describe(c), y1:maxdiff(y2)))
  end
end

------------------------------------------------------------------ Proposition 1 (limits, derived)
-- With a0 = 0 and output eq. 5 (f_d = sum_n x_nd P_nd / sum_m P_md):
--   mean pooling      a1, a2, a3 large, q0 uniform: the entropic term dominates, P -> q0 p0^T, f_d = mean_n x_nd
--   max pooling       a1 -> 0, a2 large, a3 = 0: column d of P -> (1/D) e_{argmax_n x_nd}, f_d = max_n x_nd
--                     (Sinkhorn: P_:d = p0_d softmax_n(x_:d / a1) exactly; tested with a1 = 1e-3)
--   attention pooling a1, a2, a3 large, q0 = attention weights: P -> q0 p0^T, f_d = sum_n q0_n x_nd
-- The authors' script uses rho = 500 for BADMM in the large-alpha settings; BADMM with a1 = 0 solves an
-- unregularised LP whose dual ascent does not reach the max plan in hundreds of iterations, so the max limit is
-- checked for Sinkhorn only.
do
  local N, D = 10, 5
  local g = rl.rng(11)
  local x = rl.rand(g, N, D)
  local s = rl.sets(x, { 0, N })
  local mean, mx = {}, {}
  for d = 1, D do
    local sm, m = 0, -math.huge
    for n = 1, N do
      sm = sm + x:get(n, d)
      m = math.max(m, x:get(n, d))
    end
    mean[d], mx[d] = sm / N, m
  end
  local function err(y, ref)
    local e = 0
    for d = 1, D do e = math.max(e, math.abs(y:get(1, d) - ref[d])) end
    return e
  end
  local big = { a1 = 1e4, a2 = 1e4, a3 = 1e4, rho = 500 }
  for _, solver in ipairs { "sinkhorn", "badmm-e", "badmm-q" } do
    local T = solver == "sinkhorn" and 4 or 300
    local m = rotp { dim = D, solver = solver, iters = T, fixed = big }
    local e = err(m:forward(s), mean)
    t:ok(e < 1e-3, ("Prop. 1: %s with large alphas is mean pooling (max err %.1e)"):format(solver, e))
    -- attention: learned q0, large alphas; the sample marginal of the optimum is q0 only when a3 >> a1 (BADMM-Q's
    -- quadratic term needs a larger a1 than the entropy to hold the plan at q0 p0^T)
    local att_fixed = { a1 = solver == "badmm-q" and 1e4 or 1e3, a2 = 1e8, a3 = 1e8,
      rho = solver ~= "sinkhorn" and 500 or nil }
    local ma = rotp { dim = D, solver = solver, iters = solver == "sinkhorn" and 20 or T, fixed = att_fixed,
      q0 = "learn", rng = rl.rng(2) }
    local y = ma:forward(s)
    local V, w = ma:param("q0.V"), ma:param("q0.w")
    local H = x:matmul(V, false, true)
    local sc, smax = {}, -math.huge
    for n = 1, N do
      local v = 0
      for h = 1, H:size(2) do v = v + math.tanh(H:get(n, h)) * w:get(1, h) end
      sc[n] = v
      smax = math.max(smax, v)
    end
    local Z = 0
    for n = 1, N do Z = Z + math.exp(sc[n] - smax) end
    local att = {}
    for d = 1, D do
      local v = 0
      for n = 1, N do v = v + math.exp(sc[n] - smax) / Z * x:get(n, d) end
      att[d] = v
    end
    local ea = err(y, att)
    t:ok(ea < 1e-3, ("Prop. 1: %s with large alphas and attention q0 is attention pooling (max err %.1e)")
      :format(solver, ea))
  end
  -- max: a1 -> 0, a2 large, a3 = 0 (the sample marginal free); BADMM with a small step (rho = 0.1)
  for _, solver in ipairs { "sinkhorn", "badmm-e", "badmm-q" } do
    local mm = rotp { dim = D, solver = solver, iters = solver == "sinkhorn" and 4 or 100,
      fixed = { a1 = 1e-3, a2 = 1e4, a3 = 0, rho = solver ~= "sinkhorn" and 0.1 or nil } }
    local e = err(mm:forward(s), mx)
    t:ok(e < 1e-3, ("Prop. 1: %s with a1 -> 0, a2 large, a3 = 0 is max pooling (max err %.1e)"):format(solver, e))
  end
  -- the authors' BADMM (compat) keeps the sample marginal at q0 whatever a3 is: the same setting is no max pooling
  local mc = rotp { dim = D, solver = "badmm-e", iters = 100, compat = "reference",
    fixed = { a1 = 1e-3, a2 = 1e4, a3 = 0, rho = 0.1 } }
  local ec = err(mc:forward(s), mx)
  local P, dev = mc:plan()[1], 0
  for n = 1, N do
    local sm = 0
    for d = 1, D do sm = sm + P:get(d, n) end
    dev = math.max(dev, math.abs(sm - 1 / N))
  end
  t:ok(ec > 1e-2 and dev < 1e-9, ("Prop. 1: compat badmm-e with a3 = 0 keeps the sample marginal at q0 (max |dev| "
    .. "%.1e) and is no max pooling (max err %.1e)"):format(dev, ec))
end

------------------------------------------------------------------ BADMM solves the problem Sinkhorn solves
-- With a1 > 0 the regularised problem's optimum under a mass-1 constraint is the unbalanced optimum normalised, so
-- BADMM-E (default marginal steps) and Sinkhorn agree at convergence on eq. 5's output, for any a2, a3 -- which
-- therefore matter (the authors' BADMM ignores them: compat).
do
  local D = 5
  local s = batch(7, { 10, 6 }, D)
  local function maxdiff(a, b)
    local e = 0
    for i = 1, a:size(1) do
      for j = 1, a:size(2) do e = math.max(e, math.abs(a:get(i, j) - b:get(i, j))) end
    end
    return e
  end
  for _, a in ipairs { { a1 = 0.5, a2 = 2, a3 = 0.3 }, { a1 = 1, a2 = 0.1, a3 = 0.1 }, { a1 = 0.5, a2 = 0.5, a3 = 5 },
    { a1 = 2, a2 = 20, a3 = 0.5 } } do
    local ref = rotp { dim = D, solver = "sinkhorn", iters = 3000, fixed = a }:forward(s)
    local fixed = { a1 = a.a1, a2 = a.a2, a3 = a.a3, rho = 10 }
    local y = rotp { dim = D, solver = "badmm-e", iters = 2000, fixed = fixed }:forward(s)
    local e = maxdiff(y, ref)
    t:ok(e < 1e-6, ("badmm-e converges to the sinkhorn optimum at a1, a2, a3 = %g, %g, %g (max diff %.1e)")
      :format(a.a1, a.a2, a.a3, e))
  end
  for _, solver in ipairs { "badmm-e", "badmm-q" } do
    local function out(a3, compat)
      return rotp { dim = D, solver = solver, iters = 50, compat = compat,
        fixed = { a1 = 0.5, a2 = 1, a3 = a3, rho = 1 } }:forward(s)
    end
    local e = maxdiff(out(0.1), out(10))
    t:ok(e > 1e-3, ("%s: a3 = 0.1 and a3 = 10 give different outputs (max diff %.1e)"):format(solver, e))
    local ec = maxdiff(out(0.1, "reference"), out(10, "reference"))
    t:ok(ec < 1e-9, ("%s compat: the authors' marginal steps ignore a3 (max diff %.1e)"):format(solver, ec))
  end
end

------------------------------------------------------------------ stability sweep (paper Fig. 7)
do
  local D = 8
  local s = batch(21, { 1, 7, 20 }, D)
  local W = rl.randn(rl.rng(1), 3, D)
  local vals = {}
  for k = -5, 4 do vals[#vals + 1] = 10 ^ k end
  for _, solver in ipairs { "sinkhorn", "badmm-e", "badmm-q" } do
    for _, a0 in ipairs { 0, 1 } do
      local nan, runs, worst_mass, mass_lo, mass_hi, overflow = 0, 0, 0, math.huge, 0, 0
      for _, a1 in ipairs(vals) do
        for _, a23 in ipairs(vals) do
          local m = rotp { dim = D, solver = solver, alpha0 = a0, fixed = { a1 = a1, a2 = a23, a3 = a23, rho = 1 } }
          runs = runs + 1
          local ok, y = pcall(m.forward, m, s)
          local gx = ok and m:backward(s, W)
          if not ok or not y:isfinite() or not gx:isfinite() then
            nan = nan + 1
          else
            for _, P in ipairs(m:plan()) do
              local mass = P:sum()
              if mass == math.huge then
                overflow = overflow + 1
              else
                mass_lo, mass_hi = math.min(mass_lo, mass), math.max(mass_hi, mass)
              end
              worst_mass = math.max(worst_mass, math.abs(mass - 1))
            end
          end
        end
      end
      t:is(nan, 0, ("stability: %s, a0 = %g: %d runs (a1, a2 = a3 in 1e-5..1e4), no NaN/inf in outputs or gradients")
        :format(solver, a0, runs))
      if solver ~= "sinkhorn" then
        t:ok(worst_mass < 1e-6, ("stability: %s, a0 = %g: every plan has mass 1 (worst |mass - 1| = %.1e)")
          :format(solver, a0, worst_mass))
      else
        -- the unbalanced optimum's log-mass is about max x / (a1 + a2 + a3): with every alpha ~1e-5 the exact plan
        -- exceeds the double range. Outputs (eq. 5 is computed from log P) and gradients stay finite regardless.
        t:diag(("sinkhorn a0 = %g: unbalanced plan mass in [%.3g, %.3g]; %d set plans beyond the double range "
          .. "(all alphas tiny: the exact optimum is exp(~x / (a1 + a2 + a3)))"):format(a0, mass_lo, mass_hi, overflow))
      end
    end
  end
end

------------------------------------------------------------------ structured Sinkhorn over many iterations
-- Without a mass constraint -a0 <M(P), P> is unbounded below in the mass; the default takes the structure term of
-- the mass-normalised plan, so the plans stay bounded however long the solver runs (the authors' form diverges).
do
  local D = 5
  local s = batch(31, { 10, 4 }, D)
  local W = rl.randn(rl.rng(2), 2, D)
  for _, T in ipairs { 10, 50 } do
    for _, a23 in ipairs { 0.1, 1, 10 } do
      local m = rotp { dim = D, solver = "sinkhorn", alpha0 = 1, iters = T, fixed = { a1 = 1, a2 = a23, a3 = a23 } }
      local ok, y = pcall(m.forward, m, s)
      local mass = 0
      if ok then for _, P in ipairs(m:plan()) do mass = math.max(mass, P:sum()) end end
      t:ok(ok and y:isfinite() and m:backward(s, W):isfinite() and mass < 1e3,
        ("structured sinkhorn, T = %d, a2 = a3 = %g: finite output and gradient, plan mass %.3g bounded"):format(T,
          a23, mass), ok and "" or tostring(y))
    end
  end
  local ref = rotp { dim = D, solver = "sinkhorn", alpha0 = 1, iters = 10, compat = "reference",
    fixed = { a1 = 1, a2 = 0.1, a3 = 0.1 } }
  local ok, y = pcall(ref.forward, ref, s)
  t:ok(not ok or not y:isfinite() or ref:plan()[1]:sum() > 1e3,
    "control: the authors' structured Sinkhorn (compat) does diverge there", tostring(y))
  if rl.real == "double" then
    local m = rotp { dim = D, solver = "sinkhorn", alpha0 = "learn", iters = 12, init = { a1 = 0.5, a2 = 0.2, a3 = 0.2 },
      rng = rl.rng(5) }
    local worst = 0
    for _, w in ipairs(gc.module(m, s, { eps = 1e-6, seed = 3 })) do worst = math.max(worst, w.err) end
    t:ok(worst < 1e-5, ("structured sinkhorn, T = 12: finite differences of input and every parameter (worst %.1e)")
      :format(worst))
  end
end

------------------------------------------------------------------ API: values, plan, parameters
do
  local D = 3
  local s = batch(5, { 2, 4 }, D)
  local m = rotp { dim = D, solver = "badmm-e", iters = 3, init = { a1 = 0.7 }, fixed = { a2 = 2 }, alpha0 = "learn" }
  local v = m:values()
  t:ok(math.abs(v.a1:get(1) - 0.7) < 1e-12 and v.a1:size() == 3, "init sets effective values (softplus of raw)")
  t:ok(v.a2:get(3) == 2, "fixed values are reported by values()")
  local names = {}
  for _, p in ipairs(m:parameters()) do names[#names + 1] = p.name end
  t:is(table.concat(names, ","), "a0,a1,a3,rho", "fixed families are not parameters")
  m:forward(s)
  local P = m:plan()
  t:is(#P, 2, "plan() has one entry per set")
  t:is(P[2]:size(1) * 10 + P[2]:size(2), 34, "each plan is D x N")
  t:ok(math.abs(P[1]:sum() - 1) < 1e-9, "BADMM plan has mass 1")
  local ms = rotp { dim = D, shared = true }
  t:is(ms:param("a1"):size(), 1, "shared = true gives one entry per family")
  ms:set_param("a1", { 3 })
  t:ok(math.abs(ms:values().a1:get(4) - math.log(1 + math.exp(3))) < 1e-12, "set_param writes raw values")
end

------------------------------------------------------------------ errors
do
  local s = batch(5, { 2, 4 }, 3)
  t:raises(function() rotp { dim = 3, solver = "lbfgs" } end, "option 'solver'", "unknown solver is named")
  t:raises(function() rotp { dim = 3, iters = 0 } end, "option 'iters' must be >= 1", "iters < 1")
  t:raises(function() rotp { dim = 3, fixed = { a2 = -1 } } end, "fixed.*a2 must be >= 0", "negative fixed alpha")
  t:raises(function() rotp { dim = 3, alpha0 = -2 } end, "alpha0", "negative alpha0")
  t:raises(function() rotp { dim = 3, alpha0 = "maybe" } end, "alpha0", "bad alpha0 string")
  t:raises(function() rotp { dim = 3, init = { a1 = 0 } } end, "init.*a1 must be > 0", "non-positive init")
  t:raises(function() rotp { dim = 3, fixed = { a9 = 1 } } end, "unknown parameter 'a9'", "unknown family name")
  t:raises(function() rotp { dim = 3, colour = "red" } end, "unknown option", "unknown option")
  t:raises(function() rotp { solver = "sinkhorn" } end, "option 'dim'", "dim is required")
  t:raises(function() rotp { dim = 0 } end, "option 'dim'", "dim must be positive")
  t:raises(function() rotp { dim = 3, inner = 2 } end, "option 'inner' only applies", "inner without structure")
  t:raises(function() rotp { dim = 3, solver = "badmm-e", grad = "implicit" } end, "implicit", "implicit needs sinkhorn")
  t:raises(function() rotp { dim = 3, entries = { a1 = 4, a2 = 2 } } end, "a2 has 2 entries but a1 has 4",
    "a family shorter than a1")
  t:raises(function() rotp { dim = 3, fixed = { a1 = 0 } } end, "a1 = 0", "sinkhorn needs a1 > 0")
  t:raises(function() rotp { dim = 3, solver = "badmm-q", fixed = { rho = 0 } } end, "rho must be > 0", "rho = 0")
  t:raises(function() rotp "x" end, "options table", "non-table options")
  local m = rotp { dim = 3 }
  t:raises(function() m:forward(rl.sets(rl.zeros(4, 5), { 0, 4 })) end, "expected any x 3, got 4 x 5",
    "dim mismatch names the shapes")
  t:raises(function() m:forward(rl.zeros(4, 3)) end, "batch of sets", "plain rows are refused")
  t:raises(function() m:backward(s, rl.zeros(2, 3)) end, "before forward", "backward before forward")
  t:raises(function() m:plan() end, "before forward", "plan before forward")
  m:eval()
  m:forward(s)
  t:raises(function() m:backward(s, rl.zeros(2, 3)) end, "training mode", "backward after an eval-mode forward")
  m:train()
  m:forward(s)
  t:raises(function() m:backward(s, rl.zeros(3, 3)) end, "expected 2 x 3", "gradient shape is checked")
  t:raises(function() m:backward_plan(s, rl.zeros(5, 3)) end, "expected 6 x 3", "plan gradient shape is checked")
  local bad = s:values():clone()
  bad:set(1, 1, 0 / 0)
  t:raises(function() m:forward(s:with_values(bad)) end, "not finite", "non-finite input is refused")
  t:raises(function() m:structure(s) end, "alpha0", "structure() needs the a0 term")
  t:raises(function() m:debug_grads() end, "debug", "debug_grads() needs debug = true")
end

os.exit(t:done())
