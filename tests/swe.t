#!/usr/bin/env rotlab-double
-- SWE and C-SWE pooling (rl.pool.swe, rl.pool.cswe), the soft permutations and the primal-dual step: finite
-- differences, permutation invariance, the embedding and hard SWGG against direct computations, the slack and dual
-- steps against hand-computed values, a short constrained training loop, and every error path.
local rl = require "rotlab"
local gc = require "rotlab.gradcheck"
local t = require("rotlab.tap")()

local g = rl.rng(20240611)

local function sets_of(sizes, d)
  local offs, total = { 0 }, 0
  for _, n in ipairs(sizes) do
    total = total + n
    offs[#offs + 1] = total
  end
  return rl.sets(rl.randn(g, total, d), offs)
end

local function amax(x) return math.max(x:max(), -x:min()) end

-- Central differences of f() w.r.t. every entry of tensor v, compared with the analytic gradient an.
local function fd_error(f, v, an)
  local eps, worst, scale = 1e-6, 0, 1e-3
  for i = 1, v:size() do
    local v0 = v:get(i)
    v:set(i, v0 + eps)
    local a = f()
    v:set(i, v0 - eps)
    local b = f()
    v:set(i, v0)
    local num = (a - b) / (2 * eps)
    worst = math.max(worst, math.abs(num - an:get(i)))
    scale = math.max(scale, math.abs(num))
  end
  return worst / scale
end

-- ------------------------------------------------------------------------------------------------ soft permutations
do
  local n, c = 9, 70 -- more columns than one block of the operator, and a narrow last block
  local r, X, G = rl.randn(g, n), rl.randn(g, n, c), rl.randn(g, n, c)
  for _, method in ipairs { "softsort", "lapsum" } do
    for _, desc in ipairs { false, true } do
      local opts = { method = method, temperature = 0.7, descending = desc }
      local label = ("%s%s"):format(method, desc and " (descending)" or "")
      local P = rl.soft_perm(r, opts)
      t:ok(P:matmul(X):maxdiff(rl.soft_perm_apply(r, X, opts)) < 1e-12,
        label .. ": structured P X equals the dense product")
      local rows, cols = 0, 0
      for i = 1, n do
        local rs, cs = 0, 0
        for j = 1, n do
          rs = rs + P:get(i, j)
          cs = cs + P:get(j, i)
        end
        rows = math.max(rows, math.abs(rs - 1))
        cols = math.max(cols, math.abs(cs - 1))
      end
      t:ok(rows < 1e-12, label .. ": rows of P sum to 1")
      if method == "lapsum" then t:ok(cols < 1e-12, label .. ": columns of P sum to 1 (doubly stochastic)") end
      local gr, gx = rl.soft_perm_backward(r, X, G, opts)
      local function L() return rl.soft_perm_apply(r, X, opts):dot(G) end
      local er, ex = fd_error(L, r, gr), fd_error(L, X, gx)
      t:ok(er < 1e-6, ("%s: d<G, PX>/dr matches finite differences (rel err %.1e)"):format(label, er))
      t:ok(ex < 1e-6, ("%s: d<G, PX>/dX matches finite differences (rel err %.1e)"):format(label, ex))
    end
  end
  -- SoftSort is row-wise softmax(-|sort(v) 1^T - 1 v^T| / tau)
  local v, tau = rl.randn(g, 6), 0.4
  local P = rl.soft_perm(v, { method = "softsort", temperature = tau })
  local s = v:totable()
  local srt = { table.unpack(s) }
  table.sort(srt)
  local worst = 0
  for k = 1, 6 do
    local z = 0
    for i = 1, 6 do z = z + math.exp(-math.abs(srt[k] - s[i]) / tau) end
    for i = 1, 6 do worst = math.max(worst, math.abs(P:get(k, i) - math.exp(-math.abs(srt[k] - s[i]) / tau) / z)) end
  end
  t:ok(worst < 1e-14, "SoftSort matches its definition softmax(-|sort(v)_k - v_i| / tau)")
  -- sharp limits: LapSum rows run from the largest value down, SoftSort rows from the smallest up
  local w = rl.tensor { 0.3, -1.2, 2.5, 0.9 }
  local hard_desc, hard_asc = { 3, 4, 1, 2 }, { 2, 1, 4, 3 }
  local Pl = rl.soft_perm(w, { method = "lapsum", temperature = 1e-3 })
  local Ps = rl.soft_perm(w, { method = "softsort", temperature = 1e-3 })
  local ok_l, ok_s = true, true
  for k = 1, 4 do
    ok_l = ok_l and math.abs(Pl:get(k, hard_desc[k]) - 1) < 1e-9
    ok_s = ok_s and math.abs(Ps:get(k, hard_asc[k]) - 1) < 1e-9
  end
  t:ok(ok_l, "LapSum at a small temperature is the permutation sorting in descending order")
  t:ok(ok_s, "SoftSort at a small temperature is the permutation sorting in ascending order")
  t:raises(function() rl.soft_perm(w, { temperature = 0 }) end, "temperature must be a positive", "temperature 0")
  t:raises(function() rl.soft_perm(w, { method = "sinkhorn" }) end, 'unknown value "sinkhorn"', "unknown method")
  t:raises(function() rl.soft_perm(w, { tau = 1 }) end, "unknown option 'tau'", "unknown option of soft_perm")
  t:raises(function() rl.soft_perm_apply(w, rl.zeros(3, 2)) end, "expected a matrix with 4 rows",
    "soft_perm_apply: rows must match the values")
  t:raises(function() rl.soft_perm_backward(w, rl.zeros(4, 2), rl.zeros(4, 3)) end, "expected G of shape 4 x 2",
    "soft_perm_backward: G must match P X")
  t:raises(function() rl.soft_perm(rl.tensor { 1, 0 / 0 }) end, "not finite", "non-finite values")
end

-- ------------------------------------------------------------------------------------------------ SWE: FD
do
  local d, L, M = 4, 3, 5
  local x = sets_of({ 5, 3, 7, 2 }, d) -- N = M, N < M and N > M in one ragged batch
  for _, output in ipairs { "flat", "reference" } do
    for _, compat in ipairs { "paper", "reference" } do
      local m = rl.pool.swe { dim = d, slices = L, refs = M, output = output, compat = compat, rng = g }
      gc.check(t, m, x, ("pool_swe output=%s compat=%s"):format(output, compat), { tol = 1e-6 })
    end
  end
  local m = rl.pool.swe { dim = d, slices = L, refs = M, rng = g }
  t:is(table.concat(m:forward(x):shape(), "x"), "4x15", "flat output: one row per set, L x M columns")
  local mr = rl.pool.swe { dim = d, slices = L, refs = M, output = "reference", rng = g }
  t:is(table.concat(mr:forward(x):shape(), "x"), "4x8", "reference output: M + L columns")
  local names = {}
  for _, p in ipairs(mr:parameters()) do names[#names + 1] = p.name .. "=" .. table.concat(p.value:shape(), "x") end
  t:is(table.concat(names, " "), "theta=3x4 reference=5x4 weight=1x5", "parameters: theta (L x dim), reference, weight")

  -- orthogonal unit directions at construction
  local big = rl.pool.swe { dim = 6, slices = 4, refs = 3, rng = g }
  local th = big:directions()
  local gram = th:matmul(th, false, true)
  local off, diag = 0, 0
  for i = 1, 4 do
    for j = 1, 4 do
      if i == j then diag = math.max(diag, math.abs(gram:get(i, j) - 1)) else off = math.max(off, math.abs(gram:get(i, j))) end
    end
  end
  t:ok(diag < 1e-12 and off < 1e-12, "initial slicing directions are orthonormal")
  -- weight normalisation: scaling a raw direction changes nothing
  local y0 = m:forward(x):clone()
  local v = m:param("theta")
  for j = 1, d do v:set(2, j, v:get(2, j) * 3.5) end
  m:set_param("theta", v)
  t:ok(m:forward(x):maxdiff(y0) < 1e-12, "theta is weight-normalised: rescaling a row leaves the output unchanged")
end

-- A slice's flat embedding depends on its direction and the references alone, whatever L is: few directions are
-- projected by a direct kernel (two points x four directions per pass, with remainders), many by a gemm; with the
-- same first directions and references, L = 3, 5, 8 (the kernel) and L = 11 (the gemm) give the same slices.
do
  local d, M = 7, 6
  local x = sets_of({ 5, 8, 1, 6 }, d)
  local big = rl.pool.swe { dim = d, slices = 11, refs = M, rng = rl.rng(3) }
  local th, R = big:param("theta"), big:param("reference")
  local yb = big:forward(x)
  for _, L in ipairs { 3, 5, 8 } do
    local m = rl.pool.swe { dim = d, slices = L, refs = M, rng = rl.rng(4) }
    local v = m:param("theta")
    for l = 1, L do
      for j = 1, d do v:set(l, j, th:get(l, j)) end
    end
    m:set_param("theta", v)
    m:set_param("reference", R)
    local y, worst = m:forward(x), 0
    for b = 1, y:size(1) do
      for k = 1, L * M do worst = math.max(worst, math.abs(y:get(b, k) - yb:get(b, k))) end
    end
    t:ok(worst < 1e-12, ("L = %d: its slices equal the first %d of L = 11 (max diff %.1e)"):format(L, L, worst))
  end
end

-- ------------------------------------------------------------------------------------------------ SWE: the embedding
do
  -- paper pairing (rank of r_m) and the authors' (argsort of R at m), against a direct computation, N = M
  local d, L, M = 3, 2, 4
  local x = sets_of({ 4 }, d)
  for _, compat in ipairs { "paper", "reference" } do
    local m = rl.pool.swe { dim = d, slices = L, refs = M, compat = compat, rng = g }
    local y = m:forward(x)
    local th, R, X = m:directions(), m:param("reference"), x:values()
    local S, Rp = X:matmul(th, false, true), R:matmul(th, false, true)
    local worst = 0
    for l = 1, L do
      local xs, rs, order = {}, {}, {}
      for i = 1, M do
        xs[i] = S:get(i, l)
        rs[i] = Rp:get(i, l)
        order[i] = i
      end
      table.sort(xs)
      table.sort(order, function(a, b) return rs[a] < rs[b] end)
      local rank = {}
      for k, i in ipairs(order) do rank[i] = k end
      for mm = 1, M do
        local pos = compat == "paper" and rank[mm] or order[mm]
        worst = math.max(worst, math.abs(y:get(1, (l - 1) * M + mm) - (rs[mm] - xs[pos])))
      end
    end
    t:ok(worst < 1e-12, ("embedding with compat=%s pairs r_m with the %s"):format(compat,
      compat == "paper" and "input quantile of the same rank" or "sorted input at argsort(R)[m]"))
  end
  -- interpolation at quantiles (i+1)/(N+1) -> (j+1)/(M+1), linear extrapolation at the ends: N = 3, M = 5
  local m = rl.pool.swe { dim = 1, slices = 1, refs = 5, rng = g }
  m:set_param("theta", { 1 })
  m:set_param("reference", { 0, 0, 0, 0, 0 })
  local y = m:forward(rl.sets(rl.tensor { { 2 }, { -1 }, { 5 } }, { 0, 3 }))
  -- sorted -1, 2, 5 at u = 1/4, 2/4, 3/4; quantiles v = 1/6 .. 5/6; slope 12 per unit of u
  local want = {}
  for j = 1, 5 do want[j] = -(-1 + 12 * (j / 6 - 1 / 4)) end
  local worst = 0
  for j = 1, 5 do worst = math.max(worst, math.abs(y:get(1, j) - want[j])) end
  t:ok(worst < 1e-12, "N != M: sorted projections are interpolated (and extrapolated) linearly at the M quantiles")
  local mc = rl.pool.swe { dim = 1, slices = 1, refs = 5, compat = "reference", rng = g }
  mc:set_param("theta", { 1 })
  mc:set_param("reference", { 0, 0, 0, 0, 0 })
  local yc = mc:forward(rl.sets(rl.tensor { { 2 }, { -1 }, { 5 } }, { 0, 3 }))
  local diff = yc:maxdiff(y)
  t:ok(diff > 0 and diff < 1e-13, ("compat=reference adds eps_mach to the interpolation slope (difference %.1e)"):format(diff))
end

-- ------------------------------------------------------------------------------------------------ invariance
do
  local d, L, M = 4, 3, 6
  local sizes = { 6, 4, 9 }
  local x = sets_of(sizes, d)
  local X = x:values()
  -- permute the rows inside every set
  local rows, base = {}, 0
  for _, n in ipairs(sizes) do
    local p = g:permutation(n)
    for i = 1, n do rows[#rows + 1] = base + p[i] end
    base = base + n
  end
  local xp = rl.sets(X:rows(rows), x:offsets())
  for _, name in ipairs { "swe", "cswe" } do
    local opts = { dim = d, slices = L, refs = M, output = "reference", rng = rl.rng(7) }
    if name == "cswe" then opts.eps = 1 end
    local m = rl.pool[name](opts)
    if name == "cswe" then m:set_dual { 0.5, 0.2, 0.9 } end
    local y1 = m:forward(x):clone()
    local s1 = name == "cswe" and m:swgg() or nil
    local y2 = m:forward(xp)
    t:ok(y1:maxdiff(y2) < 1e-12, "pool_" .. name .. " is invariant to the order of the elements of each set")
    if s1 then
      local s2 = m:swgg()
      t:ok(s1.soft:maxdiff(s2.soft) < 1e-12 and s1.hard:maxdiff(s2.hard) < 1e-12,
        "pool_cswe: soft and hard SWGG are invariant to the order of the elements")
    end
  end
end

-- ------------------------------------------------------------------------------------------------ singleton sets
do
  local d, L, M = 3, 2, 4
  local x = rl.randn(rl.rng(41), 1, d)
  local m = rl.pool.swe { dim = d, slices = L, refs = M, rng = rl.rng(42) }
  local y = m:forward(rl.sets(x, { 0, 1 }))
  local th, R = m:param("theta"), m:param("reference")
  local worst = 0
  for l = 1, L do
    local nrm, px = 0, 0
    for k = 1, d do nrm = nrm + th:get(l, k) ^ 2 end
    nrm = math.sqrt(nrm)
    for k = 1, d do px = px + th:get(l, k) * x:get(1, k) / nrm end
    -- paper pairing: reference element m against the quantile of its rank, here always the single projection
    for j = 1, M do
      local pr = 0
      for k = 1, d do pr = pr + th:get(l, k) * R:get(j, k) / nrm end
      worst = math.max(worst, math.abs(y:get(1, (l - 1) * M + j) - (pr - px)))
    end
  end
  t:ok(worst < 1e-12, ("pool_swe on a one-point set: E[l, m] = theta_l . (r_m - x) (max err %.1e)"):format(worst))
  local c = rl.pool.cswe { dim = d, slices = L, refs = M, eps = 1, rng = rl.rng(42) }
  c:forward(rl.sets(x, { 0, 1 }))
  local want = 0
  for j = 1, M do for k = 1, d do want = want + (x:get(1, k) - R:get(j, k)) ^ 2 end end
  want = math.sqrt(want / M)
  local h = c:swgg().hard
  t:ok(math.abs(h:get(1) - want) < 1e-9 and math.abs(h:get(2) - want) < 1e-9,
    ("pool_cswe on a one-point set: hard SWGG = sqrt(mean_m |x - r_m|^2) = %.6f on every slice"):format(want))
end

-- ------------------------------------------------------------------------------------------------ C-SWE: FD of the Lagrangian
do
  local d, L, M = 4, 3, 5
  local x = sets_of({ 5, 1, 3, 8 }, d) -- with a singleton: every quantile of a one-point set is that point
  local W
  local function run(opts, label)
    local m = rl.pool.cswe(opts)
    m:set_dual { 0.4, 0, 1.3 } -- one inactive constraint
    local y = m:forward(x)
    W = rl.randn(g, table.unpack(y:shape()))
    local function lagrangian_loss()
      local out = m:forward(x)
      local sw, lam = m:swgg(), m:dual()
      local v = out:dot(W)
      for l = 1, L do v = v + lam:get(l) * sw.soft:get(l) end
      return v
    end
    m:zero_grad()
    m:forward(x)
    local gx = m:backward(x, W)
    local e = fd_error(lagrangian_loss, x:values(), gx)
    t:ok(e < 1e-6, ("%s: d/dinput of <W, y> + sum lambda soft SWGG (rel err %.1e)"):format(label, e))
    for _, p in ipairs(m:parameters()) do
      local an = p.grad:clone()
      e = fd_error(lagrangian_loss, p.value, an)
      t:ok(e < 1e-6, ("%s: d/d%s (rel err %.1e)"):format(label, p.name, e))
    end
  end
  for _, soft in ipairs { "softsort", "lapsum" } do
    run({ dim = d, slices = L, refs = M, soft = soft, temperature = 0.6, eps = 0.5, output = "reference", rng = g },
      "pool_cswe soft=" .. soft)
  end
  run({ dim = d, slices = L, refs = M, compat = "reference", lr_dual = 0, eps = 0.5, output = "reference", rng = g },
    "pool_cswe compat=reference (lr_dual 0)")
  -- eval mode is the plain embedding: its own FD check
  local m = rl.pool.cswe { dim = d, slices = L, refs = M, eps = 0.5, rng = g }
  m:eval()
  gc.check(t, m, x, "pool_cswe in eval mode", { tol = 1e-6 })
  t:is(m:swgg(), nil, "an eval forward measures no SWGG")
  -- same parameters, same embedding as pool_swe
  local s = rl.pool.swe { dim = d, slices = L, refs = M, rng = g }
  s:set_param("theta", m:param("theta"))
  s:set_param("reference", m:param("reference"))
  t:ok(s:forward(x):maxdiff(m:forward(x)) < 1e-14, "pool_cswe (eval) and pool_swe give the same embedding")
end

-- ------------------------------------------------------------------------------------------------ hard SWGG
do
  -- brute force over all permutations: the matching minimising the 1-D cost along the slice is the sorted one,
  -- and hard SWGG is the lifted cost of that matching; it is never below the exact OT cost (min over matchings)
  local function permutations(n)
    local out, a = {}, {}
    for i = 1, n do a[i] = i end
    local function rec(k)
      if k > n then
        out[#out + 1] = { table.unpack(a) }
        return
      end
      for i = k, n do
        a[k], a[i] = a[i], a[k]
        rec(k + 1)
        a[k], a[i] = a[i], a[k]
      end
    end
    rec(1)
    return out
  end
  local d, L, N = 3, 4, 5
  local perms = permutations(N)
  local x = sets_of({ N, N }, d)
  local m = rl.pool.cswe { dim = d, slices = L, refs = N, eps = 1, rng = g }
  m:forward(x)
  local hard = m:swgg().hard
  local th, R, X = m:directions(), m:param("reference"), x:values()
  local worst, below = 0, true
  for l = 1, L do
    local mean = 0
    for b = 0, 1 do
      local best1, lifted, ot = math.huge, nil, math.huge
      for _, p in ipairs(perms) do
        local c1, cd = 0, 0
        for i = 1, N do
          local xi, rj = b * N + i, p[i]
          local sx, sr, dd = 0, 0, 0
          for k = 1, d do
            sx = sx + X:get(xi, k) * th:get(l, k)
            sr = sr + R:get(rj, k) * th:get(l, k)
            dd = dd + (X:get(xi, k) - R:get(rj, k)) ^ 2
          end
          c1 = c1 + (sx - sr) ^ 2
          cd = cd + dd
        end
        if c1 < best1 then best1, lifted = c1, cd end
        ot = math.min(ot, cd)
      end
      mean = mean + math.sqrt(lifted / N) / 2
      below = below and math.sqrt(ot / N) <= math.sqrt(lifted / N) + 1e-12
    end
    worst = math.max(worst, math.abs(hard:get(l) - mean))
  end
  t:ok(worst < 1e-12, ("hard SWGG equals the lifted cost of the best 1-D matching, by brute force over %d "
    .. "permutations (err %.1e)"):format(#perms, worst))
  t:ok(below, "the exact transport cost (best lifted matching) is never above hard SWGG")
  -- at a tiny temperature the soft SWGG tends to the hard one
  local ms = rl.pool.cswe { dim = d, slices = L, refs = N, soft = "lapsum", temperature = 1e-4, eps = 1, rng = g }
  ms:set_param("theta", m:param("theta"))
  ms:set_param("reference", m:param("reference"))
  ms:forward(x)
  local sw = ms:swgg()
  t:ok(sw.soft:maxdiff(sw.hard) < 1e-6, "soft SWGG tends to hard SWGG as the temperature goes to 0")
end

-- ------------------------------------------------------------------------------------------------ slack and duals
do
  local lam, gv, eps, u = rl.tensor { 0.5, 0, 2 }, rl.tensor { 1.0, 0.2, 0.5 }, rl.tensor { 0.6, 0.6, 0.6 },
      rl.tensor { 0.3, 0.1, 0 }
  rl.primal_dual_step(lam, gv, eps, u, { alpha = 2, lr_slack = 0.5, lr_dual = 0.1 })
  -- u <- [u - 0.5 (2 u - lambda)]_+ = [0.5 lambda]_+... per entry: 0.3 - 0.5 (0.6 - 0.5) = 0.25; 0.1 - 0.5 (0.2 - 0) = 0;
  -- 0 - 0.5 (0 - 2) = 1;   lambda <- [lambda + 0.1 (g - eps - u_new)]_+
  local want_u = { 0.25, 0, 1 }
  local want_l = { 0.5 + 0.1 * (1.0 - 0.6 - 0.25), math.max(0, 0 + 0.1 * (0.2 - 0.6 - 0)), 2 + 0.1 * (0.5 - 0.6 - 1) }
  local eu, el = 0, 0
  for i = 1, 3 do
    eu = math.max(eu, math.abs(u:get(i) - want_u[i]))
    el = math.max(el, math.abs(lam:get(i) - want_l[i]))
  end
  t:ok(eu < 1e-15, "slack step u <- [u - lr (alpha u - lambda)]_+ (projected at 0)")
  t:ok(el < 1e-15, "dual step lambda <- [lambda + lr (g - eps - u)]_+ with the new slack (projected at 0)")
  local l2 = rl.tensor { 1, 0.05 }
  rl.primal_dual_step(l2, { 0.2, 0.1 }, { 0.5, 0.9 }, nil, { lr_dual = 0.5 })
  t:ok(math.abs(l2:get(1) - 0.85) < 1e-15 and l2:get(2) == 0, "dual step without slack")
  t:raises(function() rl.primal_dual_step(rl.tensor { 1, 2 }, { 1 }, { 1, 1 }) end, "expected g with 2 values",
    "primal_dual_step: lengths must agree")
  t:raises(function() rl.primal_dual_step({ 1 }, { 1 }, { 1 }, nil, { lr_dual = -1 }) end,
    "learning rate must be a finite number >= 0", "primal_dual_step: negative learning rate")
  t:raises(function() rl.primal_dual_step({ -1 }, { 1 }, { 1 }) end, "must be >= 0", "primal_dual_step: negative dual")
  t:raises(function() rl.primal_dual_step({ 1 }, { 1 }, { 1 }, nil, { lr = 1 }) end, "unknown option 'lr'",
    "primal_dual_step: unknown option")

  -- the layer's step uses the hard SWGG of the last training forward
  local d, L, M = 3, 2, 4
  local x = sets_of({ 4, 6 }, d)
  local m = rl.pool.cswe { dim = d, slices = L, refs = M, eps = { 0.5, 5 }, alpha = 0.5, lr_slack = 0.2, lr_dual = 0.3,
    rng = g }
  t:raises(function() m:dual_step() end, "needs the SWGG of a training forward", "dual_step before a training forward")
  m:set_dual { 0.7, 0.2 }
  m:set_slack { 0.1, 0.4 }
  m:forward(x)
  local h = m:swgg().hard
  local lag = m:lagrangian()
  local soft = m:swgg().soft
  local want_lag = 0.7 * (soft:get(1) - 0.5 - 0.1) + 0.2 * (soft:get(2) - 5 - 0.4) + 0.25 * (0.1 ^ 2 + 0.4 ^ 2)
  t:near(lag, want_lag, 1e-12, "lagrangian() = sum lambda (soft - eps - u) + alpha/2 |u|^2")
  t:is(m:dual_step(), true, "dual_step applies the update")
  local u1, u2 = 0.1 - 0.2 * (0.5 * 0.1 - 0.7), math.max(0, 0.4 - 0.2 * (0.5 * 0.4 - 0.2))
  local l1, l2b = math.max(0, 0.7 + 0.3 * (h:get(1) - 0.5 - u1)), math.max(0, 0.2 + 0.3 * (h:get(2) - 5 - u2))
  local s, dl = m:slack(), m:dual()
  t:ok(math.abs(s:get(1) - u1) < 1e-12 and math.abs(s:get(2) - u2) < 1e-12, "layer slack step by hand")
  t:ok(math.abs(dl:get(1) - l1) < 1e-12 and math.abs(dl:get(2) - l2b) < 1e-12, "layer dual step by hand")
  -- no slack: u stays 0 and the dual step ignores it
  local ns = rl.pool.cswe { dim = d, slices = L, refs = M, eps = 0.1, slack = false, lr_dual = 1, rng = g }
  ns:forward(x)
  local hh = ns:swgg().hard
  ns:dual_step()
  t:ok(math.abs(ns:dual():get(1) - (hh:get(1) - 0.1)) < 1e-12 and ns:slack():sum() == 0, "slack = false: lambda += lr (g - eps)")
  t:raises(function() ns:set_slack { 1, 1 } end, "has no slack", "set_slack on a layer without slack")
  -- compat = reference updates the duals inside forward and dual_step does nothing
  local cr = rl.pool.cswe { dim = d, slices = L, refs = M, compat = "reference", eps = 0.1, lr_dual = 1, rng = g }
  cr:forward(x)
  local after = cr:dual():clone()
  t:ok(math.abs(after:get(1) - (cr:swgg().hard:get(1) - 0.1)) < 1e-12, "compat=reference: the forward updates lambda")
  t:is(cr:dual_step(), false, "compat=reference: dual_step leaves the duals alone")
  t:ok(cr:dual():maxdiff(after) == 0, "compat=reference: duals unchanged by dual_step")
  -- eps measured on the first training batch
  local ef = rl.pool.cswe { dim = d, slices = L, refs = M, eps_fraction = 0.8, rng = g }
  t:is(ef:eps(), nil, "eps_fraction: no bound before the first training batch")
  ef:eval()
  ef:forward(x)
  t:is(ef:eps(), nil, "eps_fraction: an eval forward measures nothing")
  ef:train()
  ef:forward(x)
  local e1, h1 = ef:eps(), ef:swgg().hard
  t:ok(math.abs(e1:get(1) - 0.8 * h1:get(1)) < 1e-12 and math.abs(e1:get(2) - 0.8 * h1:get(2)) < 1e-12,
    "eps_fraction: eps = fraction x hard SWGG of the first training batch")
  ef:forward(sets_of({ 5, 5 }, d))
  t:ok(ef:eps():maxdiff(e1) == 0, "eps_fraction: later batches do not move the bound")
end

-- ------------------------------------------------------------------------------------------------ a constrained loop
do
  -- a tight bound on a layer trained by gradient descent on the Lagrangian alone (plus the dual and slack steps):
  -- the duals grow while the constraint is violated and the measured SWGG falls
  local d, L, M = 6, 4, 8
  local x = sets_of({ 8, 8, 8, 8 }, d)
  local X = x:values()
  for i = 1, X:size() do X:set(i, X:get(i) + 3) end -- inputs far from the reference at the start
  local m = rl.pool.cswe { dim = d, slices = L, refs = M, eps_fraction = 0.3, lr_dual = 0.05, lr_slack = 0.1,
    alpha = 1, rng = rl.rng(5) }
  local first, duals = nil, {}
  local gy
  for step = 1, 60 do
    m:zero_grad()
    local y = m:forward(x)
    gy = gy or rl.zeros(table.unpack(y:shape()))
    local sw = m:swgg().hard
    first = first or sw:clone()
    m:backward(x, gy, false)
    for _, p in ipairs(m:parameters()) do p.value:add(p.grad, -0.05) end
    m:dual_step()
    duals[step] = m:dual():sum()
  end
  m:forward(x)
  local last = m:swgg().hard
  t:ok(duals[1] > 0 and duals[10] > duals[1], ("duals grow while the bound is violated (%.3f -> %.3f)"):format(
    duals[1], duals[10]))
  t:ok(last:sum() < 0.7 * first:sum(), ("the measured SWGG falls under the constraint (%.3f -> %.3f)"):format(
    first:sum(), last:sum()))
end

-- ------------------------------------------------------------------------------------------------ errors
do
  local x = sets_of({ 3, 4 }, 5)
  local m = rl.pool.swe { dim = 4, slices = 2, refs = 3, rng = g }
  t:raises(function() m:forward(x) end, "bad argument #1 to 'forward' %(pool_swe: expected any x 4, got 7 x 5%)",
    "input width must equal dim")
  t:raises(function() m:forward(rl.zeros(3, 4)) end, "expected a batch of sets", "plain rows are refused")
  t:raises(function() m:backward(sets_of({ 3 }, 4), rl.zeros(1, 6)) end, "backward called before forward",
    "backward before forward")
  local one = rl.sets(rl.randn(g, 4, 4), { 0, 1, 4 })
  t:ok(m:forward(one):isfinite(), "a one-element set next to others interpolates to a constant quantile function")
  local m1 = rl.pool.swe { dim = 4, slices = 2, refs = 1, rng = g }
  t:is(m1:forward(rl.sets(rl.randn(g, 1, 4), { 0, 1 })):size(), 2, "a single element is fine when refs = 1 (no interpolation)")
  t:raises(function() rl.pool.swe { dim = 4, slices = 0, refs = 3 } end, "slices must be >= 1", "slices < 1")
  t:raises(function() rl.pool.swe { dim = 4, slices = 2, refs = 0 } end, "refs must be >= 1", "refs < 1")
  t:raises(function() rl.pool.swe { dim = 0, slices = 2, refs = 3 } end, "dim must be >= 1", "dim < 1")
  t:raises(function() rl.pool.swe { slices = 2, refs = 3 } end, "option 'dim' is required", "dim is required")
  t:raises(function() rl.pool.swe { dim = 4, refs = 3 } end, "option 'slices' is required", "slices is required")
  t:raises(function() rl.pool.swe { dim = 4, slices = 2, refs = 3, bogus = 1 } end, "unknown option 'bogus'",
    "unknown option")
  t:raises(function() rl.pool.swe { dim = 4, slices = 2, refs = 3, output = "mean" } end, 'unknown value "mean"',
    "unknown output layout")
  t:raises(function() rl.pool.swe { dim = 4, slices = 2, refs = 3, compat = "torch" } end, 'unknown value "torch"',
    "unknown compat value")
  t:raises(function() rl.pool.swe { dim = 4, slices = 2, refs = 3, tau = 0 } end, "tau must be a positive",
    "tau must be positive")
  t:raises(function() rl.pool.swe { dim = 4, slices = 2, refs = 3, eps = 1 } end, "unknown option 'eps'",
    "pool_swe has no constraint options")
  t:raises(function() rl.pool.swe(3) end, "expected a table of options", "options must be a table")
  local bad = rl.pool.swe { dim = 4, slices = 2, refs = 3, rng = g }
  bad:set_param("theta", rl.zeros(2, 4))
  t:raises(function() bad:forward(sets_of({ 3 }, 4)) end, "theta row 1 has norm 0", "zero slicing direction")

  local base = { dim = 4, slices = 2, refs = 3 }
  local function cswe(extra)
    local o = {}
    for k, v in pairs(base) do o[k] = v end
    for k, v in pairs(extra) do o[k] = v end
    return rl.pool.cswe(o)
  end
  t:raises(function() cswe {} end, "give exactly one of 'eps'", "cswe needs a bound")
  t:raises(function() cswe { eps = 1, eps_fraction = 0.5 } end, "give exactly one of 'eps'", "eps and eps_fraction")
  t:raises(function() cswe { eps = -1 } end, "eps%[1%] must be a finite bound >= 0", "negative eps")
  t:raises(function() cswe { eps = { 1, 2, 3 } } end, "'eps' has 3 values, expected one number or 2", "eps of the wrong length")
  t:raises(function() cswe { eps = "tight" } end, "'eps' must be a number, a list or a tensor", "eps of the wrong type")
  t:raises(function() cswe { eps_fraction = 0 } end, "eps_fraction must be a positive", "eps_fraction must be positive")
  t:raises(function() cswe { eps = 1, lr_dual = -0.1 } end, "lr_dual must be a finite number >= 0", "negative lr_dual")
  t:raises(function() cswe { eps = 1, lr_slack = -1 } end, "lr_slack must be a finite number >= 0", "negative lr_slack")
  t:raises(function() cswe { eps = 1, alpha = -1 } end, "alpha must be a finite number >= 0", "negative alpha")
  t:raises(function() cswe { eps = 1, temperature = 0 } end, "temperature must be a positive", "temperature 0")
  t:raises(function() cswe { eps = 1, soft = "sinkhorn" } end, 'unknown value "sinkhorn"', "unknown soft method")
  t:raises(function() cswe { eps = 1, compat = "reference", slack = true } end, "slack is not available",
    "compat=reference has no slack")
  t:raises(function() cswe { eps = 1, slices = 0 } end, "slices must be >= 1", "cswe: slices < 1")
  local c = cswe { eps = 1, rng = g }
  t:raises(function() c:set_dual { 1 } end, "expected 2 values", "set_dual: one value per slice")
  t:raises(function() c:set_dual { -1, 0 } end, "dual%[1%] must be a finite number >= 0", "set_dual: negative dual")
  t:raises(function() c:set_eps { 1, 0 / 0 } end, "eps%[2%] must be a finite number", "set_eps: NaN")
  t:raises(function() rl.core.pool_cswe { dim = 4, slices = 2, refs = 3, eps = 1 }.dual(m) end,
    "expected a pool_cswe module", "C-SWE methods refuse other modules")
  t:is(m.dual, nil, "pool_swe has no dual accessor")
  t:is(c:lagrangian(), nil, "lagrangian() is nil before a training forward")
end

os.exit(t:done())
