--[[
rotlab.pool -- pooling layers: the C constructors exported by the binding under core.pool_* (rl.pool.swe, ...).
]]
local core = require "rotlab.core"

local pool = {}
for k, v in pairs(core) do
  if type(k) == "string" and k:find("^pool_") then pool[k:sub(6)] = v end
end

return pool
