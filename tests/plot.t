#!/usr/bin/env rotlab
-- `rotlab plot`: per-slice traces of a hand-made results DB drawn to PNG and SVG with gnuplot (PNG signature and
-- size, one SVG plot element and data path per slice, bands for many slices, the bounds for SWGG), and every error
-- path of the command with its exit code (2 for bad input, 1 when gnuplot is missing or fails).
local rl = require "rotlab"
local plot = require "rotlab.plot"
local t = require("rotlab.tap")()

do
  local p = io.popen("command -v gnuplot 2>/dev/null")
  local found = p:read("l")
  p:close()
  if not found or found == "" then t:skip_all("gnuplot not installed (Debian package gnuplot-nox; make deps)") end
end

local dir = os.tmpname()
os.remove(dir)
assert(os.execute("mkdir -p '" .. dir .. "'"))

local bin = "rotlab"
do
  local p = io.popen("command -v rotlab 2>/dev/null")
  local found = p:read("l")
  p:close()
  if not found or found == "" then bin = ROTLAB_ROOT .. "/build/bin/rotlab" end
end
local function sh(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
-- runs `rotlab plot ARGS` (env: a prefix like "ROTLAB_GNUPLOT=x"); returns exit code, stdout, stderr
local function rotlab_plot(args, env)
  local words = { env or "", sh(bin), "plot" }
  for _, a in ipairs(args) do words[#words + 1] = sh(a) end
  local errf = dir .. "/stderr"
  local p = io.popen(table.concat(words, " ") .. " 2>" .. sh(errf))
  local out = p:read("a")
  local _, _, code = p:close()
  local f = io.open(errf)
  local err = f and f:read("a") or ""
  if f then f:close() end
  return code, out, err
end
local function slurp(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

-- The DB: run 1 (3 slices, 20 steps, all four traces + bounds), run 2 (20 slices), run 3 (two layers), run 4 (no
-- traces), run 5 (rows of different lengths)
local db = dir .. "/res.db"
local STEPS, L, WIDE = 20, 3, 20
do
  local store = rl.db.open(db)
  local exp = store:experiment("plot-test")
  local function new_run(cfg)
    return assert(store:begin_run(exp, { config = cfg, seed = 1 }))
  end
  local r1 = new_run { pool = "cswe", slices = L }
  for s = 1, STEPS do
    local g, d, u, soft = {}, {}, {}, {}
    for l = 1, L do
      g[l] = 2 + l * 0.3 - 0.04 * s + 0.01 * math.sin(s * l)
      soft[l] = g[l] + 0.1
      d[l] = math.max(0, 0.05 * s * l - 0.002 * s * s)
      u[l] = 0.5 * d[l]
    end
    if s == 7 then g[2] = 0 / 0 end -- a gap
    r1:trace(s, "cswe.swgg_hard", g)
    r1:trace(s, "cswe.swgg_soft", soft)
    r1:trace(s, "cswe.dual", d)
    r1:trace(s, "cswe.slack", u)
  end
  r1:trace(1, "cswe.eps", { 1.5, 1.6, 1.7 })
  r1:finish("FINISHED")
  local r2 = new_run { pool = "cswe", slices = WIDE }
  for s = 1, STEPS do
    local g, d = {}, {}
    for l = 1, WIDE do g[l], d[l] = 1 + 0.05 * l + 1 / s, 0.01 * l * s end
    r2:trace(s, "cswe.swgg_hard", g)
    r2:trace(s, "cswe.dual", d)
  end
  local e = {}
  for l = 1, WIDE do e[l] = 1.2 end
  r2:trace(1, "cswe.eps", e)
  r2:finish("FINISHED")
  local r3 = new_run { pool = "two" }
  for s = 1, STEPS do
    r3:trace(s, "cswe@2.1.dual", { s, 2 * s })
    r3:trace(s, "cswe@2.2.dual", { 0.5 * s, s })
  end
  r3:finish("FINISHED")
  local r4 = new_run { pool = "mean" }
  r4:metric(1, "test", "acc", 0.5)
  r4:finish("FINISHED")
  local r5 = new_run { pool = "odd" }
  r5:trace(1, "cswe.dual", { 1, 2 })
  r5:trace(2, "cswe.dual", { 1, 2, 3 })
  r5:finish("FINISHED")
  store:close()
end

-- SVG structure: plot elements (gnuplot_plot_N groups) and the data paths with their stroke colours
local function svg_info(svg)
  local groups = 0
  for _ in svg:gmatch('<g id="gnuplot_plot_%d+"') do groups = groups + 1 end
  local colours, long = {}, 0
  for colour, d in svg:gmatch("<path stroke='(rgb%([^)]*%))'%s+d='([^']*)'") do
    local segs = 0
    for _ in d:gmatch("L") do segs = segs + 1 end
    if colour ~= "rgb(221, 221, 221)" and segs >= 10 then -- not the grid; a curve over the steps
      colours[colour] = true
      long = long + 1
    end
  end
  local n = 0
  for _ in pairs(colours) do n = n + 1 end
  return groups, n, long
end
local PNG_SIG = "\137PNG\r\n\26\n"
local function png_ok(path)
  local s = slurp(path)
  return s ~= nil and s:sub(1, 8) == PNG_SIG and #s > 10000, s and #s or 0
end

---------------------------------------------------------------------------------------------- drawing

do
  local code, out, err = rotlab_plot { db, "--run", "1", "--trace", "dual", "--out", dir .. "/a" }
  t:is(code, 0, "plot --trace dual exits 0", err)
  t:ok(out:find("wrote .*a%.png and .*a%.svg %(trace cswe%.dual, 3 slices, 20 steps, style lines%)"),
    "says what it wrote", out)
  local ok, size = png_ok(dir .. "/a.png")
  t:ok(ok, ("PNG written: signature and %d bytes"):format(size))
  local svg = slurp(dir .. "/a.svg") or ""
  local groups, colours, long = svg_info(svg)
  t:ok(svg:find("<svg") and groups == L, ("SVG: one plot element per slice (%d for %d slices)"):format(groups, L))
  t:ok(colours == L and long == L, ("SVG: one data path per slice, each its own colour (%d paths, %d colours)"):format(
    long, colours))
  t:ok(svg:find("slice 1") and svg:find("slice 3") and not svg:find("slice 4"), "legend: slice 1 .. slice 3")
  t:ok(svg:find("training step") and svg:find("dual variable"), "axis labels: training step, dual variable")
  t:ok(svg:find("run 1 %(plot%-test, pool=cswe, slices=3, seed 1%)"), "title names the run and its config")
end

do -- SWGG: bounds dashed, one per slice; a NaN is a gap, not an error
  local code, _, err = rotlab_plot { db, "--run", "1", "--trace", "swgg", "--out", dir .. "/b" }
  t:is(code, 0, "plot --trace swgg exits 0 (a NaN in the trace is a gap)", err)
  local groups = svg_info(slurp(dir .. "/b.svg") or "")
  t:is(groups, 2 * L, "swgg: a line per slice plus a dashed bound per slice")
  t:ok((slurp(dir .. "/b.svg") or ""):find("hard SWGG"), "swgg is the hard SWGG")
  code = rotlab_plot { db, "--run", "1", "--trace", "swgg_soft", "--out", dir .. "/b2" }
  t:ok(code == 0 and (slurp(dir .. "/b2.svg") or ""):find("soft SWGG"), "swgg_soft plotted")
  code = rotlab_plot { db, "--run", "1", "--trace", "slack", "--out", dir .. "/b3" }
  t:ok(code == 0 and png_ok(dir .. "/b3.png"), "slack plotted")
end

do -- many slices: band by default, lines on request
  local code, out, err = rotlab_plot { db, "--run", "2", "--trace", "dual", "--out", dir .. "/c" }
  t:is(code, 0, "20 slices: exits 0", err)
  t:ok(out:find("style band"), "20 slices: style band by default", out)
  local svg = slurp(dir .. "/c.svg") or ""
  local groups = svg_info(svg)
  t:is(groups, 3, "band: min-max band, std band, mean line")
  t:ok(svg:find("min%-max over 20 slices") and svg:find("mean over slices"), "band legend")
  t:ok(png_ok(dir .. "/c.png"), "band PNG written")
  code = rotlab_plot { db, "--run", "2", "--trace", "swgg", "--out", dir .. "/c2" }
  t:ok(code == 0 and svg_info(slurp(dir .. "/c2.svg") or "") == 4, "band of swgg: plus the mean bound")
  code = rotlab_plot { db, "--run", "2", "--trace", "dual", "--style", "lines", "--out", dir .. "/c3" }
  local g3, c3 = svg_info(slurp(dir .. "/c3.svg") or "")
  t:ok(code == 0 and g3 == WIDE and c3 == WIDE, ("--style lines: %d lines in %d colours"):format(g3, c3))
  code = rotlab_plot { db, "--run", "1", "--trace", "dual", "--style", "band", "--out", dir .. "/c4",
    "--title", "my title" }
  local svg4 = slurp(dir .. "/c4.svg") or ""
  t:ok(code == 0 and svg_info(svg4) == 3 and svg4:find("my title"), "--style band on 3 slices, --title")
end

do -- default output next to the DB; several layers
  local code = rotlab_plot { db, "--run", "1", "--trace", "dual" }
  t:ok(code == 0 and png_ok(dir .. "/res-run1-dual.png") and slurp(dir .. "/res-run1-dual.svg"),
    "default --out: DB-run<ID>-<trace>.png/.svg next to the DB")
  local err
  code, _, err = rotlab_plot { db, "--run", "3", "--trace", "dual", "--out", dir .. "/d" }
  t:ok(code == 2 and err:find("several layers %(cswe@2%.1, cswe@2%.2%): choose one with %-%-layer"),
    "several layers: exit 2, asks for --layer", err)
  code = rotlab_plot { db, "--run", "3", "--trace", "dual", "--layer", "cswe@2.2", "--out", dir .. "/d" }
  t:ok(code == 0 and svg_info(slurp(dir .. "/d.svg") or "") == 2, "--layer cswe@2.2 picks that layer")
  code = rotlab_plot { db, "--run", "3", "--trace", "cswe@2.1.dual", "--out", dir .. "/d2" }
  t:ok(code == 0 and png_ok(dir .. "/d2.png"), "a full trace key works as --trace")
  code, _, err = rotlab_plot { db, "--run", "3", "--trace", "dual", "--layer", "cswe@9" }
  t:ok(code == 2 and err:find("run 3 has no trace 'cswe@9%.dual' %(its traces: cswe@2%.1%.dual, cswe@2%.2%.dual%)"),
    "unknown --layer: exit 2, lists the traces", err)
end

do -- the Lua API
  local res = plot.trace(db, { run = 1, trace = "slack", out = dir .. "/e" })
  t:ok(res.key == "cswe.slack" and res.slices == L and res.steps == STEPS and res.style == "lines" and
    png_ok(res.png), "plot.trace returns key, slices, steps, style and the files")
  t:raises(function() plot.trace(db, { run = "1", trace = "dual" }) end, "^bad input: %-%-run: expected a run id",
    "plot.trace: run must be an integer")
  t:raises(function() plot.series({}) end, "the trace has no values", "plot.series of no rows")
end

---------------------------------------------------------------------------------------------- errors

local function expect2(args, pattern, name, env)
  local code, _, err = rotlab_plot(args, env)
  t:ok(code == 2 and err:find(pattern) ~= nil, name .. " (exit 2)", ("exit %s, stderr: %s"):format(tostring(code),
    err))
end

do
  local code, out = rotlab_plot { "--help" }
  t:ok(code == 0 and out:find("usage: rotlab plot DB %-%-run ID %-%-trace"), "--help: usage, exit 0")
  local p = io.popen(sh(bin) .. " help")
  local help = p:read("a")
  p:close()
  t:ok(help:find("plot DB %-%-run ID %-%-trace NAME"), "rotlab help lists plot")
  expect2({}, "expected one DB path, got 0", "no arguments")
  expect2({ dir .. "/missing.db", "--run", "1", "--trace", "dual" }, "no such results DB: '.*missing%.db'",
    "missing DB")
  local notdb = dir .. "/not.db"
  local f = assert(io.open(notdb, "w"))
  f:write(("this is not a database\n"):rep(100))
  f:close()
  expect2({ notdb, "--run", "1", "--trace", "dual" }, "'.*not%.db' is not a readable results DB %(.*not a database",
    "a file that is not a results DB")
  expect2({ db, "--trace", "dual" }, "option %-%-run ID is required", "missing --run")
  expect2({ db, "--run", "1" }, "option %-%-trace is required %(swgg, swgg_soft, slack, dual%)", "missing --trace")
  expect2({ db, "--run", "abc", "--trace", "dual" }, "option %-%-run: expected a run id %(a positive integer%), got 'abc'",
    "--run not an integer")
  expect2({ db, "--run", "99", "--trace", "dual" }, "no run 99 in .*res%.db %(run ids 1%.%.5%)", "no such run")
  expect2({ db, "--run", "4", "--trace", "dual" }, "run 4 has no traces", "a run without traces")
  expect2({ db, "--run", "1", "--trace", "bogus" },
    "unknown trace 'bogus' %(expected swgg, swgg_soft, slack, dual, or a trace key of run 1: cswe%.dual, cswe%.eps",
    "unknown trace name")
  expect2({ db, "--run", "3", "--trace", "slack" }, "run 3 has no trace '%*%.slack' %(its traces: cswe@2%.1%.dual",
    "a trace the run does not have")
  expect2({ db, "--run", "5", "--trace", "dual" }, "rows of different lengths", "rows of different lengths")
  expect2({ db, "--run", "1", "--trace", "dual", "--style", "dots" }, "%-%-style: expected auto, lines or band, got 'dots'",
    "bad --style")
  expect2({ db, "--run", "1", "--trace", "dual", "--colour", "red" }, "unknown option '%-%-colour'", "unknown option")
  expect2({ db, db, "--run", "1", "--trace", "dual" }, "expected one DB path, got 2", "two DB paths")
  expect2({ db, "--run", "1", "--trace", "dual", "x=1" }, "unexpected argument 'x=1'", "a stray key=value")
  expect2({ db, "--run", "1", "--run", "2", "--trace", "dual" }, "option %-%-run given twice", "--run twice")
  expect2({ db, "--run", "1", "--trace" }, "option %-%-trace needs a value", "--trace without a value")
  expect2({ db, "--run", "1", "--trace", "dual", "--out", notdb .. "/sub/x" }, "%-%-out: cannot create the directory",
    "--out under a regular file")
  -- gnuplot missing or failing: exit 1
  local code1, _, err1 = rotlab_plot({ db, "--run", "1", "--trace", "dual", "--out", dir .. "/g" },
    "ROTLAB_GNUPLOT=" .. sh(dir .. "/no/gnuplot"))
  t:ok(code1 == 1 and err1:find("gnuplot not found") and err1:find("gnuplot%-nox"),
    "gnuplot missing: exit 1, names the Debian package", err1)
  local code2, _, err2 = rotlab_plot({ db, "--run", "1", "--trace", "dual", "--out", dir .. "/g" },
    "ROTLAB_GNUPLOT=/bin/false")
  t:ok(code2 == 1 and err2:find("gnuplot failed"), "gnuplot failing: exit 1", err2)
end

os.execute("rm -rf '" .. dir .. "'")
os.exit(t:done())
