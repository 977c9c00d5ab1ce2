#!/usr/bin/env rotlab-double
-- The grid language: products, zips, conditional axes, unions, duplicates, stable run keys, errors.
local grid = require "rotlab.grid"
local json = require "rotlab.json"
local t = require("rotlab.tap")()

local function keys(list)
  local out = {}
  for i, c in ipairs(list) do out[i] = json.encode(c) end
  return table.concat(out, " ")
end

local p = grid.product{ b = {1, 2}, a = {"x", "y"} }:configs()
t:is(#p, 4, "product of 2 x 2 axes has 4 configurations")
t:is(keys(p), '{"a":"x","b":1} {"a":"x","b":2} {"a":"y","b":1} {"a":"y","b":2}', "axes taken in sorted order")

local z = grid.zip{ hidden = {32, 64}, layers = {1, 2} }:configs()
t:is(keys(z), '{"hidden":32,"layers":1} {"hidden":64,"layers":2}', "zip pairs values by position")

local g = grid.product{ solver = {"sinkhorn", "badmm-e"} } * grid.when({ solver = "sinkhorn" }, grid.product{ inner = {1, 5} })
t:is(keys(g:configs()), '{"inner":1,"solver":"sinkhorn"} {"inner":5,"solver":"sinkhorn"} {"solver":"badmm-e"}',
  "conditional axis only extends matching configurations")

local f = grid.product{ n = {1, 2, 3} } * grid.when(function(c) return c.n > 1 end, grid.product{ m = {0} })
t:is(keys(f:configs()), '{"n":1} {"m":0,"n":2} {"m":0,"n":3}', "function condition")

local u = grid.product{ a = {1} } + grid.list{ {a = 1}, {a = 2} }
t:is(#u:configs(), 2, "union drops duplicate configurations")

local big = grid.product{ a = {1, 2, 3, 4, 5}, b = {1, 2, 3, 4} } * grid.zip{ c = {1, 2, 3, 4, 5} }
t:is(#big:configs(), 100, "5 x 4 product times a 5-long zip: 100 configurations")

local k1 = grid.run_key("e", { a = 1, b = 2 }, 1, 2)
local k2 = grid.run_key("e", { b = 2, a = 1 }, 1, 2)
t:is(k1, k2, "run key does not depend on key order")
t:ok(k1 ~= grid.run_key("e", { a = 1, b = 2 }, 2, 2), "run key depends on the seed")
t:ok(k1 ~= grid.run_key("e", { a = 1, b = 2 }, 1, 3), "run key depends on the fold")
t:ok(k1 ~= grid.run_key("f", { a = 1, b = 2 }, 1, 2), "run key depends on the experiment")
t:ok(type(k1) == "string" and #k1 >= 16, "run key is a hex string")

t:raises(function() grid.product{ a = {} } end, "axis 'a' must be a non%-empty list", "empty axis")
t:raises(function() grid.product(3) end, "bad argument #1 to 'product'", "product needs a table")
t:raises(function() grid.zip{ a = {1, 2}, b = {1} } end, "axis 'b' has 1 values", "zip lengths must agree")
t:raises(function() grid.when(3, grid.product{ a = {1} }) end, "bad argument #1 to 'when'", "when condition type")
t:raises(function() return grid.when({}, grid.product{ a = {1} }) * grid.product{ a = {1} } end, "on the right",
  "conditional on the left of a product")
os.exit(t:done())
