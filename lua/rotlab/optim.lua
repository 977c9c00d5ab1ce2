--[[
rotlab.optim -- optimizers, learning-rate schedulers and gradient clipping (PyTorch semantics), built on the
low-level steps of the binding (core.optim_*).

  local opt = rl.optim.sgd(params, {lr = 0.1, momentum = 0.9, dampening = 0, weight_decay = 0, nesterov = false})
  local opt = rl.optim.adam(params, {lr = 1e-3, betas = {0.9, 0.999}, eps = 1e-8, weight_decay = 0, amsgrad = false})
  local opt = rl.optim.adamw(params, {...})         -- same options, weight_decay defaults to 1e-2 (decoupled)
  opt:step()  opt:zero_grad()  opt:set_lr(lr)  opt:get_lr()  opt.steps
  local sch = rl.optim.step_lr(opt, {step_size = 10, gamma = 0.1});            sch:step([epoch])
  local sch = rl.optim.cosine_warm_restarts(opt, {T_0 = 10, T_mult = 1, eta_min = 0}); sch:step([epoch])
  local total = rl.optim.clip_grad_norm(params, max_norm)

`params` is the list of module:parameters() (or Sequential:parameters()): entries {name=, value=, grad=, module=}
whose value and grad are tensor views writing through to the module. The optimizer keeps its state (momentum
buffers, Adam moments) as rl tensors in opt.state[i], one table per parameter.

Constrained layers (C-SWE, DESIGN section 3) are trained by a primal-dual method: the optimizer above takes the
primal step on every parameter (the gradient of the Lagrangian, which the layer's backward adds), then

  local pd = rl.optim.primal_dual(model)   -- every constrained layer of model (Sequentials walked, depth first)
  pd:step()                                -- after each opt:step(): per layer, the projected slack step
                                           -- u <- [u - lr_slack (alpha u - lambda)]_+ then the dual step
                                           -- lambda <- [lambda + lr_dual (g - eps - u)]_+ (g the hard SWGG of
                                           -- the layer's last training forward); returns pd
  pd.layers                                -- list of {module =, path = "4" | "2.3", name = "cswe" | "cswe@4"}
  pd:state() -> list (one per layer) of {name =, path =, swgg_hard =, swgg_soft =, slack =, dual =, eps =}
                                           -- rl tensors of L values (copies); swgg_* nil before a training
                                           -- forward, eps nil while it is still to be measured (eps_fraction)
  pd.steps                                 -- number of pd:step() calls
  rl.optim.constrained_layers(model) -> the same list as pd.layers, possibly empty (no error)

A constrained layer is a module with the methods dual_step, swgg, dual, slack and eps (rl.pool.cswe). Its rates
(alpha, lr_slack, lr_dual) are the layer's own options. path is the position in the Sequentials (as in the
parameter names "4.theta"); name is "cswe" when the model has one constrained layer, "cswe@<path>" when it has
several (the prefix of the runner's traces and metrics). primal_dual raises an error for a model without
constrained layers, and pd:step() for a layer that has not measured its SWGG yet (no training forward). With
compat = "reference" the layer updates its duals inside forward and pd:step() leaves them alone.
]]
local core = require "rotlab.core"

local optim = {}

-- ---------------------------------------------------------------- argument checking helpers

-- Level (for error(), counted from the function calling error) of the first frame outside this file: errors
-- point at the user's call, however deep in this module they are raised.
local this_source = debug.getinfo(1, "S").source
local function caller_level()
  local level = 3 -- 1: caller_level, 2: argerror, 3: whoever called argerror
  while true do
    local info = debug.getinfo(level, "S")
    if not info then return 0 end
    if info.source ~= this_source then return level - 1 end
    level = level + 1
  end
end

local function argerror(fname, n, msg)
  error(("bad argument #%d to '%s' (%s)"):format(n, fname, msg), caller_level())
end

-- Calls f(...) and re-raises its error as a bad argument #n of fname (without the position inside this file
-- that luaL_error adds when f is a Lua function of ours calling the binding).
local this_file = debug.getinfo(1, "S").short_src
local function checked(fname, n, f, ...)
  local res = table.pack(pcall(f, ...))
  if not res[1] then
    local msg = tostring(res[2])
    if msg:sub(1, #this_file + 1) == this_file .. ":" then msg = msg:sub(#this_file + 2):gsub("^%d+: ", "", 1) end
    argerror(fname, n, msg)
  end
  return table.unpack(res, 2, res.n)
end

local function is_tensor(x)
  if type(x) ~= "userdata" then return false end
  local mt = getmetatable(x)
  return type(mt) == "table" and mt.__name == "rotlab.tensor"
end

local function shape_string(t)
  return table.concat(t:shape(), " x ")
end

-- Options table at argument n: nil or a table whose keys are all in `known` (sorted list of names).
local function check_options(fname, n, opts, known)
  if opts == nil then return {} end
  if type(opts) ~= "table" then argerror(fname, n, "expected a table of options, got " .. type(opts)) end
  local set = {}
  for _, k in ipairs(known) do set[k] = true end
  for k in pairs(opts) do
    if not set[k] then
      argerror(fname, n, ("unknown option '%s'; known options: %s"):format(tostring(k), table.concat(known, ", ")))
    end
  end
  return opts
end

-- A copy of the parameter list after checking it: a non-empty list of {name=, value=tensor, grad=tensor} with
-- value and grad of the same shape, no parameter listed twice (it would be updated twice per step).
local function check_params(fname, params)
  local what = "expected a non-empty list of parameters {name=, value=, grad=} (module:parameters())"
  if type(params) ~= "table" then argerror(fname, 1, what .. ", got " .. type(params)) end
  local n = #params
  if n == 0 then argerror(fname, 1, what .. ", got an empty table") end
  local count = 0
  for _ in pairs(params) do count = count + 1 end
  if count ~= n then argerror(fname, 1, what .. ", got a table with keys other than 1.." .. n) end
  local list, seen = {}, {}
  for i = 1, n do
    local p = params[i]
    if type(p) ~= "table" then
      argerror(fname, 1, ("entry %d is a %s, expected a parameter table {name=, value=, grad=}"):format(i, type(p)))
    end
    local label = p.name ~= nil and ("entry %d ('%s')"):format(i, tostring(p.name)) or ("entry %d"):format(i)
    if not is_tensor(p.value) then argerror(fname, 1, label .. ": 'value' is not a tensor") end
    if not is_tensor(p.grad) then argerror(fname, 1, label .. ": 'grad' is not a tensor") end
    if shape_string(p.value) ~= shape_string(p.grad) then
      argerror(fname, 1, ("%s: grad has shape %s, value has shape %s"):format(label, shape_string(p.grad),
        shape_string(p.value)))
    end
    local key = core.optim_storage(p.value)
    if key ~= nil then
      if seen[key] then
        argerror(fname, 1, ("%s is the same parameter as entry %d"):format(label, seen[key]))
      end
      seen[key] = i
    end
    list[i] = { name = p.name, value = p.value, grad = p.grad, module = p.module }
  end
  return list
end

local function zeros_like(t)
  return core.zeros(table.unpack(t:shape()))
end

local function check_lr(fname, n, lr)
  if type(lr) ~= "number" then argerror(fname, n, "lr must be a number, got " .. type(lr)) end
  if lr ~= lr or lr == math.huge or lr == -math.huge then
    argerror(fname, n, "lr must be a finite number, got " .. tostring(lr))
  end
  if lr < 0 then argerror(fname, n, ("lr must be >= 0, got %g"):format(lr)) end
end

-- ---------------------------------------------------------------- optimizers

local Optimizer = {}
Optimizer.__index = Optimizer
Optimizer.__name = "rotlab.optimizer"

-- One update of every parameter from its .grad (grads are not zeroed).
function Optimizer:step()
  local steps = self.steps + 1
  for i, p in ipairs(self.params) do self._update(p, self.state[i], self.config, steps) end
  self.steps = steps
  return self
end

-- Zeroes every parameter's .grad.
function Optimizer:zero_grad()
  for _, p in ipairs(self.params) do p.grad:fill(0) end
  return self
end

function Optimizer:set_lr(lr)
  check_lr("set_lr", 1, lr)
  self.config.lr = lr
  return self
end

function Optimizer:get_lr()
  return self.config.lr
end

function Optimizer:__tostring()
  return ("rotlab.optim.%s(lr=%g, %d parameter tensors, %d steps)"):format(self.kind, self.config.lr, #self.params,
    self.steps)
end

-- Builds an optimizer of `kind` after checking params, the options and the resulting config with `check`.
local function new_optimizer(kind, params, opts, known, config, check, update, new_state)
  local list = check_params(kind, params)
  opts = check_options(kind, 2, opts, known)
  for k, v in pairs(opts) do config[k] = v end
  checked(kind, 2, check, config)
  local state = {}
  for i, p in ipairs(list) do state[i] = new_state(p, config) end
  return setmetatable({ kind = kind, params = list, config = config, state = state, steps = 0, _update = update },
    Optimizer)
end

local sgd_known = { "dampening", "lr", "momentum", "nesterov", "weight_decay" }

local function sgd_update(p, st, cfg, step)
  core.optim_sgd_step(p.value, p.grad, st.momentum_buffer, cfg, step)
end

function optim.sgd(params, opts)
  local config = { lr = 1e-3, momentum = 0, dampening = 0, weight_decay = 0, nesterov = false }
  return new_optimizer("sgd", params, opts, sgd_known, config, core.optim_sgd_check, sgd_update,
    function(p, cfg) return { momentum_buffer = cfg.momentum ~= 0 and zeros_like(p.value) or nil } end)
end

local adam_known = { "amsgrad", "betas", "eps", "lr", "weight_decay" }

local function adam_update(p, st, cfg, step)
  core.optim_adam_step(p.value, p.grad, st.exp_avg, st.exp_avg_sq, st.max_exp_avg_sq, cfg, step)
end

local function adam_state(p, cfg)
  return { exp_avg = zeros_like(p.value), exp_avg_sq = zeros_like(p.value),
           max_exp_avg_sq = cfg.amsgrad and zeros_like(p.value) or nil }
end

local function adam_like(kind, decoupled, weight_decay, params, opts)
  local config = { lr = 1e-3, betas = { 0.9, 0.999 }, eps = 1e-8, weight_decay = weight_decay, amsgrad = false,
                   decoupled = decoupled }
  local opt = new_optimizer(kind, params, opts, adam_known, config, core.optim_adam_check, adam_update, adam_state)
  config.betas = { config.betas[1], config.betas[2] } -- our own copy: the caller's table may change later
  return opt
end

function optim.adam(params, opts) return adam_like("adam", false, 0, params, opts) end

function optim.adamw(params, opts) return adam_like("adamw", true, 1e-2, params, opts) end

-- ---------------------------------------------------------------- schedulers

-- A scheduler sets the optimizer's lr to f(epoch) for a pure function f of the epoch and the base lr (the
-- optimizer's lr when the scheduler was created). Creating it applies epoch 0, like PyTorch's constructor.
local Scheduler = {}
Scheduler.__index = Scheduler
Scheduler.__name = "rotlab.scheduler"

-- sch:step([epoch]): advances one epoch (or jumps to `epoch`), sets the optimizer's lr and returns it.
function Scheduler:step(epoch)
  if epoch == nil then
    epoch = self.epoch + 1
  else
    self._check_epoch("step", 1, epoch)
  end
  local lr = checked("step", 1, self._lr_at, epoch)
  self.optimizer:set_lr(lr)
  self.epoch, self.lr = epoch, lr
  return lr
end

-- sch:lr_at(epoch): the lr this schedule gives at `epoch` (no side effect).
function Scheduler:lr_at(epoch)
  self._check_epoch("lr_at", 1, epoch)
  return (checked("lr_at", 1, self._lr_at, epoch))
end

function Scheduler:get_lr()
  return self.lr
end

function Scheduler:__tostring()
  return ("rotlab.optim.%s(epoch=%s, lr=%g)"):format(self.kind, tostring(self.epoch), self.lr)
end

local function check_optimizer(fname, opt)
  local ok = type(opt) == "table" and type(opt.get_lr) == "function" and type(opt.set_lr) == "function"
  if not ok then argerror(fname, 1, "expected an optimizer (rl.optim.sgd/adam/adamw), got " .. type(opt)) end
end

local function check_integer_option(fname, opts, key, required)
  local v = opts[key]
  if v == nil then
    if required then argerror(fname, 2, ("option '%s' is required"):format(key)) end
    return nil
  end
  if type(v) ~= "number" or math.tointeger(v) == nil then
    argerror(fname, 2, ("option '%s' must be an integer, got %s"):format(key, tostring(v)))
  end
  return math.tointeger(v)
end

local function check_number_option(fname, opts, key, def)
  local v = opts[key]
  if v == nil then return def end
  if type(v) ~= "number" then argerror(fname, 2, ("option '%s' must be a number, got %s"):format(key, type(v))) end
  return v
end

local function new_scheduler(kind, opt, fields, lr_at, check_epoch)
  local base_lr = opt:get_lr()
  checked(kind, 2, lr_at, 0)
  local sch = setmetatable(fields, Scheduler)
  sch.kind, sch.optimizer, sch.base_lr, sch.epoch = kind, opt, base_lr, 0
  sch._lr_at, sch._check_epoch = lr_at, check_epoch
  sch.lr = lr_at(0)
  opt:set_lr(sch.lr)
  return sch
end

local function check_epoch_number(fname, n, epoch)
  if type(epoch) ~= "number" then argerror(fname, n, "epoch must be a number, got " .. type(epoch)) end
end

local function check_epoch_integer(fname, n, epoch)
  check_epoch_number(fname, n, epoch)
  if math.tointeger(epoch) == nil then argerror(fname, n, "epoch must be an integer, got " .. tostring(epoch)) end
end

-- StepLR: lr = base_lr * gamma^floor(epoch / step_size); integer epochs.
function optim.step_lr(opt, opts)
  check_optimizer("step_lr", opt)
  opts = check_options("step_lr", 2, opts, { "gamma", "step_size" })
  local step_size = check_integer_option("step_lr", opts, "step_size", true)
  local gamma = check_number_option("step_lr", opts, "gamma", 0.1)
  local base_lr = opt:get_lr()
  local function lr_at(epoch)
    return core.optim_step_lr(base_lr, math.tointeger(epoch), step_size, gamma)
  end
  return new_scheduler("step_lr", opt, { step_size = step_size, gamma = gamma }, lr_at, check_epoch_integer)
end

-- CosineAnnealingWarmRestarts: cycles of T_0, T_0*T_mult, ... epochs; epochs may be fractional.
function optim.cosine_warm_restarts(opt, opts)
  check_optimizer("cosine_warm_restarts", opt)
  opts = check_options("cosine_warm_restarts", 2, opts, { "T_0", "T_mult", "eta_min" })
  local T_0 = check_integer_option("cosine_warm_restarts", opts, "T_0", true)
  local T_mult = check_integer_option("cosine_warm_restarts", opts, "T_mult", false) or 1
  local eta_min = check_number_option("cosine_warm_restarts", opts, "eta_min", 0)
  local base_lr = opt:get_lr()
  local function lr_at(epoch)
    return (core.optim_cosine_warm_restarts(base_lr, epoch, T_0, T_mult, eta_min))
  end
  return new_scheduler("cosine_warm_restarts", opt, { T_0 = T_0, T_mult = T_mult, eta_min = eta_min }, lr_at,
    check_epoch_number)
end

-- ---------------------------------------------------------------- clipping

-- Scales every .grad in place so that their global L2 norm is at most max_norm (PyTorch clip_grad_norm_);
-- returns the total norm before clipping. A non-finite norm is returned and nothing is scaled.
function optim.clip_grad_norm(params, max_norm)
  local list = check_params("clip_grad_norm", params)
  if type(max_norm) ~= "number" then
    argerror("clip_grad_norm", 2, "max_norm must be a number, got " .. type(max_norm))
  end
  local grads = {}
  for i, p in ipairs(list) do grads[i] = p.grad end
  return (checked("clip_grad_norm", 2, core.optim_clip_grad_norm, grads, max_norm))
end

-- ---------------------------------------------------------------- primal-dual step of constrained layers

local CONSTRAINED_METHODS = { "dual_step", "swgg", "dual", "slack", "eps" }

-- Whether m has every method of a constrained layer (indexing a userdata may raise: treated as no).
local function is_constrained(m)
  for _, k in ipairs(CONSTRAINED_METHODS) do
    local ok, f = pcall(function() return m[k] end)
    if not ok or type(f) ~= "function" then return false end
  end
  return true
end

local function is_module(m)
  if type(m) ~= "userdata" and type(m) ~= "table" then return false end
  local ok, f, b = pcall(function() return m.forward, m.backward end)
  return ok and type(f) == "function" and type(b) == "function"
end

local function layer_kind(m)
  local ok, kind = pcall(function() return m:kind() end)
  if ok and type(kind) == "string" then return (kind:gsub("^pool_", "")) end
  return "constrained"
end

-- The constrained layers of model, depth first through containers (tables with a `modules` list).
local function find_constrained(fname, model)
  if not is_module(model) then
    argerror(fname, 1, "expected a module or an rl.nn.Sequential, got " .. (type(model) == "table" and
      "a table that is not a module" or type(model)))
  end
  local layers, seen = {}, {}
  local function walk(m, path)
    if is_constrained(m) then
      layers[#layers + 1] = { module = m, path = path }
      return
    end
    if type(m) ~= "table" or type(m.modules) ~= "table" then return end
    if seen[m] then argerror(fname, 1, "the model contains itself (a cycle through 'modules')") end
    seen[m] = true
    for i, child in ipairs(m.modules) do
      walk(child, path == "" and tostring(i) or (path .. "." .. i))
    end
    seen[m] = nil
  end
  walk(model, "")
  for _, l in ipairs(layers) do
    local kind = layer_kind(l.module)
    l.name = #layers == 1 and kind or (kind .. "@" .. (l.path == "" and "0" or l.path))
  end
  return layers
end

function optim.constrained_layers(model)
  return find_constrained("constrained_layers", model)
end

local PrimalDual = {}
PrimalDual.__index = PrimalDual
PrimalDual.__name = "rotlab.primal_dual"

function optim.primal_dual(model, extra)
  if extra ~= nil then argerror("primal_dual", 2, "no options: the rates are the layers' own (alpha, lr_slack, lr_dual)") end
  local layers = find_constrained("primal_dual", model)
  if #layers == 0 then
    argerror("primal_dual", 1, "the model has no constrained layer (a module with dual_step, e.g. rl.pool.cswe)")
  end
  return setmetatable({ layers = layers, steps = 0 }, PrimalDual)
end

-- Calls layer method k, re-raising an error with the layer's name (at the user's call).
local function call_layer(fname, l, k)
  local ok, res = pcall(l.module[k], l.module)
  if not ok then
    local msg = tostring(res):gsub("^[^:\n]*%.lua:%d+: ", "")
    error(("%s: layer %s (position %s): %s"):format(fname, l.name, l.path == "" and "model" or l.path, msg),
      caller_level())
  end
  return res
end

function PrimalDual:step()
  if getmetatable(self) ~= PrimalDual then argerror("step", 1, "expected a primal_dual object (call pd:step())") end
  for _, l in ipairs(self.layers) do call_layer("primal_dual.step", l, "dual_step") end
  self.steps = self.steps + 1
  return self
end

function PrimalDual:state()
  if getmetatable(self) ~= PrimalDual then argerror("state", 1, "expected a primal_dual object (call pd:state())") end
  local out = {}
  for i, l in ipairs(self.layers) do
    local sw = call_layer("primal_dual.state", l, "swgg")
    out[i] = { name = l.name, path = l.path, swgg_hard = sw and sw.hard or nil, swgg_soft = sw and sw.soft or nil,
      slack = call_layer("primal_dual.state", l, "slack"), dual = call_layer("primal_dual.state", l, "dual"),
      eps = call_layer("primal_dual.state", l, "eps") }
  end
  return out
end

function PrimalDual:__tostring()
  local names = {}
  for i, l in ipairs(self.layers) do names[i] = l.name end
  return ("rotlab.optim.primal_dual(%s; %d steps)"):format(table.concat(names, ", "), self.steps)
end

return optim
