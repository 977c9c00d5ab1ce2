#!/usr/bin/env rotlab-double
-- Tensors and ragged sets: construction, shapes, element access, validation errors.
local rl = require "rotlab"
local t = require("rotlab.tap")()

local a = rl.tensor{{1, 2, 3}, {4, 5, 6}}
t:is(#a:shape(), 2, "nested table gives a 2-D tensor")
t:is(a:size(1) * 10 + a:size(2), 23, "shape is 2 x 3")
t:is(a:get(2, 3), 6, "get(row, col) is 1-based")
a:set(1, 2, -7)
t:is(a:get(1, 2), -7, "set writes one element")
t:is(a:sum(), 1 - 7 + 3 + 4 + 5 + 6, "sum")
local b = a:clone():scale(2)
t:is(b:get(2, 1), 8, "clone + scale does not touch the original")
t:is(a:get(2, 1), 4, "original unchanged")
local c = a:matmul(rl.tensor{{1}, {1}, {1}})
t:is(c:get(1, 1), -3, "matmul row 1")
t:is(c:get(2, 1), 15, "matmul row 2")
t:is(table.concat(rl.tensor{{0, 5, 1}, {9, 0, 1}}:argmax(), ","), "2,1", "argmax per row")
t:is(rl.zeros(3, 4):size(), 12, "zeros")
t:is(rl.full(2.5, 2):sum(), 5, "full")
t:raises(function() rl.tensor{{1, 2}, {3}} end, "ragged", "ragged nested table is refused")
t:raises(function() rl.tensor{{1, "x"}} end, "not a number", "non-number entry is refused")
t:raises(function() rl.zeros(-1, 2) end, "bad argument #1 to 'zeros'", "negative size names the argument")
t:raises(function() a:get(3, 1) end, "index out of range", "out of range index")
t:raises(function() a:matmul(rl.zeros(2, 2)) end, "inner dimensions", "matmul dimension mismatch")

-- sets
local s = rl.sets(rl.tensor{{1}, {2}, {3}, {4}, {5}}, {0, 2, 5})
t:is(s:count(), 2, "two sets")
t:is(table.concat(s:offsets(), ","), "0,2,5", "offsets kept")
t:raises(function() rl.sets(rl.zeros(5, 1), {0, 3, 2, 5}) end, "non%-decreasing", "non-monotone offsets")
t:raises(function() rl.sets(rl.zeros(5, 1), {0, 2, 2, 5}) end, "empty", "empty set refused")
t:raises(function() rl.sets(rl.zeros(5, 1), {0, 2, 4}) end, "last offset must equal the number of rows 5",
  "offsets must cover every row")
t:raises(function() rl.sets(rl.zeros(5, 1), {1, 5}) end, "start at 0", "offsets start at 0")
t:raises(function() rl.sets(rl.zeros(5, 1), {0}) end, "bad argument #2 to 'sets'", "too few offsets")
t:raises(function() rl.sets(rl.zeros(5, 1), {0, 2.5, 5}) end, "not an integer", "fractional offset")
local g = rl.groups(s, {0, 2})
t:is(g:levels(), 2, "groups add a level")
t:raises(function() rl.groups(s, {0, 3}) end, "last offset must equal the number of rows 2", "group offsets cover sets")

-- rng
local g1, g2 = rl.rng(7), rl.rng(7)
t:is(g1:uniform(), g2:uniform(), "same seed, same stream")
local p = rl.rng(3):permutation(10)
table.sort(p)
t:is(table.concat(p, ","), "1,2,3,4,5,6,7,8,9,10", "permutation is a permutation")
local sum, sq, n = 0, 0, 20000
local gn = rl.rng(1)
for _ = 1, n do local v = gn:normal(); sum = sum + v; sq = sq + v * v end
t:near(sum / n, 0, 0.03, "normal mean ~ 0")
t:near(sq / n, 1, 0.05, "normal variance ~ 1")
os.exit(t:done())
