--[[
rotlab.experiment -- the experiment runner: configurations x seeds x folds, epochs, train/val/test metrics logged
to SQLite, a progress bar with ETA on a terminal (quiet otherwise). The same runner serves `rotlab run` (one
process) and the workers of `rotlab grid` (many processes, one DB, runs claimed dynamically).

  local experiment = require "rotlab.experiment"
  experiment.run{
    name = "quickstart",                 -- experiment name in the DB
    data = "build/data/digit_bags.h5",   -- a dataset in rotlab's HDF5 format (DESIGN section 5); not needed
                                         -- when `train` is given
    db = "results/quickstart.db",
    configs = {{pool = "mean"}, ...},    -- a list, or a grid from rotlab.grid; each merged over `defaults`
    defaults = {epochs = 20, batch_size = 32, lr = 1e-3, weight_decay = 0, hidden = 64},
    seeds = {1, 2, 3},
    folds = nil,                         -- nil: one stratified train/val/test split per seed (`split` fractions);
                                         -- k: stratified k-fold cross-validation (val taken from the train part)
    split = {train = 0.6, val = 0.2, test = 0.2},
    build = function(cfg, ds, split) return model end, -- default: experiment.mlp_pool_model (split: the
                                         -- run's {train=, val=, test=} indices, e.g. for standardisation)
    optimizer = function(params, cfg) return opt end, -- default: Adam(lr, weight_decay)
    after_step = function(model, run, step, cfg) end, -- optional hook, after the optimizer (and primal-dual) step
    after_epoch = function(model, run, epoch, cfg) end, -- optional hook, after the epoch's metrics
    primal_dual = true,                  -- false: no automatic primal-dual step (the traces are still logged)
    train = function(cfg, seed, fold, run) end,      -- optional: replaces the built-in training of one run;
                                                     -- logs through run:metric/trace/flush (fold is nil or 1..k)
    progress = nil,                      -- true/false; default: on when stderr is a terminal (not in workers)
  }
Constrained layers (rl.pool.cswe; see rl.optim.primal_dual): when the model built for a run has any, the built-in
training does rl.optim.primal_dual(model):step() after every optimizer step (the projected slack and dual steps)
and logs, per layer with prefix P ("cswe" for one layer, "cswe@<position>" for several, e.g. "cswe@4"):
  traces (table `trace`, one row of L values per key and step; steps count optimizer steps from 1 over the run)
    P.swgg_hard, P.swgg_soft   per-slice SWGG of the step's training batch (measured by its forward)
    P.slack, P.dual            per-slice slack u and dual lambda after the step's primal-dual update
    P.eps                      the per-slice bounds, once, at the first traced step where they are known
  at steps 1, 1 + k, 1 + 2k, ... for config key trace_every = k (default 1; 0 = no traces; anything else that is
  not an integer >= 0 fails the run); the rows are buffered and written with the epoch's metrics;
  metrics (split "train", per epoch): swgg_hard, swgg_soft, slack, dual (prefixed "P." when there are several
    layers) = the mean over the slices and over EVERY step of the epoch (whatever trace_every is).
Every run's metrics are buffered and written once per epoch in one transaction; the run row says RUNNING until it
is FINISHED (or FAILED with the error, or INTERRUPTED), so an interrupted run is visible as such. Each run is
claimed atomically (store:begin_run): FINISHED runs are skipped, FAILED and INTERRUPTED ones and RUNNING ones whose
worker died are run again; a run that FAILED during this call is not retried by it.

Grid scripts. A grid script is a Lua file that builds a spec (configs = a list or a rotlab.grid) and calls
experiment.run(spec) once. `rotlab run SCRIPT` runs it in this process; `rotlab grid SCRIPT --jobs N` runs the same
file in N worker processes. The CLI says which through experiment.context (a table it sets before running the
script; `rotlab run` leaves the default):
  context.mode = "run"      run every job here and return the summary (default)
  context.mode = "plan"     record {spec =, jobs =} in context.plan and stop the script (the launcher's look)
  context.mode = "worker"   claim and run jobs until none is left, then stop the script
  context.db                results DB path overriding spec.db (--db, shard DBs)
  context.shard = {i, n}    only the jobs whose position p (1-based, in configs x seeds x folds order) has
                            (p - 1) % n == i - 1
  context.since             failed_since of the claims (the launcher's start time; default: now)
  context.stale_seconds     stale_seconds of the claims (default db.results.STALE_SECONDS)
"Stop the script" is an error carrying a value for which experiment.is_stop(err) is true: code after
experiment.run runs only under `rotlab run`.
  experiment.jobs(spec) -> list of {index, config, seed, fold, key}   (no data needed; key = grid.run_key)
]]
local rl = require "rotlab"
local results = require "db.results"
local grid = require "rotlab.grid"

local experiment = {}

-- Set by the CLI (see the header); `rotlab run` and plain scripts keep mode = "run".
experiment.context = { mode = "run" }

-- Control-flow errors of the grid modes (plan, worker done, interrupted by a signal).
local Stop = { __tostring = function(s) return "rotlab: " .. s.what end }
function experiment.is_stop(err) return getmetatable(err) == Stop end
local function stop(what, fields)
  local e = fields or {}
  e.what = what
  return setmetatable(e, Stop)
end

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

-- The quantities of a constrained layer logged by the runner (trace key suffix = metric name = pd:state() field).
experiment.CONSTRAINED_TRACES = { "swgg_hard", "swgg_soft", "slack", "dual" }

-- The constrained-layer bookkeeping of one run: primal-dual steps, traces, epoch means (see the header).
local function constrained_logger(spec, model, cfg)
  local layers = rl.optim.constrained_layers(model)
  if #layers == 0 then return nil end
  local every = cfg.trace_every
  if every == nil then every = 1 end
  if math.type(every) ~= "integer" then
    if type(every) == "number" and math.tointeger(every) then every = math.tointeger(every)
    else error(("config key trace_every must be an integer >= 0, got %s"):format(tostring(every)), 0) end
  end
  if every < 0 then error(("config key trace_every must be an integer >= 0, got %d"):format(every), 0) end
  local pd = rl.optim.primal_dual(model)
  local multi = #layers > 1
  local lg = { pd = pd, eps_logged = {} }
  local sums, counts = {}, {}

  function lg.step(run, step)
    if spec.primal_dual ~= false then pd:step() end
    local traced = every > 0 and (step - 1) % every == 0
    for i, st in ipairs(pd:state()) do
      for _, q in ipairs(experiment.CONSTRAINED_TRACES) do
        local v = st[q]
        if v then
          local key = st.name .. "." .. q
          sums[key] = (sums[key] or 0) + v:sum()
          counts[key] = (counts[key] or 0) + v:size()
          if traced then run:trace(step, key, v) end
        end
      end
      if traced and st.eps and not lg.eps_logged[i] then
        run:trace(step, st.name .. ".eps", st.eps)
        lg.eps_logged[i] = true
      end
    end
  end

  function lg.epoch(run, epoch)
    for _, l in ipairs(layers) do
      for _, q in ipairs(experiment.CONSTRAINED_TRACES) do
        local key = l.name .. "." .. q
        if counts[key] and counts[key] > 0 then
          run:metric(epoch, "train", multi and key or q, sums[key] / counts[key])
        end
      end
    end
    sums, counts = {}, {}
  end
  return lg
end

-- Trains one (config, seed, fold) and logs it; returns the final metrics.
local function train_one(spec, ds, cfg, seed, fold, split, run)
  rl.manual_seed(seed * 1000003 + (fold or 0))
  local model = (spec.build or experiment.mlp_pool_model)(cfg, ds, split)
  local params = model:parameters()
  local opt = (spec.optimizer or default_optimizer)(params, cfg)
  local constrained = constrained_logger(spec, model, cfg)
  local loss_fn = rl.nn.CrossEntropy()
  local bs = cfg.batch_size or 32
  local step = 0
  local last = {}
  model:train()
  for epoch = 1, cfg.epochs or 20 do
    local batches = rl.data.batches(split.train, bs, { seed = seed * 7919 + epoch, shuffle = true })
    local loss_sum, n = 0, 0
    for _, b in ipairs(batches) do
      run:heartbeat()
      local x, y = ds:batch(b)
      model:zero_grad()
      local logits = model:forward(x)
      local loss = loss_fn:forward(logits, y)
      model:backward(x, loss_fn:backward(), false)
      if cfg.clip then rl.optim.clip_grad_norm(params, cfg.clip) end
      opt:step()
      step = step + 1
      if constrained then constrained.step(run, step) end
      if spec.after_step then spec.after_step(model, run, step, cfg) end
      loss_sum, n = loss_sum + loss * #b, n + #b
    end
    run:metric(epoch, "train", "loss", loss_sum / n)
    if constrained then constrained.epoch(run, epoch) end
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


local function check_spec(spec)
  check(type(spec) == "table", "expected a table of options", 3)
  check(type(spec.name) == "string" and spec.name ~= "", "option 'name' must be a non-empty string", 3)
  check(spec.train == nil or type(spec.train) == "function", "option 'train' must be a function(cfg, seed, fold, run)",
    3)
  check(spec.train or type(spec.data) == "string", "option 'data' must be the path of an HDF5 dataset", 3)
  if not spec.train then
    local f, why = io.open(spec.data, "rb")
    check(f, ("option 'data': cannot open %s"):format(why or spec.data), 3)
    f:close()
  end
  check(type(spec.db) == "string" and spec.db ~= "", "option 'db' must be the path of the results database", 3)
  local configs = spec.configs
  if getmetatable(configs) == grid.Grid then configs = configs:configs() end
  check(type(configs) == "table" and #configs > 0, "option 'configs' must be a non-empty list or grid", 3)
  for i, c in ipairs(configs) do check(type(c) == "table", ("configs[%d] is not a table"):format(i), 3) end
  local seeds = spec.seeds or { 1 }
  check(type(seeds) == "table" and #seeds > 0, "option 'seeds' must be a non-empty list of integers", 3)
  for _, s in ipairs(seeds) do check(math.type(s) == "integer", "seeds must be integers", 3) end
  if spec.folds ~= nil then
    check(math.type(spec.folds) == "integer" and spec.folds >= 2, "option 'folds' must be an integer >= 2", 3)
  end
  return configs, seeds
end

function experiment.jobs(spec)
  local configs, seeds = check_spec(spec)
  local jobs = {}
  for _, c in ipairs(configs) do
    local cfg = merge(spec.defaults, c)
    for _, seed in ipairs(seeds) do
      for f = 1, spec.folds or 1 do
        local fold = spec.folds and f or nil
        jobs[#jobs + 1] = { index = #jobs + 1, config = cfg, seed = seed, fold = fold,
          key = grid.run_key(spec.name, cfg, seed, fold) }
      end
    end
  end
  return jobs
end

-- The jobs of one shard {i, n} (all when shard is nil).
function experiment.shard_jobs(jobs, shard)
  if not shard then return jobs end
  local out = {}
  for _, job in ipairs(jobs) do
    if (job.index - 1) % shard[2] == shard[1] - 1 then out[#out + 1] = job end
  end
  return out
end

-- Raises the interrupt stop when a trapped signal (TERM, INT in workers) has arrived.
local function check_signal()
  local sig = rl.proc.trapped()
  if sig then error(stop("interrupted", { signal = sig }), 0) end
end

-- The run handed to spec.train: the real run, checking for a trapped signal on every call.
local function guarded(run)
  return setmetatable({}, { __index = function(_, k)
    local v = run[k]
    if type(v) ~= "function" then return v end
    return function(_, ...)
      check_signal()
      return v(run, ...)
    end
  end })
end

local function traceback(err)
  if experiment.is_stop(err) then return err end
  return debug.traceback(tostring(err), 2)
end

-- Claims and runs jobs until none is left; returns the summary.
local function run_jobs(spec, jobs, ctx)
  local db_path = ctx.db or spec.db
  local dir = db_path:match("^(.*)/[^/]+$")
  if dir and dir ~= "" then os.execute('mkdir -p "' .. dir:gsub('["\\$`]', "\\%0") .. '"') end
  local store <close> = rl.db.open(db_path)
  local exp_id = store:experiment(spec.name, { script = spec.script })
  local since = ctx.since or store:now()
  local stale = ctx.stale_seconds or results.STALE_SECONDS
  local show = spec.progress
  if show == nil then show = ctx.mode ~= "worker" and is_terminal() end
  local t0 = rl.wall_time()
  local summary = { finished = 0, skipped = 0, failed = 0, interrupted = 0, total = #jobs }
  local ds, folds_of = nil, {}
  local settled = {}  -- keys this call is done with (finished or failed here, or failed since `since`)

  local function split_of(job)
    if spec.train then return nil end
    if not ds then ds = rl.data.load(spec.data) end
    local folds = folds_of[job.seed]
    if not folds then
      folds = make_folds(ds, spec, job.seed)
      folds_of[job.seed] = folds
    end
    return folds[job.fold or 1]
  end

  local function execute(job, run)
    local ok, err = xpcall(function()
      local split = split_of(job)
      if spec.train then return spec.train(job.config, job.seed, job.fold, guarded(run)) end
      return train_one(spec, ds, job.config, job.seed, job.fold, split, run)
    end, traceback)
    if ok then
      local fok, ferr = pcall(run.finish, run, "FINISHED")
      if fok then summary.finished = summary.finished + 1 return end
      err = ferr
    end
    if experiment.is_stop(err) then
      pcall(run.finish, run, "INTERRUPTED", { error = "signal " .. tostring(err.signal) })
      summary.interrupted = summary.interrupted + 1
      error(err, 0)
    end
    local fok, ferr = pcall(run.finish, run, "FAILED", { error = tostring(err) })
    summary.failed = summary.failed + 1
    io.stderr:write(("%srun failed (config %s, seed %d%s): %s\n"):format(show and "\n" or "",
      rl.json and rl.json.encode(job.config) or "?", job.seed, job.fold and (", fold " .. job.fold) or "",
      tostring(err)))
    if not fok then io.stderr:write(("  and it could not be marked FAILED: %s\n"):format(tostring(ferr))) end
    if spec.stop_on_error then error(err, 0) end
  end

  local initially_finished
  while true do
    check_signal()
    -- one read of every run of the experiment, then claims in job order
    local rows = {}
    for row in store.db:rows("SELECT run_key, status, host, pid, finished, " ..
      "(julianday('now') - julianday(heartbeat)) * 86400.0 AS age FROM run WHERE experiment_id = ?", exp_id) do
      rows[row.run_key] = row
    end
    local done = 0
    for _, job in ipairs(jobs) do
      local r = rows[job.key]
      if r and r.status == "FINISHED" then done = done + 1 end
    end
    if not initially_finished then initially_finished = done end
    if show then progress_bar(done, #jobs, t0, "") end
    local claimed = false
    for _, job in ipairs(jobs) do
      local r = rows[job.key]
      local candidate = not settled[job.key] and (r == nil or r.status == "INTERRUPTED" or
        (r.status == "FAILED" and not (r.finished and r.finished >= since)) or
        (r.status == "RUNNING" and not results.owner_alive(r, stale)))
      if r and r.status == "FAILED" and r.finished and r.finished >= since then settled[job.key] = true end
      if candidate then
        local run, why = store:begin_run(exp_id, { config = job.config, seed = job.seed, fold = job.fold,
          stale_seconds = stale, failed_since = since })
        if run then
          claimed = true
          if show then progress_bar(done, #jobs, t0, job.config.pool or "") end
          execute(job, run)
          settled[job.key] = true
          break
        elseif why ~= "running" then
          settled[job.key] = true
        end
      end
    end
    if not claimed then break end
  end
  if show then
    progress_bar((initially_finished or 0) + summary.finished, #jobs, t0, "")
    io.stderr:write("\n")
  end
  summary.skipped = initially_finished or 0
  summary.seconds = rl.wall_time() - t0
  return summary
end

function experiment.run(spec)
  local jobs = experiment.jobs(spec)
  local ctx = experiment.context or { mode = "run" }
  if ctx.mode == "plan" then
    ctx.plan = { spec = spec, jobs = jobs }
    error(stop("plan"), 0)
  end
  jobs = experiment.shard_jobs(jobs, ctx.shard)
  if ctx.mode == "worker" then
    local summary = run_jobs(spec, jobs, ctx)
    error(stop("worker", { summary = summary }), 0)
  end
  return run_jobs(spec, jobs, ctx)
end

return experiment
