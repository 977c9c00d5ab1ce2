#!/usr/bin/env rotlab-double
-- Optimizers (SGD, Adam, AdamW), schedulers (StepLR, cosine warm restarts) and gradient clipping against PyTorch's
-- formulas written out here in plain Lua, literal values worked out by hand, a real minimisation, and error paths.
local rl = require "rotlab"
local t = require("rotlab.tap")()

-- The C code and the Lua references differ only by rounding: of doubles in the double build (the one this test is
-- written for), of the stored floats when run with the float build.
local TOL = rl.real == "double" and 1e-12 or 1e-6

-- ---------------------------------------------------------------- helpers

local function param(name, values)
  local v = rl.tensor(values)
  return { name = name, value = v, grad = rl.zeros(#values) }
end

local function set_grad(p, g)
  for i = 1, #g do p.grad:set(i, g[i]) end
end

local function max_abs_diff(tensor, list)
  local m = 0
  for i = 1, #list do m = math.max(m, math.abs(tensor:get(i) - list[i])) end
  return m
end

-- Gradient of f(w) = sum_i 0.5 a_i (w_i - c_i)^2, so that the gradient depends on the parameter.
local A, C = { 1.0, 3.0, 0.5 }, { 0.5, -1.0, 2.0 }
local function quad_grad(w)
  local g = {}
  for i = 1, #w do g[i] = A[i] * (w[i] - C[i]) end
  return g
end

-- ---------------------------------------------------------------- PyTorch references, plain Lua

-- torch.optim.SGD, _single_tensor_sgd: d_p = grad + wd*p; buf = clone(d_p) the first time, else
-- buf.mul_(momentum).add_(d_p, alpha=1-dampening); d_p = nesterov and d_p + momentum*buf or buf; p.add_(d_p, alpha=-lr)
local function ref_sgd(w, cfg, steps)
  w = { table.unpack(w) }
  local buf, traj = nil, {}
  for _ = 1, steps do
    local g = quad_grad(w)
    local d = {}
    for i = 1, #w do d[i] = g[i] + (cfg.weight_decay or 0) * w[i] end
    if (cfg.momentum or 0) ~= 0 then
      if buf == nil then
        buf = { table.unpack(d) }
      else
        for i = 1, #w do buf[i] = buf[i] * cfg.momentum + (1 - (cfg.dampening or 0)) * d[i] end
      end
      for i = 1, #w do d[i] = cfg.nesterov and d[i] + cfg.momentum * buf[i] or buf[i] end
    end
    for i = 1, #w do w[i] = w[i] - cfg.lr * d[i] end
    traj[#traj + 1] = { table.unpack(w) }
  end
  return traj
end

-- torch.optim.Adam / AdamW, _single_tensor_adam: (AdamW: p.mul_(1 - lr*wd); Adam: grad = grad + wd*p);
-- exp_avg.lerp_(grad, 1-b1); exp_avg_sq.mul_(b2).addcmul_(grad, grad, 1-b2); step_size = lr / (1 - b1^t);
-- denom = (max_or_v).sqrt() / sqrt(1 - b2^t) + eps; p.addcdiv_(exp_avg, denom, value=-step_size)
local function ref_adam(w, cfg, grads, steps)
  w = { table.unpack(w) }
  local b1, b2 = cfg.betas[1], cfg.betas[2]
  local m, v, vmax, traj = {}, {}, {}, {}
  for i = 1, #w do m[i], v[i], vmax[i] = 0, 0, 0 end
  for step = 1, steps do
    local g = grads(w, step)
    for i = 1, #w do
      if cfg.decoupled then
        w[i] = w[i] * (1 - cfg.lr * cfg.weight_decay)
      else
        g[i] = g[i] + cfg.weight_decay * w[i]
      end
      m[i] = m[i] + (g[i] - m[i]) * (1 - b1)
      v[i] = v[i] * b2 + (1 - b2) * g[i] * g[i]
      local bc1, bc2 = 1 - b1 ^ step, 1 - b2 ^ step
      local denom
      if cfg.amsgrad then
        vmax[i] = math.max(vmax[i], v[i])
        denom = math.sqrt(vmax[i]) / math.sqrt(bc2) + cfg.eps
      else
        denom = math.sqrt(v[i]) / math.sqrt(bc2) + cfg.eps
      end
      w[i] = w[i] - (cfg.lr / bc1) * m[i] / denom
    end
    traj[#traj + 1] = { table.unpack(w) }
  end
  return traj
end

-- Runs an optimizer for `steps` steps on parameter p with gradient grads(w, step); returns the trajectory.
local function run(opt, p, grads, steps)
  local traj = {}
  for step = 1, steps do
    set_grad(p, grads(p.value:totable(), step))
    opt:step()
    traj[step] = p.value:totable()
  end
  return traj
end

local function compare(traj, ref, name)
  for k = 1, #ref do
    local d = 0
    for i = 1, #ref[k] do d = math.max(d, math.abs(traj[k][i] - ref[k][i])) end
    t:ok(d <= TOL, ("%s: step %d matches the PyTorch formula"):format(name, k), ("max |diff| = %g"):format(d))
  end
end

local W0 = { 1.0, -2.0, 0.25 }

-- ---------------------------------------------------------------- SGD

do -- hand-worked: momentum 0.9, lr 0.1, constant grad 1: buf 1, 1.9, 2.71 -> p -0.1, -0.29, -0.561
  local p = param("w", { 0 })
  local opt = rl.optim.sgd({ p }, { lr = 0.1, momentum = 0.9 })
  local traj = run(opt, p, function() return { 1 } end, 3)
  t:near(traj[1][1], -0.1, TOL, "sgd momentum by hand: step 1 = -0.1")
  t:near(traj[2][1], -0.29, TOL, "sgd momentum by hand: step 2 = -0.29")
  t:near(traj[3][1], -0.561, TOL, "sgd momentum by hand: step 3 = -0.561")
  t:is(opt.steps, 3, "opt.steps counts the steps")
  t:is(p.grad:get(1), 1.0, "step does not zero the gradient")
end

do -- hand-worked Nesterov: g + 0.9 buf = 1.9, 2.71, 3.439 -> p -0.19, -0.461, -0.8049
  local p = param("w", { 0 })
  local opt = rl.optim.sgd({ p }, { lr = 0.1, momentum = 0.9, nesterov = true })
  local traj = run(opt, p, function() return { 1 } end, 3)
  t:near(traj[1][1], -0.19, TOL, "nesterov by hand: step 1 = -0.19")
  t:near(traj[2][1], -0.461, TOL, "nesterov by hand: step 2 = -0.461")
  t:near(traj[3][1], -0.8049, TOL, "nesterov by hand: step 3 = -0.8049")
end

do -- hand-worked dampening 0.5 (not applied on step 1): buf 1, 1.4, 1.76 -> p -0.1, -0.24, -0.416
  local p = param("w", { 0 })
  local opt = rl.optim.sgd({ p }, { lr = 0.1, momentum = 0.9, dampening = 0.5 })
  local traj = run(opt, p, function() return { 1 } end, 3)
  t:near(traj[2][1], -0.24, TOL, "dampening by hand: step 2 = -0.24")
  t:near(traj[3][1], -0.416, TOL, "dampening by hand: step 3 = -0.416")
end

for _, case in ipairs {
  { name = "sgd plain", cfg = { lr = 0.1 } },
  { name = "sgd weight decay", cfg = { lr = 0.1, weight_decay = 0.05 } },
  { name = "sgd momentum+dampening+wd", cfg = { lr = 0.05, momentum = 0.8, dampening = 0.3, weight_decay = 0.01 } },
  { name = "sgd nesterov+wd", cfg = { lr = 0.05, momentum = 0.9, nesterov = true, weight_decay = 0.02 } },
} do
  local p = param("w", W0)
  local opt = rl.optim.sgd({ p }, case.cfg)
  compare(run(opt, p, quad_grad, 3), ref_sgd(W0, case.cfg, 3), case.name)
end

do -- nesterov differs from heavy-ball momentum
  local p1, p2 = param("w", W0), param("w", W0)
  run(rl.optim.sgd({ p1 }, { lr = 0.05, momentum = 0.9 }), p1, quad_grad, 2)
  run(rl.optim.sgd({ p2 }, { lr = 0.05, momentum = 0.9, nesterov = true }), p2, quad_grad, 2)
  t:ok(p1.value:maxdiff(p2.value) > 1e-3, "nesterov and plain momentum give different iterates")
end

-- ---------------------------------------------------------------- Adam / AdamW

local function adam_cfg(over, decoupled)
  local c = { lr = 1e-3, betas = { 0.9, 0.999 }, eps = 1e-8, weight_decay = decoupled and 1e-2 or 0, amsgrad = false,
              decoupled = decoupled }
  for k, v in pairs(over) do c[k] = v end
  return c
end

local function grads_of(fn) return function(w) return fn(w) end end

for _, case in ipairs {
  { name = "adam defaults", kind = "adam", opts = {} },
  { name = "adam lr 0.1 betas (0.8, 0.99)", kind = "adam", opts = { lr = 0.1, betas = { 0.8, 0.99 } } },
  { name = "adam L2 weight decay", kind = "adam", opts = { lr = 0.1, weight_decay = 0.1 } },
  { name = "adam amsgrad", kind = "adam", opts = { lr = 0.1, amsgrad = true, eps = 1e-6 } },
  { name = "adamw defaults", kind = "adamw", opts = {} },
  { name = "adamw weight decay 0.1", kind = "adamw", opts = { lr = 0.1, weight_decay = 0.1 } },
  { name = "adamw amsgrad", kind = "adamw", opts = { lr = 0.05, amsgrad = true } },
} do
  local p = param("w", W0)
  local opt = rl.optim[case.kind]({ p }, case.opts)
  compare(run(opt, p, grads_of(quad_grad), 3), ref_adam(W0, adam_cfg(case.opts, case.kind == "adamw"),
    grads_of(quad_grad), 3), case.name)
end

do -- hand-worked: constant grad g gives m_hat = g and v_hat = g^2, so each step moves by lr g / (|g| + eps)
  local p = param("w", { 0 })
  local traj = run(rl.optim.adam({ p }, { lr = 0.1 }), p, function() return { 2 } end, 3)
  t:near(traj[1][1], -0.1 * 2 / (2 + 1e-8), TOL, "adam by hand: step 1 = -lr g/(g + eps)")
  t:near(traj[3][1], -0.29999999850000001, TOL, "adam by hand: step 3 = -0.3 * 2/(2 + 1e-8)")
end

do -- weight decay with a zero gradient: Adam's L2 term goes through the normalisation (a full lr step),
   -- AdamW only shrinks the parameter by 1 - lr wd
  local pa, pw = param("w", { 1 }), param("w", { 1 })
  run(rl.optim.adam({ pa }, { lr = 0.1, weight_decay = 0.01 }), pa, function() return { 0 } end, 1)
  run(rl.optim.adamw({ pw }, { lr = 0.1, weight_decay = 0.01 }), pw, function() return { 0 } end, 1)
  -- Adam: g = 0.01, m_hat = 0.01, sqrt(v_hat) = 0.01 -> 1 - 0.1 * 0.01 / (0.01 + 1e-8) = 1 - 0.1 / (1 + 1e-6)
  t:near(pa.value:get(1), 0.90000009999990000, TOL, "adam weight decay by hand: 1 -> 0.9000001")
  t:near(pw.value:get(1), 0.999, TOL, "adamw weight decay by hand: 1 -> 0.999")
  local pd = param("w", { 1 })
  run(rl.optim.adamw({ pd }), pd, function() return { 0 } end, 1)
  t:near(pd.value:get(1), 1 - 1e-3 * 1e-2, TOL, "adamw default weight_decay is 1e-2 (PyTorch)")
  local pz = param("w", { 1 })
  run(rl.optim.adam({ pz }), pz, function() return { 0 } end, 1)
  t:is(pz.value:get(1), 1.0, "adam default weight_decay is 0")
end

do -- amsgrad: grads 10, 0.1, 0.1 make v shrink; amsgrad keeps its maximum v1 = 0.001 * 100 = 0.1
  local seq = { 10, 0.1, 0.1 }
  local grads = function(_, step) return { seq[step] } end
  local p1, p2 = param("w", { 0 }), param("w", { 0 })
  local o1 = rl.optim.adam({ p1 }, { lr = 0.1, amsgrad = true })
  local o2 = rl.optim.adam({ p2 }, { lr = 0.1 })
  local t1, t2 = run(o1, p1, grads, 3), run(o2, p2, grads, 3)
  t:near(t1[1][1], t2[1][1], TOL, "amsgrad: identical first step")
  t:ok(math.abs(t1[3][1] - t2[3][1]) > 1e-5, "amsgrad: later steps differ from plain adam",
    ("%g vs %g"):format(t1[3][1], t2[3][1]))
  t:near(o1.state[1].max_exp_avg_sq:get(1), 0.1, TOL, "amsgrad keeps max v = 0.1 (from step 1)")
  t:ok(o1.state[1].exp_avg_sq:get(1) < 0.1, "the running v has decayed below the max")
  compare(t1, ref_adam({ 0 }, adam_cfg({ lr = 0.1, amsgrad = true }, false), grads, 3), "amsgrad decaying grads")
  t:is(o2.state[1].max_exp_avg_sq, nil, "no max buffer without amsgrad")
end

-- ---------------------------------------------------------------- optimizer object

do
  local p, q = param("a", { 1, 2 }), param("b", { 3 })
  local opt = rl.optim.sgd({ p, q }, { lr = 0.5 })
  set_grad(p, { 1, 1 })
  set_grad(q, { 2 })
  opt:step()
  t:ok(max_abs_diff(p.value, { 0.5, 1.5 }) < TOL and max_abs_diff(q.value, { 2 }) < TOL, "step updates every parameter")
  opt:zero_grad()
  t:ok(p.grad:norm() == 0 and q.grad:norm() == 0, "zero_grad zeroes every grad")
  t:is(opt:get_lr(), 0.5, "get_lr")
  opt:set_lr(0.25)
  t:is(opt:get_lr(), 0.25, "set_lr")
  set_grad(q, { 4 })
  opt:step()
  t:near(q.value:get(1), 1, TOL, "the new lr is used by the next step")
  t:is(opt.steps, 2, "steps after two updates")
  t:ok(tostring(opt):find("rotlab.optim.sgd", 1, true) ~= nil, "tostring names the optimizer")
  -- an optimizer copies betas: changing the caller's table later has no effect
  local betas = { 0.9, 0.999 }
  local o = rl.optim.adam({ param("c", { 0 }) }, { betas = betas })
  betas[1] = 5
  t:is(o.config.betas[1], 0.9, "adam keeps its own copy of betas")
end

-- ---------------------------------------------------------------- schedulers

do
  local opt = rl.optim.sgd({ param("w", { 0 }) }, { lr = 0.1 })
  local sch = rl.optim.step_lr(opt, { step_size = 10, gamma = 0.1 })
  t:is(opt:get_lr(), 0.1, "step_lr: epoch 0 keeps the base lr")
  for _, c in ipairs { { 9, 0.1 }, { 10, 0.01 }, { 19, 0.01 }, { 20, 0.001 }, { 35, 1e-4 } } do
    t:near(sch:lr_at(c[1]), c[2], 1e-17, ("step_lr at epoch %d = %g"):format(c[1], c[2]))
  end
  for _ = 1, 10 do sch:step() end
  t:near(opt:get_lr(), 0.01, 1e-17, "step_lr: ten sch:step() calls set the optimizer lr to 0.01")
  t:is(sch.epoch, 10, "step_lr: epoch counter")
  t:near(sch:step(25), 0.001, 1e-17, "step_lr: step(25) jumps to epoch 25")
  local sch2 = rl.optim.step_lr(rl.optim.sgd({ param("w", { 0 }) }, { lr = 1 }), { step_size = 3 })
  t:near(sch2:lr_at(6), 0.01, 1e-17, "step_lr: gamma defaults to 0.1")
end

do
  -- PyTorch's sequential CosineAnnealingWarmRestarts.step() (no epoch): T_cur += 1; restart when T_cur >= T_i
  local function ref_cosine_sequence(base, T_0, T_mult, eta_min, epochs)
    local out, T_cur, T_i = { [0] = base }, 0, T_0
    for e = 1, epochs do
      T_cur = T_cur + 1
      if T_cur >= T_i then T_cur, T_i = T_cur - T_i, T_i * T_mult end
      out[e] = eta_min + (base - eta_min) * (1 + math.cos(math.pi * T_cur / T_i)) / 2
    end
    return out
  end
  local opt = rl.optim.sgd({ param("w", { 0 }) }, { lr = 1 })
  local sch = rl.optim.cosine_warm_restarts(opt, { T_0 = 10, T_mult = 2 })
  t:is(opt:get_lr(), 1.0, "cosine: epoch 0 is the base lr")
  for _, c in ipairs {
    { 5, 0.5 }, { 9.999999, 0.0 }, { 10, 1.0 }, { 20, 0.5 }, { 29, 0.0061558297024311 }, { 30, 1.0 },
    { 40, 0.85355339059327 }, { 50, 0.5 },
    { 2.5, 0.85355339059327 }, { 69, 0.0015413331334360 }, { 70, 1.0 }, { 110, 0.5 },
  } do
    t:near(sch:lr_at(c[1]), c[2], 1e-10, ("cosine T_0=10 T_mult=2 at epoch %g = %g"):format(c[1], c[2]))
  end
  local ref = ref_cosine_sequence(1, 10, 2, 0, 80)
  local worst = 0
  for e = 1, 80 do worst = math.max(worst, math.abs(sch:step() - ref[e])) end
  t:ok(worst < TOL, "cosine: 80 sch:step() calls follow PyTorch's sequential T_cur/T_i updates",
    ("max |diff| = %g"):format(worst))
  t:is(opt:get_lr(), sch:get_lr(), "cosine: the scheduler sets the optimizer lr")

  local sch1 = rl.optim.cosine_warm_restarts(rl.optim.sgd({ param("w", { 0 }) }, { lr = 0.2 }),
    { T_0 = 10, eta_min = 0.1 })
  t:near(sch1:lr_at(5), 0.15, TOL, "cosine eta_min 0.1: epoch 5 is halfway between 0.2 and 0.1")
  t:near(sch1:lr_at(25), 0.15, TOL, "cosine T_mult defaults to 1: epoch 25 is again halfway")
  t:near(sch1:lr_at(20), 0.2, TOL, "cosine T_mult 1: restart at 20")
  local sch3 = rl.optim.cosine_warm_restarts(rl.optim.sgd({ param("w", { 0 }) }, { lr = 1 }), { T_0 = 1, T_mult = 3 })
  t:near(sch3:lr_at(121), 1.0, TOL, "cosine T_0=1 T_mult=3: restart exactly at 1+3+9+27+81 = 121")
  t:near(sch3:lr_at(40), 1.0, TOL, "cosine T_0=1 T_mult=3: restart at 40")
  t:near(sch3:lr_at(80.5), 0.5, TOL, "cosine T_0=1 T_mult=3: half of the 81-epoch cycle at 80.5")
  -- fractional epochs continue from where they are, as PyTorch's T_cur does after step(2.5)
  local sch4 = rl.optim.cosine_warm_restarts(rl.optim.sgd({ param("w", { 0 }) }, { lr = 1 }), { T_0 = 10 })
  sch4:step(2.5)
  t:near(sch4:step(), sch4:lr_at(3.5), TOL, "cosine: step() after step(2.5) goes to epoch 3.5")
end

-- ---------------------------------------------------------------- clipping

do
  local p, q = param("a", { 0, 0 }), param("b", { 0 })
  set_grad(p, { 3, 4 })
  set_grad(q, { 12 })
  local total = rl.optim.clip_grad_norm({ p, q }, 26)
  t:is(total, 13.0, "clip: total norm of (3, 4) and (12) is 13")
  t:ok(max_abs_diff(p.grad, { 3, 4 }) == 0 and q.grad:get(1) == 12, "clip: no scaling below max_norm")
  total = rl.optim.clip_grad_norm({ p, q }, 6.5)
  t:is(total, 13.0, "clip: returns the norm before clipping")
  local coef = 6.5 / (13 + 1e-6)
  t:ok(max_abs_diff(p.grad, { 3 * coef, 4 * coef }) < TOL and math.abs(q.grad:get(1) - 12 * coef) < TOL,
    "clip: every grad scaled by max_norm / (total + 1e-6)")
  t:near(math.sqrt(p.grad:dot(p.grad) + q.grad:dot(q.grad)), 6.5, 1e-6, "clip: clipped norm is max_norm")
  set_grad(p, { 0 / 0, 1 })
  local nan_total = rl.optim.clip_grad_norm({ p, q }, 1)
  t:ok(nan_total ~= nan_total, "clip: NaN norm is returned")
  t:ok(p.grad:get(2) == 1 and math.abs(q.grad:get(1) - 12 * coef) < TOL, "clip: nothing scaled when the norm is NaN")
  set_grad(p, { math.huge, 1 })
  t:is(rl.optim.clip_grad_norm({ p, q }, 1), math.huge, "clip: infinite norm is returned")
  t:is(p.grad:get(2), 1.0, "clip: nothing scaled when the norm is infinite")
  set_grad(p, { 1, 1 })
  rl.optim.clip_grad_norm({ p, q }, 0)
  t:ok(p.grad:norm() == 0 and q.grad:norm() == 0, "clip: max_norm 0 zeroes the grads")
end

-- ---------------------------------------------------------------- minimising a quadratic through a module

-- Least squares y = X w* + b* with a well-conditioned X; the optimizer only sees {name, value, grad}.
local X = rl.tensor { { 1, 0, 0 }, { 0, 1, 0 }, { 0, 0, 1 }, { 1, 1, 0 }, { 0, 1, 1 }, { 1, 0, 1 }, { 1, 1, 1 },
                      { -1, 0.5, 2 } }
local WSTAR, BSTAR = { 0.5, -1.5, 2.0 }, 0.25
local N = 8
local Y = rl.zeros(N, 1)
for r = 1, N do
  local s = BSTAR
  for j = 1, 3 do s = s + X:get(r, j) * WSTAR[j] end
  Y:set(r, 1, s)
end

-- Generic loop: forward(X) -> N x 1, loss = mean squared error, backward(grad of loss w.r.t. the output).
local function fit(model, make_opt, iters)
  local opt = make_opt(model:parameters())
  local first, last
  for _ = 1, iters do
    opt:zero_grad()
    local out = model:forward(X)
    local diff = out:clone():add(Y, -1)
    local loss = diff:dot(diff) / N
    first = first or loss
    last = loss
    model:backward(X, diff:scale(2 / N))
    opt:step()
  end
  return first, last, model:forward(X):maxdiff(Y)
end

-- A fake linear model from rl.zeros tensors (forward/backward by hand): parameters {weight (3), bias (1)}.
local function fake_linear()
  local w, gw, b, gb = rl.zeros(3), rl.zeros(3), rl.zeros(1), rl.zeros(1)
  local m = {}
  function m:parameters()
    return { { name = "weight", value = w, grad = gw }, { name = "bias", value = b, grad = gb } }
  end
  function m:forward(x)
    local out = rl.zeros(N, 1)
    for r = 1, N do
      local s = b:get(1)
      for j = 1, 3 do s = s + x:get(r, j) * w:get(j) end
      out:set(r, 1, s)
    end
    return out
  end
  function m:backward(x, gy)
    for r = 1, N do
      local g = gy:get(r, 1)
      for j = 1, 3 do gw:set(j, gw:get(j) + g * x:get(r, j)) end
      gb:set(1, gb:get(1) + g)
    end
  end
  return m
end

local makers = {
  { "sgd momentum", function(ps) return rl.optim.sgd(ps, { lr = 0.1, momentum = 0.9 }) end, 300 },
  { "sgd nesterov", function(ps) return rl.optim.sgd(ps, { lr = 0.1, momentum = 0.9, nesterov = true }) end, 300 },
  { "adam", function(ps) return rl.optim.adam(ps, { lr = 0.05 }) end, 1500 },
  { "adamw (wd 0)", function(ps) return rl.optim.adamw(ps, { lr = 0.05, weight_decay = 0 }) end, 1500 },
}
for _, mk in ipairs(makers) do
  local first, last, dev = fit(fake_linear(), mk[2], mk[3])
  t:ok(last < 1e-10 * first and dev < 1e-4, ("%s minimises a least-squares quadratic (parameter list of rl.zeros)")
    :format(mk[1]), ("loss %g -> %g, max |out - y| %g"):format(first, last, dev))
end
if rl.nn.Linear then
  for _, mk in ipairs(makers) do
    local lin = rl.nn.Linear(3, 1, { rng = rl.rng(11) })
    local first, last, dev = fit(lin, mk[2], mk[3])
    t:ok(last < 1e-10 * first and dev < 1e-4, ("%s minimises a least-squares quadratic through rl.nn.Linear")
      :format(mk[1]), ("loss %g -> %g, max |out - y| %g"):format(first, last, dev))
  end
  local net = rl.nn.Sequential { rl.nn.Linear(3, 1, { rng = rl.rng(12) }) }
  local first, last, dev = fit(net, function(ps) return rl.optim.adam(ps, { lr = 0.05 }) end, 1500)
  t:ok(last < 1e-10 * first and dev < 1e-4, "adam minimises it through Sequential:parameters()",
    ("loss %g -> %g, max |out - y| %g"):format(first, last, dev))
  local lin = rl.nn.Linear(3, 1, { rng = rl.rng(13) })
  local twice = rl.nn.Sequential { lin, lin }
  t:raises(function() rl.optim.sgd(twice:parameters()) end, "entry 3 %('2%.[%w_.]+'%) is the same parameter as entry 1",
    "a module listed twice in a Sequential is refused (its views are distinct userdata)")
  local ps = lin:parameters()
  local before = lin:param(ps[1].name)
  for _, p in ipairs(ps) do p.grad:fill(1) end
  rl.optim.sgd(ps, { lr = 0.5 }):step()
  t:ok(lin:param(ps[1].name):maxdiff(before:add(rl.full(1, table.unpack(before:shape())), -0.5)) < TOL,
    "an optimizer step writes through the parameter views into the module")
else
  t:diag("rl.nn.Linear is not available in this tree: the module case used a parameter list of rl.zeros tensors")
end

do -- a scheduler and clipping inside the loop still converge
  local model = fake_linear()
  local opt = rl.optim.sgd(model:parameters(), { lr = 0.1, momentum = 0.9 })
  local sch = rl.optim.cosine_warm_restarts(opt, { T_0 = 50, T_mult = 2, eta_min = 0.01 })
  local params = model:parameters()
  local last
  for _ = 1, 350 do
    opt:zero_grad()
    local diff = model:forward(X):clone():add(Y, -1)
    last = diff:dot(diff) / N
    model:backward(X, diff:scale(2 / N))
    rl.optim.clip_grad_norm(params, 1.0)
    opt:step()
    sch:step()
  end
  t:ok(last < 1e-8, "sgd + cosine warm restarts + clipping converges", ("final loss %g"):format(last))
end

-- ---------------------------------------------------------------- error paths

local P = { param("w", { 1, 2 }) }
local function raises(fn, pattern, name) t:raises(fn, pattern, name) end

raises(function() rl.optim.sgd(P, { lr = -1 }) end, "bad argument #2 to 'sgd' %(option 'lr' must be >= 0, got %-1%)",
  "sgd: negative lr")
raises(function() rl.optim.adam(P, { lr = -1 }) end, "bad argument #2 to 'adam' %(option 'lr' must be >= 0, got %-1%)",
  "adam: negative lr (the brief's example message)")
raises(function() rl.optim.adam(P, { lr = 0 / 0 }) end, "option 'lr' must be a finite number", "adam: NaN lr")
raises(function() rl.optim.sgd(P, { lr = "0.1" }) end, "option 'lr' must be a number, got string", "sgd: string lr")
raises(function() rl.optim.sgd(P, { momentum = -0.5 }) end, "option 'momentum' must be >= 0, got %-0.5",
  "sgd: negative momentum")
raises(function() rl.optim.sgd(P, { nesterov = true }) end, "option 'nesterov' requires momentum > 0",
  "sgd: nesterov without momentum")
raises(function() rl.optim.sgd(P, { nesterov = true, momentum = 0.9, dampening = 0.1 }) end,
  "nesterov' requires momentum > 0 and dampening = 0", "sgd: nesterov with dampening")
raises(function() rl.optim.sgd(P, { nesterov = 1, momentum = 0.9 }) end, "option 'nesterov' must be a boolean",
  "sgd: non-boolean nesterov")
raises(function() rl.optim.sgd(P, { weight_decay = -1 }) end, "option 'weight_decay' must be >= 0", "sgd: negative wd")
raises(function() rl.optim.sgd(P, { lr = 0.1, mommentum = 0.9 }) end,
  "bad argument #2 to 'sgd' %(unknown option 'mommentum'; known options: dampening, lr, momentum, nesterov, "
    .. "weight_decay%)",
  "sgd: unknown option names the known ones")
raises(function() rl.optim.adam(P, { decoupled = true }) end,
  "unknown option 'decoupled'", "adam: internal key refused")
raises(function() rl.optim.adam(P, { betas = { 0.9, 1 } }) end, "beta2 must be in %[0, 1%), got 1", "adam: beta2 = 1")
raises(function() rl.optim.adam(P, { betas = { -0.1, 0.9 } }) end, "beta1 must be in %[0, 1%)", "adam: negative beta1")
raises(function() rl.optim.adam(P, { betas = 0.9 }) end,
  "option 'betas' must be a list of two numbers", "adam: betas scalar")
raises(function() rl.optim.adam(P, { betas = { 0.9 } }) end, "option 'betas' must be a list of two numbers",
  "adam: one beta")
raises(function() rl.optim.adam(P, { eps = -1e-8 }) end, "option 'eps' must be >= 0", "adam: negative eps")
raises(function() rl.optim.adamw(P, { weight_decay = -0.1 }) end, "bad argument #2 to 'adamw' %(option 'weight_decay'",
  "adamw: negative weight decay")
raises(function() rl.optim.adam(P, { amsgrad = "yes" }) end, "option 'amsgrad' must be a boolean", "adam: bad amsgrad")
raises(function() rl.optim.adam(P, 0.1) end, "bad argument #2 to 'adam' %(expected a table of options, got number%)",
  "adam: options must be a table")

-- parameter lists
raises(function() rl.optim.sgd(nil, { lr = 0.1 }) end,
  "bad argument #1 to 'sgd' %(expected a non%-empty list of parameters",
  "sgd: nil params")
raises(function() rl.optim.adam({}) end, "bad argument #1 to 'adam' .*got an empty table", "adam: empty params")
raises(function() rl.optim.adam({ rl.zeros(2) }) end, "entry 1 is a userdata, expected a parameter table",
  "adam: a bare tensor is not a parameter entry")
raises(function() rl.optim.adam({ { name = "w", value = rl.zeros(2) } }) end, "entry 1 %('w'%): 'grad' is not a tensor",
  "adam: entry without grad")
raises(function() rl.optim.adam({ { name = "w", value = { 1, 2 }, grad = rl.zeros(2) } }) end,
  "'value' is not a tensor",
  "adam: value must be a tensor")
raises(function() rl.optim.sgd({ { name = "w", value = rl.zeros(2, 3), grad = rl.zeros(3, 2) } }) end,
  "entry 1 %('w'%): grad has shape 3 x 2, value has shape 2 x 3", "sgd: value and grad shapes differ")
raises(function() rl.optim.sgd({ P[1], nil, P[1] }) end, "keys other than", "sgd: list with a hole")
raises(function() rl.optim.sgd({ P[1], param("v", { 0 }), P[1] }) end,
  "bad argument #1 to 'sgd' %(entry 3 %('w'%) is the same parameter as entry 1%)", "sgd: parameter listed twice")
raises(function()
  rl.optim.adam({ P[1], { name = "view", value = P[1].value, grad = rl.zeros(2) } })
end, "entry 2 %('view'%) is the same parameter as entry 1", "adam: two entries over one value tensor")
raises(function() rl.optim.clip_grad_norm({ P[1], 7 }, 1) end,
  "bad argument #1 to 'clip_grad_norm' %(entry 2 is a number",
  "clip: bad entry")

-- optimizer methods and schedulers
local opt = rl.optim.sgd(P, { lr = 0.1 })
raises(function() opt:set_lr(-1) end, "bad argument #1 to 'set_lr' %(lr must be >= 0, got %-1%)", "set_lr: negative")
raises(function() opt:set_lr(math.huge) end, "lr must be a finite number", "set_lr: infinite")
raises(function() opt:set_lr("x") end, "lr must be a number, got string", "set_lr: not a number")
t:is(opt:get_lr(), 0.1, "failed set_lr leaves the lr unchanged")
raises(function() rl.optim.step_lr({}, { step_size = 1 }) end, "bad argument #1 to 'step_lr' %(expected an optimizer",
  "step_lr: not an optimizer")
raises(function() rl.optim.step_lr(opt) end, "option 'step_size' is required", "step_lr: step_size required")
raises(function() rl.optim.step_lr(opt, { step_size = 0 }) end,
  "bad argument #2 to 'step_lr' %(option 'step_size' must be >= 1, got 0%)", "step_lr: step_size 0")
raises(function() rl.optim.step_lr(opt, { step_size = 2.5 }) end, "option 'step_size' must be an integer, got 2.5",
  "step_lr: fractional step_size")
raises(function() rl.optim.step_lr(opt, { step_size = 2, gamma = -1 }) end, "option 'gamma' must be >= 0",
  "step_lr: negative gamma")
raises(function() rl.optim.step_lr(opt, { step_size = 2, gama = 0.5 }) end,
  "unknown option 'gama'; known options: gamma, step_size",
  "step_lr: unknown option")
local sl = rl.optim.step_lr(opt, { step_size = 2 })
raises(function() sl:step(-1) end,
  "bad argument #1 to 'step' %(epoch must be >= 0, got %-1%)", "step_lr: negative epoch")
raises(function() sl:step(1.5) end, "epoch must be an integer, got 1.5", "step_lr: fractional epoch")
t:is(sl.epoch, 0, "failed step leaves the epoch unchanged")
raises(function() rl.optim.cosine_warm_restarts(opt, {}) end, "option 'T_0' is required", "cosine: T_0 required")
raises(function() rl.optim.cosine_warm_restarts(opt, { T_0 = 0 }) end, "option 'T_0' must be an integer >= 1, got 0",
  "cosine: T_0 = 0")
raises(function() rl.optim.cosine_warm_restarts(opt, { T_0 = 5, T_mult = 0 }) end,
  "option 'T_mult' must be an integer >= 1",
  "cosine: T_mult = 0")
raises(function() rl.optim.cosine_warm_restarts(opt, { T_0 = 5, T_mult = 1.5 }) end,
  "option 'T_mult' must be an integer",
  "cosine: fractional T_mult")
raises(function() rl.optim.cosine_warm_restarts(opt, { T_0 = 5, eta_min = -1 }) end, "option 'eta_min' must be >= 0",
  "cosine: negative eta_min")
raises(function() rl.optim.cosine_warm_restarts(opt, { T0 = 5 }) end, "unknown option 'T0'", "cosine: unknown option")
local cw = rl.optim.cosine_warm_restarts(opt, { T_0 = 5 })
raises(function() cw:step(-0.5) end, "epoch must be >= 0", "cosine: negative epoch")
raises(function() cw:step(0 / 0) end, "epoch must be a finite number", "cosine: NaN epoch")
raises(function() cw:lr_at("x") end, "bad argument #1 to 'lr_at' %(epoch must be a number", "cosine: lr_at string")
raises(function() rl.optim.clip_grad_norm(P, -1) end,
  "bad argument #2 to 'clip_grad_norm' %(max_norm must be a finite number >= 0",
  "clip: negative max_norm")
raises(function() rl.optim.clip_grad_norm(P, "1") end, "max_norm must be a number, got string", "clip: string max_norm")
raises(function() rl.optim.clip_grad_norm({}, 1) end, "bad argument #1 to 'clip_grad_norm'", "clip: empty list")

-- the low-level binding checks its arguments too
local core = rl.core
local v, g = rl.zeros(3), rl.zeros(3)
raises(function() core.optim_sgd_step(v, rl.zeros(2), nil, { lr = 0.1 }, 1) end,
  "grad has 2 values, the parameter has 3",
  "optim_sgd_step: grad size")
raises(function() core.optim_sgd_step(v, g, nil, { lr = 0.1, momentum = 0.9 }, 1) end, "needs a momentum buffer",
  "optim_sgd_step: momentum without buffer")
raises(function() core.optim_sgd_step(v, g, rl.zeros(4), { lr = 0.1, momentum = 0.9 }, 1) end,
  "momentum buffer has 4 values", "optim_sgd_step: buffer size")
raises(function() core.optim_sgd_step(v, g, nil, { lr = 0.1 }, 0) end,
  "step index must be >= 1", "optim_sgd_step: step 0")
raises(function() core.optim_sgd_step(v, g, nil, { rate = 0.1 }, 1) end, "unknown option 'rate'",
  "optim_sgd_step: unknown key")
raises(function() core.optim_adam_step(v, g, rl.zeros(3), rl.zeros(3), nil, { amsgrad = true }, 1) end,
  "amsgrad needs a max_exp_avg_sq buffer", "optim_adam_step: amsgrad without buffer")
raises(function() core.optim_adam_step(v, g, rl.zeros(3), rl.zeros(2), nil, {}, 1) end, "exp_avg_sq has 2 values",
  "optim_adam_step: moment size")
raises(function() core.optim_step_lr(0.1, 3, 0, 0.1) end, "step_size' must be >= 1", "optim_step_lr: step_size 0")
raises(function() core.optim_cosine_warm_restarts(-1, 0, 10, 1, 0) end, "base lr must be >= 0", "cosine: negative base")
raises(function() core.optim_clip_grad_norm({ v, "x" }, 1) end,
  "entry 2 is not a tensor", "optim_clip_grad_norm: entry")

os.exit(t:done())
