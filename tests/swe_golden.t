#!/usr/bin/env rotlab-double
-- SWE / C-SWE and the LapSum soft permutation against the golden vectors of the authors' code (cswe.h5, lapsum.h5;
-- golden/README.md sections 4-5), with compat = "reference". Every array of every case is compared, relative to the
-- largest |value| of the array: rtol 1e-6 in the double build (float64 references); in the float build (run by
-- tests/swe_golden_float.t) against the float32 references with rtol 1e-3 for outputs and 1e-2 for gradients.
local rl = require "rotlab"
local t = require("rotlab.tap")()

local here = (arg and arg[0] or "tests/swe_golden.t"):match("^(.*)/[^/]*$") or "."
local CSWE, LAPSUM = here .. "/golden/cswe.h5", here .. "/golden/lapsum.h5"
local float = rl.real == "float"
local RTOL_OUT, RTOL_GRAD = 1e-6, 1e-6
if float then RTOL_OUT, RTOL_GRAD = 1e-3, 1e-2 end

-- The reference array of a case: float64 results, or the float32 rerun in the float build (cswe.h5 keeps it
-- under case/float32/<sub>/, lapsum.h5 under case/<sub>/float32/).
local function ref(file, case, sub, name)
  if not float then return rl.h5.read(file, case .. "/" .. sub .. "/" .. name) end
  if file == CSWE then return rl.h5.read(file, case .. "/float32/" .. sub .. "/" .. name) end
  return rl.h5.read(file, case .. "/" .. sub .. "/float32/" .. name)
end

local worst = { out = 0, grad = 0 }
local function compare(got, want, tol, label, kind)
  local scale = math.max(want:max(), -want:min())
  local err = got:size() == want:size() and got:maxdiff(want:reshape(table.unpack(got:shape()))) / scale or math.huge
  worst[kind] = math.max(worst[kind], err)
  t:ok(err <= tol, ("%s (rel err %.2e)"):format(label, err),
    ("relative error %.3e > %.1e (shape %s vs %s)"):format(err, tol, table.concat(got:shape(), "x"),
      table.concat(want:shape(), "x")))
end

-- ------------------------------------------------------------------------------------------------ C-SWE layers
local cases = {}
for _, m in ipairs(rl.h5.list(CSWE)) do
  if m.kind == "group" then cases[#cases + 1] = m.name end
end
table.sort(cases)
t:ok(#cases == 5, ("cswe.h5 has the 5 documented cases (found %d)"):format(#cases))

for _, case in ipairs(cases) do
  local a = rl.h5.attrs(CSWE, case)
  local B, N, d, L, M = a.B, a.N, a.d_in, a.L, a.M
  local X = rl.h5.read(CSWE, case .. "/inputs/X"):reshape(B * N, d)
  local offsets = {}
  for b = 0, B do offsets[#offsets + 1] = b * N end
  local x = rl.sets(X, offsets)
  local has_train = rl.h5.exists(CSWE, case .. "/train")
  local eps = has_train and rl.h5.attrs(CSWE, case .. "/train").eps or 0
  local layer = rl.pool.cswe{ dim = d, slices = L, refs = M, output = "reference", compat = "reference",
    tau = a.tau_aggregation, temperature = a.alpha_lapsum_effective, lr_dual = a.dual_lr, eps = eps }
  local function P(name) return rl.h5.read(CSWE, case .. "/params/" .. name) end
  layer:set_param("theta", P("theta_weight_v"))
  layer:set_param("reference", P("reference"))
  layer:set_param("weight", P("weight_weight"))
  local W = rl.h5.read(CSWE, case .. "/eval/W")

  local function check_grads(sub, gx)
    local label = case .. " " .. sub
    compare(gx, ref(CSWE, case, sub, "grad/X"), RTOL_GRAD, label .. ": d/dX", "grad")
    compare(layer:grad("reference"), ref(CSWE, case, sub, "grad/reference"), RTOL_GRAD, label .. ": d/dreference",
      "grad")
    compare(layer:grad("theta"), ref(CSWE, case, sub, "grad/theta_weight_v"), RTOL_GRAD, label .. ": d/dtheta", "grad")
    compare(layer:grad("weight"), ref(CSWE, case, sub, "grad/weight_weight"), RTOL_GRAD, label .. ": d/dweight",
      "grad")
  end

  -- eval: the embedding (N = M, or interpolated when N != M) and its gradient for L = <W, embedding>
  layer:eval()
  layer:set_dual(P("lambdas"))
  layer:zero_grad()
  local y = layer:forward(x)
  compare(y, ref(CSWE, case, "eval", "embedding"), RTOL_OUT, case .. " eval: embedding", "out")
  check_grads("eval", layer:backward(x, W))

  if has_train then
    -- training: soft and hard SWGG per slice, the in-forward dual update, and the gradient of
    -- L = <W, embedding> + sum_l lambda_before[l] soft_l
    layer:train()
    layer:set_dual(rl.h5.read(CSWE, case .. "/train/lambdas_before"))
    layer:zero_grad()
    y = layer:forward(x)
    local sw = layer:swgg()
    compare(y, ref(CSWE, case, "train", "embedding"), RTOL_OUT, case .. " train: embedding", "out")
    compare(sw.soft, ref(CSWE, case, "train", "dists_soft"), RTOL_OUT, case .. " train: soft SWGG per slice", "out")
    compare(sw.hard, ref(CSWE, case, "train", "dists_hard"), RTOL_OUT, case .. " train: hard SWGG per slice", "out")
    compare(layer:dual(), ref(CSWE, case, "train", "lambdas_after"), RTOL_OUT, case .. " train: duals after update",
      "out")
    check_grads("train", layer:backward(x, W))
  end
end

-- ------------------------------------------------------------------------------------------------ LapSum
local lcases = {}
for _, m in ipairs(rl.h5.list(LAPSUM)) do
  if m.kind == "group" then lcases[#lcases + 1] = m.name end
end
table.sort(lcases)
t:ok(#lcases == 5, ("lapsum.h5 has the 5 documented cases (found %d)"):format(#lcases))

for _, case in ipairs(lcases) do
  local desc = rl.h5.attrs(LAPSUM, case).descending and true or false
  local r = rl.h5.read(LAPSUM, case .. "/r")
  local V = rl.h5.read(LAPSUM, case .. "/V")
  local Bv, n = r:size(1), r:size(2)
  local eye = rl.zeros(n, n)
  for i = 1, n do eye:set(i, i, 1) end
  local subs = {}
  for _, m in ipairs(rl.h5.list(LAPSUM, case)) do
    if m.kind == "group" and m.name:match("^alpha_%d+$") then subs[#subs + 1] = m.name end
  end
  table.sort(subs)
  for _, sub in ipairs(subs) do
    local alpha = rl.h5.attrs(LAPSUM, case .. "/" .. sub).alpha
    local opts = { method = "lapsum", temperature = alpha, descending = desc }
    local label = ("%s %s (alpha %g)"):format(case, sub, alpha)
    compare(rl.soft_perm(r, opts), ref(LAPSUM, case, sub, "P"), RTOL_OUT, label .. ": P", "out")
    -- gradient of sum V .* P w.r.t. r: the backward of <G, P X> with X = I, G = V (one problem per row of r)
    local grad = rl.zeros(Bv, n)
    local rows, vrows = r:totable(), V:totable()
    for b = 1, Bv do
      local g = rl.soft_perm_backward(rl.tensor(rows[b]), eye, rl.tensor(vrows[b]), opts)
      for i = 1, n do grad:set(b, i, g:get(i)) end
    end
    compare(grad, ref(LAPSUM, case, sub, "grad_r"), RTOL_GRAD, label .. ": d(sum V P)/dr", "grad")
  end
end

t:diag(("worst relative error: outputs %.2e, gradients %.2e (%s build)"):format(worst.out, worst.grad, rl.real))
os.exit(t:done())
