--[[
rotlab.plot -- `rotlab plot DB --run ID --trace NAME`: a run's per-slice trace (C-SWE: hard or soft SWGG, slack,
duals; see rotlab.experiment) over the training steps, drawn by gnuplot (Debian package gnuplot-nox) to PNG and SVG
-- the analogue of the C-SWE paper's Fig. 6.
  rotlab plot DB --run ID --trace swgg|swgg_soft|slack|dual|KEY [--layer NAME] [--out PREFIX]
              [--style auto|lines|band] [--title TEXT]
Styles: lines = one line per slice (legend "slice l"); band = the mean over slices as a line, the mean +- std
and the min-max range over slices as shaded bands (for many slices); auto (default) = lines up to
LINES_MAX_SLICES slices, band beyond. For SWGG traces the per-slice bounds (trace P.eps, when logged) are drawn
dashed: one per slice (same colour) with lines, their mean with band. Non-finite values are gaps.
Lua API:
  plot.resolve(store, run_id, name [, layer]) -> trace key (errors name what the run has)
  plot.series(rows) -> {steps = {...}, values = {{L values}, ...}, slices = L}   (rows of store:traces)
  plot.trace(db_path, {run =, trace =, layer =, out =, style =, title =}) ->
        {png =, svg =, key =, slices =, steps = (number of rows), style =}
        errors: plain strings; those of bad input start with "bad input: " (the command's exit code 2)
  plot.main(argv) -> exit code: 0; 2 for bad input (missing DB, run or trace, bad option); 1 when gnuplot is
        missing or fails
ROTLAB_GNUPLOT names the gnuplot executable (default: gnuplot on PATH).
]]
local results = require "db.results"
local json = require "rotlab.json"
local script = require "rotlab.script"

local plot = {}

-- Up to this many slices, style auto draws one line per slice (beyond it: the mean and bands).
plot.LINES_MAX_SLICES = 8
-- Image size in pixels (PNG) and SVG user units.
plot.WIDTH, plot.HEIGHT = 1000, 600
plot.STYLES = { auto = true, lines = true, band = true }

-- --trace names: the suffix of the trace key and the y-axis label.
local TRACES = {
  swgg = { suffix = "swgg_hard", label = "hard SWGG (lifted cost of the 1-D matching)", what = "hard SWGG" },
  swgg_hard = { suffix = "swgg_hard", label = "hard SWGG (lifted cost of the 1-D matching)", what = "hard SWGG" },
  swgg_soft = { suffix = "swgg_soft", label = "soft SWGG (soft-sort relaxation)", what = "soft SWGG" },
  slack = { suffix = "slack", label = "slack u", what = "slack" },
  dual = { suffix = "dual", label = "dual variable λ", what = "dual variable" },
}
local TRACE_NAMES = "swgg, swgg_soft, slack, dual"

local usage = [[
usage: rotlab plot DB --run ID --trace swgg|swgg_soft|slack|dual [--layer NAME] [--out PREFIX]
                      [--style auto|lines|band] [--title TEXT]
Draws a run's per-slice trace over training steps (C-SWE: the traces the runner logs) with gnuplot, to
PREFIX.png and PREFIX.svg.
  --run ID        the run's id (column id of table run; rotlab query DB "SELECT id, config_json FROM run")
  --trace NAME    swgg (= swgg_hard, the hard SWGG per slice), swgg_soft, slack, dual; or a full trace key
  --layer NAME    the constrained layer when the run has several (trace prefix, e.g. cswe@2.1)
  --out PREFIX    output files PREFIX.png and PREFIX.svg (default: next to DB, DB-run<ID>-<trace>)
  --style S       lines (one line per slice), band (mean line, +-std and min-max bands), auto (default:
                  lines up to 8 slices, band beyond)
  --title TEXT    the plot title (default: run, experiment, pool, slices, seed and what is drawn)
Exit code 0; 2 for bad input (missing DB, run or trace, bad option); 1 when gnuplot is missing or fails
(Debian package gnuplot-nox).]]

local function bad(fmt, ...) error("bad input: " .. fmt:format(...), 0) end

local function shell_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function file_exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

local function finite(v) return v == v and v ~= math.huge and v ~= -math.huge end

------------------------------------------------------------------------------------------------- data

local function trace_keys(store, run_id)
  local keys = {}
  for row in store.db:rows("SELECT DISTINCT key FROM trace WHERE run_id = ? ORDER BY key", run_id) do
    keys[#keys + 1] = row.key
  end
  return keys
end

function plot.resolve(store, run_id, name, layer)
  local keys = trace_keys(store, run_id)
  if #keys == 0 then
    bad("run %d has no traces (traces are logged for models with constrained layers, e.g. pool = \"cswe\")", run_id)
  end
  local have = {}
  for _, k in ipairs(keys) do have[k] = true end
  local listing = table.concat(keys, ", ")
  local spec = TRACES[name]
  if not spec then
    if have[name] then return name end
    bad("unknown trace '%s' (expected %s, or a trace key of run %d: %s)", name, TRACE_NAMES, run_id, listing)
  end
  if layer then
    local key = layer .. "." .. spec.suffix
    if not have[key] then bad("run %d has no trace '%s' (its traces: %s)", run_id, key, listing) end
    return key
  end
  local found = {}
  for _, k in ipairs(keys) do
    if k:sub(-#spec.suffix - 1) == "." .. spec.suffix then found[#found + 1] = k end
  end
  if #found == 0 then bad("run %d has no trace '*.%s' (its traces: %s)", run_id, spec.suffix, listing) end
  if #found > 1 then
    local layers = {}
    for i, k in ipairs(found) do layers[i] = k:sub(1, -#spec.suffix - 2) end
    bad("run %d has trace '%s' for several layers (%s): choose one with --layer", run_id, spec.suffix,
      table.concat(layers, ", "))
  end
  return found[1]
end

function plot.series(rows)
  local steps, values, L = {}, {}, nil
  for i, r in ipairs(rows) do
    if L == nil then L = r.n end
    if r.n ~= L then
      bad("trace '%s' has rows of different lengths (%d values at step %d, %d at step %d)", r.key, L,
        rows[1].step, r.n, r.step)
    end
    steps[i], values[i] = r.step, r.vals
  end
  if L == nil or L == 0 then bad("the trace has no values") end
  return { steps = steps, values = values, slices = L }
end

------------------------------------------------------------------------------------------------- drawing

local function num(v)
  if not finite(v) then return "NaN" end
  return ("%.10g"):format(v)
end

-- Writes the data file: step, then per slice values (lines) or mean, mean-std, mean+std, min, max (band).
local function write_data(path, s, style)
  local f = assert(io.open(path, "w"))
  for i, step in ipairs(s.steps) do
    local v = s.values[i]
    local cells = { ("%d"):format(step) }
    if style == "lines" then
      for l = 1, s.slices do cells[#cells + 1] = num(v[l]) end
    else
      local n, sum, lo, hi = 0, 0, math.huge, -math.huge
      for l = 1, s.slices do
        if finite(v[l]) then
          n, sum = n + 1, sum + v[l]
          lo, hi = math.min(lo, v[l]), math.max(hi, v[l])
        end
      end
      local mean = n > 0 and sum / n or 0 / 0
      local ss = 0
      for l = 1, s.slices do if finite(v[l]) then ss = ss + (v[l] - mean) ^ 2 end end
      local std = n > 1 and math.sqrt(ss / (n - 1)) or 0
      if n == 0 then lo, hi, std = 0 / 0, 0 / 0, 0 / 0 end
      cells[#cells + 1] = num(mean)
      cells[#cells + 1] = num(mean - std)
      cells[#cells + 1] = num(mean + std)
      cells[#cells + 1] = num(lo)
      cells[#cells + 1] = num(hi)
    end
    f:write(table.concat(cells, " "), "\n")
  end
  f:close()
end

local function gp_string(s)
  return '"' .. tostring(s):gsub("\\", "\\\\"):gsub('"', '\\"'):gsub("\n", "\\n") .. '"'
end

-- Distinct colours for L slices: the 10 of matplotlib's tab10 when they suffice, else L hues spaced evenly
-- (alternating brightness so neighbouring hues stay apart).
local TAB10 = { "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
  "#17becf" }
local function slice_color(l, L)
  if L <= #TAB10 then return TAB10[l] end
  local h, sat, v = (l - 1) / L, 0.8, l % 2 == 1 and 0.85 or 0.6
  local i = math.floor(h * 6)
  local f = h * 6 - i
  local p, q, t = v * (1 - sat), v * (1 - f * sat), v * (1 - (1 - f) * sat)
  local rgb = ({ { v, t, p }, { q, v, p }, { p, v, t }, { p, q, v }, { t, p, v }, { v, p, q } })[i % 6 + 1]
  return ("#%02x%02x%02x"):format(math.floor(rgb[1] * 255 + 0.5), math.floor(rgb[2] * 255 + 0.5),
    math.floor(rgb[3] * 255 + 0.5))
end

-- The plot command for one terminal (the same for PNG and SVG).
local function plot_commands(data, s, style, eps)
  local parts = {}
  local d = gp_string(data)
  if style == "lines" then
    for l = 1, s.slices do
      parts[#parts + 1] = ("%s using 1:%d with lines lw 1.6 lc rgb '%s' title %s"):format(l == 1 and d or "''",
        l + 1, slice_color(l, s.slices), gp_string(("slice %d"):format(l)))
    end
    if eps then
      for l = 1, s.slices do
        if finite(eps[l]) then
          parts[#parts + 1] = ("%s with lines dt 2 lw 1.2 lc rgb '%s' %s"):format(num(eps[l]),
            slice_color(l, s.slices), l == 1 and "title 'bounds ε_l (dashed)'" or "notitle")
        end
      end
    end
  else
    parts[#parts + 1] = ("%s using 1:5:6 with filledcurves fc rgb '#4a90d9' fs transparent solid 0.18 noborder "
      .. "title %s"):format(d, gp_string(("min-max over %d slices"):format(s.slices)))
    parts[#parts + 1] = "'' using 1:3:4 with filledcurves fc rgb '#1f5fa8' fs transparent solid 0.35 noborder " ..
      "title 'mean ± std'"
    parts[#parts + 1] = "'' using 1:2 with lines lw 2 lc rgb '#0b2e59' title 'mean over slices'"
    if eps then
      local n, sum = 0, 0
      for l = 1, s.slices do if finite(eps[l]) then n, sum = n + 1, sum + eps[l] end end
      if n > 0 then
        parts[#parts + 1] = ("%s with lines dt 2 lw 1.5 lc rgb '#c0392b' title 'mean bound ε'"):format(num(sum / n))
      end
    end
  end
  return "plot " .. table.concat(parts, ", \\\n     ")
end

local function gnuplot_exe()
  local exe = os.getenv("ROTLAB_GNUPLOT")
  if exe and exe ~= "" then return exe end
  return "gnuplot"
end

local function have_exe(exe)
  if exe:find("/") then return file_exists(exe) end
  local p = io.popen("command -v " .. shell_quote(exe) .. " 2>/dev/null")
  local found = p:read("l")
  p:close()
  return found ~= nil and found ~= ""
end

local function run_gnuplot(script_text)
  local exe = gnuplot_exe()
  if not have_exe(exe) then
    error(("gnuplot not found ('%s'): install the Debian package gnuplot-nox (it is in the Makefile's DEB_PKGS, "
      .. "`make deps`), or set ROTLAB_GNUPLOT"):format(exe), 0)
  end
  local sp, ep = os.tmpname(), os.tmpname()
  local f = assert(io.open(sp, "w"))
  f:write(script_text)
  f:close()
  local ok, _, code = os.execute(shell_quote(exe) .. " " .. shell_quote(sp) .. " >/dev/null 2>" .. shell_quote(ep))
  local ef = io.open(ep, "r")
  local err = ef and ef:read("a") or ""
  if ef then ef:close() end
  os.remove(sp)
  os.remove(ep)
  if not ok then
    error(("gnuplot failed (exit %s): %s"):format(tostring(code), (err:gsub("%s+$", ""))), 0)
  end
end

local function default_title(run, key, spec, s)
  local cfg = json.decode(run.config_json)
  local bits = {}
  if type(cfg) == "table" then
    for _, k in ipairs { "pool", "slices", "refs", "dataset" } do
      if cfg[k] ~= nil and type(cfg[k]) ~= "table" then bits[#bits + 1] = ("%s=%s"):format(k, tostring(cfg[k])) end
    end
  end
  local who = ("run %d (%s%s, seed %d%s)"):format(run.id, run.experiment, #bits > 0 and (", " .. table.concat(bits,
    ", ")) or "", run.seed, run.fold and (", fold " .. run.fold) or "")
  local what = spec and spec.what or key
  return ("%s per slice over training [%s]\n%s, %d slices"):format(what, key, who, s.slices)
end

local function default_out(db_path, run_id, name)
  local base = db_path:gsub("%.[%w]+$", "")
  return ("%s-run%d-%s"):format(base, run_id, (name:gsub("[^%w_%-]", "_")))
end

function plot.trace(db_path, opts)
  if type(db_path) ~= "string" or db_path == "" then bad("DB: expected the path of a results DB") end
  opts = opts or {}
  local run_id = opts.run
  if math.type(run_id) ~= "integer" then bad("--run: expected a run id (an integer), got %s", tostring(run_id)) end
  local name = opts.trace
  if type(name) ~= "string" or name == "" then bad("--trace: expected one of %s", TRACE_NAMES) end
  local style = opts.style or "auto"
  if not plot.STYLES[style] then bad("--style: expected auto, lines or band, got '%s'", tostring(style)) end
  if not file_exists(db_path) then bad("no such results DB: '%s'", db_path) end
  local ok, store = pcall(results.open, db_path, { readonly = true })
  if not ok then
    bad("'%s' is not a readable results DB (%s)", db_path, (tostring(store):gsub("[^%s:]*%.lua:%d+: ", "")))
  end
  local res
  ok, res = pcall(function()
    local run = store.db:query("SELECT r.id, r.seed, r.fold, r.status, r.config_json, e.name AS experiment " ..
      "FROM run r JOIN experiment e ON e.id = r.experiment_id WHERE r.id = ?", run_id)[1]
    if not run then
      local span = store.db:query("SELECT count(*) AS n, min(id) AS lo, max(id) AS hi FROM run")[1]
      bad("no run %d in %s (%s)", run_id, db_path, span.n == 0 and "it has no runs" or
        ("run ids %d..%d"):format(span.lo, span.hi))
    end
    local key = plot.resolve(store, run_id, name, opts.layer)
    local s = plot.series(store:traces(run_id, key))
    local eps
    local spec = TRACES[name]
    if key:match("%.swgg_hard$") or key:match("%.swgg_soft$") then
      local er = store:traces(run_id, key:gsub("%.swgg_[a-z]+$", ".eps"))
      if er[#er] and er[#er].n == s.slices then eps = er[#er].vals end
    end
    return { run = run, key = key, series = s, eps = eps, spec = spec }
  end)
  store:close()
  if not ok then error(res, 0) end
  local s = res.series
  if style == "auto" then style = s.slices <= plot.LINES_MAX_SLICES and "lines" or "band" end
  local out = opts.out or default_out(db_path, run_id, name)
  local dir = out:match("^(.*)/[^/]*$")
  if dir and dir ~= "" and not os.execute("mkdir -p " .. shell_quote(dir) .. " 2>/dev/null") then
    bad("--out: cannot create the directory '%s'", dir)
  end
  local png, svg = out .. ".png", out .. ".svg"
  local data = os.tmpname()
  write_data(data, s, style)
  local title = opts.title or default_title(res.run, res.key, res.spec, s)
  local ylabel = res.spec and res.spec.label or res.key
  local common = table.concat({
    "set encoding utf8",
    "set termoption noenhanced",
    "set title " .. gp_string(title),
    "set xlabel 'training step (optimizer steps)'",
    "set ylabel " .. gp_string(ylabel),
    "set grid lc rgb '#dddddd'",
    "set key outside right top box",
    "set border 3",
    "set tics nomirror",
    "set xrange [" .. s.steps[1] .. ":" .. math.max(s.steps[#s.steps], s.steps[1] + 1) .. "]",
    plot_commands(data, s, style, res.eps),
  }, "\n")
  local text = table.concat({
    ("set terminal pngcairo size %d,%d font 'DejaVu Sans,11'"):format(plot.WIDTH, plot.HEIGHT),
    "set output " .. gp_string(png),
    common,
    "set output",
    ("set terminal svg size %d,%d dynamic font 'DejaVu Sans,11'"):format(plot.WIDTH, plot.HEIGHT),
    "set output " .. gp_string(svg),
    common,
    "set output",
  }, "\n") .. "\n"
  local gok, gerr = pcall(run_gnuplot, text)
  os.remove(data)
  if not gok then error(gerr, 0) end
  for _, p in ipairs { png, svg } do
    local f = io.open(p, "rb")
    local size = f and f:seek("end") or 0
    if f then f:close() end
    if size == 0 then error(("gnuplot wrote no output to %s"):format(p), 0) end
  end
  return { png = png, svg = svg, key = res.key, slices = s.slices, steps = #s.steps, style = style }
end

------------------------------------------------------------------------------------------------- command

local FLAGS = { ["--run"] = "value", ["--trace"] = "value", ["--layer"] = "value", ["--out"] = "value",
  ["--style"] = "value", ["--title"] = "value", ["--help"] = "flag", ["-h"] = "flag" }

function plot.main(argv)
  local ok, opts, positional, params = pcall(script.parse_args, argv, 2, FLAGS)
  if not ok then
    io.stderr:write("rotlab plot: ", tostring(opts), "\n", usage, "\n")
    return 2
  end
  if opts.help or opts.h then
    print(usage)
    return 0
  end
  local function fail(msg)
    io.stderr:write("rotlab plot: ", msg, "\n")
    return 2
  end
  if #params > 0 then return fail(("unexpected argument '%s'\n%s"):format(params[1], usage)) end
  if #positional ~= 1 then
    return fail(("expected one DB path, got %d argument(s)\n%s"):format(#positional, usage))
  end
  if not opts.run then return fail("option --run ID is required (the run's id; see rotlab plot --help)") end
  if not opts.trace then return fail(("option --trace is required (%s)"):format(TRACE_NAMES)) end
  local id = math.tointeger(tonumber(opts.run))
  if not id or not opts.run:match("^%s*%d+%s*$") then
    return fail(("option --run: expected a run id (a positive integer), got '%s'"):format(opts.run))
  end
  local res
  ok, res = pcall(plot.trace, positional[1], { run = id, trace = opts.trace, layer = opts.layer, out = opts.out,
    style = opts.style, title = opts.title })
  if not ok then
    local msg = tostring(res)
    local input = msg:match("^bad input: (.*)$")
    io.stderr:write("rotlab plot: ", input or msg, "\n")
    return input and 2 or 1
  end
  print(("rotlab plot: wrote %s and %s (trace %s, %d slices, %d steps, style %s)"):format(res.png, res.svg, res.key,
    res.slices, res.steps, res.style))
  return 0
end

return plot
