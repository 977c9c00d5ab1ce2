--[[
rotlab.nn -- layers and losses. The layers are C modules (rotlab.core); Sequential is composed here.
]]
local core = require "rotlab.core"

local nn = {}

-- Sequential{m1, m2, ...}: forward runs the modules in order, backward in reverse, keeping the intermediate
-- outputs of the last forward. Children can be C modules or other Sequentials.
local Sequential = {}
Sequential.__index = Sequential
Sequential.__name = "rotlab.Sequential"

function nn.Sequential(mods)
  if type(mods) ~= "table" then
    error("bad argument #1 to 'Sequential' (expected a list of modules, got " .. type(mods) .. ")", 2)
  end
  for i, m in ipairs(mods) do
    if (type(m) ~= "userdata" and type(m) ~= "table") or m.forward == nil or m.backward == nil then
      error(("bad argument #1 to 'Sequential' (entry %d is not a module)"):format(i), 2)
    end
  end
  return setmetatable({ modules = { table.unpack(mods) }, outputs = {} }, Sequential)
end

function Sequential:forward(x)
  local outs = { [0] = x }
  for i, m in ipairs(self.modules) do
    outs[i] = m:forward(outs[i - 1])
  end
  self.outputs = outs
  return outs[#self.modules]
end

function Sequential:backward(x, grad, need_input_grad)
  local outs = self.outputs
  if outs[0] ~= x then
    error("Sequential: backward input is not the input of the last forward", 2)
  end
  for i = #self.modules, 1, -1 do
    local need = i > 1 or need_input_grad ~= false
    grad = self.modules[i]:backward(outs[i - 1], grad, need)
  end
  return grad
end

function Sequential:parameters()
  local ps = {}
  for i, m in ipairs(self.modules) do
    for _, p in ipairs(m:parameters()) do
      ps[#ps + 1] = { name = i .. "." .. p.name, value = p.value, grad = p.grad, module = p.module }
    end
  end
  return ps
end

function Sequential:zero_grad()
  for _, m in ipairs(self.modules) do m:zero_grad() end
  return self
end

function Sequential:train(on)
  for _, m in ipairs(self.modules) do m:train(on) end
  return self
end

function Sequential:eval()
  for _, m in ipairs(self.modules) do m:eval() end
  return self
end

function Sequential:kind() return "sequential" end

function Sequential:__tostring()
  local kinds = {}
  for i, m in ipairs(self.modules) do kinds[i] = m:kind() end
  return "rotlab.Sequential{" .. table.concat(kinds, ", ") .. "}"
end

-- C constructors (Linear, ReLU, ..., losses) are exported by the binding under core.nn_*.
for k, v in pairs(core) do
  if type(k) == "string" and k:find("^nn_") then nn[k:sub(4)] = v end
end

return nn
