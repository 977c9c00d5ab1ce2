--[[
rotlab.experiment -- the experiment runner: configurations x seeds x folds, epochs, train/val/test metrics logged
to SQLite, a progress bar with ETA on a terminal (quiet otherwise).

  local experiment = require "rotlab.experiment"
  experiment.run{
    name = "quickstart",                 -- experiment name in the DB
    data = "build/data/digit_bags.h5",   -- a dataset in rotlab's HDF5 format (DESIGN section 5)
    db = "results/quickstart.db",
    configs = {{pool = "mean"}, ...},    -- each merged over `defaults`
    defaults = {epochs = 20, batch_size = 32, lr = 1e-3, weight_decay = 0, hidden = 64},
    seeds = {1, 2, 3},
    folds = nil,                         -- nil: one stratified train/val/test split per seed (`split` fractions);
                                         -- k: stratified k-fold cross-validation (val taken from the train part)
    split = {train = 0.6, val = 0.2, test = 0.2},
    build = function(cfg, ds, split) return model end, -- default: experiment.mlp_pool_model (split: the
                                         -- run's {train=, val=, test=} indices, e.g. for standardisation)
    optimizer = function(params, cfg) return opt end, -- default: Adam(lr, weight_decay)
    after_step = function(model, run, step) end,     -- optional hook (e.g. dual/slack steps, traces)
    progress = nil,                      -- true/false; default: on when stderr is a terminal
  }
Every run's metrics are buffered and written once per epoch in one transaction; the run row says RUNNING until it
is FINISHED (or FAILED with the error), so an interrupted run is visible as such. Reruns of a FINISHED
(experiment, config, seed, fold) are skipped.
]]
local rl = require "rotlab"

local experiment = {}

local function merge(a, b)
  local r = {}
  for k, v in pairs(a or {}) do r[k] = v end
  for k, v in pairs(b or {}) do r[k] = v end
  return r
end

local function check(cond, msg, level)
  if not cond then error("experiment.run: " .. msg, (level or 1) + 1) end
end

-- The standard set classifier: instance encoder MLP -> pooling -> linear head.
--   cfg.hidden (width, default 64), cfg.layers (encoder depth, default 2), cfg.dropout (default 0),
--   cfg.pool (name, default "mean"), cfg.pool_opts (table merged into the pooling's options)
function experiment.mlp_pool_model(cfg, ds)
  local D, H, C = ds:dim(), cfg.hidden or 64, ds:num_classes()
  local mods = {}
  local width = D
  for _ = 1, cfg.layers or 2 do
    mods[#mods + 1] = rl.nn.Linear(width, H)
    mods[#mods + 1] = rl.nn.ReLU()
    if (cfg.dropout or 0) > 0 then mods[#mods + 1] = rl.nn.Dropout(cfg.dropout) end
    width = H
  end
  local popts = merge({ dim = H }, cfg.pool_opts)
  mods[#mods + 1] = rl.pool.make(cfg.pool or "mean", popts)
  mods[#mods + 1] = rl.nn.Linear(H, C)
  return rl.nn.Sequential(mods)
end

local function default_optimizer(params, cfg)
  return rl.optim.adam(params, { lr = cfg.lr or 1e-3, weight_decay = cfg.weight_decay or 0 })
end

-- Evaluates a model on a list of set indices: accuracy and mean cross-entropy.
local function evaluate(model, ds, idx, batch_size, loss_fn)
  if #idx == 0 then return nil end
  model:eval()
  local correct, loss_sum = 0, 0
  for _, b in ipairs(rl.data.batches(idx, batch_size, { shuffle = false })) do
    local x, y = ds:batch(b)
    local logits = model:forward(x)
    if type(logits) == "userdata" and logits.values then logits = logits:values() end
    loss_sum = loss_sum + loss_fn:forward(logits, y) * #b
    local pred = logits:argmax()
    for i = 1, #b do
      if pred[i] - 1 == y:get(i) then correct = correct + 1 end
    end
  end
  model:train()
  return correct / #idx, loss_sum / #idx
end

local function is_terminal()
  return rl.isatty and rl.isatty(2) or false
end

local function fmt_time(s)
  if s ~= s or s == math.huge then return "?" end
  s = math.floor(s + 0.5)
  if s >= 3600 then return ("%dh%02dm"):format(s // 3600, (s % 3600) // 60) end
  if s >= 60 then return ("%dm%02ds"):format(s // 60, s % 60) end
  return ("%ds"):format(s)
end

local function progress_bar(done, total, t0, label)
  local frac = total > 0 and done / total or 1
  local width = 30
  local fill = math.floor(frac * width + 0.5)
  local elapsed = rl.wall_time() - t0
  local eta = done > 0 and elapsed / done * (total - done) or math.huge
  io.stderr:write(("\r[%s%s] %3d%% %d/%d runs  elapsed %s  ETA %s  %s\27[K"):format(
    ("#"):rep(fill), ("."):rep(width - fill), math.floor(frac * 100), done, total, fmt_time(elapsed), fmt_time(eta),
    label or ""))
  io.stderr:flush()
end

-- Folds of one seed: list of {train=, val=, test=} index lists (1-based).
local function make_folds(ds, spec, seed)
  local labels = ds:labels()
  if spec.folds then
    local out = {}
    for f, fold in ipairs(rl.data.kfold(labels, spec.folds, { seed = seed, stratified = true })) do
      -- validation: a stratified tenth of the training part
      local sub = {}
      for i, j in ipairs(fold.train) do sub[i] = labels[j] end
      local inner = rl.data.split(sub, { train = 0.9, val = 0.1, test = 0, seed = seed + f, stratify = true })
      local train, val = {}, {}
      for _, i in ipairs(inner.train) do train[#train + 1] = fold.train[i] end
      for _, i in ipairs(inner.val) do val[#val + 1] = fold.train[i] end
      out[f] = { train = train, val = val, test = fold.test }
    end
    return out
  end
  local s = spec.split or { train = 0.6, val = 0.2, test = 0.2 }
  return { rl.data.split(labels, { train = s.train, val = s.val, test = s.test, seed = seed, stratify = true }) }
end

-- Trains one (config, seed, fold) and logs it; returns the final metrics.
local function train_one(spec, ds, cfg, seed, fold, split, run)
  rl.manual_seed(seed * 1000003 + (fold or 0))
  local model = (spec.build or experiment.mlp_pool_model)(cfg, ds, split)
  local params = model:parameters()
  local opt = (spec.optimizer or default_optimizer)(params, cfg)
  local loss_fn = rl.nn.CrossEntropy()
  local bs = cfg.batch_size or 32
  local step = 0
  local last = {}
  model:train()
  for epoch = 1, cfg.epochs or 20 do
    local batches = rl.data.batches(split.train, bs, { seed = seed * 7919 + epoch, shuffle = true })
    local loss_sum, n = 0, 0
    for _, b in ipairs(batches) do
      local x, y = ds:batch(b)
      model:zero_grad()
      local logits = model:forward(x)
      local loss = loss_fn:forward(logits, y)
      model:backward(x, loss_fn:backward(), false)
      if cfg.clip then rl.optim.clip_grad_norm(params, cfg.clip) end
      opt:step()
      step = step + 1
      if spec.after_step then spec.after_step(model, run, step, cfg) end
      loss_sum, n = loss_sum + loss * #b, n + #b
    end
    run:metric(epoch, "train", "loss", loss_sum / n)
    for _, which in ipairs({ "train", "val", "test" }) do
      local acc, l = evaluate(model, ds, split[which], bs, loss_fn)
      if acc then
        run:metric(epoch, which, "acc", acc)
        if which ~= "train" then run:metric(epoch, which, "loss", l) end
        last[which] = acc
      end
    end
    if spec.after_epoch then spec.after_epoch(model, run, epoch, cfg) end
    run:flush()
  end
  return last
end

function experiment.run(spec)
  check(type(spec) == "table", "expected a table of options", 2)
  check(type(spec.name) == "string" and spec.name ~= "", "option 'name' must be a non-empty string", 2)
  check(type(spec.data) == "string", "option 'data' must be the path of an HDF5 dataset", 2)
  check(type(spec.db) == "string", "option 'db' must be the path of the results database", 2)
  check(type(spec.configs) == "table" and #spec.configs > 0, "option 'configs' must be a non-empty list", 2)
  local seeds = spec.seeds or { 1 }
  check(type(seeds) == "table" and #seeds > 0, "option 'seeds' must be a non-empty list of integers", 2)
  for _, s in ipairs(seeds) do check(math.type(s) == "integer", "seeds must be integers", 2) end
  if spec.folds ~= nil then
    check(math.type(spec.folds) == "integer" and spec.folds >= 2, "option 'folds' must be an integer >= 2", 2)
  end

  local ds = rl.data.load(spec.data)
  local dir = spec.db:match("^(.*)/[^/]+$")
  if dir then os.execute('mkdir -p "' .. dir .. '"') end
  local store = rl.db.open(spec.db)
  local exp_id = store:experiment(spec.name, { script = spec.script })

  local jobs = {}
  for _, c in ipairs(spec.configs) do
    local cfg = merge(spec.defaults, c)
    for _, seed in ipairs(seeds) do
      local folds = make_folds(ds, spec, seed)
      for f, split in ipairs(folds) do
        jobs[#jobs + 1] = { cfg = cfg, seed = seed, fold = spec.folds and f or nil, split = split }
      end
    end
  end

  local show = spec.progress
  if show == nil then show = is_terminal() end
  local t0 = rl.wall_time()
  local summary = { finished = 0, skipped = 0, failed = 0 }
  for i, job in ipairs(jobs) do
    if show then progress_bar(i - 1, #jobs, t0, job.cfg.pool or "") end
    local run, why = store:begin_run(exp_id, { config = job.cfg, seed = job.seed, fold = job.fold })
    if not run then
      summary.skipped = summary.skipped + 1
    else
      local ok, err = xpcall(train_one, debug.traceback, spec, ds, job.cfg, job.seed, job.fold, job.split, run)
      if ok then
        run:finish("FINISHED")
        summary.finished = summary.finished + 1
      else
        run:finish("FAILED", { error = tostring(err) })
        summary.failed = summary.failed + 1
        io.stderr:write(("\nrun failed (config %s, seed %d): %s\n"):format(rl.json and rl.json.encode(job.cfg) or "?",
          job.seed, tostring(err)))
        if spec.stop_on_error then
          store:close()
          error(err, 0)
        end
      end
    end
  end
  if show then
    progress_bar(#jobs, #jobs, t0, "")
    io.stderr:write("\n")
  end
  store:close()
  summary.seconds = rl.wall_time() - t0
  return summary
end

return experiment
