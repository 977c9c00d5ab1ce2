--[[
rotlab.gradcheck -- finite-difference checks of a module's backward (meant for the double build).
  local gc = require "rotlab.gradcheck"
  local worst = gc.module(m, input, {eps = 1e-6, seed = 1, params = true, input = true})
  -- worst = { {what = "input" | param name, err = max |analytic - numeric| / max(1e-3, max |numeric|)}, ... }
The scalar checked is L = <W, forward(input)> with a fixed random W; the analytic gradient is backward(input, W).
]]
local core = require "rotlab.core"

local gc = {}

local function values_of(x)
  if type(x) == "userdata" and x.values then return x:values() end
  return x
end

local function out_values(y) return values_of(y) end

-- Central-difference gradient of f() w.r.t. every element of tensor t (modified in place, then restored).
local function numeric(f, t, eps)
  local g = core.zeros(t:size())
  for i = 1, t:size() do
    local v = t:get(i)
    t:set(i, v + eps)
    local fp = f()
    t:set(i, v - eps)
    local fm = f()
    t:set(i, v)
    g:set(i, (fp - fm) / (2 * eps))
  end
  return g
end

local function rel_err(a, n)
  local scale = math.max(1e-3, math.max(math.abs(n:max()), math.abs(n:min())))
  return a:maxdiff(n) / scale
end

function gc.module(m, input, opts)
  opts = opts or {}
  local eps = opts.eps or 1e-6
  local rng = core.rng(opts.seed or 1)
  local y = m:forward(input)
  local yv = out_values(y)
  local W = core.randn(rng, table.unpack(yv:shape()))
  local function loss() return out_values(m:forward(input)):dot(W) end

  m:zero_grad()
  m:forward(input)
  local gx = m:backward(input, W)
  local analytic = {}
  for _, p in ipairs(m:parameters()) do analytic[p.name] = p.grad:clone() end

  local results = {}
  if opts.input ~= false then
    local x = values_of(input)
    results[#results + 1] = { what = "input", err = rel_err(gx, numeric(loss, x, eps)) }
  end
  if opts.params ~= false then
    for _, p in ipairs(m:parameters()) do
      if not (opts.skip and opts.skip[p.name]) then
        results[#results + 1] = { what = p.name, err = rel_err(analytic[p.name], numeric(loss, p.value, eps)) }
      end
    end
  end
  return results
end

-- Runs gc.module and reports one TAP line per checked tensor.
function gc.check(t, m, input, label, opts)
  opts = opts or {}
  local tol = opts.tol or 1e-6
  for _, r in ipairs(gc.module(m, input, opts)) do
    t:ok(r.err <= tol, ("%s: d/d%s matches finite differences (rel err %.2e)"):format(label, r.what, r.err),
      ("relative error %.3e > tolerance %.1e"):format(r.err, tol))
  end
end

return gc
