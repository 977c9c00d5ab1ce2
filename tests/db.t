#!/usr/bin/env rotlab-double
-- The results database: the SQLite binding (rl.sqlite), the schema, the logger (rl.db), JSON and error paths.
local rl = require "rotlab"
local json = require "rotlab.json"
local results = require "db.results"
local t = require("rotlab.tap")()

local tmpfiles = {}
local function tmpdb()
  local p = os.tmpname()
  os.remove(p)
  p = p .. ".db"
  tmpfiles[#tmpfiles + 1] = p
  return p
end
local function count(db, sql, ...) return db:query(sql, ...)[1].n end

---------------------------------------------------------------------------------------------- binding

do
  local db <close> = rl.sqlite.open(":memory:")
  db:exec("CREATE TABLE v (i, r REAL, s TEXT, b BLOB); CREATE TABLE w (x)")
  local st = db:prepare("INSERT INTO v VALUES (?, ?, ?, ?)")
  st:bind(42, 2.5, "text", { blob = "a\0b" }):step()
  st:bind(true, 0 / 0, nil, nil):step()
  st:bind(false, math.huge, "", nil):step()
  st:bind(-7, -math.huge, "x", nil):step()
  st:finalize()
  t:is(db:last_insert_id(), 4, "last_insert_id after four inserts")
  local rows = db:query("SELECT i, r, s, b, typeof(i) ti, typeof(r) tr, typeof(b) tb FROM v ORDER BY rowid")
  t:is(#rows, 4, "query returns every row")
  t:ok(rows[1].i == 42 and math.type(rows[1].i) == "integer", "Lua integer -> INTEGER -> integer")
  t:ok(rows[1].r == 2.5 and math.type(rows[1].r) == "float", "float -> REAL -> float")
  t:is(rows[1].s, "text", "string -> TEXT")
  t:ok(rows[1].b == "a\0b" and rows[1].tb == "blob", "{blob = s} -> BLOB, embedded zero kept")
  t:ok(rows[2].i == 1 and rows[3].i == 0, "booleans -> 1/0")
  t:ok(rows[2].r == nil and rows[2].tr == "null", "NaN is stored as NULL (absent from the row)")
  t:is(rows[3].r, math.huge, "+Inf round-trips")
  t:is(rows[4].r, -math.huge, "-Inf round-trips")
  t:ok(rows[2].s == nil and rows[3].s == "", "nil -> NULL, empty string stays a string")

  db:query("UPDATE v SET i = i + ? WHERE i > ?", 1, 0)
  t:is(db:changes(), 2, "changes counts the updated rows")
  local got = {}
  for row in db:rows("SELECT i FROM v WHERE i >= ? ORDER BY i", 0) do got[#got + 1] = row.i end
  t:is(table.concat(got, ","), "0,2,43", "rows iterates with bound parameters")
  for _ in db:rows("SELECT i FROM v") do break end
  t:ok(pcall(db.exec, db, "DROP TABLE v"), "breaking out of rows finalizes the statement (table can be dropped)")

  local ins = db:prepare("INSERT INTO w VALUES (?)")
  for i = 1, 5 do
    ins:bind(i)
    ins:step()
    ins:reset()
  end
  t:is(count(db, "SELECT sum(x) AS n FROM w"), 15, "prepared insert loop (bind/step/reset)")
  local sel = db:prepare("SELECT x FROM w WHERE x > ? ORDER BY x")
  sel:bind(3)
  local a, b, c = sel:step(), sel:step(), sel:step()
  t:ok(a.x == 4 and b.x == 5 and c == nil, "st:step returns rows, then nil when done")
  t:is(db:query("SELECT 1 AS one -- trailing comment")[1].one, 1, "trailing comment is not a second statement")
  t:ok(db:autocommit(), "autocommit outside a transaction")
  db:exec("BEGIN")
  t:ok(not db:autocommit(), "not autocommit inside BEGIN")
  db:exec("ROLLBACK")

  -- errors
  t:raises(function() db:query("SELECT * FROM nosuch WHERE a = 1") end, "no such table: nosuch %(in: SELECT %* FROM nosuch",
    "SQL errors carry SQLite's message and the SQL")
  t:raises(function() db:exec("SELECT %s%n%d FROM nosuch") end, "%%s%%n%%d", "a user string is never a format")
  t:raises(function() db:query("SELECT ?", {}) end, "bad argument #2 to 'query' %(expected number, string, boolean, nil",
    "unbindable table names the argument")
  t:raises(function() db:query("SELECT ?", print) end, "got function", "unbindable function")
  t:raises(function() db:query("SELECT ?, ?", 1) end, "the SQL has 2 parameter%(s%), got 1 value", "too few values")
  t:raises(function() db:query("SELECT 1", 1) end, "has 0 parameter%(s%), got 1", "too many values")
  t:raises(function() db:query("SELECT 1; SELECT 2") end, "expected one SQL statement", "query refuses two statements")
  t:raises(function() db:prepare("") end, "no SQL statement", "empty SQL")
  t:raises(function() db:exec("INSERT INTO w VALUES (1, 2)") end, "1 columns but 2 values", "exec error")
  t:raises(function() db:query(42 > 1) end, "bad argument #1 to 'query' %(string expected", "non-string SQL")
  local long = "SELECT " .. ("x"):rep(200) .. " FROM w"
  local ok, err = pcall(db.query, db, long)
  local snippet = not ok and err:match("%(in: (.-)%)$")
  t:ok(snippet and #snippet <= 63 and snippet:find("%.%.%.$"), "long SQL is cut in messages", err)
  local st2 = db:prepare("INSERT INTO w VALUES (?)")
  db:exec("CREATE UNIQUE INDEX wx ON w (x)")
  st2:bind(1)
  t:raises(function() st2:step() end, "UNIQUE constraint failed", "step error")
  st2:bind(99)
  t:is(st2:step(), nil, "statement usable after a step error")
  st2:finalize()
  st2:finalize()
  t:raises(function() st2:step() end, "finalized", "finalized statement refuses steps")
  local st3 = db:prepare("SELECT 1")
  db:close()
  db:close()
  t:raises(function() st3:step() end, "finalized", "closing the DB finalizes its statements")
  t:raises(function() db:query("SELECT 1") end, "the database is closed", "closed DB refuses queries")
  t:is(tostring(db), "sqlite database (closed)", "tostring of a closed DB")
end
t:raises(function() rl.sqlite.open("/nonexistent-dir/x.db") end, "cannot open '/nonexistent%-dir/x.db'", "open failure")
t:raises(function() rl.sqlite.open(":memory:", { timeout = 1 }) end,
  "unknown option 'timeout' %(known options: busy_timeout_ms, readonly, create%)", "unknown open option")
t:raises(function() rl.sqlite.open(":memory:", { busy_timeout_ms = -1 }) end, "busy_timeout_ms", "negative timeout")
t:raises(function() rl.sqlite.open(tmpdb(), { create = false }) end, "cannot open", "create = false needs the file")
t:raises(function() rl.sqlite.open(tmpdb(), { readonly = true }) end, "cannot open", "readonly needs the file")
do -- GC of statements and connections in any order must not crash (checked under ASan)
  local db = rl.sqlite.open(":memory:")
  local s1, s2 = db:prepare("SELECT 1"), db:prepare("SELECT 2")
  s1, s2, db = nil, nil, nil
  collectgarbage()
  collectgarbage()
  t:ok(true, "statements and connection collected")
end

---------------------------------------------------------------------------------------------- json

do
  local a, b = {}, {}
  a.zeta, a.alpha, a.mid = 1, { 2, 3 }, { y = true, x = "s" }
  b.mid, b.alpha, b.zeta = { x = "s", y = true }, { 2, 3 }, 1
  t:is(json.encode(a), '{"alpha":[2,3],"mid":{"x":"s","y":true},"zeta":1}', "canonical: keys sorted, no spaces")
  t:is(json.encode(a), json.encode(b), "insertion order does not matter")
  t:is(json.hash(json.encode(a)), json.hash(json.encode(b)), "same hash for the same config")
  t:is(json.encode { 1, 2.5, 0.1, 1e300, 2.0, -3 }, "[1,2.5,0.1,1e+300,2,-3]",
    "integers without decimal point, floats shortest round-trip")
  t:is(json.encode { 0 / 0, math.huge, -math.huge }, '["nan","inf","-inf"]', "non-finite numbers as strings")
  t:is(json.encode("q\"\\\n\1"), '"q\\"\\\\\\n\\u0001"', "string escapes")
  t:is(json.encode {}, "[]", "empty table is []")
  local x = 1 / 3
  t:is(json.decode(json.encode(x)), x, "float round-trips exactly")
  t:is(json.decode(json.encode(0.1 + 0.2)), 0.1 + 0.2, "0.1 + 0.2 round-trips exactly")
  local v = json.decode(' { "a" : [ 1 , -2.5e2, "\\u00e9\\ud83d\\ude00", null, true, false ], "b": {} } ')
  t:ok(math.type(v.a[1]) == "integer" and v.a[2] == -250.0, "decode numbers")
  t:is(v.a[3], "é😀", "decode \\u escapes with a surrogate pair")
  t:ok(v.a[4] == json.null and v.a[5] == true and v.a[6] == false and next(v.b) == nil, "decode literals")
  t:is(json.encode(json.decode(json.encode(a))), json.encode(a), "decode(encode(x)) round-trips")
  t:is(json.hash(""), "cbf29ce484222325", "FNV-1a 64 of the empty string")
  t:is(json.hash("a"), "af63dc4c8601ec8c", "FNV-1a 64 of 'a'")
  t:is(json.hash("foobar"), "85944171f73967e8", "FNV-1a 64 of 'foobar'")
  t:raises(function() json.encode { 1, nil, 3 } end, "json.encode: value", "array with a hole")
  t:raises(function() json.encode { 1, x = 2 } end, "neither all strings nor a sequence", "mixed keys")
  t:raises(function() json.encode { a = { b = print } } end, "value%.a%.b is a function", "path of a bad value")
  local cyc = {}
  cyc.self = cyc
  t:raises(function() json.encode(cyc) end, "cycle", "cycles refused")
  for _, bad in ipairs { "", "{", "[1,]", "01", "1.", '"abc', '{"a" 1}', "[1] x", "nul", '"\\x"', '"\\ud800"' } do
    t:raises(function() json.decode(bad) end, "json.decode: .* at position %d+", "decode refuses " .. bad)
  end
  t:raises(function() json.decode(5) end, "expected a string, got number", "decode needs a string")
  t:raises(function() json.hash(nil) end, "expected a string, got nil", "hash needs a string")
end

---------------------------------------------------------------------------------------------- schema

local path = tmpdb()
local store = rl.db.open(path)
local db = store.db
t:is(db:query("PRAGMA journal_mode")[1].journal_mode, "wal", "WAL mode is on")
t:is(db:query("PRAGMA foreign_keys")[1].foreign_keys, 1, "foreign keys are on")
t:is(db:query("PRAGMA synchronous")[1].synchronous, 1, "synchronous = NORMAL")
t:is(db:query("PRAGMA user_version")[1].user_version, 2, "user_version = 2")
t:is(db:query("SELECT value FROM meta WHERE key = 'schema_version'")[1].value, "2", "meta.schema_version = 2")
local tables = {}
for row in db:rows("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name") do tables[#tables + 1] = row.name end
t:is(table.concat(tables, ","), "artifact,experiment,meta,metric,param,run,trace", "every table exists")
t:ok(count(db, "SELECT count(*) AS n FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_%'") >= 4,
  "report indexes exist")
store:close()
store = rl.db.open(path)
t:is(count(store.db, "SELECT count(*) AS n FROM meta"), 1, "reopening does not re-apply the schema")

---------------------------------------------------------------------------------------------- lifecycle

local exp = store:experiment("cswe-mnist", { script = "experiments/cswe.lua" })
t:is(store:experiment("cswe-mnist"), exp, "experiment is get-or-create")
t:ok(store:experiment("other") ~= exp, "another name, another id")
local config = { lr = 0.001, pool = "cswe", slices = 16, layers = { 64, 32 }, soft = true }
local run = store:begin_run(exp, { config = config, seed = 1, fold = 0 })
t:ok(run and math.type(run.id) == "integer", "begin_run returns a run")
local row = store:runs({ experiment = "cswe-mnist" })[1]
t:is(row.status, "RUNNING", "new run is RUNNING")
t:ok(row.started:match("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$"), "started is an ISO 8601 UTC time", row.started)
t:ok(type(row.host) == "string" and row.host ~= "", "host recorded")
t:ok(type(row.code_version) == "string" and row.code_version ~= "", "code version recorded", row.code_version)
t:is(row.config_json, '{"layers":[64,32],"lr":0.001,"pool":"cswe","slices":16,"soft":true}', "config as canonical JSON")
t:ok(row.seed == 1 and row.fold == 0, "seed and fold stored")
t:is(row.run_key, results.run_key("cswe-mnist", row.config_json, 1, 0), "run_key is the stable hash")
t:is(#row.run_key, 16, "run_key is 16 hex digits")
local params = {}
for p in store.db:rows("SELECT name, value_json, value_num FROM param WHERE run_id = ? ORDER BY name", run.id) do
  params[#params + 1] = ("%s=%s/%s"):format(p.name, p.value_json, tostring(p.value_num))
end
t:is(table.concat(params, " "), 'layers=[64,32]/nil lr=0.001/0.001 pool="cswe"/nil slices=16/16.0 soft=true/1.0',
  "one param row per config key, numbers in value_num")

-- buffered: a second connection sees nothing before the flush
local other = rl.sqlite.open(path)
run:metric(0, "train", "loss", 1.5)
run:metric(0, "test", "acc", 0.25)
run:metric(1, "test", "nan", 0 / 0)
run:metric(1, "test", "inf", math.huge)
run:metric(1, "test", "ninf", -math.huge)
run:metric(2, "test", "acc", 0.75)
run:metric(2, "test", "acc", 0.5) -- same key twice: the last wins
local vec = { 0.5, 0 / 0, math.huge, -math.huge, -2, 1e-300 }
run:trace(0, "cswe.swgg", vec)
run:trace(1, "cswe.swgg", rl.tensor { { 1, 2 }, { 3, 4 } })
run:trace(0, "cswe.empty", {})
vec[1] = 99 -- traces are copied when logged
t:is(count(other, "SELECT count(*) AS n FROM metric"), 0, "metrics are buffered until flush")
local hb0 = other:query("SELECT heartbeat FROM run WHERE id = ?", run.id)[1].heartbeat
run:flush()
t:is(count(other, "SELECT count(*) AS n FROM metric WHERE run_id = ?", run.id), 6, "flush writes every metric row")
t:is(count(other, "SELECT count(*) AS n FROM trace WHERE run_id = ?", run.id), 3, "flush writes every trace row")
t:ok(other:query("SELECT heartbeat FROM run WHERE id = ?", run.id)[1].heartbeat >= hb0, "flush refreshes the heartbeat")
run:flush()
t:is(count(other, "SELECT count(*) AS n FROM metric WHERE run_id = ?", run.id), 6, "a second flush writes nothing new")

local m = {}
for _, r in ipairs(store:metrics(run.id, { split = "test" })) do m[r.name .. r.step] = r end
t:ok(m.nan1.value ~= m.nan1.value and m.nan1.value_class == "nan", "NaN reads back as NaN (class nan)")
t:ok(m.inf1.value == math.huge and m.inf1.value_class == "inf", "+Inf reads back (class inf)")
t:ok(m.ninf1.value == -math.huge and m.ninf1.value_class == "-inf", "-Inf reads back (class -inf)")
t:ok(m.acc2.value == 0.5 and m.acc2.value_class == "finite", "finite reads back; last write wins")
t:ok(m.acc0.value == 0.25, "earlier step kept")
t:is(store.db:query("SELECT value FROM metric WHERE name = 'nan'")[1].value, nil, "NaN is NULL in the table")
t:is(#store:metrics(run.id), 6, "metrics without filter")
t:is(#store:metrics(run.id, { name = "acc" }), 2, "metrics filtered by name")

local tr = store:traces(run.id, "cswe.swgg")
t:is(#tr, 2, "two trace rows for the key")
local v0 = tr[1].vals
t:ok(tr[1].n == 6 and v0[1] == 0.5 and v0[2] ~= v0[2] and v0[3] == math.huge and v0[4] == -math.huge and v0[5] == -2
  and v0[6] == 1e-300, "trace vector round-trips, non-finite included")
t:is(store.db:query("SELECT vals FROM trace WHERE run_id = ? AND step = 0 AND key = 'cswe.swgg'", run.id)[1].vals,
  '[0.5,"nan","inf","-inf",-2,1e-300]', "trace stored as JSON with non-finite strings")
t:is(table.concat(tr[2].vals, ","), "1,2,3,4", "tensor traces are flattened row-major")
local empty = store:traces(run.id, "cswe.empty")[1]
t:ok(empty.n == 0 and #empty.vals == 0, "empty trace vector")

run:metric(3, "test", "acc", 0.875)
run:artifact("plan", { kind = "bin", data = "\0\1\2" })
t:ok(run:finish("FINISHED"), "finish returns true")
row = store.db:query("SELECT * FROM run WHERE id = ?", run.id)[1]
t:is(row.status, "FINISHED", "finish sets the status")
t:ok(row.finished >= row.started and type(row.wall_seconds) == "number" and row.wall_seconds >= 0,
  "finished time and wall_seconds recorded")
t:is(count(store.db, "SELECT count(*) AS n FROM metric WHERE run_id = ? AND step = 3", run.id), 1,
  "finish flushes the buffer")
t:is(store.db:query("SELECT data FROM artifact WHERE run_id = ?", run.id)[1].data, "\0\1\2", "artifact blob stored")
t:raises(function() run:metric(4, "test", "acc", 1) end, "run %d+ is already finished", "finished run refuses metrics")
t:raises(function() run:finish("FINISHED") end, "already finished", "finish twice")

-- reruns
local again, why = store:begin_run(exp, { config = { soft = true, slices = 16, pool = "cswe", lr = 0.001,
  layers = { 64, 32 } }, seed = 1, fold = 0 })
t:ok(again == nil and why == "finished", "rerun of a FINISHED key is skipped (config order irrelevant)")
local other_seed = store:begin_run(exp, { config = config, seed = 2, fold = 0 })
t:ok(other_seed and other_seed.id ~= run.id, "another seed is another run")
local failed = store:begin_run(exp, { config = { lr = 0.1 }, seed = 1 })
failed:metric(0, "test", "acc", 0.1)
failed:trace(0, "k", { 1 })
failed:finish("FAILED", { error = "diverged" })
local frow = store.db:query("SELECT status, error FROM run WHERE id = ?", failed.id)[1]
t:ok(frow.status == "FAILED" and frow.error == "diverged", "FAILED status and error message")
local redo = store:begin_run(exp, { config = { lr = 0.1 }, seed = 1 })
t:is(redo and redo.id, failed.id, "rerun of a FAILED key reuses its row")
t:is(count(store.db, "SELECT count(*) AS n FROM metric WHERE run_id = ?", redo.id) +
  count(store.db, "SELECT count(*) AS n FROM trace WHERE run_id = ?", redo.id), 0, "reset deletes its metric/trace rows")
frow = store.db:query("SELECT status, error, finished FROM run WHERE id = ?", redo.id)[1]
t:ok(frow.status == "RUNNING" and frow.error == nil and frow.finished == nil, "reset run is RUNNING again")
t:is(count(store.db, "SELECT count(*) AS n FROM param WHERE run_id = ?", redo.id), 1, "params rewritten once")
redo:finish("INTERRUPTED")
t:is(#store:runs({ status = "INTERRUPTED" }), 1, "runs filtered by status")
t:is(#store:runs({ experiment = "nosuch" }), 0, "runs of an unknown experiment: none")
local noconf = store:begin_run(exp)
t:is(store.db:query("SELECT config_json FROM run WHERE id = ?", noconf.id)[1].config_json, "{}", "empty config is {}")
noconf:finish("FINISHED")

-- transactions: an error inside a flush leaves no partial rows
store.db:exec("CREATE TRIGGER boom BEFORE INSERT ON metric WHEN NEW.name = 'boom' " ..
  "BEGIN SELECT RAISE(ABORT, 'boom value refused'); END")
local tx = store:begin_run(exp, { config = { tx = 1 } })
tx:metric(0, "test", "a", 1)
tx:metric(1, "test", "b", 2)
tx:metric(2, "test", "boom", 3)
tx:metric(3, "test", "c", 4)
tx:trace(0, "k", { 1, 2 })
t:raises(function() tx:flush() end, "nothing written, 5 buffered rows kept: .*boom value refused", "failing flush raises")
t:is(count(store.db, "SELECT count(*) AS n FROM metric WHERE run_id = ?", tx.id) +
  count(store.db, "SELECT count(*) AS n FROM trace WHERE run_id = ?", tx.id), 0, "failed flush wrote no row at all")
t:ok(store.db:autocommit(), "failed flush rolled back its transaction")
t:raises(function() tx:finish("FINISHED") end, "still RUNNING", "finish FINISHED with a failing row raises")
t:is(store.db:query("SELECT status FROM run WHERE id = ?", tx.id)[1].status, "RUNNING", "status untouched")
tx:finish("FAILED", { error = "crashed" })
frow = store.db:query("SELECT status, error FROM run WHERE id = ?", tx.id)[1]
t:ok(frow.status == "FAILED" and frow.error:find("^crashed %[5 buffered rows could not be written"),
  "finish FAILED still records the status and says rows were lost", frow.error)
t:is(count(store.db, "SELECT count(*) AS n FROM metric WHERE run_id = ?", tx.id), 0, "and writes no partial rows")
local tx2 = store:begin_run(exp, { config = { tx = 2 } })
tx2:metric(0, "test", "boom", 1)
t:raises(function() tx2:flush() end, "boom", "flush fails")
store.db:exec("DROP TRIGGER boom")
tx2:flush()
t:is(count(store.db, "SELECT count(*) AS n FROM metric WHERE run_id = ?", tx2.id), 1, "kept buffer written on retry")
tx2:finish("FINISHED")

-- automatic flush bounds the buffer
local saved = results.FLUSH_ROWS
results.FLUSH_ROWS = 3
local auto = store:begin_run(exp, { config = { auto = true } })
for s = 0, 6 do auto:metric(s, "train", "loss", s) end
t:is(count(store.db, "SELECT count(*) AS n FROM metric WHERE run_id = ?", auto.id), 6, "auto flush every FLUSH_ROWS")
results.FLUSH_ROWS = saved
auto:finish("FINISHED")
t:is(count(store.db, "SELECT count(*) AS n FROM metric WHERE run_id = ?", auto.id), 7, "rest flushed at finish")

-- a second writer waits (busy timeout) and fails cleanly when the lock is held too long
local slow = rl.db.open(path, { busy_timeout_ms = 50 })
local sr = slow:begin_run(exp, { config = { busy = true } })
sr:metric(0, "test", "acc", 1)
other:exec("BEGIN IMMEDIATE")
t:raises(function() sr:flush() end, "database is locked", "flush under another writer's lock fails after the timeout")
other:exec("COMMIT")
sr:flush()
t:is(count(store.db, "SELECT count(*) AS n FROM metric WHERE run_id = ?", sr.id), 1, "retry after the lock is released")
sr:finish("FINISHED")
slow:close()
other:close()

---------------------------------------------------------------------------------------------- error paths

local r2 = store:begin_run(exp, { config = { errors = true } })
t:raises(function() store:experiment("") end, "store:experiment: bad argument #1 %(name: expected a non%-empty string",
  "empty experiment name")
t:raises(function() store:experiment(42) end, "got number", "experiment name must be a string")
t:raises(function() store:experiment("x", { script = 1 }) end, "option script", "script must be a string")
t:raises(function() store:experiment("x", { scrpt = "a" }) end, "unknown option 'scrpt' %(known options: script%)",
  "unknown experiment option")
t:raises(function() store:begin_run(9999) end, "no experiment with id 9999", "unknown experiment id")
t:raises(function() store:begin_run("1") end, "experiment id: expected an integer", "experiment id type")
t:raises(function() store:begin_run(exp, { config = { [1] = 2 } }) end, "keys must be non%-empty strings",
  "config keys must be strings")
t:raises(function() store:begin_run(exp, { config = { f = print } }) end, "value%.f is a function", "config values JSON")
t:raises(function() store:begin_run(exp, { config = 5 }) end, "option config: expected a table", "config type")
t:raises(function() store:begin_run(exp, { seed = 1.5 }) end, "option seed: expected an integer", "seed type")
t:raises(function() store:begin_run(exp, { fold = "a" }) end, "option fold: expected an integer", "fold type")
t:raises(function() store:begin_run(exp, { sed = 1 }) end, "unknown option 'sed'", "unknown begin_run option")
t:raises(function() r2:metric(-1, "test", "acc", 1) end, "bad argument #1 %(step: expected an integer >= 0, got %-1%)",
  "negative step")
t:raises(function() r2:metric(1.5, "test", "acc", 1) end, "step: expected an integer >= 0, got 1.5", "fractional step")
t:raises(function() r2:metric("1", "test", "acc", 1) end, "step: expected an integer", "string step")
t:raises(function() r2:metric(0, "", "acc", 1) end, "bad argument #2 %(split: expected a non%-empty string",
  "empty split")
t:raises(function() r2:metric(0, "test", nil, 1) end, "bad argument #3 %(name", "missing name")
t:raises(function() r2:metric(0, "test", "acc", "0.5") end, "bad argument #4 %(value: expected a number, got string",
  "value must be a number")
t:raises(function() r2:trace(0, "k", { 1, "x" }) end, "entry 2 is a string", "trace entries must be numbers")
t:raises(function() r2:trace(0, "k", { 1, a = 2 }) end, "expected a list of numbers, has key a", "trace must be a list")
t:raises(function() r2:trace(0, "k", 5) end, "expected a list of numbers or a tensor, got number", "trace type")
t:raises(function() r2:trace(-2, "k", {}) end, "step: expected an integer >= 0", "trace step")
t:raises(function() r2:trace(0, "", {}) end, "key: expected a non%-empty string", "trace key")
t:raises(function() r2:finish("DONE") end, "status: expected \"FINISHED\", \"FAILED\" or \"INTERRUPTED\", got DONE",
  "unknown status")
t:raises(function() r2:finish("RUNNING") end, "status: expected", "RUNNING is not a final status")
t:raises(function() r2:finish("FAILED", { err = "x" }) end, "unknown option 'err'", "unknown finish option")
t:raises(function() r2:artifact("", {}) end, "name: expected a non%-empty string", "artifact name")
t:raises(function() r2:artifact("a", { data = 1 }) end, "option data: expected a string", "artifact data type")
t:raises(function() store:runs({ status = "DONE" }) end, "option status", "runs status filter")
t:raises(function() store:runs({ exp = "x" }) end, "unknown option 'exp'", "runs unknown filter")
t:raises(function() store:metrics("1") end, "run id: expected an integer", "metrics run id")
t:raises(function() store:traces(1, 5) end, "key: expected a non%-empty string", "traces key")
t:is(#r2.metrics + #r2.traces, 0, "rejected calls buffered nothing")
r2:finish("FINISHED")
store:close()
store:close()
t:raises(function() store:experiment("x") end, "the results store is closed", "closed store refuses calls")
t:raises(function() store:runs() end, "closed", "closed store refuses queries")

-- open errors
t:raises(function() rl.db.open("/nonexistent-rotlab-dir/sub/r.db") end,
  "directory '/nonexistent%-rotlab%-dir/sub' does not exist", "missing parent directory is a clear error")
t:raises(function() rl.db.open(tmpdb(), { readonly = true }) end, "no such file", "readonly open of a missing file")
t:raises(function() rl.db.open("") end, "path: expected a non%-empty string", "empty path")
t:raises(function() rl.db.open(7) end, "got number", "path type")
t:raises(function() rl.db.open(path, { wal = true }) end, "unknown option 'wal'", "unknown open option")
do
  local newer = tmpdb()
  local raw = rl.sqlite.open(newer)
  raw:exec("CREATE TABLE meta (key, value); PRAGMA user_version = 3")
  raw:close()
  t:raises(function() rl.db.open(newer) end, "results DB schema version 3 is newer than this rotlab %(2%)",
    "a newer schema is refused")
  local foreign = tmpdb()
  raw = rl.sqlite.open(foreign)
  raw:exec("CREATE TABLE stuff (x)")
  raw:close()
  t:raises(function() rl.db.open(foreign) end, "not a rotlab results DB", "a foreign DB is refused")
  local textfile = tmpdb()
  local f = assert(io.open(textfile, "w"))
  f:write(("this is not a database\n"):rep(100))
  f:close()
  t:raises(function() rl.db.open(textfile) end, "file is not a database", "a non-database file is refused")
  local empty = tmpdb()
  rl.sqlite.open(empty):close()
  t:raises(function() rl.db.open(empty, { readonly = true }) end, "empty database", "readonly open of an empty DB")
  local ro = rl.db.open(path, { readonly = true })
  t:raises(function() ro:experiment("new") end, "attempt to write a readonly database",
    "readonly store refuses writes")
  t:ok(#ro:runs() > 0, "readonly store reads")
  ro:close()
end

---------------------------------------------------------------------------------------------- claims (grid workers)

do
  local cpath = tmpdb()
  local cs = rl.db.open(cpath)
  local e = cs:experiment("claims")
  local function row(id) return cs.db:query("SELECT * FROM run WHERE id = ?", id)[1] end
  local a = cs:begin_run(e, { config = { k = 1 } })
  t:ok(row(a.id).pid == rl.proc.pid() and row(a.id).host == results.hostname(), "a claim records host and pid")
  -- another live process of this host holds it
  local sleeper = rl.proc.spawn({ "sleep", "30" })
  cs.db:query("UPDATE run SET pid = ? WHERE id = ?", sleeper, a.id)
  local b, why = cs:begin_run(e, { config = { k = 1 } })
  t:ok(b == nil and why == "running", "a RUNNING run of a live local process is not taken", why)
  t:raises(function() a:flush() end, "no longer held by this worker", "the old holder's flush is refused")
  t:raises(function() a:finish("FAILED") end, "no longer held by this worker", "and so is its finish")
  cs.db:query("UPDATE run SET heartbeat = '2000-01-01T00:00:00.000Z' WHERE id = ?", a.id)
  b, why = cs:begin_run(e, { config = { k = 1 } })
  t:ok(b and b.id == a.id, "a live local pid with a stale heartbeat (pid reused?) is taken over", why)
  cs.db:query("UPDATE run SET pid = ? WHERE id = ?", sleeper, b.id)
  b, why = cs:begin_run(e, { config = { k = 1 }, stale_seconds = 0 })
  t:ok(b == nil and why == "running", "stale_seconds = 0: a live local pid holds its run whatever its heartbeat")
  rl.proc.kill(sleeper, "KILL")
  rl.proc.wait(sleeper)
  b, why = cs:begin_run(e, { config = { k = 1 } })
  t:ok(b and b.id == a.id, "the run of a dead local process is claimed at once", why)
  t:is(row(b.id).pid, rl.proc.pid(), "the claim takes the pid over")
  -- another host: only the heartbeat tells
  cs.db:query("UPDATE run SET host = 'elsewhere', pid = 1 WHERE id = ?", b.id)
  local c
  c, why = cs:begin_run(e, { config = { k = 1 } })
  t:ok(c == nil and why == "running", "a fresh heartbeat on another host holds the run")
  c, why = cs:begin_run(e, { config = { k = 1 }, stale_seconds = 0 })
  t:ok(c and c.id == b.id, "stale_seconds = 0 (private DB): runs of other hosts are dead", why)
  cs.db:query("UPDATE run SET host = 'elsewhere', heartbeat = '2000-01-01T00:00:00.000Z' WHERE id = ?", c.id)
  c, why = cs:begin_run(e, { config = { k = 1 }, stale_seconds = 60 })
  t:ok(c and c.id == b.id, "a stale heartbeat on another host is taken over", why)
  -- heartbeats
  local before = row(c.id).heartbeat
  t:is(c:heartbeat(), false, "heartbeat is rate-limited")
  local saved = results.HEARTBEAT_SECONDS
  results.HEARTBEAT_SECONDS = 0
  rl.proc.sleep(0.01)
  c:metric(0, "train", "loss", 1)
  t:ok(row(c.id).heartbeat > before, "metric refreshes a due heartbeat")
  results.HEARTBEAT_SECONDS = saved
  t:is(c:heartbeat(true), true, "heartbeat(true) forces")
  c:finish("FINISHED")
  -- failed runs are not retried within one grid
  local since = cs:now()
  t:ok(since:match("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$"), "store:now is an ISO time", since)
  local f = cs:begin_run(e, { config = { k = 2 } })
  f:finish("FAILED", { error = "x" })
  local g2
  g2, why = cs:begin_run(e, { config = { k = 2 }, failed_since = since })
  t:ok(g2 == nil and why == "failed", "a run FAILED since failed_since is not retried", why)
  g2 = cs:begin_run(e, { config = { k = 2 }, failed_since = "2000-01-01T00:00:00.000Z" })
  t:ok(g2 == nil, "failed_since in the past: still FAILED since then")
  g2 = cs:begin_run(e, { config = { k = 2 }, failed_since = "2999-01-01T00:00:00.000Z" })
  t:ok(g2 and g2.id == f.id, "a run FAILED before failed_since is retried")
  -- interrupted by the launcher
  local h = cs:begin_run(e, { config = { k = 3 } })
  cs.db:query("UPDATE run SET pid = 999999 WHERE id = ?", h.id)
  t:is(cs:interrupt_runs(999999, "worker died (signal 9)"), 1, "interrupt_runs marks the dead worker's run")
  local hr = row(h.id)
  t:ok(hr.status == "INTERRUPTED" and hr.error == "worker died (signal 9)" and hr.finished, "as INTERRUPTED, why")
  t:is(cs:interrupt_runs(999999), 0, "nothing left to interrupt")
  t:raises(function() cs:interrupt_runs("1") end, "pid: expected a positive integer", "interrupt_runs pid")
  t:raises(function() cs:interrupt_runs(1, 2) end, "reason: expected a string", "interrupt_runs reason")
  t:raises(function() cs:begin_run(e, { stale_seconds = "x" }) end, "option stale_seconds: expected a number",
    "stale_seconds type")
  t:raises(function() cs:begin_run(e, { failed_since = 1 }) end, "option failed_since: expected a time string",
    "failed_since type")
  g2:finish("FINISHED")
  cs:close()
end

-- a version 1 database: read as it is, migrated by a read-write open
do
  local v1 = tmpdb()
  local raw = rl.sqlite.open(v1)
  local sql = results.schema_sql():gsub("PRAGMA user_version = 2", "PRAGMA user_version = 1")
    :gsub("VALUES %('schema_version', '2'%)", "VALUES ('schema_version', '1')")
    :gsub("heartbeat     TEXT,[^\n]*\n%s*pid%s+INTEGER[^\n]*\n", "heartbeat TEXT\n")
  raw:exec(sql)
  raw:exec("INSERT INTO experiment (id, name, created) VALUES (1, 'old', '2024-01-01T00:00:00.000Z');" ..
    "INSERT INTO run (experiment_id, run_key, config_json, status, started) VALUES (1, 'k', '{}', 'FINISHED', 'x')")
  raw:close()
  local ro = rl.db.open(v1, { readonly = true })
  t:ok(ro.version == 1 and #ro:runs() == 1, "a version 1 DB opens read-only as it is")
  ro:close()
  local rw = rl.db.open(v1)
  t:is(rw.version, 2, "a read-write open migrates it to version 2")
  t:is(count(rw.db, "SELECT count(*) AS n FROM pragma_table_info('run') WHERE name = 'pid'"), 1, "run.pid added")
  t:is(rw.db:query("SELECT value FROM meta WHERE key = 'schema_version'")[1].value, "2", "meta says 2")
  t:is(#rw:runs(), 1, "rows kept")
  rw:close()
end

for _, p in ipairs(tmpfiles) do
  for _, suffix in ipairs { "", "-wal", "-shm" } do os.remove(p .. suffix) end
end
os.exit(t:done())
