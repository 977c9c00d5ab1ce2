#!/usr/bin/env rotlab-double
-- rl.pool basic poolings (add, mean, max) and attention: known values on a ragged batch, finite-difference
-- gradients, permutation invariance, sets of size one, groups of sets, the pool.lua registry, error paths.
local rl = require "rotlab"
local gc = require "rotlab.gradcheck"
local t = require("rotlab.tap")()

local rng = rl.rng(7)

-- plain-Lua references: rows is a Lua list of rows, offsets 0-based
local function ref_pool(kind, rows, offsets)
  local out = {}
  for s = 1, #offsets - 1 do
    local lo, hi = offsets[s] + 1, offsets[s + 1]
    local y = {}
    for d = 1, #rows[1] do
      local acc = kind == "max" and -math.huge or 0
      for r = lo, hi do
        local v = rows[r][d]
        if kind == "max" then acc = math.max(acc, v) else acc = acc + v end
      end
      y[d] = kind == "mean" and acc / (hi - lo + 1) or acc
    end
    out[s] = y
  end
  return out
end

local function ref_attention(V, w, rows, offsets)
  local out, weights = {}, {}
  local scores = {}
  for r, x in ipairs(rows) do
    local s = 0
    for j = 1, #V do
      local u = 0
      for d = 1, #x do u = u + V[j][d] * x[d] end
      s = s + w[j] * math.tanh(u)
    end
    scores[r] = s
  end
  for s = 1, #offsets - 1 do
    local lo, hi = offsets[s] + 1, offsets[s + 1]
    local mx = -math.huge
    for r = lo, hi do mx = math.max(mx, scores[r]) end
    local den = 1e-16
    for r = lo, hi do den = den + math.exp(scores[r] - mx) end
    local y = {}
    for d = 1, #rows[1] do y[d] = 0 end
    for r = lo, hi do
      weights[r] = math.exp(scores[r] - mx) / den
      for d = 1, #rows[1] do y[d] = y[d] + weights[r] * rows[r][d] end
    end
    out[s] = y
  end
  return out, weights
end

local function maxdiff_nested(tensor, want)
  local got, d = tensor:totable(), 0
  for i, row in ipairs(want) do
    for j, v in ipairs(row) do d = math.max(d, math.abs(got[i][j] - v)) end
  end
  return d
end

-- the same batch with the rows of every set shuffled
local function shuffled(sets)
  local x, off = sets:values(), sets:offsets()
  local order = {}
  for s = 1, #off - 1 do
    local perm = rng:permutation(off[s + 1] - off[s])
    for _, k in ipairs(perm) do order[#order + 1] = off[s] + k end
  end
  return rl.sets(x:rows(order), off)
end

-- tiny ragged batch: sets of 2, 3 and 1 rows
local rows = { { 1, 2 }, { 3, -1 }, { 0, 5 }, { -2, 4 }, { 7, 0 }, { -3, -4 } }
local offsets = { 0, 2, 5, 6 }
local tiny = rl.sets(rl.tensor(rows), offsets)

local function make(name, dim)
  if name == "attention" then return rl.pool.attention{ dim = dim, hidden = 5, rng = rl.rng(3) } end
  return rl.pool[name]{ dim = dim }
end

for _, name in ipairs({ "add", "mean", "max", "attention" }) do
  local p = make(name, 2)
  t:is(p:kind(), name, name .. ": kind")
  local y = p:forward(tiny)
  t:is(y:size(1) * 10 + y:size(2), 32, name .. ": one row per set (3 x 2)")
  local want, weights
  if name == "attention" then
    want, weights = ref_attention(p:param("V"):totable(), p:param("w"):totable()[1], rows, offsets)
  else
    want = ref_pool(name, rows, offsets)
  end
  local err = maxdiff_nested(y, want)
  t:ok(err < 1e-12, name .. ": known values on a ragged batch", "max error " .. err)
  if weights then
    local aw, werr = p:weights(), 0
    for r = 1, #rows do werr = math.max(werr, math.abs(aw:get(r) - weights[r])) end
    t:ok(werr < 1e-12, "attention: weights() gives the softmax weights of every row", "max error " .. werr)
  end

  -- finite differences on a random ragged batch (ties have probability zero)
  local D = 3
  local q = make(name, D)
  local b = rl.sets(rl.randn(rng, 9, D), { 0, 4, 5, 9 })
  gc.check(t, q, b, name)

  -- permutation invariance
  local big = rl.sets(rl.randn(rng, 20, D), { 0, 7, 8, 15, 20 })
  local d = q:forward(big):maxdiff(q:forward(shuffled(big)))
  t:ok(d <= 1e-12, name .. ": shuffling rows within each set leaves the output unchanged", "maxdiff " .. d)

  -- sets of size one: the output is the row itself
  local single = rl.sets(rl.randn(rng, 4, D), { 0, 1, 2, 3, 4 })
  d = q:forward(single):maxdiff(single:values())
  t:ok(d <= 1e-12, name .. ": a set of one row pools to that row", "maxdiff " .. d)
  gc.check(t, q, single, name .. " (sets of size 1)")

  -- groups of sets: the pooling consumes the set level, the result is sets over the groups
  local groups = rl.groups(b, { 0, 2, 3 })
  local yg = q:forward(groups)
  t:ok(yg.levels ~= nil and yg:levels() == 1 and yg:count() == 2 and table.concat(yg:offsets(), ",") == "0,2,3",
    name .. ": on rl.groups input returns sets over the groups")
  t:is(yg:values():maxdiff(q:forward(b)), 0, name .. ": same pooled rows with or without the group level")
  local gy = rl.randn(rng, 3, D)
  q:forward(groups)
  local g1 = q:backward(groups, gy)
  q:forward(b)
  t:is(g1:maxdiff(q:backward(b, gy)), 0, name .. ": backward through groups equals backward on the sets")

  -- errors
  t:raises(function() q:forward(rl.randn(rng, 4, D)) end,
    "bad argument #1 to 'forward' %(" .. name .. ": expected a batch of sets", name .. ": plain tensor is refused")
  t:raises(function() q:forward(rl.sets(rl.zeros(5, D + 2), { 0, 2, 5 })) end,
    "bad argument #1 to 'forward' %(" .. name .. ": expected any x 3, got 5 x 5%)", name .. ": wrong width")
  t:raises(function() rl.pool[name]{ dim = D, bogus = 1 } end, name .. ": unknown option 'bogus' %(known options: dim",
    name .. ": unknown option")
  t:raises(function() rl.pool[name]{ dim = 0 } end,
    "bad argument #1 to '" .. name .. "' %(option 'dim': expected a positive width, got 0%)", name .. ": dim = 0")
  t:raises(function() make(name, D):backward(b, rl.zeros(3, D)) end, name .. ": backward called before forward",
    name .. ": backward before forward")
  t:raises(function() q:forward(b); q:backward(b, rl.zeros(2, D)) end,
    "gradient of the output: expected 3 x 3, got 2 x 3", name .. ": wrong gradient shape")
end

-- add/mean/max accept any width without dim, and nil options
t:is(rl.pool.mean():forward(rl.sets(rl.zeros(3, 7), { 0, 3 })):size(2), 7, "mean without dim accepts any width")
t:is(rl.pool.add{}:forward(rl.sets(rl.zeros(3, 2), { 0, 1, 3 })):size(1), 2, "add{} pools each set")

-- max: ties route the gradient to the first arg-max row
do
  local p = rl.pool.max{}
  local x = rl.sets(rl.tensor{ { 1, 5 }, { 2, 5 }, { 2, 1 } }, { 0, 3 })
  p:forward(x)
  local g = p:backward(x, rl.tensor{ { 10, 20 } }):totable()
  t:ok(g[1][1] == 0 and g[2][1] == 10 and g[3][1] == 0 and g[1][2] == 20 and g[2][2] == 0 and g[3][2] == 0,
    "max: gradient goes to the arg-max row, the first one on ties")
end

-- attention: weights per set sum to 1, parameters and construction
do
  local p = rl.pool.attention{ dim = 4, rng = rl.rng(1) }
  t:is(table.concat(p:param("V"):shape(), "x") .. " " .. table.concat(p:param("w"):shape(), "x"), "128x4 1x128",
    "attention: V is hidden x dim, w is 1 x hidden (default hidden = 128)")
  local bv, bw = 1 / math.sqrt(4), 1 / math.sqrt(128)
  t:ok(p:param("V"):max() <= bv and p:param("V"):min() >= -bv and p:param("w"):max() <= bw and p:param("w"):min() >= -bw,
    "attention: PyTorch Linear init bounds")
  local q = rl.pool.attention{ dim = 4, rng = rl.rng(1) }
  t:is(p:param("V"):maxdiff(q:param("V")), 0, "attention: same seed, same parameters")
  p:forward(rl.sets(rl.randn(rng, 10, 4), { 0, 3, 10 }))
  local a, s1, s2 = p:weights(), 0, 0
  for r = 1, 3 do s1 = s1 + a:get(r) end
  for r = 4, 10 do s2 = s2 + a:get(r) end
  t:ok(math.abs(s1 - 1) < 1e-12 and math.abs(s2 - 1) < 1e-12, "attention: weights sum to 1 within each set")
  t:raises(function() rl.pool.attention{ dim = 4 }:weights() end, "weights%(%) called before forward",
    "attention: weights() before forward")
  t:raises(function() rl.pool.attention{ hidden = 8 } end,
    "bad argument #1 to 'attention' %(option 'dim' %(the input width%) is required%)",
    "attention: dim is required")
  t:raises(function() rl.pool.attention() end, "bad argument #1 to 'attention' %(expected an options table",
    "attention: options table is required")
  t:raises(function() rl.pool.attention{ dim = 4, hidden = -1 } end, "option 'hidden': expected a positive width, got %-1",
    "attention: bad hidden width")
  t:raises(function() rl.pool.attention{ dim = 4, rng = {} } end, "option 'rng' must be an rl.rng", "attention: bad rng")
  -- large batch: the parallel path gives the same result as the per-set reference
  local bigx = rl.randn(rng, 3000, 4)
  local off = { 0 }
  while off[#off] < 3000 do off[#off + 1] = math.min(3000, off[#off] + 1 + rng:int(20)) end
  local bb = rl.sets(bigx, off)
  local want = ref_attention(p:param("V"):totable(), p:param("w"):totable()[1], bigx:totable(), off)
  local err = maxdiff_nested(p:forward(bb), want)
  t:ok(err < 1e-12, "attention: a large batch (parallel path) matches the reference", "max error " .. err)
  local wide = rl.randn(rng, 3000, 8)
  local err2 = maxdiff_nested(rl.pool.max{}:forward(rl.sets(wide, off)), ref_pool("max", wide:totable(), off))
  t:ok(err2 == 0, "max: a large batch (parallel path) matches the reference")
end

-- the registry in rotlab.pool
do
  local names = rl.pool.list()
  local sorted = { table.unpack(names) }
  table.sort(sorted)
  t:is(table.concat(names, ","), table.concat(sorted, ","), "pool.list() is sorted")
  local have = {}
  for _, n in ipairs(names) do have[n] = true end
  t:ok(have.add and have.mean and have.max and have.attention, "pool.list() has add, mean, max, attention")
  t:is(rl.pool.make("mean", { dim = 2 }):kind(), "mean", "pool.make builds a pooling by name")
  t:raises(function() rl.pool.make("median", {}) end, "unknown pooling 'median'; known poolings: .*attention",
    "pool.make: unknown name")
  t:raises(function() rl.pool.make(3) end, "expected a pooling name", "pool.make: name not a string")
  t:raises(function() rl.pool.make("attention", { dim = 2, foo = 1 }) end, "unknown option 'foo'",
    "pool.make passes the options through")
  -- the catalogue: every pooling documented, each entry listing exactly the options its constructor accepts
  for _, n in ipairs(names) do
    local d = rl.pool.docs[n]
    local _, err = pcall(rl.pool[n], { dim = 4, zzz_unknown = 1 })
    local known = tostring(err):match("known options: ([^)]*)")
    local listed = {}
    for _, o in ipairs(d and d.options or {}) do listed[#listed + 1] = o[1] end
    t:is(table.concat(listed, ", "), known, ("pool.docs.%s lists the constructor's options in its order"):format(n))
    local ok, text = pcall(rl.pool.doc, n)
    t:ok(ok and text:find("rl.pool." .. n, 1, true) and text:find("output width", 1, true),
      ("pool.doc('%s') renders its entry"):format(n))
  end
  for n in pairs(rl.pool.docs) do
    t:ok(have[n], ("pool.docs.%s documents a pooling that exists"):format(n))
  end
  t:raises(function() rl.pool.doc("median") end, "unknown pooling 'median'", "pool.doc: unknown name")
  t:raises(function() rl.pool.doc(nil) end, "bad argument #1 to 'doc' %(expected a pooling name", "pool.doc: no name")
end

os.exit(t:done())
