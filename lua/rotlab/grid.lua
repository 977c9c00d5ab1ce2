--[[
rotlab.grid -- a small language for hyperparameter grids. A grid is an ordered list of configurations (tables).

  local grid = require "rotlab.grid"
  local g = grid.product{ pool = {"mean", "max", "rotp"}, lr = {1e-3, 1e-4} }   -- cartesian product of axes
          * grid.zip{ hidden = {32, 64}, layers = {1, 2} }                      -- zipped axes (same length)
          * grid.when({pool = "rotp"}, grid.product{ solver = {"sinkhorn", "badmm-e"} })
          * grid.when({solver = "sinkhorn"}, grid.product{ inner = {1, 5} })    -- conditional axis
  g = g + grid.list{ {pool = "attention", lr = 1e-3} }                          -- union
  for _, cfg in ipairs(g:configs()) do ... end

`*` is the product (every configuration of the left combined with every one of the right; keys of the right win),
`+` the concatenation. grid.when(cond, sub) extends only the configurations matching cond (a table of key = value,
or a function(cfg) -> boolean) by the product with sub; the others pass unchanged. Axis names within one
product{} are taken in sorted order, so the order of configurations never depends on table iteration.
Duplicate configurations (same canonical JSON) are dropped, keeping the first.
]]
local json = require "rotlab.json"

local grid = {}
local Grid = {}
Grid.__index = Grid

local function new(list) return setmetatable({ list = list }, Grid) end

local function copy(t)
  local r = {}
  for k, v in pairs(t) do r[k] = v end
  return r
end

local function check_axes(axes, fname)
  if type(axes) ~= "table" then
    error(("bad argument #1 to '%s' (expected a table of name = {values...}, got %s)"):format(fname, type(axes)), 3)
  end
  local names = {}
  for k, v in pairs(axes) do
    if type(k) ~= "string" then error(("bad argument #1 to '%s' (axis names must be strings)"):format(fname), 3) end
    if type(v) ~= "table" or #v == 0 then
      error(("bad argument #1 to '%s' (axis '%s' must be a non-empty list of values)"):format(fname, k), 3)
    end
    names[#names + 1] = k
  end
  table.sort(names)
  return names
end

-- Cartesian product of named axes.
function grid.product(axes)
  local names = check_axes(axes, "product")
  local list = { {} }
  for _, name in ipairs(names) do
    local out = {}
    for _, base in ipairs(list) do
      for _, v in ipairs(axes[name]) do
        local c = copy(base)
        c[name] = v
        out[#out + 1] = c
      end
    end
    list = out
  end
  return new(list)
end

-- Zipped axes: the i-th configuration takes the i-th value of every axis.
function grid.zip(axes)
  local names = check_axes(axes, "zip")
  local n = #axes[names[1]]
  for _, name in ipairs(names) do
    if #axes[name] ~= n then
      error(("bad argument #1 to 'zip' (axis '%s' has %d values, axis '%s' has %d)"):format(
        name, #axes[name], names[1], n), 2)
    end
  end
  local list = {}
  for i = 1, n do
    local c = {}
    for _, name in ipairs(names) do c[name] = axes[name][i] end
    list[i] = c
  end
  return new(list)
end

-- An explicit list of configurations.
function grid.list(configs)
  if type(configs) ~= "table" then error("bad argument #1 to 'list' (expected a list of tables)", 2) end
  local list = {}
  for i, c in ipairs(configs) do
    if type(c) ~= "table" then error(("bad argument #1 to 'list' (entry %d is not a table)"):format(i), 2) end
    list[i] = copy(c)
  end
  return new(list)
end

local function matcher(cond)
  if type(cond) == "function" then return cond end
  if type(cond) ~= "table" then error("bad argument #1 to 'when' (expected a table of key = value or a function)", 3) end
  return function(c)
    for k, v in pairs(cond) do
      if c[k] ~= v then return false end
    end
    return true
  end
end

-- A conditional extension: applied in a product, it extends only the matching configurations.
function grid.when(cond, sub)
  if getmetatable(sub) ~= Grid then error("bad argument #2 to 'when' (expected a grid)", 2) end
  return setmetatable({ cond = matcher(cond), sub = sub }, Grid)
end

local function product2(a, b)
  local out = {}
  for _, ca in ipairs(a.list) do
    if b.cond then
      if b.cond(ca) then
        for _, cb in ipairs(b.sub.list) do
          local c = copy(ca)
          for k, v in pairs(cb) do c[k] = v end
          out[#out + 1] = c
        end
      else
        out[#out + 1] = copy(ca)
      end
    else
      for _, cb in ipairs(b.list) do
        local c = copy(ca)
        for k, v in pairs(cb) do c[k] = v end
        out[#out + 1] = c
      end
    end
  end
  return new(out)
end

Grid.__mul = function(a, b)
  if getmetatable(a) ~= Grid or getmetatable(b) ~= Grid then error("grid product: both sides must be grids", 2) end
  if a.cond then error("grid product: a conditional grid.when(...) must be on the right of *", 2) end
  return product2(a, b)
end

Grid.__add = function(a, b)
  if getmetatable(a) ~= Grid or getmetatable(b) ~= Grid or a.cond or b.cond then
    error("grid union: both sides must be (unconditional) grids", 2)
  end
  local out = {}
  for _, c in ipairs(a.list) do out[#out + 1] = copy(c) end
  for _, c in ipairs(b.list) do out[#out + 1] = copy(c) end
  return new(out)
end

-- The configurations, duplicates removed (first kept).
function Grid:configs()
  if self.cond then error("a conditional grid.when(...) has no configurations of its own; use it in a product", 2) end
  local seen, out = {}, {}
  for _, c in ipairs(self.list) do
    local key = json.encode(c)
    if not seen[key] then
      seen[key] = true
      out[#out + 1] = copy(c)
    end
  end
  return out
end

function Grid:__len() return #self:configs() end

-- The stable id of one run: a hash of (experiment, canonical config, seed, fold) -- the results DB's own key.
function grid.run_key(experiment, config, seed, fold)
  return require("db.results").run_key(experiment, json.encode(config), seed, fold)
end

grid.Grid = Grid
return grid
