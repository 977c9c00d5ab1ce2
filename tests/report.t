#!/usr/bin/env rotlab-double
-- `rotlab report`: numbers against a hand-made results DB, the text/markdown/csv shapes, the command's exit codes.
local rl = require "rotlab"
local report = require "rotlab.report"
local t = require("rotlab.tap")()

local tmpfiles = {}
local function tmpname(suffix)
  local p = os.tmpname()
  os.remove(p)
  p = p .. suffix
  tmpfiles[#tmpfiles + 1] = p
  return p
end

-- Hand-made DB: runs[i] = {experiment, config, seed, fold, status, {step -> value} of test/acc, wall_seconds}
local path = tmpname(".db")
local store = rl.db.open(path)
local exps = { grid = store:experiment("grid"), other = store:experiment("other") }
local function add(exp, config, seed, fold, status, acc, wall, loss)
  local run = assert(store:begin_run(exps[exp], { config = config, seed = seed, fold = fold }))
  for step, v in pairs(acc or {}) do run:metric(step, "test", "acc", v) end
  for step, v in pairs(loss or {}) do run:metric(step, "train", "loss", v) end
  if status ~= "RUNNING" then run:finish(status, { error = status == "FAILED" and "diverged" or nil }) end
  if wall then store.db:query("UPDATE run SET wall_seconds = ? WHERE id = ?", wall, run.id) end
  return run
end
local A = { lr = 0.1, pool = "mean", epochs = 5 }
add("grid", A, 1, nil, "FINISHED", { [0] = 0.1, [1] = 0.5, [2] = 0.8 }, 10)
add("grid", A, 2, nil, "FINISHED", { [0] = 0.2, [2] = 0.9 }, 20)
add("grid", A, 3, nil, "FINISHED", { [2] = 0.7, [1] = 0.95 }, 30)
local B = { lr = 0.01, pool = "mean", epochs = 5 }
add("grid", B, 1, nil, "FINISHED", { [4] = 0.6 }, 5, { [0] = 2.0, [4] = 1.25 })
add("grid", B, 2, nil, "FINISHED", { [4] = 0.65 }, 7, { [0] = 2.5, [4] = 1.5 })
add("grid", { lr = 0.1, pool = "max", epochs = 5 }, 1, nil, "FINISHED", { [0] = 0.55 }, 3)
add("grid", { lr = 0.001, pool = "max", epochs = 5 }, 1, nil, "FAILED", { [0] = 0.3 })
add("grid", { lr = 0.001, pool = "max", epochs = 5 }, 2, nil, "RUNNING", { [0] = 0.3 })
add("grid", { lr = 0.5, pool = "a,b|c", epochs = 5 }, 1, nil, "FINISHED", { [0] = 0.5, [1] = 0 / 0 }, 1)
add("grid", { lr = 0.2, pool = "mean", epochs = 5 }, 1, 0, "FINISHED", { [0] = 0.4 }, 2)
add("grid", { lr = 0.2, pool = "mean", epochs = 5 }, 1, 1, "FINISHED", { [0] = 0.6 }, 4)
add("grid", { lr = 0.3, pool = "mean", epochs = 5 }, 1, nil, "FINISHED", nil, 6, { [0] = 3 })
add("other", A, 1, nil, "FINISHED", { [0] = 0.99 }, 8)
store:close()

-- by hand: last-step values per configuration
local a_vals = { 0.8, 0.9, 0.7 }
local a_mean = (0.8 + 0.9 + 0.7) / 3
local a_std = math.sqrt(((0.8 - a_mean) ^ 2 + (0.9 - a_mean) ^ 2 + (0.7 - a_mean) ^ 2) / (3 - 1))
local b_mean = (0.6 + 0.65) / 2
local b_std = math.sqrt(((0.6 - b_mean) ^ 2 + (0.65 - b_mean) ^ 2) / (2 - 1))
local f_mean = (0.4 + 0.6) / 2
local f_std = math.sqrt(((0.4 - f_mean) ^ 2 + (0.6 - f_mean) ^ 2) / (2 - 1))

---------------------------------------------------------------------------------------------- report.table

local rows, info = report.table(path)
t:is(#rows, 7, "one row per (experiment, config) with a FINISHED run")
local by = {}
for _, r in ipairs(rows) do by[r.experiment .. " " .. tostring(r.config.lr) .. " " .. r.config.pool] = r end
local ra = by["grid 0.1 mean"]
t:is(ra.n, 3, "config A: three finished seeds")
t:near(ra.mean, a_mean, 1e-12, "config A: mean of the last-step values")
t:near(ra.std, a_std, 1e-12, "config A: sample std (n - 1)")
t:near(ra.wall_mean, 20, 1e-12, "config A: mean wall time")
t:is(table.concat(ra.values, ","), table.concat(a_vals, ","), "config A: the value at each run's LAST step")
local rb = by["grid 0.01 mean"]
t:ok(rb.n == 2 and math.abs(rb.mean - b_mean) < 1e-12 and math.abs(rb.std - b_std) < 1e-12, "config B: mean and std")
local rc = by["grid 0.1 max"]
t:ok(rc.n == 1 and rc.mean == 0.55 and rc.std == nil, "one run: mean, no std")
local re = by["grid 0.5 a,b|c"]
t:ok(re.n == 1 and re.mean ~= re.mean, "a NaN last value gives a NaN mean")
local rf = by["grid 0.2 mean"]
t:ok(rf.n == 2 and math.abs(rf.mean - f_mean) < 1e-12 and math.abs(rf.std - f_std) < 1e-12,
  "folds are not part of the config: two folds, one row")
local rg = by["grid 0.3 mean"]
t:ok(rg.n == 1 and rg.n_metric == 0 and rg.mean == nil, "a finished run without the metric counts in n only")
t:is(by["other 0.1 mean"].mean, 0.99, "same config in another experiment is another row")
t:is(by["grid 0.001 max"], nil, "FAILED and RUNNING runs make no row")
t:ok(info.counts.FINISHED == 11 and info.counts.FAILED == 1 and info.counts.RUNNING == 1, "status counts")
t:is(info.missing_metric, 1, "one finished run lacks the metric")
t:is(table.concat(info.varying, ","), "lr,pool", "varying keys")
t:is(table.concat(info.constant, ","), "epochs", "constant keys")
local order = {}
for _, r in ipairs(rows) do order[#order + 1] = r.experiment .. ":" .. r.config.lr .. ":" .. r.config.pool end
t:is(table.concat(order, " "), "grid:0.01:mean grid:0.1:max grid:0.1:mean grid:0.2:mean grid:0.3:mean grid:0.5:a,b|c " ..
  "other:0.1:mean", "rows sorted by experiment, then the varying keys")

local lrows = report.table(path, { split = "train", metric = "loss", experiment = "grid" })
local lb
for _, r in ipairs(lrows) do if r.config.lr == 0.01 then lb = r end end
t:near(lb.mean, (1.25 + 1.5) / 2, 1e-12, "another split/metric: train/loss at the last step")
local grid_only = report.table(path, { experiment = "other" })
t:ok(#grid_only == 1 and grid_only[1].experiment == "other", "experiment filter")

t:raises(function() report.table(nil) end, "DB path: expected a non%-empty string", "report.table needs a path")
t:raises(function() report.table(path, { metrc = "x" }) end, "unknown option 'metrc'", "unknown report option")
t:raises(function() report.table(path, { metric = 5 }) end, "option metric: expected a non%-empty string",
  "option type")
t:raises(function() report.table(path .. ".missing") end, "no such results DB", "missing DB file")
t:raises(function() report.render(rows, info, "html") end, "unknown format 'html'", "unknown render format")

---------------------------------------------------------------------------------------------- shapes

local text, footer = report.render(rows, info, "text")
local lines = {}
for l in text:gmatch("[^\n]+") do lines[#lines + 1] = l end
t:is(#lines, 2 + #rows, "text: header, rule, one line per row")
local same = true
for _, l in ipairs(lines) do same = same and #l == #lines[1] end
t:ok(same, "text: columns aligned (every line has the same width)", text)
t:ok(lines[1]:find("^experiment%s+lr%s+pool%s+epochs%s+n%s+test/acc %(mean %+%- std%)%s+wall s$"), "text: header",
  lines[1])
t:ok(lines[2]:find("^[- ]+$"), "text: rule line")
t:ok(text:find(("%.4g %%+%%- %.4g"):format(a_mean, a_std)), "text: mean +- std of config A")
t:ok(text:find("0%.55 %+%- %-"), "text: '-' for the std of a single run")
t:ok(text:find("nan %+%- %-"), "text: NaN shown as nan")
t:ok(footer:find("11 FINISHED") and footer:find("1 FAILED") and footer:find("1 RUNNING"), "footer counts", footer)
t:ok(footer:find("1 FINISHED run%(s%) have no test/acc metric; available: test/acc, train/loss"),
  "footer names the runs without the metric", footer)

local md = report.render(rows, info, "markdown")
local mlines = {}
for l in md:gmatch("[^\n]+") do mlines[#mlines + 1] = l end
t:is(#mlines, 2 + #rows, "markdown: header, separator, one line per row")
t:ok(mlines[2]:find("^|[-:|]+|$") ~= nil, "markdown: separator row", mlines[2])
local function pipes(l)
  local unescaped = l:gsub("\\|", "")
  return select(2, unescaped:gsub("|", ""))
end
local cols_ok = true
for _, l in ipairs(mlines) do cols_ok = cols_ok and l:sub(1, 1) == "|" and pipes(l) == pipes(mlines[1]) end
t:ok(cols_ok, "markdown: every row has the same number of cells", md)
t:ok(md:find("a,b\\|c", 1, true), "markdown: a pipe in a cell is escaped")

-- RFC 4180 parser (enough for the test): returns a list of records
local function parse_csv(s)
  local recs, rec, field, i, quoted = {}, {}, {}, 1, false
  while i <= #s do
    local c = s:sub(i, i)
    if quoted then
      if c == '"' and s:sub(i + 1, i + 1) == '"' then field[#field + 1] = '"'; i = i + 1
      elseif c == '"' then quoted = false
      else field[#field + 1] = c end
    elseif c == '"' then quoted = true
    elseif c == "," then rec[#rec + 1] = table.concat(field); field = {}
    elseif c == "\r" and s:sub(i + 1, i + 1) == "\n" then
      rec[#rec + 1] = table.concat(field); field = {}
      recs[#recs + 1] = rec; rec = {}
      i = i + 1
    else field[#field + 1] = c end
    i = i + 1
  end
  return recs
end
local csv = report.render(rows, info, "csv")
t:ok(csv:sub(-2) == "\r\n" and not csv:gsub("\r\n", ""):find("\n"), "csv: CRLF line ends")
local recs = parse_csv(csv)
t:is(#recs, 1 + #rows, "csv: header + one record per row")
t:is(table.concat(recs[1], ","), "experiment,epochs,lr,pool,n,test_acc_n,test_acc_mean,test_acc_std,wall_seconds_mean",
  "csv: header with separate mean and std columns")
local ncols = true
for _, r in ipairs(recs) do ncols = ncols and #r == #recs[1] end
t:ok(ncols, "csv: every record has every column")
local col = {}
for i, h in ipairs(recs[1]) do col[h] = i end
local rec_a, rec_c, rec_e
for i = 2, #recs do
  local r = recs[i]
  if r[col.lr] == "0.1" and r[col.pool] == "mean" and r[1] == "grid" then rec_a = r end
  if r[col.lr] == "0.1" and r[col.pool] == "max" then rec_c = r end
  if r[col.pool] == "a,b|c" then rec_e = r end
end
t:ok(rec_a and math.abs(tonumber(rec_a[col.test_acc_mean]) - a_mean) < 1e-15 and
  math.abs(tonumber(rec_a[col.test_acc_std]) - a_std) < 1e-15, "csv: full-precision mean and std")
t:ok(rec_c and rec_c[col.test_acc_std] == "" and rec_c[col.n] == "1", "csv: empty std for a single run")
t:ok(rec_e ~= nil and csv:find('"a,b|c"', 1, true), "csv: a field with a comma is quoted")

-- many constant keys go to a footer line
local wide = tmpname(".db")
do
  local s = rl.db.open(wide)
  local e = s:experiment("wide")
  for _, lr in ipairs { 0.1, 0.2 } do
    local run = s:begin_run(e, { config = { lr = lr, a = 1, b = "x", c = true, d = { 1, 2 } }, seed = 1 })
    run:metric(0, "test", "acc", lr)
    run:finish("FINISHED")
  end
  s:close()
end
local wrows, winfo = report.table(wide)
local wtext, wfooter = report.render(wrows, winfo, "text")
t:ok(wtext:find("^experiment%s+lr%s+n") ~= nil, "text: more than 3 constant keys are not columns", wtext)
t:ok(wfooter:find('same in every row: a=1, b=x, c=true, d=[1,2]', 1, true), "footer lists the constant keys", wfooter)

---------------------------------------------------------------------------------------------- command

local bin = "rotlab"
do
  local p = io.popen("command -v rotlab 2>/dev/null")
  local found = p:read("l")
  p:close()
  if not found or found == "" then bin = ROTLAB_ROOT .. "/build/bin/rotlab" end
end
local errfile = tmpname(".err")
local function sh(s) return "'" .. s:gsub("'", "'\\''") .. "'" end
local function run(...)
  local args = { bin, "report" }
  for _, a in ipairs { ... } do args[#args + 1] = sh(a) end
  local p = io.popen(table.concat(args, " ") .. " 2>" .. sh(errfile))
  local out = p:read("a")
  local _, _, code = p:close()
  local f = io.open(errfile)
  local err = f and f:read("a") or ""
  if f then f:close() end
  return code, out, err
end

local code, out, err = run(path)
t:is(code, 0, "rotlab report DB exits 0")
t:ok(out:find("grid") and out:find("1 FAILED"), "rotlab report prints the table and the footer", out .. err)
code, out = run(path, "--format", "markdown", "--experiment", "grid")
t:ok(code == 0 and out:find("^| experiment |") and not out:find("other"), "--format markdown --experiment grid", out)
code, out, err = run(path, "--format=csv", "--split=train", "--metric=loss")
t:ok(code == 0 and out:find("^experiment,epochs,lr,pool,n,train_loss_n,train_loss_mean"), "--format=csv --split/--metric",
  out)
t:ok(err:find("FAILED"), "csv: the footer goes to stderr", err)
code, out = run("--help")
t:ok(code == 0 and out:find("^usage: rotlab report DB"), "--help exits 0 with the usage")
code, _, err = run(path .. ".missing")
t:ok(code == 2 and err:find("no such results DB"), "missing DB file: exit 2 with a message", err)
code, _, err = run()
t:ok(code == 2 and err:find("missing DB path"), "no DB argument: exit 2", err)
code, _, err = run(path, "--format", "xml")
t:ok(code == 2 and err:find("unknown format 'xml'"), "unknown format: exit 2", err)
code, _, err = run(path, "--bogus")
t:ok(code == 2 and err:find("unknown option '%-%-bogus'"), "unknown option: exit 2", err)
code, _, err = run(path, "--metric")
t:ok(code == 2 and err:find("option %-%-metric needs a value"), "option without a value: exit 2", err)
code, _, err = run(path, path)
t:ok(code == 2 and err:find("unexpected argument"), "two DB paths: exit 2", err)
code, _, err = run(path, "--experiment", "nosuch")
t:ok(code == 2 and err:find("no runs of experiment 'nosuch'"), "unknown experiment: exit 2", err)
local empty = tmpname(".db")
rl.db.open(empty):close()
code, _, err = run(empty)
t:ok(code == 2 and err:find("no runs in"), "DB without runs: exit 2", err)
local failed_only = tmpname(".db")
do
  local s = rl.db.open(failed_only)
  s:begin_run(s:experiment("x"), { config = {} }):finish("FAILED")
  s:close()
end
code, _, err = run(failed_only)
t:ok(code == 2 and err:find("no FINISHED runs .*%(1 FAILED"), "only failed runs: exit 2", err)
local foreign = tmpname(".db")
do
  local raw = rl.sqlite.open(foreign)
  raw:exec("CREATE TABLE x (y)")
  raw:close()
end
code, _, err = run(foreign)
t:ok(code == 2 and err:find("not a rotlab results DB"), "a foreign SQLite file: exit 2", err)
local f = io.open(path .. "-wal")
t:ok(f == nil, "report leaves no -wal file behind")
if f then f:close() end

for _, p in ipairs(tmpfiles) do
  for _, suffix in ipairs { "", "-wal", "-shm" } do os.remove(p .. suffix) end
end
os.exit(t:done())
