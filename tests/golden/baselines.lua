--[[
tests/golden/baselines.lua -- runs the golden cases of baselines.h5 (golden/README.md section 3: the authors'
baseline layers in PyTorch, float64 and float32) through the rotlab baseline poolings in compat = "reference"
mode. Shared by tests/baselines_golden.t (double build) and tests/baselines_golden_float.t (float build).
  local run = dofile(dir .. "/golden/baselines.lua")
  run(t, rl, {file = path, pooled = "outputs/pooled" | "float32/pooled", grad = "grad/" | "float32/grad/",
             tol_out = ..., tol_grad = ...}) -> number of cases run
For each case: the layer is built from the case attributes, every parameter is set from params/<name> (the
reference state-dict names are ours), the input is inputs/x_rows with offsets from inputs/sizes; the pooled output
and the gradients of L = sum(loss/W * pooled) w.r.t. x_rows and every parameter are compared, each relative to
the largest |value| of the reference array. AttentionPooling belongs to rl.pool.attention, not to this file.
]]

-- module attribute -> our pooling name and its options from the case attributes
local LAYERS = {
  MixedPooling = function(a) return "mixed", { dim = a.D } end,
  GatedPooling = function(a) return "gated_mixed", { dim = a.ctor_dim } end,
  DeepSet = function(a) return "deepset", { dim = a.ctor_d, hidden = a.ctor_h } end,
  Set2Set = function(a) return "set2set", { dim = a.ctor_in_channels, steps = a.ctor_processing_steps } end,
  GatedAttentionPooling = function(a) return "gated_attention", { dim = a.ctor_d, hidden = a.ctor_h } end,
  DynamicPooling = function(a) return "dynamic", { dim = a.ctor_d, k = a.ctor_k } end,
  GeneralizedNormPooling = function(a) return "gnp", { dim = a.ctor_d } end,
}

local function relerr(got, want)
  local scale = math.max(math.abs(want:max()), math.abs(want:min()))
  local d = got:maxdiff(want)
  if scale == 0 then return d end
  return d / scale
end

return function(t, rl, opts)
  local file = opts.file
  local function names(group) -- rl.h5.list gives {name =, kind =} entries
    local out = {}
    for _, e in ipairs(rl.h5.list(file, group)) do out[#out + 1] = e.name end
    table.sort(out)
    return out
  end
  local cases = names("/")
  local ran = 0
  for _, case in ipairs(cases) do
    local attrs = rl.h5.attrs(file, case)
    local layer = LAYERS[attrs.module]
    if layer then
      ran = ran + 1
      local name, o = layer(attrs)
      o.compat = "reference"
      local ctor = (rl.pool and rl.pool[name]) or rl.core["pool_" .. name]
      local m = ctor(o)
      for _, p in ipairs(m:parameters()) do
        m:set_param(p.name, rl.h5.read(file, case .. "/params/" .. p.name))
      end
      local sizes = rl.h5.read_int(file, case .. "/inputs/sizes")
      local offsets = { 0 }
      for i, n in ipairs(sizes) do offsets[i + 1] = offsets[i] + n end
      local batch = rl.sets(rl.h5.read(file, case .. "/inputs/x_rows"), offsets)

      local y = m:forward(batch)
      local e = relerr(y, rl.h5.read(file, case .. "/" .. opts.pooled))
      t:ok(e <= opts.tol_out, ("%s (%s): pooled output, rel err %.2e"):format(case, name, e),
        ("tolerance %.0e"):format(opts.tol_out))

      m:zero_grad()
      local gx = m:backward(batch, rl.h5.read(file, case .. "/loss/W"))
      local grads = { { "x_rows", gx } }
      for _, p in ipairs(m:parameters()) do grads[#grads + 1] = { p.name, m:grad(p.name) } end
      local worst, worst_name, lines = 0, "", {}
      for _, g in ipairs(grads) do
        local ge = relerr(g[2], rl.h5.read(file, case .. "/" .. opts.grad .. g[1]))
        lines[#lines + 1] = ("%s %.2e"):format(g[1], ge)
        if not (ge <= worst) then worst, worst_name = ge, g[1] end
      end
      t:ok(worst <= opts.tol_grad,
        ("%s (%s): %d gradient arrays, worst rel err %.2e (%s)"):format(case, name, #grads, worst, worst_name),
        table.concat(lines, "\n"))

      -- every stored parameter is one of ours (names map one to one)
      local ours = {}
      for _, p in ipairs(m:parameters()) do ours[p.name] = true end
      local stored = #m:parameters() > 0 and names(case .. "/params") or {}
      local missing = {}
      for _, n in ipairs(stored) do if not ours[n] then missing[#missing + 1] = n end end
      t:ok(#stored == #m:parameters() and #missing == 0,
        ("%s (%s): the %d stored parameters are exactly ours"):format(case, name, #stored),
        "not ours: " .. table.concat(missing, ", "))
    end
  end
  return ran
end
