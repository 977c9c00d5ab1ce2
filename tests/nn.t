#!/usr/bin/env rotlab-double
-- rl.nn: Linear, activations, Dropout, losses and Sequential: known values, finite-difference gradients,
-- train/eval behaviour and error paths.
local rl = require "rotlab"
local gc = require "rotlab.gradcheck"
local t = require("rotlab.tap")()

local rng = rl.rng(42)

-- random matrix whose entries stay at least `gap` away from every point in `avoid` (kinks of ReLU etc.)
local function randn_away(r, c, avoid, gap, scale)
  local x = rl.randn(rng, r, c):scale(scale or 1)
  for i = 1, x:size() do
    local v = x:get(i)
    for _, k in ipairs(avoid or {}) do
      if math.abs(v - k) < gap then v = k + (v < k and -gap or gap) end
    end
    x:set(i, v)
  end
  return x
end

local function maxdiff_table(tensor, want)
  local d = 0
  for i = 1, #want do d = math.max(d, math.abs(tensor:get(i) - want[i])) end
  return d
end

----------------------------------------------------------------------------------------------- Linear
local lin = rl.nn.Linear(2, 3)
t:is(lin:kind(), "linear", "Linear kind")
lin:set_param("weight", { { 1, 2 }, { 3, 4 }, { 5, 6 } })
lin:set_param("bias", { 1, -1, 0.5 })
local y = lin:forward(rl.tensor{ { 1, 1 }, { 2, -1 } })
-- by hand: row 1 = (1+2+1, 3+4-1, 5+6+0.5), row 2 = (2-2+1, 6-4-1, 10-6+0.5)
t:is(maxdiff_table(y, { 4, 6, 11.5, 1, 1, 4.5 }), 0, "Linear known values on a hand example")
local gx = lin:backward(rl.tensor{ { 1, 1 }, { 2, -1 } }, rl.tensor{ { 1, 0, 0 }, { 0, 1, 1 } })
-- gx = gy W: row 1 = W[1] = (1, 2); row 2 = W[2] + W[3] = (8, 10)
t:is(maxdiff_table(gx, { 1, 2, 8, 10 }), 0, "Linear input gradient on the hand example")
-- grad W = gy^T x: row 1 = x1 = (1,1); rows 2 and 3 = x2 = (2,-1); grad b = column sums (1, 1, 1)
t:is(maxdiff_table(lin:grad("weight"), { 1, 1, 2, -1, 2, -1 }), 0, "Linear weight gradient on the hand example")
t:is(maxdiff_table(lin:grad("bias"), { 1, 1, 1 }), 0, "Linear bias gradient on the hand example")

local l1 = rl.nn.Linear(16, 5, { rng = rl.rng(3) })
local l2 = rl.nn.Linear(16, 5, { rng = rl.rng(3) })
t:is(l1:param("weight"):maxdiff(l2:param("weight")), 0, "Linear init: same seed, same weights")
local w = l1:param("weight")
local bound = 1 / math.sqrt(16)
t:ok(w:max() <= bound and w:min() >= -bound and l1:param("bias"):max() <= bound and l1:param("bias"):min() >= -bound,
  "Linear init within U(-1/sqrt(in), 1/sqrt(in))")
t:ok(w:max() > 0.5 * bound and w:min() < -0.5 * bound, "Linear init spreads over the interval")
local nb = rl.nn.Linear(4, 2, { bias = false })
t:is(#nb:parameters(), 1, "Linear{bias = false} has only a weight")
t:raises(function() nb:param("bias") end, "has no parameter 'bias'", "no bias parameter without bias")

-- row-wise: keeps the levels of a batch of sets
local sets = rl.sets(rl.randn(rng, 5, 4), { 0, 2, 5 })
local ys = rl.nn.Linear(4, 3):forward(sets)
t:ok(ys.levels and ys:levels() == 1 and table.concat(ys:offsets(), ",") == "0,2,5", "Linear keeps the set offsets")

gc.check(t, rl.nn.Linear(4, 3, { rng = rl.rng(5) }), rl.randn(rng, 6, 4), "Linear")
gc.check(t, rl.nn.Linear(4, 3, { rng = rl.rng(6), bias = false }), sets, "Linear (no bias, on sets)")

----------------------------------------------------------------------------------------------- activations
local function sigmoid(v) return 1 / (1 + math.exp(-v)) end
local acts = {
  { "ReLU", rl.nn.ReLU(), function(v) return math.max(v, 0) end, { 0 } },
  { "ELU{alpha=1.5}", rl.nn.ELU{ alpha = 1.5 }, function(v) return v > 0 and v or 1.5 * (math.exp(v) - 1) end, { 0 } },
  { "ELU", rl.nn.ELU(), function(v) return v > 0 and v or (math.exp(v) - 1) end, { 0 } },
  { "Tanh", rl.nn.Tanh(), function(v) return (math.exp(v) - math.exp(-v)) / (math.exp(v) + math.exp(-v)) end, {} },
  { "Sigmoid", rl.nn.Sigmoid(), sigmoid, {} },
  { "Softplus", rl.nn.Softplus(), function(v) return math.log(1 + math.exp(v)) end, {} },
  -- beta x > threshold -> identity (kink at x = 1.5, kept away from)
  { "Softplus{beta=2,threshold=3}", rl.nn.Softplus{ beta = 2, threshold = 3 },
    function(v) return 2 * v > 3 and v or math.log(1 + math.exp(2 * v)) / 2 end, { 1.5 } },
}
for _, a in ipairs(acts) do
  local name, m, f, kinks = a[1], a[2], a[3], a[4]
  local x = randn_away(7, 3, kinks, 1e-3, 2)
  local out = m:forward(x)
  local worst = 0
  for i = 1, x:size() do worst = math.max(worst, math.abs(out:get(i) - f(x:get(i)))) end
  t:ok(worst < 1e-12, name .. ": values match the formula", "max error " .. worst)
  gc.check(t, m, x, name)
end
t:ok(rl.nn.Softplus():forward(rl.tensor{ { 30, -30 } }):get(1) == 30, "Softplus is the identity above the threshold")
t:ok(rl.nn.ReLU():forward(sets).levels ~= nil, "activations keep the set offsets")

----------------------------------------------------------------------------------------------- Dropout
do
  local p = 0.3
  local x = rl.full(1, 200, 100):add(rl.rand(rng, 200, 100)) -- values in [1, 2): never zero
  local d = rl.nn.Dropout(p, { rng = rl.rng(9) })
  t:is(d:kind(), "dropout", "Dropout kind")
  local yd = d:forward(x)
  local zeros, badscale = 0, 0
  for i = 1, x:size() do
    local v = yd:get(i)
    if v == 0 then zeros = zeros + 1
    elseif math.abs(v - x:get(i) / (1 - p)) > 1e-12 then badscale = badscale + 1 end
  end
  t:near(zeros / x:size(), p, 0.015, "Dropout(0.3) zeroes about 30% of the values in training mode")
  t:is(badscale, 0, "Dropout scales the kept values by 1/(1-p)")
  local y2 = rl.nn.Dropout(p, { rng = rl.rng(9) }):forward(x)
  t:is(y2:maxdiff(yd), 0, "same seed, same mask")
  local y3 = d:forward(x)
  t:ok(y3:maxdiff(yd) > 0, "a new forward draws a new mask")
  local gy = rl.randn(rng, 200, 100)
  local gd = d:backward(x, gy)
  local bad = 0
  for i = 1, x:size() do
    local want = y3:get(i) == 0 and 0 or gy:get(i) / (1 - p)
    if math.abs(gd:get(i) - want) > 1e-12 then bad = bad + 1 end
  end
  t:is(bad, 0, "backward applies the mask of the last forward")
  d:eval()
  t:is(d:forward(x):maxdiff(x), 0, "eval mode: identity")
  t:is(d:backward(x, gy):maxdiff(gy), 0, "eval mode: backward is the identity")
  d:train()
  t:ok(d:forward(x):maxdiff(x) > 0, "train() turns dropout back on")
  local d0 = rl.nn.Dropout(0)
  t:is(d0:forward(x):maxdiff(x), 0, "Dropout(0) is the identity in training mode")
  -- default generator: reproducible through rl.manual_seed
  rl.manual_seed(11)
  local a1 = rl.nn.Dropout(0.5):forward(x)
  rl.manual_seed(11)
  local a2 = rl.nn.Dropout(0.5):forward(x)
  t:is(a1:maxdiff(a2), 0, "default generator follows rl.manual_seed")
  -- the module keeps its generator alive
  local dk = rl.nn.Dropout(0.5, { rng = rl.rng(4) })
  collectgarbage(); collectgarbage()
  t:ok(dk:forward(x):isfinite(), "Dropout keeps its generator alive across garbage collection")
end

----------------------------------------------------------------------------------------------- losses
-- finite differences of loss(logits) w.r.t. every logit
local function loss_fd(loss, logits, labels, eps)
  local g = rl.zeros(table.unpack(logits:shape()))
  for i = 1, logits:size() do
    local v = logits:get(i)
    logits:set(i, v + eps)
    local fp = loss:forward(logits, labels)
    logits:set(i, v - eps)
    local fm = loss:forward(logits, labels)
    logits:set(i, v)
    g:set(i, (fp - fm) / (2 * eps))
  end
  return g
end

do
  local z = { { 1, 2, 3 }, { 0.5, -1, 2 }, { 0, 0, 0 }, { 10, -10, 4 } }
  local labels = { 2, 0, 1, 0 }
  local want = 0
  for b, row in ipairs(z) do
    local s = 0
    for _, v in ipairs(row) do s = s + math.exp(v) end
    want = want - math.log(math.exp(row[labels[b] + 1]) / s)
  end
  want = want / #z
  local ce = rl.nn.CrossEntropy()
  local logits = rl.tensor(z)
  t:near(ce:forward(logits, labels), want, 1e-12, "CrossEntropy value against the formula")
  t:near(ce:forward(logits, rl.tensor(labels)), want, 1e-12, "CrossEntropy accepts labels as a tensor")
  local g = ce:backward()
  t:is(#g:shape() * 10 + g:size(2), 23, "CrossEntropy gradient has the logits' shape")
  local gfd = loss_fd(ce, logits, labels, 1e-6)
  t:ok(g:maxdiff(gfd) < 1e-8, "CrossEntropy gradient matches finite differences", "maxdiff " .. g:maxdiff(gfd))
  -- softmax - onehot, divided by B: each row of the gradient sums to 0
  local rowsum = 0
  for b = 1, 4 do rowsum = math.max(rowsum, math.abs(g:get(b, 1) + g:get(b, 2) + g:get(b, 3))) end
  t:ok(rowsum < 1e-15, "CrossEntropy gradient rows sum to zero")
  local big = ce:forward(rl.tensor{ { 1000, 0 }, { -1000, 0 } }, { 0, 1 })
  t:ok(big == big and big < 1e-12, "CrossEntropy is stable for large logits")
  -- the logits of a batch of sets (e.g. after a pooling over groups) are accepted
  t:near(ce:forward(rl.sets(logits, { 0, 1, 4 }), labels), want, 1e-12, "CrossEntropy accepts sets (their values)")

  local bz, by = { 0.3, -2, 5, -1.5 }, { 1, 0, 0.25, 1 }
  local bwant = 0
  for i = 1, #bz do
    local s = sigmoid(bz[i])
    bwant = bwant - (by[i] * math.log(s) + (1 - by[i]) * math.log(1 - s))
  end
  bwant = bwant / #bz
  local bce = rl.nn.BCEWithLogits()
  local bl = rl.tensor{ { 0.3 }, { -2 }, { 5 }, { -1.5 } }
  t:near(bce:forward(bl, by), bwant, 1e-12, "BCEWithLogits value against the formula (B x 1 logits)")
  t:near(bce:forward(rl.tensor(bz), by), bwant, 1e-12, "BCEWithLogits accepts 1-D logits")
  bce:forward(bl, by)
  local bg = bce:backward()
  local bfd = loss_fd(bce, bl, by, 1e-6)
  t:ok(bg:maxdiff(bfd) < 1e-8, "BCEWithLogits gradient matches finite differences", "maxdiff " .. bg:maxdiff(bfd))
  local ext = bce:forward(rl.tensor{ 800, -800 }, { 1, 0 })
  t:ok(ext == ext and ext < 1e-12, "BCEWithLogits is stable for large logits")

  -- errors
  t:raises(function() ce:forward(logits, { 2, 0, 3, 0 }) end,
    "bad argument #2 to 'forward' %(cross_entropy: label 3 is 3, expected an integer class id in 0%.%.2%)",
    "CrossEntropy: label out of range")
  t:raises(function() ce:forward(logits, { 2, 0, -1, 0 }) end, "label 3 is %-1", "CrossEntropy: negative label")
  t:raises(function() ce:forward(logits, { 2, 0.5, 1, 0 }) end, "label 2 is 0%.5, expected an integer",
    "CrossEntropy: non-integer label")
  t:raises(function() ce:forward(logits, { 2, 0 / 0, 1, 0 }) end, "label 2 is .*nan", "CrossEntropy: NaN label")
  t:raises(function() ce:forward(logits, { 2, 0 }) end, "bad argument #2 to 'forward' %(expected 4 labels",
    "CrossEntropy: label count")
  t:raises(function() ce:forward(rl.tensor{ { 1, math.huge } }, { 0 }) end,
    "bad argument #1 to 'forward' %(cross_entropy logits: value 1 is not finite", "CrossEntropy: non-finite logits")
  t:raises(function() ce:forward("x", { 0 }) end, "bad argument #1 to 'forward'", "CrossEntropy: logits not a tensor")
  t:raises(function() bce:forward(bl, { 1, 0, 1.5, 0 }) end, "target 3 is 1%.5, expected a value in %[0, 1%]",
    "BCEWithLogits: target out of range")
  t:raises(function() bce:forward(logits, { 1, 0, 1, 0 }) end, "expected logits of shape B x 1",
    "BCEWithLogits: more than one column")
  t:raises(function() rl.nn.CrossEntropy():backward() end, "backward called before forward",
    "CrossEntropy: backward before forward")
  t:raises(function() rl.nn.BCEWithLogits():backward() end, "backward called before forward",
    "BCEWithLogits: backward before forward")
  t:raises(function() rl.nn.CrossEntropy{ reduction = "sum" } end, "takes no options, got option 'reduction'",
    "CrossEntropy: unknown option")
end

----------------------------------------------------------------------------------------------- Sequential
do
  local net = rl.nn.Sequential{ rl.nn.Linear(4, 6, { rng = rl.rng(1) }), rl.nn.ReLU(),
    rl.nn.Linear(6, 2, { rng = rl.rng(2) }) }
  local x = rl.randn(rng, 5, 4)
  local out = net:forward(x)
  t:is(out:size(1) * 10 + out:size(2), 52, "Sequential{Linear, ReLU, Linear} output is 5 x 2")
  gc.check(t, net, x, "Sequential{Linear, ReLU, Linear}")
  -- and together with a loss: d loss / d input by chain rule vs finite differences of the loss
  local ce = rl.nn.CrossEntropy()
  local labels = { 0, 1, 1, 0, 1 }
  ce:forward(net:forward(x), labels)
  local gin = net:backward(x, ce:backward())
  local num = rl.zeros(5, 4)
  for i = 1, x:size() do
    local v = x:get(i)
    x:set(i, v + 1e-6); local fp = ce:forward(net:forward(x), labels)
    x:set(i, v - 1e-6); local fm = ce:forward(net:forward(x), labels)
    x:set(i, v)
    num:set(i, (fp - fm) / 2e-6)
  end
  t:ok(gin:maxdiff(num) < 1e-8, "Sequential + CrossEntropy input gradient matches finite differences",
    "maxdiff " .. gin:maxdiff(num))
end

----------------------------------------------------------------------------------------------- errors
t:raises(function() rl.nn.Linear(0, 3) end, "bad argument #1 to 'Linear' %(expected a positive input width, got 0%)",
  "Linear: zero input width")
t:raises(function() rl.nn.Linear(3, -2) end, "bad argument #2 to 'Linear' %(expected a positive output width, got %-2%)",
  "Linear: negative output width")
t:raises(function() rl.nn.Linear(2.5, 3) end, "bad argument #1 to 'Linear' %(expected a positive input width, got 2%.5%)",
  "Linear: fractional width")
t:raises(function() rl.nn.Linear(3, 2, { bais = false }) end, "Linear: unknown option 'bais' %(known options: bias, rng%)",
  "Linear: unknown option")
t:raises(function() rl.nn.Linear(3, 2, { rng = 5 }) end, "option 'rng' must be an rl.rng", "Linear: bad rng option")
t:raises(function() rl.nn.Linear(3, 2):forward(rl.zeros(10, 4)) end,
  "bad argument #1 to 'forward' %(linear: expected any x 3, got 10 x 4%)", "Linear: wrong input width")
t:raises(function() local l = rl.nn.Linear(3, 2); l:forward(rl.zeros(4, 3)); l:backward(rl.zeros(4, 3), rl.zeros(4, 3)) end,
  "gradient of the output: expected 4 x 2, got 4 x 3", "Linear: wrong gradient shape")
t:raises(function() rl.nn.Linear(3, 2):backward(rl.zeros(4, 3), rl.zeros(4, 2)) end, "backward called before forward",
  "Linear: backward before forward")
t:raises(function() rl.nn.ReLU():forward(rl.zeros(2, 2, 2)) end, "relu: expected a 2%-D tensor, got 3%-D",
  "ReLU: 3-D input")
t:raises(function() rl.nn.ReLU{ inplace = true } end, "bad argument #1 to 'ReLU' %(takes no options", "ReLU: option")
t:raises(function() rl.nn.ELU{ alpah = 1 } end, "ELU: unknown option 'alpah' %(known options: alpha%)",
  "ELU: unknown option")
t:raises(function() rl.nn.ELU{ alpha = "x" } end, "option 'alpha': expected a finite number", "ELU: bad alpha")
t:raises(function() rl.nn.Softplus{ beta = 0 } end, "bad argument #1 to 'Softplus' %(option 'beta' must be positive%)",
  "Softplus: beta = 0")
t:raises(function() rl.nn.Softplus{ threshold = 1 / 0 } end, "option 'threshold': expected a finite number",
  "Softplus: infinite threshold")
t:raises(function() rl.nn.Dropout(1) end, "bad argument #1 to 'Dropout' %(expected a probability p in %[0, 1%), got 1",
  "Dropout: p = 1")
t:raises(function() rl.nn.Dropout(-0.1) end, "expected a probability p in %[0, 1%), got %-0%.1", "Dropout: negative p")
t:raises(function() rl.nn.Dropout() end, "expected a probability p in %[0, 1%), got no value", "Dropout: missing p")
t:raises(function() rl.nn.Dropout(0.5, { seed = 1 }) end, "Dropout: unknown option 'seed'", "Dropout: unknown option")
t:raises(function() rl.nn.Tanh():backward(rl.zeros(2, 2), rl.zeros(2, 2)) end, "tanh: backward called before forward",
  "Tanh: backward before forward")

os.exit(t:done())
