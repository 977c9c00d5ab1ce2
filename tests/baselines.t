#!/usr/bin/env rotlab-double
-- Baseline poolings (mixed, gated_mixed, deepset, set2set, gated_attention, dynamic, gnp), in the paper default
-- and compat = "reference" modes: forward against plain-Lua implementations of the formulas, finite-difference
-- gradients of the input and every parameter, permutation invariance, sets of size one, parameter names and
-- initialisation, groups of sets, error paths.
local rl = require "rotlab"
local gc = require "rotlab.gradcheck"
local t = require("rotlab.tap")()

-- rl.pool.<name> once rotlab.pool exports the core constructors; the core field otherwise.
local function pool(name) return (rl.pool and rl.pool[name]) or rl.core["pool_" .. name] end

local NAMES = { "mixed", "gated_mixed", "deepset", "set2set", "gated_attention", "dynamic", "gnp" }
local MODES = { "paper", "reference" }
local D, HIDDEN = 5, 4

local function make(name, compat, opts)
  local o = { dim = D, compat = compat, rng = rl.rng(11) }
  if name == "deepset" or name == "gated_attention" then o.hidden = HIDDEN end
  if name == "set2set" then o.steps = 3 end
  if name == "dynamic" then o.rng = nil; o.k = 3 end
  for k, v in pairs(opts or {}) do o[k] = v end
  return pool(name)(o)
end

-- ------------------------------------------------------------------ plain-Lua reference forward passes
local function sig(v) return 1 / (1 + math.exp(-v)) end
local function softplus(v) return v > 20 and v or math.log(1 + math.exp(v)) end
local function elu(v) return v > 0 and v or math.exp(v) - 1 end
local function dot(a, b) local s = 0; for i = 1, #a do s = s + a[i] * b[i] end; return s end
local function matvec(W, x, b)
  local y = {}
  for i, row in ipairs(W) do y[i] = dot(row, x) + (b and b[i] or 0) end
  return y
end
local function sets_of(rows, off)
  local out = {}
  for s = 1, #off - 1 do
    local set = {}
    for r = off[s] + 1, off[s + 1] do set[#set + 1] = rows[r] end
    out[s] = set
  end
  return out
end
local function sum_mean_max(set)
  local sum, mx = {}, {}
  for d = 1, #set[1] do
    sum[d], mx[d] = 0, -math.huge
    for _, x in ipairs(set) do sum[d] = sum[d] + x[d]; mx[d] = math.max(mx[d], x[d]) end
  end
  local mean = {}
  for d = 1, #sum do mean[d] = sum[d] / #set end
  return sum, mean, mx
end
local function softmax(s, eps)
  local mx, tot, a = -math.huge, eps or 0, {}
  for _, v in ipairs(s) do mx = math.max(mx, v) end
  for _, v in ipairs(s) do tot = tot + math.exp(v - mx) end
  for i, v in ipairs(s) do a[i] = math.exp(v - mx) / tot end
  return a
end
local function wsum(set, a)
  local y = {}
  for d = 1, #set[1] do
    y[d] = 0
    for n, x in ipairs(set) do y[d] = y[d] + a[n] * x[d] end
  end
  return y
end

local ref = {}
function ref.mixed(sets, P)
  local al, out = sig(P.alpha[1]), {}
  for s, set in ipairs(sets) do
    local _, mean, mx = sum_mean_max(set)
    out[s] = {}
    for d = 1, #mean do out[s][d] = al * mean[d] + (1 - al) * mx[d] end
  end
  return out
end
function ref.gated_mixed(sets, P, compat)
  local w, out = P["linear.weight"][1], {}
  for s, set in ipairs(sets) do
    local sum, mean, mx = sum_mean_max(set)
    local g = sig(dot(w, compat == "reference" and sum or mean))
    out[s] = {}
    for d = 1, #mean do out[s][d] = g * mean[d] + (1 - g) * mx[d] end
  end
  return out
end
function ref.deepset(sets, P, compat)
  local al, out = sig(P.alpha[1]), {}
  for s, set in ipairs(sets) do
    local sum, mean, mx = sum_mean_max(set)
    local pooled = compat == "reference" and sum or mean
    local z = {}
    for d = 1, #mx do z[d] = al * pooled[d] + (1 - al) * mx[d] end
    for l = 0, 4, 2 do
      z = matvec(P[("regressor.%d.weight"):format(l)], z, P[("regressor.%d.bias"):format(l)])
      for i = 1, #z do z[i] = elu(z[i]) end
    end
    out[s] = matvec(P["regressor.6.weight"], z, P["regressor.6.bias"])
  end
  return out
end
function ref.set2set(sets, P, compat, opts)
  local out, eps = {}, compat == "reference" and 1e-16 or 0
  for s, set in ipairs(sets) do
    local Dd = #set[1]
    local h, c, q = {}, {}, {}
    for d = 1, Dd do h[d], c[d] = 0, 0 end
    for d = 1, 2 * Dd do q[d] = 0 end
    for _ = 1, opts.steps do
      local g1 = matvec(P["lstm.weight_ih_l0"], q, P["lstm.bias_ih_l0"])
      local g2 = matvec(P["lstm.weight_hh_l0"], h, P["lstm.bias_hh_l0"])
      for d = 1, Dd do
        local i, f = sig(g1[d] + g2[d]), sig(g1[Dd + d] + g2[Dd + d])
        local gg, o = math.tanh(g1[2 * Dd + d] + g2[2 * Dd + d]), sig(g1[3 * Dd + d] + g2[3 * Dd + d])
        c[d] = f * c[d] + i * gg
        h[d] = o * math.tanh(c[d])
      end
      local e = {}
      for n, x in ipairs(set) do e[n] = dot(x, h) end
      local r = wsum(set, softmax(e, eps))
      for d = 1, Dd do q[d], q[Dd + d] = h[d], r[d] end
    end
    out[s] = { table.unpack(q) }
  end
  return out
end
function ref.gated_attention(sets, P, compat)
  local out, eps = {}, compat == "reference" and 1e-16 or 0
  for s, set in ipairs(sets) do
    local sc = {}
    for n, x in ipairs(set) do
      local u, v = matvec(P["linear_r1.weight"], x), matvec(P["linear_r2.weight"], x)
      if compat == "reference" then v = softmax(v) else for j = 1, #v do v[j] = sig(v[j]) end end
      for j = 1, #u do u[j] = math.tanh(u[j]) * v[j] end
      sc[n] = dot(P["linear_r3.weight"][1], u)
    end
    out[s] = wsum(set, softmax(sc, eps))
  end
  return out
end
function ref.dynamic(sets, _, compat, opts)
  local out, eps = {}, compat == "reference" and 1e-16 or 0
  for s, set in ipairs(sets) do
    local sc = {}
    for n = 1, #set do sc[n] = 0 end
    for _ = 1, opts.k do
      local z = wsum(set, softmax(sc, eps))
      local E = dot(z, z)
      local c = math.sqrt(E) / (1 + E)
      for n, x in ipairs(set) do sc[n] = sc[n] + c * dot(x, z) end
    end
    out[s] = wsum(set, softmax(sc, eps))
  end
  return out
end
function ref.gnp(sets, P, compat)
  local rows = 0
  for _, set in ipairs(sets) do rows = rows + #set end
  local Dd, p, q = #sets[1][1], {}, {}
  for i = 1, 2 do
    local sp = softplus(P.ps[i])
    p[i] = sp >= 50 and (compat == "reference" and -50 or 50) or sp
    q[i] = math.tanh(P.qs[i])
  end
  local split = compat == "reference" and math.min(rows // 2, Dd) or Dd // 2
  local out = {}
  for s, set in ipairs(sets) do
    local z = {}
    for d = 1, Dd do
      local blk = d <= split and 1 or 2
      local pe, qe = p[blk], compat == "reference" and q[1] or q[blk]
      local acc = 0
      for _, x in ipairs(set) do acc = acc + (math.abs(x[d]) + 1e-6) ^ pe end
      z[d] = acc ^ (1 / pe) / (#set) ^ qe
    end
    out[s] = matvec(P["linear.weight"], z, P["linear.bias"])
  end
  return out
end

local function params_of(m)
  local P = {}
  for _, p in ipairs(m:parameters()) do P[p.name] = p.value:totable() end
  return P
end

local function maxdiff_rows(y, want)
  local got, d, scale = y:totable(), 0, 0
  for i, row in ipairs(want) do
    for j, v in ipairs(row) do
      d = math.max(d, math.abs(got[i][j] - v))
      scale = math.max(scale, math.abs(v))
    end
  end
  return d / math.max(scale, 1e-300)
end

-- ------------------------------------------------------------------ data
local rng = rl.rng(2024)
local sizes = { 1, 4, 3, 6 } -- ragged, with a singleton; 14 rows, so the reference gnp split is min(7, 5) = 5
local offsets = { 0 }
for i, n in ipairs(sizes) do offsets[i + 1] = offsets[i] + n end
local X = rl.randn(rng, offsets[#offsets], D)
local batch = rl.sets(X, offsets)
local xrows = X:totable()

-- a smaller batch (8 rows, so the reference gnp split is min(4, 5) = 4 and both blocks are used)
local Xs = rl.randn(rng, 8, D)
local small = rl.sets(Xs, { 0, 3, 8 })

-- ------------------------------------------------------------------ forward vs plain Lua
for _, name in ipairs(NAMES) do
  for _, compat in ipairs(MODES) do
    for _, case in ipairs { { batch, xrows, offsets, "4 sets" }, { small, Xs:totable(), { 0, 3, 8 }, "2 sets" } } do
      local m = make(name, compat)
      local y = m:forward(case[1])
      local want = ref[name](sets_of(case[2], case[3]), params_of(m), compat, { steps = 3, k = 3 })
      local err = maxdiff_rows(y, want)
      t:ok(err <= 1e-12,
        ("%s (%s): forward on %s matches the formula (rel err %.1e)"):format(name, compat, case[4], err))
    end
  end
end

-- ------------------------------------------------------------------ finite differences
for _, name in ipairs(NAMES) do
  for _, compat in ipairs(MODES) do
    gc.check(t, make(name, compat), batch, ("%s (%s)"):format(name, compat), { tol = 1e-6 })
    if name == "gnp" then
      gc.check(t, make(name, compat), small, ("gnp (%s), two blocks"):format(compat), { tol = 1e-6 })
    end
  end
end
-- other step counts, and the gnp cap at p = 50 (capped ps gets zero gradient)
gc.check(t, make("set2set", "paper", { steps = 1 }), batch, "set2set steps = 1", { tol = 1e-6 })
gc.check(t, make("dynamic", "paper", { k = 1 }), batch, "dynamic k = 1", { tol = 1e-6 })
gc.check(t, make("dynamic", "paper", { k = 6 }), batch, "dynamic k = 6", { tol = 1e-6 })
for _, compat in ipairs(MODES) do
  local m = make("gnp", compat)
  m:set_param("ps", { 60, 0.3 })
  local v = m:values(8)
  t:is(v.p[1], compat == "reference" and -50 or 50, ("gnp (%s): softplus(60) maps to %s"):format(compat, v.p[1]))
  gc.check(t, m, small, ("gnp (%s), capped p"):format(compat), { tol = 1e-6 })
  m:zero_grad()
  m:forward(small)
  m:backward(small, rl.randn(rng, 2, D))
  t:is(m:grad("ps"):get(1), 0, ("gnp (%s): no gradient through a capped exponent"):format(compat))
end

-- ------------------------------------------------------------------ permutation invariance
local perm = {}
for s = 1, #sizes do
  local p = rng:permutation(sizes[s])
  for _, i in ipairs(p) do perm[#perm + 1] = offsets[s] + i end
end
local shuffled = rl.sets(X:rows(perm), offsets)
for _, name in ipairs(NAMES) do
  for _, compat in ipairs(MODES) do
    local m = make(name, compat)
    local y1 = m:forward(batch)
    local y2 = m:forward(shuffled)
    local d = y1:maxdiff(y2)
    t:ok(d <= 1e-10,
      ("%s (%s): rows shuffled within sets give the same output (max diff %.1e)"):format(name, compat, d))
  end
end

-- ------------------------------------------------------------------ sets of size one
local X1 = rl.randn(rng, 3, D)
local singles = rl.sets(X1, { 0, 1, 2, 3 })
for _, compat in ipairs(MODES) do
  for _, name in ipairs { "mixed", "gated_mixed", "gated_attention", "dynamic" } do
    local y = make(name, compat):forward(singles)
    t:ok(y:maxdiff(X1) <= 1e-15, ("%s (%s): a set of one row pools to that row"):format(name, compat))
  end
  local y = make("set2set", compat):forward(singles):totable()
  local d = 0
  for s = 1, 3 do for j = 1, D do d = math.max(d, math.abs(y[s][D + j] - X1:get(s, j))) end end
  t:ok(d <= 1e-15, ("set2set (%s): the read-out of a one-row set is that row"):format(compat))
  for _, name in ipairs(NAMES) do
    gc.check(t, make(name, compat), singles, ("%s (%s), sets of one row"):format(name, compat), { tol = 1e-6 })
  end
end
-- on one-row sets sum = mean = max, so both modes of deepset and gated_mixed agree
for _, name in ipairs { "deepset", "gated_mixed" } do
  local a, b = make(name, "paper"), make(name, "reference")
  t:ok(a:forward(singles):maxdiff(b:forward(singles)) <= 1e-15, name .. ": paper and reference agree on one-row sets")
end
do -- gnp of a one-row set is linear(|x| + 1e-6) in the paper mode (N^q = 1)
  local m = make("gnp", "paper")
  local z = X1:clone()
  for i = 1, z:size() do z:set(i, math.abs(z:get(i)) + 1e-6) end
  local want = z:matmul(m:param("linear.weight"), false, true)
  local b = m:param("linear.bias")
  for s = 1, 3 do for j = 1, D do want:set(s, j, want:get(s, j) + b:get(j)) end end
  t:ok(m:forward(singles):maxdiff(want) <= 1e-13, "gnp: a one-row set pools to linear(|x| + 1e-6)")
end

-- ------------------------------------------------------------------ parameters: reference names, shapes, init
local expected = {
  mixed = { "alpha:1" },
  gated_mixed = { "linear.weight:1x5" },
  deepset = { "alpha:1", "regressor.0.weight:4x5", "regressor.0.bias:4", "regressor.2.weight:4x4",
    "regressor.2.bias:4", "regressor.4.weight:4x4", "regressor.4.bias:4", "regressor.6.weight:5x4",
    "regressor.6.bias:5" },
  set2set = { "lstm.weight_ih_l0:20x10", "lstm.weight_hh_l0:20x5", "lstm.bias_ih_l0:20", "lstm.bias_hh_l0:20" },
  gated_attention = { "linear_r1.weight:4x5", "linear_r2.weight:4x5", "linear_r3.weight:1x4" },
  dynamic = {},
  gnp = { "ps:2", "qs:2", "linear.weight:5x5", "linear.bias:5" },
}
for _, name in ipairs(NAMES) do
  local got = {}
  for _, p in ipairs(make(name, "paper"):parameters()) do
    got[#got + 1] = p.name .. ":" .. table.concat(p.value:shape(), "x")
  end
  t:is(table.concat(got, " "), table.concat(expected[name], " "), name .. ": parameter names and shapes")
end
do
  local function within(m, pname, bound)
    local v = m:param(pname)
    return math.max(v:max(), -v:min()) <= bound and v:max() > v:min()
  end
  local ds = pool("deepset") { dim = 16, hidden = 9, rng = rl.rng(1) }
  t:ok(within(ds, "regressor.0.weight", 1 / math.sqrt(16)) and within(ds, "regressor.2.bias", 1 / 3),
    "deepset: Linear init within +-1/sqrt(fan_in)")
  local s2 = pool("set2set") { dim = 16, rng = rl.rng(1) }
  t:ok(within(s2, "lstm.weight_ih_l0", 0.25) and within(s2, "lstm.bias_hh_l0", 0.25),
    "set2set: LSTM init within +-1/sqrt(hidden)")
  local a = pool("gated_attention") { dim = 16, hidden = 4, rng = rl.rng(1) }
  t:ok(within(a, "linear_r3.weight", 0.5), "gated_attention: init of the 1 x hidden weight uses fan_in = hidden")
  local m1, m2 = pool("deepset") { dim = 3, rng = rl.rng(5) }, pool("deepset") { dim = 3, rng = rl.rng(5) }
  t:is(m1:param("regressor.6.weight"):maxdiff(m2:param("regressor.6.weight")), 0, "same rng seed, same init")
  t:is(#pool("deepset") { dim = 3 }:param("regressor.0.weight"):shape(), 2, "deepset: hidden defaults to dim")
  t:is(pool("deepset") { dim = 3 }:param("regressor.0.weight"):size(1), 3, "deepset: hidden defaults to dim (3)")
  t:is(pool("gated_attention") { dim = 3 }:param("linear_r1.weight"):size(1), 128,
    "gated_attention: hidden defaults to 128")
end

-- ------------------------------------------------------------------ other behaviour
do -- pooling a set-of-sets batch consumes one level
  local g = rl.groups(batch, { 0, 1, 4 })
  local y = make("set2set", "paper"):forward(g)
  t:ok(y.count ~= nil and y:count() == 2 and #y:values():shape() == 2 and y:values():size(2) == 2 * D,
    "set2set on groups of sets returns sets of pooled rows (2 groups, width 2 D)")
  local m = pool("mixed")()
  t:is(m:forward(rl.sets(rl.zeros(4, 3), { 0, 2, 4 })):size(2), 3, "mixed without dim accepts any width")
  t:is(pool("dynamic")():forward(rl.sets(rl.randn(rng, 4, 7), { 0, 2, 4 })):size(2), 7,
    "dynamic without dim accepts any width")
end
do -- weights() of gated_attention and dynamic: one weight per row, summing to one per set
  for _, name in ipairs { "gated_attention", "dynamic" } do
    local m = make(name, "paper")
    t:raises(function() m:weights() end, "before forward", name .. ": weights() before forward")
    m:forward(batch)
    local w = m:weights()
    local ok = w:size() == offsets[#offsets]
    for s = 1, #sizes do
      local acc = 0
      for r = offsets[s] + 1, offsets[s + 1] do acc = acc + w:get(r) end
      ok = ok and math.abs(acc - 1) < 1e-12
    end
    t:ok(ok, name .. ": weights() gives a distribution over each set")
  end
  local v = make("gnp", "reference"):values()
  t:ok(v.split == nil and #v.p == 2 and v.q[1] == v.q[2],
    "gnp values(): reference split unknown without rows, q_2 = q_1")
  t:is(make("gnp", "reference"):values(14).split, 5, "gnp values(14): reference split min(7, 5)")
  t:is(make("gnp", "paper"):values().split, 2, "gnp values(): paper split floor(5 / 2)")
end
do -- backward accumulates parameter gradients; grad_in can be skipped
  local m = make("deepset", "paper")
  m:forward(batch)
  local gy = rl.randn(rng, #sizes, D)
  m:backward(batch, gy)
  local g1 = m:grad("regressor.0.weight")
  m:backward(batch, gy, false)
  t:ok(m:grad("regressor.0.weight"):maxdiff(g1:clone():scale(2)) <= 1e-14, "backward accumulates into grads")
end

do -- a batch big enough for the OpenMP path gives, set by set, what the sets give alone (no races)
  local bsizes, boff = {}, { 0 }
  for s = 1, 60 do bsizes[s] = rng:int(90); boff[s + 1] = boff[s] + bsizes[s] end
  local Db = 12
  local Xb = rl.randn(rng, boff[#boff], Db)
  local big = rl.sets(Xb, boff)
  local head = {}
  for r = 1, boff[4] do head[r] = r end
  local few = rl.sets(Xb:rows(head), { boff[1], boff[2], boff[3], boff[4] })
  local gy = rl.randn(rng, 60, 2 * Db)
  for _, name in ipairs(NAMES) do
    local m = make(name, "paper", { dim = Db })
    local y = m:forward(big)
    local cols = y:size(2)
    local g = rl.zeros(60, cols) -- the first `cols` columns of gy
    for s = 1, 60 do for j = 1, cols do g:set(s, j, gy:get(s, j)) end end
    local gx = m:backward(big, g)
    local y3 = m:forward(few)
    local gx3 = m:backward(few, g:rows { 1, 2, 3 })
    local dy = y:rows { 1, 2, 3 }:maxdiff(y3)
    local dg = gx:rows(head):maxdiff(gx3)
    t:ok(dy <= 1e-12 and dg <= 1e-12, ("%s: %d-row batch (parallel path) matches its first sets alone (%.1e, %.1e)")
      :format(name, boff[#boff], dy, dg))
  end
end

-- ------------------------------------------------------------------ errors
for _, name in ipairs(NAMES) do
  local m = make(name, "paper")
  t:raises(function() m:forward(rl.sets(rl.zeros(4, 3), { 0, 2, 4 })) end, "expected any x 5, got 4 x 3",
    name .. ": wrong input width names the expected shape")
  t:raises(function() m:forward(rl.zeros(4, D)) end, "expected a batch of sets",
    name .. ": a plain tensor instead of sets is refused")
  t:raises(function() make(name, "paper", { colour = 1 }) end, "unknown option 'colour'",
    name .. ": unknown option is refused")
  t:raises(function() make(name, "torch") end, "unknown value \"torch\"", name .. ": unknown compat value")
  t:raises(function() make(name, "paper"):backward(batch, rl.zeros(#sizes, D)) end, "backward called before forward",
    name .. ": backward before forward")
  m:forward(batch)
  t:raises(function() m:backward(batch, rl.zeros(#sizes + 1, D)) end, "gradient of the output",
    name .. ": gradient of the wrong shape")
end
for _, name in ipairs { "gated_mixed", "deepset", "set2set", "gated_attention", "gnp" } do
  t:raises(function() pool(name) {} end,
    "bad argument #1 to '" .. name .. "' %(option 'dim' %(the input width%) is required",
    name .. ": dim is required")
  t:raises(function() pool(name)(5) end, "expected an options table", name .. ": options must be a table")
  t:raises(function() pool(name) { dim = 0 } end, "option 'dim': expected a positive width, got 0", name .. ": dim = 0")
end
t:raises(function() pool("mixed") { dim = -2 } end, "expected a positive width", "mixed: negative dim")
t:raises(function() pool("deepset") { dim = 3, hidden = 0 } end, "option 'hidden': expected a positive width",
  "deepset: hidden = 0")
t:raises(function() pool("gated_attention") { dim = 3, hidden = 2.5 } end, "option 'hidden': expected a positive width",
  "gated_attention: fractional hidden")
t:raises(function() pool("set2set") { dim = 3, steps = 0 } end,
  "bad argument #1 to 'set2set' %(set2set: expected 1%.%.1000 processing steps, got 0%)", "set2set: steps = 0")
t:raises(function() pool("set2set") { dim = 3, steps = 1001 } end, "expected 1%.%.1000 processing steps, got 1001",
  "set2set: steps too large")
t:raises(function() pool("set2set") { dim = 3, steps = "three" } end, "option 'steps': expected an integer",
  "set2set: steps given as a string")
t:raises(function() pool("dynamic") { k = 0 } end, "expected 1%.%.1000 routing iterations k, got 0", "dynamic: k = 0")
t:raises(function() pool("dynamic") { k = -3 } end, "routing iterations k, got %-3", "dynamic: negative k")
t:raises(function() pool("dynamic") { k = 1.5 } end, "option 'k': expected an integer, got 1.5",
  "dynamic: fractional k")
t:raises(function() pool("gnp") { dim = 3, rng = 7 } end, "option 'rng' must be an rl.rng",
  "gnp: rng of the wrong type")
t:raises(function() make("gnp", "paper"):values(-4) end, "non%-negative row count", "gnp values(): negative rows")
t:is(make("gnp", "paper").weights, nil, "gnp has no weights() method")
os.exit(t:done())
