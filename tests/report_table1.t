#!/usr/bin/env rotlab-double
-- `rotlab report --table1`: the paper-style pivot (datasets as columns, poolings as rows, mean +- std in percent,
-- top 3 marked) against a hand-made results DB, in text, markdown and CSV, and the command's flags and errors.
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

-- runs: {dataset, pool, pool_opts, fold, test acc (last step)}
local path = tmpname(".db")
local store = rl.db.open(path)
local e = store:experiment("mil")
local function add(ds, pool, opts, fold, acc, status)
  local run = assert(store:begin_run(e, { config = { dataset = ds, pool = pool, pool_opts = opts, epochs = 50 },
    seed = 1, fold = fold }))
  run:metric(0, "test", "acc", 0.01) -- an earlier step: not counted
  if acc then run:metric(50, "test", "acc", acc) end
  run:finish(status or "FINISHED")
end
local vals = {
  Musk1 = { mean = { 0.8, 0.9 }, max = { 0.7, 0.8 }, attention = { 0.9, 0.95 }, rotp = { 0.85, 0.85 } },
  Fox = { mean = { 0.6, 0.62 }, max = { 0.55, 0.57 }, attention = { 0.6, 0.6 }, rotp = { 0.6, 0.62 } },
}
for ds, per in pairs(vals) do
  for pool, v in pairs(per) do
    local opts = pool == "rotp" and { solver = "sinkhorn", alpha0 = "learn" } or nil
    for fold, a in ipairs(v) do add(ds, pool == "rotp" and "rotp" or pool, opts, fold, a) end
  end
end
add("Tiger", "mean", nil, 1, 0.7)        -- a column only one row has
add("Tiger", "max", nil, 1, nil, "FAILED") -- not counted
store:close()

local function mean_std(v)
  local m = (v[1] + v[2]) / 2
  return m, math.sqrt((v[1] - m) ^ 2 + (v[2] - m) ^ 2)
end

---------------------------------------------------------------------------------------------- report.pivot

local p = report.pivot(path)
t:is(table.concat(p.cols, ","), "Fox,Musk1,Tiger", "columns: the datasets (sorted)")
local labels = {}
for _, r in ipairs(p.rows) do labels[#labels + 1] = r.label end
t:is(table.concat(labels, "|"), "attention|max|mean|rotp alpha0=learn solver=sinkhorn",
  "rows: one per pooling; options in the label")
t:is(table.concat(p.label_keys, ","), "pool,pool_opts", "label keys: the config keys that differ")
local by = {}
for _, r in ipairs(p.rows) do by[r.config.pool] = r end
local m, s = mean_std(vals.Musk1.mean)
t:ok(math.abs(by.mean.cells.Musk1.mean - m) < 1e-12 and math.abs(by.mean.cells.Musk1.std - s) < 1e-12 and
  #by.mean.cells.Musk1.values == 2, "cell: mean and sample std of the runs' last values")
t:is(by.attention.cells.Musk1.rank, 1, "Musk1: attention ranks 1st")
t:is(by.rotp.cells.Musk1.rank, 2, "Musk1: rotp ranks 2nd")
t:is(by.mean.cells.Musk1.rank, 2, "Musk1: mean ties with rotp (0.85): shared rank 2")
t:is(by.max.cells.Musk1.rank, 4, "Musk1: max ranks 4th (competition ranking 1224)")
t:ok(by.mean.cells.Fox.rank == 1 and by.rotp.cells.Fox.rank == 1 and by.attention.cells.Fox.rank == 3,
  "Fox: a tie for 1st, then 3rd")
t:ok(by.mean.cells.Tiger and by.mean.cells.Tiger.rank == 1 and by.max.cells.Tiger == nil,
  "a FAILED run makes no cell")
t:near(by.mean.avg_rank, (1 + 2 + 1) / 3, 1e-12, "average rank over the columns a row has")
local low = report.pivot(path, { lower_better = true })
local lby = {}
for _, r in ipairs(low.rows) do lby[r.config.pool] = r end
t:is(lby.max.cells.Musk1.rank, 1, "lower_better: the lowest mean ranks 1st")
local by_pool = report.pivot(path, { cols = "pool" })
t:is(table.concat(by_pool.cols, ","), "attention,max,mean,rotp", "cols = pool: poolings as columns")
t:raises(function() report.pivot(path, { cols = "nosuch" }) end, "run config has no key 'nosuch'.*dataset, epochs",
  "a missing column key names the config keys")
t:raises(function() report.pivot(path, { rows = "x" }) end, "unknown option 'rows'", "unknown option")
t:raises(function() report.pivot(path, { lower_better = "yes" }) end, "lower_better: expected a boolean",
  "lower_better type")

---------------------------------------------------------------------------------------------- rendering

local text, footer = report.render_pivot(p, "text")
local lines = {}
for l in text:gmatch("[^\n]+") do lines[#lines + 1] = l end
t:is(#lines, 2 + #p.rows, "text: header, rule, one line per row")
t:ok(lines[1]:find("^pool pool_opts%s+Fox%s+Musk1%s+Tiger%s+avg rank$"), "text: header", lines[1])
local function line_of(label)
  for _, l in ipairs(lines) do if l:sub(1, #label + 1) == label .. " " then return l end end
end
t:ok(line_of("attention"):find("92%.5 %+%- 3%.5 %*%*%*"), "text: percent cell with *** for the 1st",
  line_of("attention"))
t:ok(line_of("max"):find("75%.0 %+%- 7%.1  ") and not line_of("max"):find("75%.0 %+%- 7%.1 %*"),
  "text: a 4th place is not marked", line_of("max"))
t:ok(line_of("mean"):find("85%.0 %+%- 7%.1 %*%*") and line_of("mean"):find("70%.0 %+%- %- %*%*%*"),
  "text: ** for a shared 2nd; '-' std for a single run", line_of("mean"))
t:ok(line_of("max"):find("%s%-%s"), "text: '-' for a missing cell", line_of("max"))
local w = #lines[3]
local aligned = true
for i = 3, #lines do aligned = aligned and #lines[i] == w end
t:ok(aligned, "text: rows have the same width", text)
t:ok(footer:find("test/acc in percent: mean %+%- sample std over 1/2 run%(s%) per cell") and
  footer:find("top 3 per column marked %(highest first%)") and footer:find("1 FAILED"), "text: footer", footer)

local md = report.render_pivot(p, "markdown")
local mlines = {}
for l in md:gmatch("[^\n]+") do mlines[#mlines + 1] = l end
t:is(mlines[1], "| pool pool_opts | Fox | Musk1 | Tiger | avg rank |", "markdown: header")
t:is(mlines[2], "|---|---:|---:|---:|---:|", "markdown: separator")
t:ok(md:find("| attention | **60.0 ± 0.0**³ | **92.5 ± 3.5**¹ | - | 2.0 |", 1, true),
  "markdown: bold top 3 with the rank as a superscript", md)
t:ok(md:find("| max | 56.0 ± 1.4 | 75.0 ± 7.1 | - | 4.0 |", 1, true), "markdown: others plain", md)

local csv = report.render_pivot(p, "csv")
local recs = {}
for l in csv:gmatch("([^\r\n]*)\r\n") do
  local f = {}
  for c in (l .. ","):gmatch("([^,]*),") do f[#f + 1] = c end
  recs[#recs + 1] = f
end
t:is(table.concat(recs[1], ","), "row,dataset,n,test_acc_mean_pct,test_acc_std_pct,rank,row_avg_rank", "csv: header")
t:is(#recs, 1 + 9, "csv: one record per (row, column) cell")
local rec
for _, r in ipairs(recs) do if r[1] == "attention" and r[2] == "Musk1" then rec = r end end
t:ok(rec and rec[3] == "2" and math.abs(tonumber(rec[4]) - 92.5) < 1e-9 and rec[6] == "1" and rec[7] == "2",
  "csv: n, percent mean, rank, row average rank")

---------------------------------------------------------------------------------------------- command

local bin = "rotlab"
do
  local ph = io.popen("command -v rotlab 2>/dev/null")
  local found = ph:read("l")
  ph:close()
  if not found or found == "" then bin = ROTLAB_ROOT .. "/build/bin/rotlab" end
end
local errfile = tmpname(".err")
local function sh(x) return "'" .. x:gsub("'", "'\\''") .. "'" end
local function run(...)
  local args = { bin, "report" }
  for _, a in ipairs { ... } do args[#args + 1] = sh(a) end
  local ph = io.popen(table.concat(args, " ") .. " 2>" .. sh(errfile))
  local out = ph:read("a")
  local _, _, code = ph:close()
  local f = io.open(errfile)
  local err = f and f:read("a") or ""
  if f then f:close() end
  return code, out, err
end
local code, out = run(path, "--table1")
t:ok(code == 0 and out:find("^pool pool_opts%s+Fox%s+Musk1%s+Tiger") and out:find("top 3 per column"),
  "rotlab report DB --table1", out)
code, out = run(path, "--cols", "pool", "--format", "markdown")
t:ok(code == 0 and out:find("^| dataset pool_opts | attention | max | mean | rotp | avg rank |") and
  out:find("| Musk1 | **92.5 ± 3.5**¹ | **75.0 ± 7.1**¹ | **85.0 ± 7.1**¹ | - | 1.0 |", 1, true),
  "--cols pool implies --table1 (rows: the other keys)",
  out)
local err
code, out, err = run(path, "--table1", "--format=csv", "--lower-better")
t:ok(code == 0 and out:find("^row,dataset") and err:find("lowest first"), "--format=csv --lower-better (footer on "
  .. "stderr)", out .. err)
code, _, err = run(path, "--lower-better")
t:ok(code == 2 and err:find("%-%-lower%-better needs %-%-table1"), "--lower-better alone: exit 2", err)
code, _, err = run(path, "--table1", "--cols", "nosuch")
t:ok(code == 2 and err:find("no key 'nosuch'"), "unknown column key: exit 2", err)
code, _, err = run(path, "--table1", "--experiment", "none")
t:ok(code == 2 and err:find("no runs of experiment 'none'"), "--table1 with no runs: exit 2", err)
code, out = run(path)
t:ok(code == 0 and out:find("^experiment%s+dataset%s+pool"), "the default report is unchanged", out)
code, out = run("--help")
t:ok(code == 0 and out:find("%-%-table1"), "--help documents --table1")

for _, f in ipairs(tmpfiles) do os.remove(f) end
os.exit(t:done())
