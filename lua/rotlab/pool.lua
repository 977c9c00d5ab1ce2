--[[
rotlab.pool -- every set pooling as rl.pool.<name>{options}. The constructors are C functions registered by the
binding as core.pool_<name> (from any binding file), so new poolings appear here without editing this file.
  rl.pool.list()            -> sorted list of the pooling names
  rl.pool.make(name, opts)  -> rl.pool[name](opts), with an error naming the known poolings for an unknown name
]]
local core = require "rotlab.core"

local pool = {}
local names = {}

for k, v in pairs(core) do
  if type(k) == "string" and k:find("^pool_") then
    local name = k:sub(6)
    pool[name] = v
    names[#names + 1] = name
  end
end
table.sort(names)

function pool.list()
  return { table.unpack(names) }
end

function pool.make(name, opts)
  if type(name) ~= "string" then
    error(("bad argument #1 to 'make' (expected a pooling name, got %s)"):format(type(name)), 2)
  end
  local ctor = core["pool_" .. name]
  if ctor == nil then
    error(("bad argument #1 to 'make' (unknown pooling '%s'; known poolings: %s)"):format(name,
      table.concat(names, ", ")), 2)
  end
  local m = ctor(opts)
  return m
end

return pool
