#!/usr/bin/env rotlab-double
-- rl.nn.Standardize and ds:feature_stats: the formula, finite-difference gradients, statistics of chosen sets
-- against hand computations, constant columns, and every error path.
local rl = require "rotlab"
local gc = require "rotlab.gradcheck"
local t = require("rotlab.tap")()

---------------------------------------------------------------------------------------------- Standardize

local mean, std = rl.tensor{ 1, -2, 0.5 }, rl.tensor{ 2, 0.5, 4 }
local m = rl.nn.Standardize(mean, std)
t:is(m:kind(), "standardize", "kind")
t:is(#m:parameters(), 0, "no learnable parameters")
local x = rl.tensor{ { 3, -2, 4.5 }, { -1, 0, 0.5 } }
local y = m:forward(x)
-- by hand: ((3-1)/2, (-2+2)/0.5, (4.5-0.5)/4) = (1, 0, 1); ((-1-1)/2, (0+2)/0.5, 0) = (-1, 4, 0)
local want = { 1, 0, 1, -1, 4, 0 }
local d = 0
for i = 1, 6 do d = math.max(d, math.abs(y:get(i) - want[i])) end
t:is(d, 0, "forward: (x - mean) / std on a hand example")
local g = m:backward(x, rl.tensor{ { 1, 1, 1 }, { 2, -4, 8 } })
local gwant = { 0.5, 2, 0.25, 1, -8, 2 }
d = 0
for i = 1, 6 do d = math.max(d, math.abs(g:get(i) - gwant[i])) end
t:is(d, 0, "backward: grad / std")
m:eval()
t:is(m:forward(x):get(2, 2), 4, "eval mode: the same map")
local sets = rl.sets(rl.randn(rl.rng(3), 7, 3), { 0, 3, 7 })
local worst = gc.module(rl.nn.Standardize({ 0.3, -1, 2 }, { 0.7, 1.3, 0.2 }), sets, { seed = 4 })
local err = 0
for _, w in ipairs(worst) do err = math.max(err, w.err) end
t:ok(#worst >= 1 and err < 1e-7, "finite differences (sets input)", err)
t:ok(rl.nn.Sequential{ m, rl.nn.Linear(3, 2) }:forward(sets) ~= nil, "inside a Sequential, on sets")

t:raises(function() rl.nn.Standardize({ 1, 2 }, { 1 }) end, "expected 2 standard deviations", "std length")
t:raises(function() rl.nn.Standardize({}, {}) end, "expected D >= 1", "empty statistics")
t:raises(function() rl.nn.Standardize({ 1, 2 }, { 1, 0 }) end, "std%[2%] must be finite and > 0", "zero std")
t:raises(function() rl.nn.Standardize({ 1, 2 }, { -1, 1 }) end, "std%[1%] must be finite and > 0", "negative std")
t:raises(function() rl.nn.Standardize({ 0 / 0, 2 }, { 1, 1 }) end, "mean%[1%] is not finite", "NaN mean")
t:raises(function() rl.nn.Standardize({ 1 }, { math.huge }) end, "std%[1%] must be finite", "infinite std")
t:raises(function() rl.nn.Standardize("x", { 1 }) end, "bad argument #1", "mean must be numbers")
t:raises(function() m:forward(rl.tensor{ { 1, 2 } }) end, "standardize: expected any x 3, got 1 x 2",
  "forward: wrong input width")

---------------------------------------------------------------------------------------------- feature_stats

local tmp = os.tmpname()
-- 4 sets of sizes 1, 2, 3, 1 over 7 rows of 3 columns; column 3 is constant
local rows = { { 1, 10, 5 }, { 2, 20, 5 }, { 3, 30, 5 }, { 4, 40, 5 }, { 6, 60, 5 }, { 8, 80, 5 }, { 100, 1, 5 } }
rl.data.write(tmp, { X = rows, offsets = { 0, 1, 3, 6, 7 }, y = { 0, 1, 0, 1 }, dtype = "float64" })
local ds = rl.data.load(tmp)

-- by hand over sets {2, 3}: rows 2..6 -> column 1 = 2, 3, 4, 6, 8 (mean 4.6)
local function stats(idx_rows, col)
  local s = 0
  for _, r in ipairs(idx_rows) do s = s + rows[r][col] end
  local mu = s / #idx_rows
  local ss = 0
  for _, r in ipairs(idx_rows) do ss = ss + (rows[r][col] - mu) ^ 2 end
  return mu, math.sqrt(ss / #idx_rows)
end
local mu, sd = ds:feature_stats({ 2, 3 })
local m1, s1 = stats({ 2, 3, 4, 5, 6 }, 1)
local m2, s2 = stats({ 2, 3, 4, 5, 6 }, 2)
t:ok(math.abs(mu:get(1) - m1) < 1e-12 and math.abs(sd:get(1) - s1) < 1e-12 and math.abs(mu:get(2) - m2) < 1e-12 and
  math.abs(sd:get(2) - s2) < 1e-12, "mean and population std over the rows of the chosen sets")
t:ok(mu:get(3) == 5 and sd:get(3) == 1, "a constant column: its mean, std reported as 1")
t:ok(mu:shape()[1] == 3 and sd:shape()[1] == 3, "one value per feature")
local mu4 = ds:feature_stats({ 4 })
t:is(mu4:get(1), 100, "a single set: its rows only (not the other sets')")
local mu_twice = ds:feature_stats({ 4, 4, 1 })
t:near(mu_twice:get(1), (100 + 100 + 1) / 3, 1e-12, "a set listed twice counts twice")
-- the standardised training rows have mean 0 and std 1
local st = rl.nn.Standardize(ds:feature_stats({ 1, 2, 3, 4 }))
local z = st:forward(ds:values())
local zs, zss = 0, 0
for r = 1, 7 do zs = zs + z:get(r, 2) end
for r = 1, 7 do zss = zss + z:get(r, 2) ^ 2 end
t:ok(math.abs(zs / 7) < 1e-12 and math.abs(zss / 7 - 1) < 1e-12, "standardised with its own statistics: mean 0, std 1")

t:raises(function() ds:feature_stats({}) end, "expected a non%-empty list", "no sets")
t:raises(function() ds:feature_stats({ 5 }) end, "entry 1 is not a set index in 1%.%.4", "index out of range")
t:raises(function() ds:feature_stats({ 1, 0 }) end, "entry 2 is not a set index", "index 0")
t:raises(function() ds:feature_stats({ 1.5 }) end, "entry 1 is not a set index", "non-integer index")
t:raises(function() ds:feature_stats(3) end, "table expected", "indices must be a list")
ds:close()
t:raises(function() ds:feature_stats({ 1 }) end, "has been closed", "closed dataset")
os.remove(tmp)

os.exit(t:done())
