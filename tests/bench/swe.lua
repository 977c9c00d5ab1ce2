--[[
bench/swe.lua -- SWE / C-SWE at the ModelNet setting (batch 64 sets of 512 points, dim 256, M = 512 references):
  eval forward (plain embedding), training forward with soft SWGG (duals > 0, so the Lagrangian gradient is built
  too), and a full C-SWE training step (forward + backward + dual/slack step), median milliseconds, for
  L in {4, 16, 64}; peak resident memory at the end. The authors' PyTorch code (2 cores, float): eval 20 / 38 / 154
  ms; training forward 7.5 s (L = 4), 29 s (L = 16); forward + backward 13 s (L = 4).
  Options (key=value on the command line): sets=64 points=512 dim=256 refs=512 slices=4,16,64 repeats=5
]]
local rl = require "rotlab"
local util = dofile((arg and arg[0] and arg[0]:match("^(.*)/[^/]*$") or "tests/bench") .. "/util.lua")

local opt = { sets = 64, points = 512, dim = 256, refs = 512, slices = "4,16,64", repeats = 5, soft = "lapsum,softsort" }
for _, a in ipairs(arg or {}) do
  local k, v = a:match("^([%w_]+)=(.*)$")
  if k then opt[k] = tonumber(v) or v end
end
local function list(s)
  local t = {}
  for x in tostring(s):gmatch("[^,]+") do t[#t + 1] = tonumber(x) or x end
  return t
end

local g = rl.rng(1)
local B, N, D, M = opt.sets, opt.points, opt.dim, opt.refs
local offsets = {}
for b = 0, B do offsets[#offsets + 1] = b * N end
local x = rl.sets(rl.randn(g, B * N, D), offsets)

print(("swe bench (%s build): %d sets x %d points, dim %d, refs %d, median of %d"):format(rl.real, B, N, D, M,
  opt.repeats))
print(("%-9s %5s %10s %14s %14s %10s"):format("soft", "L", "eval ms", "train fwd ms", "train step ms", "peak MB"))
for _, soft in ipairs(list(opt.soft)) do
  for _, L in ipairs(list(opt.slices)) do
    local layer = rl.pool.cswe{ dim = D, slices = L, refs = M, soft = soft, eps = 1.0, rng = g }
    layer:set_dual(rl.full(0.5, L)) -- duals > 0: the training forward also builds the Lagrangian gradient
    layer:eval()
    local eval_ms = util.median_ms(function() layer:forward(x) end, opt.repeats)
    layer:train()
    local y = layer:forward(x)
    local gy = rl.randn(g, table.unpack(y:shape()))
    local fwd_ms = util.median_ms(function() layer:forward(x) end, opt.repeats)
    local step_ms = util.median_ms(function()
      layer:zero_grad()
      layer:forward(x)
      layer:backward(x, gy)
      layer:dual_step()
      layer:set_dual(rl.full(0.5, L))
    end, opt.repeats)
    print(("%-9s %5d %10.1f %14.1f %14.1f %10.0f"):format(soft, L, eval_ms, fwd_ms, step_ms, util.peak_rss_mb()))
    layer:free()
    collectgarbage()
  end
end
