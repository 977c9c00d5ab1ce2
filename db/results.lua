--[[
db.results -- the results logger of the experiment runner: experiments, runs, params, metrics, traces and
artifacts in the SQLite database described by db/schema.sql. Re-exported as rl.db (lua/rotlab/db.lua).
  local store = results.open(path [, {busy_timeout_ms = 10000, readonly = false}])
        -- the parent directory must exist; an empty DB gets the schema; a newer schema is refused;
        -- readonly: the file must exist and hold a results DB, nothing is ever written (PRAGMA query_only)
  local exp_id = store:experiment(name [, {script = path}])             -- get or create
  local run, why = store:begin_run(exp_id, {config = tbl, seed = s, fold = f [, stale_seconds = 300,
                                   failed_since = time]})
        -- an atomic claim (one BEGIN IMMEDIATE transaction): nil, "finished" when that (experiment, config,
        -- seed, fold) already FINISHED; nil, "running" when another live worker holds it; nil, "failed" when it
        -- FAILED at or after failed_since (an ISO time from store:now(): not retried within one grid); any
        -- other earlier run with the same key (FAILED, INTERRUPTED, or RUNNING with a dead owner) is reset:
        -- its metric/trace/param/artifact rows go. The owner of a RUNNING run is (host, pid): on this host it
        -- is alive while its process is and its heartbeat is younger than stale_seconds; on another host (or
        -- without a pid) while its heartbeat is younger than stale_seconds. stale_seconds <= 0: heartbeats are
        -- not consulted (a private DB: only live processes of this host own runs).
  run:metric(step, split, name, value)     -- buffered; the same (split, name, step) twice keeps the last value
  run:trace(step, key, vector)             -- buffered; vector = list of numbers or rl tensor (copied now)
  run:artifact(name, {kind = s, path = s, data = bytes})   -- written at once
  run:flush()                              -- buffered rows + heartbeat in ONE transaction
  run:heartbeat([force])                   -- refreshes the heartbeat (at most every HEARTBEAT_SECONDS unless
                                           -- force); metric/trace call it, so a training loop that logs stays alive
  run:finish("FINISHED" | "FAILED" | "INTERRUPTED" [, {error = msg}])  -- flush + status + times, one transaction
  store:interrupt_runs(pid [, reason]) -> n  -- RUNNING runs of process pid on this host become INTERRUPTED
  store:now() -> the DB's current time as stored in started/finished/heartbeat
  results.owner_alive(row, stale_seconds) -> whether the worker of a RUNNING row {host, pid, age (seconds since
        its heartbeat)} is alive, by the rules of begin_run (the grid workers pre-filter their claims with it)
  store:runs([{experiment = name, status = s}]) -> rows (run columns + experiment = name)
  store:metrics(run_id [, {split = s, name = s}]) -> rows {step, split, name, value, value_class}; value NaN when
        value_class is "nan" (SQLite stores NaN as NULL)
  store:traces(run_id [, key]) -> rows {step, key, n, vals = list of numbers (non-finite restored)}
  store:close()                            -- also __close/__gc; safe twice
  results.SCHEMA_VERSION, results.schema_sql()
Every write is inside BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error), so a crash or an error never leaves a
half-written set of rows. A failed flush keeps its buffer (nothing was written), so the caller may retry; a
finish("FAILED") whose rows cannot be written still records the status and says so in the error column.
Every write of a run checks that the row still belongs to it (RUNNING, same host and pid): a worker whose run was
taken over after its heartbeat went stale gets an error instead of mixing its rows into the new owner's.
]]
local core = require "rotlab.core"
local json = require "rotlab.json"

local M = {}

-- Schema version this code writes and understands (PRAGMA user_version; meta.schema_version).
M.SCHEMA_VERSION = 2
-- Oldest schema version a read-only open accepts as it is (read-write opens migrate it).
M.MIN_READ_VERSION = 1
-- Buffered metric + trace rows that trigger an automatic flush (bounds memory of long runs).
M.FLUSH_ROWS = 4096
-- Busy timeout of writers waiting for another process's lock (parallel grid jobs share one DB).
M.BUSY_TIMEOUT_MS = 10000
-- A run's heartbeat is refreshed at most this often (seconds) by metric/trace/heartbeat.
M.HEARTBEAT_SECONDS = 30
-- Default age (seconds) after which the heartbeat of a RUNNING run that cannot be checked otherwise (another host)
-- says its worker is dead: ten missed heartbeats.
M.STALE_SECONDS = 300

local STATUSES = { RUNNING = true, FINISHED = true, FAILED = true, INTERRUPTED = true }
local NOW = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"

------------------------------------------------------------------------------------------------- helpers

local function fail(fname, fmt, ...)
  error(("%s: " .. fmt):format(fname, ...), 0)
end

local function check_string(fname, i, what, v)
  if type(v) ~= "string" or v == "" then
    fail(fname, "bad argument #%d (%s: expected a non-empty string, got %s)", i, what,
      type(v) == "string" and "an empty string" or type(v))
  end
end

local function check_step(fname, i, v)
  local s = math.type(v) and math.tointeger(v)
  if not s or s < 0 then
    fail(fname, "bad argument #%d (step: expected an integer >= 0, got %s)", i, tostring(v))
  end
  return s
end

local function check_options(fname, i, opts, known)
  if opts == nil then return {} end
  if type(opts) ~= "table" then fail(fname, "bad argument #%d (expected a table of options, got %s)", i, type(opts)) end
  for k in pairs(opts) do
    if not known[k] then
      local names = {}
      for n in pairs(known) do names[#names + 1] = n end
      table.sort(names)
      fail(fname, "unknown option '%s' (known options: %s)", tostring(k), table.concat(names, ", "))
    end
  end
  return opts
end

local function optional_integer(fname, what, v)
  if v == nil then return nil end
  local n = math.type(v) and math.tointeger(v)
  if not n then fail(fname, "option %s: expected an integer or nil, got %s", what, tostring(v)) end
  return n
end

local function class_of(v)
  if v ~= v then return "nan" end
  if v == math.huge then return "inf" end
  if v == -math.huge then return "-inf" end
  return "finite"
end

local function restore_number(v)
  if v == "nan" then return 0 / 0 end
  if v == "inf" then return math.huge end
  if v == "-inf" then return -math.huge end
  return v
end

-- Directory of this file: db/schema.sql lives next to it.
local function here()
  local src = debug.getinfo(1, "S").source
  local dir = src:match("^@(.*)[/\\][^/\\]*$")
  if dir then return dir end
  return (rawget(_G, "ROTLAB_ROOT") or ".") .. "/db"
end

function M.schema_sql()
  local path = here() .. "/schema.sql"
  local f, err = io.open(path, "r")
  if not f then error("results: cannot read the schema: " .. tostring(err), 0) end
  local sql = f:read("a")
  f:close()
  return sql
end

local function shell_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local cached_version, cached_host
-- `git describe` of the source tree, else "unknown" (computed once per process).
function M.code_version()
  if cached_version then return cached_version end
  cached_version = "unknown"
  local root = here() .. "/.."
  local p = io.popen("git -C " .. shell_quote(root) .. " describe --always --dirty --tags 2>/dev/null")
  if p then
    local out = p:read("a") or ""
    p:close()
    out = out:gsub("%s+$", "")
    if out ~= "" then cached_version = out end
  end
  return cached_version
end

function M.hostname()
  if cached_host then return cached_host end
  local f = io.open("/proc/sys/kernel/hostname", "r")
  local h = f and f:read("l")
  if f then f:close() end
  cached_host = (h and h ~= "" and h) or os.getenv("HOSTNAME") or "unknown"
  return cached_host
end

-- Runs fn(...) inside BEGIN IMMEDIATE ... COMMIT; rolls back and re-raises on any error. Returns fn's results.
local function transaction(db, fn, ...)
  db:exec("BEGIN IMMEDIATE")
  local res = table.pack(pcall(fn, ...))
  if res[1] then
    local ok, err = pcall(db.exec, db, "COMMIT")
    if not ok then res = { false, err, n = 2 } end
  end
  if not res[1] then
    if not db:autocommit() then pcall(db.exec, db, "ROLLBACK") end
    error(res[2], 0)
  end
  return table.unpack(res, 2, res.n)
end
M.transaction = transaction

local function dir_exists(dir)
  local ok, _, code = os.rename(dir, dir)
  return ok or code == 13 -- EACCES: it exists
end

------------------------------------------------------------------------------------------------- store

local Store = {}
Store.__index = Store
local Run = {}
Run.__index = Run

-- Migrations: MIGRATIONS[v](db) brings a version v database to version v + 1 (inside the open transaction).
local MIGRATIONS = {
  [1] = function(db)
    db:exec("ALTER TABLE run ADD COLUMN pid INTEGER; PRAGMA user_version = 2; " ..
      "UPDATE meta SET value = '2' WHERE key = 'schema_version'")
  end,
}

-- Brings the schema up to date (or refuses): called inside a transaction. Returns the version now in force.
local function ensure_schema(db, readonly)
  local version = db:query("PRAGMA user_version")[1].user_version
  if version > M.SCHEMA_VERSION then
    error(("results DB schema version %d is newer than this rotlab (%d); upgrade rotlab to use it"):format(
      version, M.SCHEMA_VERSION), 0)
  end
  if version == M.SCHEMA_VERSION then return version end
  if version == 0 then
    local ntables = db:query("SELECT count(*) AS n FROM sqlite_master")[1].n
    if ntables > 0 then
      error(("not a rotlab results DB (it has %d schema objects but no schema version)"):format(ntables), 0)
    end
    if readonly then error("an empty database, not a rotlab results DB", 0) end
    db:exec(M.schema_sql())
    return M.SCHEMA_VERSION
  end
  if readonly and version >= M.MIN_READ_VERSION then return version end
  while version < M.SCHEMA_VERSION do
    if not MIGRATIONS[version] then
      error(("results DB schema version %d has no migration to %d"):format(version, M.SCHEMA_VERSION), 0)
    end
    MIGRATIONS[version](db)
    version = version + 1
  end
  return version
end

local OPEN_OPTIONS = { busy_timeout_ms = true, readonly = true }

function M.open(path, opts)
  check_string("results.open", 1, "path", path)
  opts = check_options("results.open", 2, opts, OPEN_OPTIONS)
  local readonly = opts.readonly and true or false
  -- readonly: the connection is read-write without create plus query_only, so that closing it still checkpoints
  -- and removes the -wal/-shm files (a SQLite read-only connection leaves them behind)
  local ok, db = pcall(core.sqlite_open, path,
    { busy_timeout_ms = opts.busy_timeout_ms or M.BUSY_TIMEOUT_MS, create = not readonly })
  if not ok then
    local dir = path:match("^(.*)/[^/]*$") or "."
    if dir == "" then dir = "/" end
    if not dir_exists(dir) then
      error(("results.open: cannot open '%s': directory '%s' does not exist"):format(path, dir), 0)
    end
    local f = readonly and io.open(path, "r")
    if f then f:close() end
    if readonly and not f then
      error(("results.open: cannot open '%s': no such file"):format(path), 0)
    end
    error(("results.open: cannot open '%s': %s"):format(path, db), 0)
  end
  local setup_ok, err = pcall(function()
    db:exec("PRAGMA foreign_keys = ON")
    if not readonly then
      if db:query("PRAGMA journal_mode")[1].journal_mode ~= "wal" then db:exec("PRAGMA journal_mode = WAL") end
      db:exec("PRAGMA synchronous = NORMAL")
      return transaction(db, ensure_schema, db, false)
    else
      db:exec("PRAGMA query_only = ON")
      return ensure_schema(db, true)
    end
  end)
  if not setup_ok then
    db:close()
    error(("results.open: '%s': %s"):format(path, err), 0)
  end
  return setmetatable({ db = db, path = path, stmts = {}, readonly = readonly, version = err }, Store)
end

-- A cached prepared statement (finalized by close).
function Store:_stmt(sql)
  local st = self.stmts[sql]
  if not st then
    st = self.db:prepare(sql)
    self.stmts[sql] = st
  end
  return st
end

-- Executes a cached statement with parameters; returns its first row (if any).
function Store:_run(sql, ...)
  local st = self:_stmt(sql):bind(...)
  local row = st:step()
  st:reset()
  return row
end

function Store:_check(fname)
  if not self.db then error(fname .. ": the results store is closed", 0) end
end

function Store:close()
  if not self.db then return end
  for _, st in pairs(self.stmts) do st:finalize() end
  self.stmts = {}
  self.db:close()
  self.db = nil
end
Store.__close = Store.close
Store.__gc = Store.close

function Store:__tostring()
  return ("rotlab results store (%s%s)"):format(self.path, self.db and "" or ", closed")
end

function Store:experiment(name, opts)
  self:_check("store:experiment")
  check_string("store:experiment", 1, "name", name)
  opts = check_options("store:experiment", 2, opts, { script = true })
  if opts.script ~= nil and type(opts.script) ~= "string" then
    fail("store:experiment", "option script: expected a string, got %s", type(opts.script))
  end
  return transaction(self.db, function()
    local row = self:_run("SELECT id FROM experiment WHERE name = ?", name)
    if row then return row.id end
    self:_run("INSERT INTO experiment (name, created, script, code_version) VALUES (?, " .. NOW .. ", ?, ?)",
      name, opts.script, M.code_version())
    return self.db:last_insert_id()
  end)
end

local function encode_config(fname, config)
  if type(config) ~= "table" then fail(fname, "option config: expected a table, got %s", type(config)) end
  for k in pairs(config) do
    if type(k) ~= "string" or k == "" then
      fail(fname, "option config: keys must be non-empty strings, got %s %s", type(k), tostring(k))
    end
  end
  if next(config) == nil then return "{}" end
  local ok, s = pcall(json.encode, config)
  if not ok then fail(fname, "option config: %s", s) end
  return s
end

local function json_or_null(v) return v == nil and "null" or json.encode(v) end

-- The stable key of a run: FNV-1a 64 of the canonical JSON {config, experiment, fold, seed} (null when absent).
function M.run_key(experiment_name, config_json, seed, fold)
  return json.hash(('{"config":%s,"experiment":%s,"fold":%s,"seed":%s}'):format(config_json,
    json.encode(experiment_name), json_or_null(fold), json_or_null(seed)))
end

local BEGIN_OPTIONS = { config = true, seed = true, fold = true, stale_seconds = true, failed_since = true }

-- Whether the worker holding a RUNNING row (host, pid, heartbeat age in seconds) is still alive.
local function owner_alive(row, stale)
  if row.host == M.hostname() and row.pid then
    if row.pid == core.proc_pid() then return false end -- a leftover of this very process
    if not core.proc_alive(row.pid) then return false end
    return stale <= 0 or (row.age ~= nil and row.age < stale)
  end
  return stale > 0 and row.age ~= nil and row.age < stale
end
M.owner_alive = owner_alive

function Store:begin_run(exp_id, opts)
  local fname = "store:begin_run"
  self:_check(fname)
  if math.type(exp_id) ~= "integer" then
    fail(fname, "bad argument #1 (experiment id: expected an integer, got %s)", tostring(exp_id))
  end
  opts = check_options(fname, 2, opts, BEGIN_OPTIONS)
  local config = opts.config or {}
  local config_json = encode_config(fname, config)
  local seed = optional_integer(fname, "seed", opts.seed)
  local fold = optional_integer(fname, "fold", opts.fold)
  local stale = opts.stale_seconds or M.STALE_SECONDS
  if type(stale) ~= "number" or stale ~= stale then
    fail(fname, "option stale_seconds: expected a number, got %s", tostring(stale))
  end
  local since = opts.failed_since
  if since ~= nil and type(since) ~= "string" then
    fail(fname, "option failed_since: expected a time string (store:now()), got %s", type(since))
  end
  local host, pid = M.hostname(), core.proc_pid()
  local keys = {}
  for k in pairs(config) do keys[#keys + 1] = k end
  table.sort(keys)
  local db = self.db
  local run_id, key_or_why = transaction(db, function()
    local exp = self:_run("SELECT name FROM experiment WHERE id = ?", exp_id)
    if not exp then error(("%s: no experiment with id %d"):format(fname, exp_id), 0) end
    local key = M.run_key(exp.name, config_json, seed, fold)
    local old = self:_run("SELECT id, status, host, pid, finished, " ..
      "(julianday('now') - julianday(heartbeat)) * 86400.0 AS age FROM run WHERE run_key = ?", key)
    local id
    if old and old.status == "FINISHED" then return nil, "finished" end
    if old and old.status == "RUNNING" and owner_alive(old, stale) then return nil, "running" end
    if old and old.status == "FAILED" and since and old.finished and old.finished >= since then
      return nil, "failed"
    end
    if old then
      id = old.id
      for _, t in ipairs { "metric", "trace", "param", "artifact" } do
        self:_run("DELETE FROM " .. t .. " WHERE run_id = ?", id)
      end
      self:_run("UPDATE run SET status = 'RUNNING', started = " .. NOW .. ", finished = NULL, wall_seconds = NULL, " ..
        "host = ?, code_version = ?, error = NULL, heartbeat = " .. NOW .. ", pid = ? WHERE id = ?",
        host, M.code_version(), pid, id)
    else
      self:_run("INSERT INTO run (experiment_id, run_key, config_json, seed, fold, status, started, host, " ..
        "code_version, heartbeat, pid) VALUES (?, ?, ?, ?, ?, 'RUNNING', " .. NOW .. ", ?, ?, " .. NOW .. ", ?)",
        exp_id, key, config_json, seed, fold, host, M.code_version(), pid)
      id = db:last_insert_id()
    end
    for _, k in ipairs(keys) do
      local v = config[k]
      local num = type(v) == "number" and v or type(v) == "boolean" and (v and 1 or 0) or nil
      self:_run("INSERT INTO param (run_id, name, value_json, value_num) VALUES (?, ?, ?, ?)", id, k,
        json.encode(v), num)
    end
    return id, key
  end)
  if not run_id then return nil, key_or_why end
  return setmetatable({ store = self, id = run_id, key = key_or_why, config = config, seed = seed, fold = fold,
    host = host, pid = pid, beat = core.wall_time(), metrics = {}, traces = {}, nbuf = 0, done = false }, Run)
end

------------------------------------------------------------------------------------------------- runs

function Run:_check(fname)
  if self.done then error(("%s: run %d is already finished"):format(fname, self.id), 0) end
  self.store:_check(fname)
end

function Run:metric(step, split, name, value)
  local fname = "run:metric"
  self:_check(fname)
  step = check_step(fname, 1, step)
  check_string(fname, 2, "split", split)
  check_string(fname, 3, "name", name)
  if type(value) ~= "number" then fail(fname, "bad argument #4 (value: expected a number, got %s)", type(value)) end
  local m = self.metrics
  m[#m + 1] = { step, split, name, value }
  self.nbuf = self.nbuf + 1
  if self.nbuf >= M.FLUSH_ROWS then self:flush() else self:heartbeat() end
end

local function is_tensor(v)
  local mt = type(v) == "userdata" and getmetatable(v)
  return mt and mt.__name == "rotlab.tensor"
end

function Run:trace(step, key, vector)
  local fname = "run:trace"
  self:_check(fname)
  step = check_step(fname, 1, step)
  check_string(fname, 2, "key", key)
  local vals = {}
  if is_tensor(vector) then
    for i = 1, vector:size() do vals[i] = vector:get(i) end
  elseif type(vector) == "table" then
    local n = #vector
    for k in pairs(vector) do
      if math.type(k) ~= "integer" or k < 1 or k > n then
        fail(fname, "bad argument #3 (vector: expected a list of numbers, has key %s)", tostring(k))
      end
    end
    for i = 1, n do
      local v = vector[i]
      if type(v) ~= "number" then
        fail(fname, "bad argument #3 (vector: entry %d is a %s, expected a number)", i, type(v))
      end
      vals[i] = v
    end
  else
    fail(fname, "bad argument #3 (vector: expected a list of numbers or a tensor, got %s)", type(vector))
  end
  local t = self.traces
  t[#t + 1] = { step, key, #vals, #vals == 0 and "[]" or json.encode(vals) }
  self.nbuf = self.nbuf + 1
  if self.nbuf >= M.FLUSH_ROWS then self:flush() else self:heartbeat() end
end

local METRIC_SQL = "INSERT INTO metric (run_id, step, split, name, value, value_class) VALUES (?, ?, ?, ?, ?, ?) " ..
  "ON CONFLICT (run_id, split, name, step) DO UPDATE SET value = excluded.value, value_class = excluded.value_class"
local TRACE_SQL = "INSERT INTO trace (run_id, step, key, n, vals) VALUES (?, ?, ?, ?, ?) " ..
  "ON CONFLICT (run_id, key, step) DO UPDATE SET n = excluded.n, vals = excluded.vals"

local OWN_SQL = "UPDATE run SET heartbeat = " .. NOW .. " WHERE id = ? AND status = 'RUNNING' AND host IS ? AND pid IS ?"

-- Refreshes the heartbeat and checks that the row is still this run's; inside the caller's transaction.
function Run:_own()
  self.store:_run(OWN_SQL, self.id, self.host, self.pid)
  if self.store.db:changes() ~= 1 then
    error(("run %d is no longer held by this worker (finished elsewhere, or taken over after its heartbeat " ..
      "went stale)"):format(self.id), 0)
  end
end

-- Writes the buffers and the heartbeat; runs inside the caller's transaction.
function Run:_write()
  self:_own()
  local store, id = self.store, self.id
  local st = store:_stmt(METRIC_SQL)
  for _, m in ipairs(self.metrics) do
    local v = m[4]
    local class = class_of(v)
    st:bind(id, m[1], m[2], m[3], class ~= "nan" and v or nil, class)
    st:step()
  end
  st = store:_stmt(TRACE_SQL)
  for _, t in ipairs(self.traces) do
    st:bind(id, t[1], t[2], t[3], t[4])
    st:step()
  end
end

function Run:_clear()
  self.metrics, self.traces, self.nbuf = {}, {}, 0
end

function Run:flush()
  self:_check("run:flush")
  local ok, err = pcall(transaction, self.store.db, self._write, self)
  if not ok then
    error(("run:flush: run %d: nothing written, %d buffered rows kept: %s"):format(self.id, self.nbuf, err), 0)
  end
  self:_clear()
  self.beat = core.wall_time()
end

function Run:heartbeat(force)
  self:_check("run:heartbeat")
  local now = core.wall_time()
  if not force and now - self.beat < M.HEARTBEAT_SECONDS then return false end
  transaction(self.store.db, self._own, self)
  self.beat = now
  return true
end

local FINISH_SQL = "UPDATE run SET status = ?, finished = " .. NOW .. ", wall_seconds = " ..
  "(julianday('now') - julianday(started)) * 86400.0, error = ?, heartbeat = " .. NOW .. " WHERE id = ?"
local FINISH_OWN_SQL = FINISH_SQL .. " AND status = 'RUNNING' AND host IS ? AND pid IS ?"

function Run:finish(status, opts)
  local fname = "run:finish"
  self:_check(fname)
  if type(status) ~= "string" or not STATUSES[status] or status == "RUNNING" then
    fail(fname, "bad argument #1 (status: expected \"FINISHED\", \"FAILED\" or \"INTERRUPTED\", got %s)",
      tostring(status))
  end
  opts = check_options(fname, 2, opts, { error = true })
  local msg = opts.error
  if msg ~= nil and type(msg) ~= "string" then msg = tostring(msg) end
  local db = self.store.db
  local ok, err = pcall(transaction, db, function()
    self:_write()
    self.store:_run(FINISH_SQL, status, msg, self.id)
  end)
  if not ok and err:find("no longer held by this worker", 1, true) then
    error(("run:finish: %s"):format(err), 0)
  end
  if not ok then
    if status == "FINISHED" then
      error(("run:finish: run %d: nothing written, still RUNNING: %s"):format(self.id, err), 0)
    end
    -- a failed run must still be marked: record the status without the rows that cannot be written
    local note = ("%s[%d buffered rows could not be written: %s]"):format(msg and (msg .. " ") or "", self.nbuf, err)
    transaction(db, function()
      self.store:_run(FINISH_OWN_SQL, status, note, self.id, self.host, self.pid)
      if db:changes() ~= 1 then error(("run:finish: run %d is no longer held by this worker"):format(self.id), 0) end
    end)
  end
  self:_clear()
  self.done = true
  return true
end

function Run:artifact(name, opts)
  local fname = "run:artifact"
  self:_check(fname)
  check_string(fname, 1, "name", name)
  opts = check_options(fname, 2, opts, { kind = true, path = true, data = true })
  for _, k in ipairs { "kind", "path", "data" } do
    if opts[k] ~= nil and type(opts[k]) ~= "string" then
      fail(fname, "option %s: expected a string, got %s", k, type(opts[k]))
    end
  end
  transaction(self.store.db, function()
    self.store:_run("INSERT INTO artifact (run_id, name, kind, path, data) VALUES (?, ?, ?, ?, ?) " ..
      "ON CONFLICT (run_id, name) DO UPDATE SET kind = excluded.kind, path = excluded.path, data = excluded.data",
      self.id, name, opts.kind, opts.path, opts.data and { blob = opts.data } or nil)
  end)
end

function Run:__tostring()
  return ("rotlab run %d (%s%s)"):format(self.id, self.key, self.done and ", finished" or "")
end

------------------------------------------------------------------------------------------------- workers

function Store:now()
  self:_check("store:now")
  return self.db:query("SELECT " .. NOW .. " AS now")[1].now
end

function Store:interrupt_runs(pid, reason)
  local fname = "store:interrupt_runs"
  self:_check(fname)
  if math.type(pid) ~= "integer" or pid <= 0 then
    fail(fname, "bad argument #1 (pid: expected a positive integer, got %s)", tostring(pid))
  end
  if reason ~= nil and type(reason) ~= "string" then
    fail(fname, "bad argument #2 (reason: expected a string, got %s)", type(reason))
  end
  return transaction(self.db, function()
    self:_run("UPDATE run SET status = 'INTERRUPTED', finished = " .. NOW .. ", wall_seconds = " ..
      "(julianday('now') - julianday(started)) * 86400.0, error = ? WHERE status = 'RUNNING' AND host = ? AND pid = ?",
      reason or ("worker process %d died"):format(pid), M.hostname(), pid)
    return self.db:changes()
  end)
end

------------------------------------------------------------------------------------------------- queries

function Store:runs(filter)
  local fname = "store:runs"
  self:_check(fname)
  filter = check_options(fname, 1, filter, { experiment = true, status = true })
  if filter.status ~= nil and not STATUSES[filter.status] then
    fail(fname, "option status: expected RUNNING, FINISHED, FAILED or INTERRUPTED, got %s", tostring(filter.status))
  end
  if filter.experiment ~= nil then check_string(fname, 1, "experiment", filter.experiment) end
  local where, args = {}, {}
  if filter.experiment then where[#where + 1] = "e.name = ?"; args[#args + 1] = filter.experiment end
  if filter.status then where[#where + 1] = "r.status = ?"; args[#args + 1] = filter.status end
  local sql = "SELECT r.*, e.name AS experiment FROM run r JOIN experiment e ON e.id = r.experiment_id" ..
    (#where > 0 and (" WHERE " .. table.concat(where, " AND ")) or "") .. " ORDER BY r.id"
  return self.db:query(sql, table.unpack(args))
end

function Store:metrics(run_id, filter)
  local fname = "store:metrics"
  self:_check(fname)
  if math.type(run_id) ~= "integer" then fail(fname, "bad argument #1 (run id: expected an integer, got %s)", tostring(run_id)) end
  filter = check_options(fname, 2, filter, { split = true, name = true })
  local rows = self.db:query("SELECT step, split, name, value, value_class FROM metric WHERE run_id = ?" ..
    " AND split = coalesce(?, split) AND name = coalesce(?, name) ORDER BY split, name, step",
    run_id, filter.split, filter.name)
  for _, r in ipairs(rows) do
    if r.value_class == "nan" then r.value = 0 / 0 end
  end
  return rows
end

function Store:traces(run_id, key)
  local fname = "store:traces"
  self:_check(fname)
  if math.type(run_id) ~= "integer" then fail(fname, "bad argument #1 (run id: expected an integer, got %s)", tostring(run_id)) end
  if key ~= nil then check_string(fname, 2, "key", key) end
  local rows = self.db:query("SELECT step, key, n, vals FROM trace WHERE run_id = ? AND key = coalesce(?, key) " ..
    "ORDER BY key, step", run_id, key)
  for _, r in ipairs(rows) do
    local vals = json.decode(r.vals)
    for i = 1, #vals do vals[i] = restore_number(vals[i]) end
    r.vals = vals
  end
  return rows
end

return M
