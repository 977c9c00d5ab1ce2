--[[
rotlab.report -- `rotlab report DB`: one row per configuration, the chosen metric's mean +- std over its runs.
  rotlab report DB [--format text|markdown|csv] [--metric NAME] [--split SPLIT] [--experiment NAME] [--help]
  rotlab report DB --table1 [--cols KEY] [--lower-better] [...]   the paper-style pivot (see below)
Runs are grouped by (experiment, config_json); seed and fold are not part of the config, so the runs of one group
are its seeds/folds. Each FINISHED run contributes its metric value at its LAST logged step; the row shows the mean
and the sample standard deviation (n - 1; "-" when only one value) of those values, and the mean wall time. Only
FINISHED runs count; a footer line gives the number of FAILED / RUNNING / INTERRUPTED runs.
Columns: experiment, the config keys whose value differs between rows, the keys that are the same everywhere (when
there are at most MAX_CONSTANT_COLUMNS of them, else they go to a footer line), n, the metric, wall time.
Formats: text (aligned columns), markdown (a pipe table), csv (RFC 4180, CRLF, every config key as a column,
separate mean and std columns, std empty when n = 1, numbers at full precision; the footer goes to stderr).
Lua API:
  report.table(db_path [, {metric = "acc", split = "test", experiment = name}]) -> rows, info
     rows[i] = {experiment, config (table), config_json, n (finished runs), n_metric (those with the metric),
                values (list), mean, std (nil when n_metric < 2), wall_mean}
     info = {metric, split, varying (keys), constant (keys), counts = {FINISHED =, FAILED =, ...},
             missing_metric (finished runs without the metric), available (list of "split/name")}
  report.render(rows, info, format) -> text, footer
  report.pivot(db_path [, {metric =, split =, experiment =, cols = "dataset", lower_better = false}]) -> pivot
     the paper's Table 1 layout: columns = the values of config key `cols`, rows = the other config keys (the
     ones that differ between rows make the row label), cells = mean +- sample std of the runs' last values,
     rank = competition rank of the cell's mean in its column (1 = best; ties share a rank), avg_rank per row.
     pivot = {cols = {values}, rows = {{label, config (without cols), cells = {[col] = {n, values, mean, std,
              rank}}, avg_rank}}, info = report.table's info, label_keys, cols_key, lower_better}
  report.render_pivot(pivot, format [, {top = 3}]) -> text, footer: percent cells "89.2 +- 4.0"; the top 3 of
     each column marked: text "***" (1st) "**" (2nd) "*" (3rd), markdown bold plus a superscript rank, csv one
     record per (row, column) with n, mean_pct, std_pct and rank
  report.main(argv) -> exit code (0, or 2 with a message on stderr)
]]
local json = require "rotlab.json"
local results = require "db.results"

local report = {}

-- Config keys that are the same in every row are shown as columns when there are at most this many.
report.MAX_CONSTANT_COLUMNS = 3
report.FORMATS = { text = true, markdown = true, csv = true }
report.DEFAULT_METRIC = "acc"
report.DEFAULT_SPLIT = "test"

local usage = [[
usage: rotlab report DB [--format text|markdown|csv] [--metric NAME] [--split SPLIT] [--experiment NAME]
One row per configuration (runs grouped by config; seed and fold are not part of it): n finished runs, the mean
+- sample std over runs of each run's metric value at its last step (default split "test", name "acc"), and the
mean wall time. Only FINISHED runs count; FAILED/RUNNING/INTERRUPTED runs are counted in a footer line.
  --format F        text (default, aligned columns), markdown (pipe table) or csv (RFC 4180)
  --metric NAME     metric name (default acc)
  --split SPLIT     metric split (default test)
  --experiment NAME only this experiment
  --table1          paper-style pivot (Table 1): one column per value of config key --cols (default dataset),
                    one row per remaining configuration, cells mean +- std in percent over the runs (folds x
                    seeds), the top 3 of each column marked (text *** ** *, markdown bold + rank, csv rank column)
  --cols KEY        the config key whose values become the columns (implies --table1)
  --lower-better    rank low values first (e.g. for a loss metric)
Exit code 0, or 2 when the DB is missing, has no runs, or an option is wrong.]]

------------------------------------------------------------------------------------------------- numbers

local function mean_std(values)
  local n = #values
  if n == 0 then return nil, nil end
  local s = 0
  for _, v in ipairs(values) do s = s + v end
  local mean = s / n
  if n < 2 then return mean, nil end
  local ss = 0
  for _, v in ipairs(values) do ss = ss + (v - mean) ^ 2 end
  return mean, math.sqrt(ss / (n - 1))
end
report.mean_std = mean_std

------------------------------------------------------------------------------------------------- query

local function check_opts(opts)
  if opts == nil then return {} end
  if type(opts) ~= "table" then error(("report.table: expected a table of options, got %s"):format(type(opts)), 0) end
  for k, v in pairs(opts) do
    if k ~= "metric" and k ~= "split" and k ~= "experiment" then
      error(("report.table: unknown option '%s' (known options: experiment, metric, split)"):format(tostring(k)), 0)
    end
    if type(v) ~= "string" or v == "" then
      error(("report.table: option %s: expected a non-empty string, got %s"):format(k, type(v)), 0)
    end
  end
  return opts
end

-- Orders config values: missing first, then numbers numerically, then booleans, then strings/JSON by text.
local function value_less(a, b)
  if a == nil or b == nil then return a == nil and b ~= nil end
  local ta, tb = type(a), type(b)
  if ta == "number" and tb == "number" then return a < b end
  if ta ~= tb then return ta < tb end
  if ta == "boolean" then return (not a) and b end
  if ta == "string" then return a < b end
  return json.encode(a) < json.encode(b)
end

function report.table(db_path, opts)
  if type(db_path) ~= "string" or db_path == "" then
    error(("report.table: bad argument #1 (DB path: expected a non-empty string, got %s)"):format(type(db_path)), 0)
  end
  opts = check_opts(opts)
  local metric = opts.metric or report.DEFAULT_METRIC
  local split = opts.split or report.DEFAULT_SPLIT
  local f = io.open(db_path, "rb")
  if not f then error(("no such results DB: '%s'"):format(db_path), 0) end
  f:close()
  local store <close> = results.open(db_path, { readonly = true })
  local db = store.db

  local where, args = "", {}
  if opts.experiment then
    where = " WHERE e.name = ?"
    args[1] = opts.experiment
  end
  local runs = db:query("SELECT r.id, r.config_json, r.status, r.wall_seconds, e.name AS experiment " ..
    "FROM run r JOIN experiment e ON e.id = r.experiment_id" .. where .. " ORDER BY r.id", table.unpack(args))

  -- each run's value at its last step of (split, metric)
  local last = {}
  for row in db:rows("SELECT m.run_id, m.value, m.value_class FROM metric m JOIN (SELECT run_id, max(step) AS step " ..
    "FROM metric WHERE split = ?1 AND name = ?2 GROUP BY run_id) l ON l.run_id = m.run_id AND l.step = m.step " ..
    "WHERE m.split = ?1 AND m.name = ?2", split, metric) do
    last[row.run_id] = row.value_class == "nan" and 0 / 0 or row.value
  end
  local available = {}
  for row in db:rows("SELECT DISTINCT split || '/' || name AS m FROM metric ORDER BY 1") do
    available[#available + 1] = row.m
  end

  local counts = { FINISHED = 0, FAILED = 0, RUNNING = 0, INTERRUPTED = 0 }
  local groups, order, missing = {}, {}, 0
  for _, r in ipairs(runs) do
    counts[r.status] = (counts[r.status] or 0) + 1
    if r.status == "FINISHED" then
      local gk = r.experiment .. "\0" .. r.config_json
      local g = groups[gk]
      if not g then
        local ok, config = pcall(json.decode, r.config_json)
        if not ok or type(config) ~= "table" then
          error(("run %d has a bad config_json: %s"):format(r.id, tostring(config)), 0)
        end
        g = { experiment = r.experiment, config = config, config_json = r.config_json, n = 0, values = {},
          walls = {} }
        groups[gk] = g
        order[#order + 1] = g
      end
      g.n = g.n + 1
      if last[r.id] ~= nil then g.values[#g.values + 1] = last[r.id] else missing = missing + 1 end
      if r.wall_seconds then g.walls[#g.walls + 1] = r.wall_seconds end
    end
  end

  -- keys whose value differs between rows vs. keys that are the same everywhere
  local seen, keys = {}, {}
  for _, g in ipairs(order) do
    for k in pairs(g.config) do
      if not seen[k] then seen[k] = true; keys[#keys + 1] = k end
    end
  end
  table.sort(keys)
  local varying, constant = {}, {}
  for _, k in ipairs(keys) do
    local first, differs = nil, false
    for i, g in ipairs(order) do
      local v = g.config[k]
      local enc = v == nil and "\0missing" or json.encode(v)
      if i == 1 then first = enc elseif enc ~= first then differs = true end
    end
    if differs then varying[#varying + 1] = k else constant[#constant + 1] = k end
  end

  local rows = {}
  for _, g in ipairs(order) do
    local mean, std = mean_std(g.values)
    rows[#rows + 1] = { experiment = g.experiment, config = g.config, config_json = g.config_json, n = g.n,
      n_metric = #g.values, values = g.values, mean = mean, std = std, wall_mean = (mean_std(g.walls)) }
  end
  table.sort(rows, function(a, b)
    if a.experiment ~= b.experiment then return a.experiment < b.experiment end
    for _, k in ipairs(varying) do
      local va, vb = a.config[k], b.config[k]
      if value_less(va, vb) then return true end
      if value_less(vb, va) then return false end
    end
    return a.config_json < b.config_json
  end)
  return rows, { metric = metric, split = split, experiment = opts.experiment, varying = varying,
    constant = constant, counts = counts, missing_metric = missing, available = available }
end

------------------------------------------------------------------------------------------------- render

local function fmt_num(x, fmt)
  if x == nil then return "-" end
  if x ~= x then return "nan" end
  if x == math.huge then return "inf" end
  if x == -math.huge then return "-inf" end
  return (fmt or "%.4g"):format(x)
end

-- full precision for CSV: the shortest decimal that reads back to the same double
local function fmt_exact(x)
  if x == nil then return "" end
  if math.type(x) == "integer" then return ("%d"):format(x) end
  local s = json.encode(x)
  return (s:gsub('"', ""))
end

local function fmt_value(v)
  if v == nil then return "" end
  if type(v) == "string" then return v end
  if type(v) == "number" then return math.type(v) == "integer" and ("%d"):format(v) or fmt_num(v, "%.6g") end
  if type(v) == "boolean" then return tostring(v) end
  return json.encode(v)
end

local function csv_field(s)
  if s:find('[,"\r\n]') then return '"' .. s:gsub('"', '""') .. '"' end
  return s
end

local function footer_lines(info, shown_constant)
  local lines = {}
  local c = info.counts
  local others = {}
  for _, st in ipairs { "FAILED", "RUNNING", "INTERRUPTED" } do
    others[#others + 1] = ("%d %s"):format(c[st] or 0, st)
  end
  lines[#lines + 1] = ("runs: %d FINISHED (counted), %s (not counted)"):format(c.FINISHED or 0,
    table.concat(others, ", "))
  if info.missing_metric > 0 then
    lines[#lines + 1] = ("%d FINISHED run(s) have no %s/%s metric; available: %s"):format(info.missing_metric,
      info.split, info.metric, #info.available > 0 and table.concat(info.available, ", ") or "none")
  end
  if not shown_constant and #info.constant > 0 then
    local parts = {}
    for _, k in ipairs(info.constant) do parts[#parts + 1] = k .. "=" .. fmt_value(info.constant_values[k]) end
    lines[#lines + 1] = "same in every row: " .. table.concat(parts, ", ")
  end
  return lines
end

function report.render(rows, info, format)
  format = format or "text"
  if not report.FORMATS[format] then
    error(("unknown format '%s' (expected text, markdown or csv)"):format(tostring(format)), 0)
  end
  info.constant_values = {}
  for _, k in ipairs(info.constant) do info.constant_values[k] = rows[1] and rows[1].config[k] end
  local mname = info.split .. "/" .. info.metric

  if format == "csv" then
    local keys = {}
    for _, k in ipairs(info.varying) do keys[#keys + 1] = k end
    for _, k in ipairs(info.constant) do keys[#keys + 1] = k end
    table.sort(keys)
    local head = { "experiment" }
    for _, k in ipairs(keys) do head[#head + 1] = k end
    local base = info.split .. "_" .. info.metric
    for _, h in ipairs { "n", base .. "_n", base .. "_mean", base .. "_std", "wall_seconds_mean" } do
      head[#head + 1] = h
    end
    local out = {}
    local function line(cells)
      for i, c in ipairs(cells) do cells[i] = csv_field(c) end
      out[#out + 1] = table.concat(cells, ",") .. "\r\n"
    end
    line(head)
    for _, r in ipairs(rows) do
      local cells = { r.experiment }
      for _, k in ipairs(keys) do cells[#cells + 1] = fmt_value(r.config[k]) end
      cells[#cells + 1] = ("%d"):format(r.n)
      cells[#cells + 1] = ("%d"):format(r.n_metric)
      cells[#cells + 1] = fmt_exact(r.mean)
      cells[#cells + 1] = fmt_exact(r.std)
      cells[#cells + 1] = fmt_exact(r.wall_mean)
      line(cells)
    end
    return table.concat(out), table.concat(footer_lines(info, true), "\n")
  end

  local show_constant = #info.constant <= report.MAX_CONSTANT_COLUMNS
  local keys = {}
  for _, k in ipairs(info.varying) do keys[#keys + 1] = k end
  if show_constant then for _, k in ipairs(info.constant) do keys[#keys + 1] = k end end
  local head = { "experiment" }
  local right = { false }
  for _, k in ipairs(keys) do head[#head + 1] = k; right[#right + 1] = false end
  for _, h in ipairs { "n", mname .. " (mean +- std)", "wall s" } do head[#head + 1] = h; right[#right + 1] = true end
  local body = {}
  for _, r in ipairs(rows) do
    local cells = { r.experiment }
    for _, k in ipairs(keys) do cells[#cells + 1] = fmt_value(r.config[k]) end
    cells[#cells + 1] = r.n_metric == r.n and ("%d"):format(r.n) or ("%d (%d with metric)"):format(r.n, r.n_metric)
    cells[#cells + 1] = fmt_num(r.mean) .. " +- " .. fmt_num(r.std)
    cells[#cells + 1] = fmt_num(r.wall_mean, "%.1f")
    body[#body + 1] = cells
  end
  local footer = table.concat(footer_lines(info, show_constant), "\n")

  if format == "markdown" then
    local function esc(s) return (s:gsub("|", "\\|")) end
    local out = {}
    local function line(cells)
      local e = {}
      for i, c in ipairs(cells) do e[i] = esc(c) end
      out[#out + 1] = "| " .. table.concat(e, " | ") .. " |\n"
    end
    line(head)
    local sep = {}
    for i = 1, #head do sep[i] = right[i] and "---:" or "---" end
    out[#out + 1] = "|" .. table.concat(sep, "|") .. "|\n"
    for _, cells in ipairs(body) do line(cells) end
    return table.concat(out), footer
  end

  -- text: aligned columns
  local width = {}
  for i, h in ipairs(head) do width[i] = utf8.len(h) or #h end
  for _, cells in ipairs(body) do
    for i, c in ipairs(cells) do width[i] = math.max(width[i], utf8.len(c) or #c) end
  end
  local function pad(s, i)
    local fill = (" "):rep(width[i] - (utf8.len(s) or #s))
    return right[i] and (fill .. s) or (s .. fill)
  end
  local out = {}
  local function line(cells)
    local p = {}
    for i, c in ipairs(cells) do p[i] = pad(c, i) end
    out[#out + 1] = (table.concat(p, "  "):gsub("%s+$", "")) .. "\n"
  end
  line(head)
  local dashes = {}
  for i = 1, #head do dashes[i] = ("-"):rep(width[i]) end
  out[#out + 1] = table.concat(dashes, "  ") .. "\n"
  for _, cells in ipairs(body) do line(cells) end
  return table.concat(out), footer
end

------------------------------------------------------------------------------------------------- pivot (Table 1)

report.DEFAULT_COLS = "dataset"
report.TOP = 3
-- Means closer than this count as tied when ranking (sums of the same values in another order differ in the last
-- bits: 0.85 and (0.8 + 0.9) / 2 must share a rank).
report.RANK_TIE_TOL = 1e-9
local TEXT_MARKS = { "***", "**", "*" }
local SUPERSCRIPT = { "¹", "²", "³", "⁴", "⁵", "⁶", "⁷", "⁸", "⁹" }

-- "k=v k=v" of a table (sorted keys), the plain value otherwise: a short row label part
local function label_value(v)
  if type(v) ~= "table" then return fmt_value(v) end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  if #keys > 0 and #keys == #v then return json.encode(v) end -- a list
  local parts = {}
  for _, k in ipairs(keys) do parts[#parts + 1] = tostring(k) .. "=" .. label_value(v[k]) end
  return table.concat(parts, " ")
end

local function check_pivot_opts(opts)
  if opts == nil then return {} end
  if type(opts) ~= "table" then error(("report.pivot: expected a table of options, got %s"):format(type(opts)), 0) end
  for k, v in pairs(opts) do
    if k == "lower_better" then
      if type(v) ~= "boolean" then error("report.pivot: option lower_better: expected a boolean", 0) end
    elseif k == "metric" or k == "split" or k == "experiment" or k == "cols" then
      if type(v) ~= "string" or v == "" then
        error(("report.pivot: option %s: expected a non-empty string, got %s"):format(k, type(v)), 0)
      end
    else
      error(("report.pivot: unknown option '%s' (known options: cols, experiment, lower_better, metric, split)")
        :format(tostring(k)), 0)
    end
  end
  return opts
end

function report.pivot(db_path, opts)
  opts = check_pivot_opts(opts)
  local cols_key = opts.cols or report.DEFAULT_COLS
  local groups, info = report.table(db_path, { metric = opts.metric, split = opts.split,
    experiment = opts.experiment })
  local multi_exp = false
  for _, g in ipairs(groups) do
    if g.experiment ~= groups[1].experiment then multi_exp = true end
  end
  -- a row is a configuration without the column key (and its experiment when there are several)
  local rows, by_key, colset, cols = {}, {}, {}, {}
  for _, g in ipairs(groups) do
    local colv = g.config[cols_key]
    if colv == nil then
      error(("run config has no key '%s' to make the columns (config keys: %s); choose one with --cols")
        :format(cols_key, table.concat((function()
          local ks = {}
          for k in pairs(g.config) do ks[#ks + 1] = k end
          table.sort(ks)
          return ks
        end)(), ", ")), 0)
    end
    colv = fmt_value(colv)
    local cfg = {}
    for k, v in pairs(g.config) do if k ~= cols_key then cfg[k] = v end end
    if multi_exp then cfg["experiment"] = g.experiment end
    local key = json.encode(cfg)
    local r = by_key[key]
    if not r then
      r = { config = cfg, key = key, cells = {} }
      by_key[key] = r
      rows[#rows + 1] = r
    end
    if r.cells[colv] then -- two groups map to one cell: only possible with several experiments merged
      for _, v in ipairs(g.values) do r.cells[colv].values[#r.cells[colv].values + 1] = v end
      r.cells[colv].n = r.cells[colv].n + g.n
    else
      r.cells[colv] = { n = g.n, values = { table.unpack(g.values) } }
    end
    if not colset[colv] then colset[colv] = true; cols[#cols + 1] = colv end
  end
  table.sort(cols)
  -- the keys that differ between rows make the label
  local keyset, label_keys = {}, {}
  for _, r in ipairs(rows) do for k in pairs(r.config) do keyset[k] = true end end
  local all = {}
  for k in pairs(keyset) do all[#all + 1] = k end
  table.sort(all)
  for _, k in ipairs(all) do
    local first, differs = nil, false
    for i, r in ipairs(rows) do
      local v = r.config[k]
      local enc = v == nil and "\0missing" or json.encode(v)
      if i == 1 then first = enc elseif enc ~= first then differs = true end
    end
    if differs then label_keys[#label_keys + 1] = k end
  end
  if #label_keys == 0 and keyset.pool then label_keys[1] = "pool" end -- one row: still name its pooling
  if multi_exp then -- experiment first
    for i, k in ipairs(label_keys) do if k == "experiment" then table.remove(label_keys, i) end end
    table.insert(label_keys, 1, "experiment")
  end
  for _, r in ipairs(rows) do
    local parts = {}
    for _, k in ipairs(label_keys) do
      if r.config[k] ~= nil then parts[#parts + 1] = label_value(r.config[k]) end
    end
    r.label = #parts > 0 and table.concat(parts, " ") or "(all runs)"
    for _, cell in pairs(r.cells) do cell.mean, cell.std = mean_std(cell.values) end
  end
  table.sort(rows, function(a, b)
    if a.label ~= b.label then return a.label < b.label end
    return a.key < b.key
  end)
  -- competition ranks per column ("1224"); a NaN or missing mean is not ranked
  local lower = opts.lower_better == true
  for _, c in ipairs(cols) do
    for _, r in ipairs(rows) do
      local cell = r.cells[c]
      if cell and cell.mean and cell.mean == cell.mean then
        local better = 0
        for _, o in ipairs(rows) do
          local oc = o.cells[c]
          local tol = report.RANK_TIE_TOL
          if oc and oc.mean and oc.mean == oc.mean and
            (lower and oc.mean < cell.mean - tol or not lower and oc.mean > cell.mean + tol) then
            better = better + 1
          end
        end
        cell.rank = better + 1
      end
    end
  end
  for _, r in ipairs(rows) do
    local sum, n = 0, 0
    for _, c in ipairs(cols) do
      if r.cells[c] and r.cells[c].rank then sum, n = sum + r.cells[c].rank, n + 1 end
    end
    r.avg_rank = n > 0 and sum / n or nil
  end
  return { cols = cols, rows = rows, info = info, label_keys = label_keys, cols_key = cols_key, lower_better = lower }
end

function report.render_pivot(pivot, format, ropts)
  format = format or "text"
  if not report.FORMATS[format] then
    error(("unknown format '%s' (expected text, markdown or csv)"):format(tostring(format)), 0)
  end
  local top = ropts and ropts.top or report.TOP
  local info, cols, rows = pivot.info, pivot.cols, pivot.rows
  local label_head = #pivot.label_keys > 0 and table.concat(pivot.label_keys, " ") or "config"
  local ns = {}
  for _, r in ipairs(rows) do
    for _, c in ipairs(cols) do
      local cell = r.cells[c]
      if cell then ns[#cell.values] = true end
    end
  end
  local nlist = {}
  for n in pairs(ns) do nlist[#nlist + 1] = n end
  table.sort(nlist)
  local footer = footer_lines(info, true)
  table.insert(footer, 1, ("%s/%s in percent: mean +- sample std over %s run(s) per cell (folds x seeds); "
    .. "columns: %s; top %d per column marked (%s first)"):format(info.split, info.metric,
    table.concat(nlist, "/"), pivot.cols_key, top, pivot.lower_better and "lowest" or "highest"))
  local function pct(x) return x and x * 100 or nil end

  if format == "csv" then
    local out = {}
    local function line(cells)
      for i, c in ipairs(cells) do cells[i] = csv_field(c) end
      out[#out + 1] = table.concat(cells, ",") .. "\r\n"
    end
    line({ "row", pivot.cols_key, "n", info.split .. "_" .. info.metric .. "_mean_pct",
      info.split .. "_" .. info.metric .. "_std_pct", "rank", "row_avg_rank" })
    for _, r in ipairs(rows) do
      for _, c in ipairs(cols) do
        local cell = r.cells[c]
        if cell then
          line({ r.label, c, ("%d"):format(#cell.values), fmt_exact(pct(cell.mean)), fmt_exact(pct(cell.std)),
            cell.rank and ("%d"):format(cell.rank) or "", fmt_exact(r.avg_rank) })
        end
      end
    end
    return table.concat(out), table.concat(footer, "\n")
  end

  local function cell_text(cell, md)
    if not cell or not cell.mean then return "-" end
    local s = fmt_num(pct(cell.mean), "%.1f") .. (md and " ± " or " +- ") .. fmt_num(pct(cell.std), "%.1f")
    if cell.rank and cell.rank <= top then
      if md then return "**" .. s .. "**" .. (SUPERSCRIPT[cell.rank] or ("^" .. cell.rank)) end
      return s .. " " .. (TEXT_MARKS[cell.rank] or ("#" .. cell.rank))
    end
    return s
  end
  local head = { label_head }
  for _, c in ipairs(cols) do head[#head + 1] = c end
  head[#head + 1] = "avg rank"
  local body = {}
  for _, r in ipairs(rows) do
    local cells = { r.label }
    for _, c in ipairs(cols) do cells[#cells + 1] = cell_text(r.cells[c], format == "markdown") end
    cells[#cells + 1] = fmt_num(r.avg_rank, "%.1f")
    body[#body + 1] = cells
  end
  if format == "markdown" then
    local function esc(s) return (s:gsub("|", "\\|")) end
    local out = {}
    local function line(cells)
      local e = {}
      for i, c in ipairs(cells) do e[i] = esc(c) end
      out[#out + 1] = "| " .. table.concat(e, " | ") .. " |\n"
    end
    line(head)
    local sep = { "---" }
    for i = 2, #head do sep[i] = "---:" end
    out[#out + 1] = "|" .. table.concat(sep, "|") .. "|\n"
    for _, cells in ipairs(body) do line(cells) end
    return table.concat(out), table.concat(footer, "\n")
  end
  -- text: the marks hang to the right of right-aligned numbers, so pad every cell to the widest mark
  local width = {}
  for i, h in ipairs(head) do width[i] = utf8.len(h) or #h end
  for _, cells in ipairs(body) do
    for i, c in ipairs(cells) do width[i] = math.max(width[i], utf8.len(c) or #c) end
  end
  local out = {}
  local function line(cells)
    local p = {}
    for i, c in ipairs(cells) do
      local fill = (" "):rep(width[i] - (utf8.len(c) or #c))
      p[i] = i == 1 and (c .. fill) or (fill .. c)
    end
    out[#out + 1] = (table.concat(p, "  "):gsub("%s+$", "")) .. "\n"
  end
  -- numbers line up when every marked cell keeps its mark in a fixed-width slot
  local mark_w = 0
  for _, m in ipairs(TEXT_MARKS) do mark_w = math.max(mark_w, #m + 1) end
  for _, cells in ipairs(body) do
    for i = 2, #cols + 1 do
      local c = cells[i]
      local base, mark = c:match("^(.- %+%- %S+)( %*+)$")
      if base then cells[i] = base .. mark .. (" "):rep(mark_w - #mark)
      else cells[i] = c .. (" "):rep(mark_w) end
    end
  end
  for i = 2, #cols + 1 do
    width[i] = utf8.len(head[i]) or #head[i]
    for _, cells in ipairs(body) do width[i] = math.max(width[i], utf8.len(cells[i]) or #cells[i]) end
  end
  line(head)
  local dashes = {}
  for i = 1, #head do dashes[i] = ("-"):rep(width[i]) end
  out[#out + 1] = table.concat(dashes, "  ") .. "\n"
  for _, cells in ipairs(body) do line(cells) end
  return table.concat(out), table.concat(footer, "\n")
end

------------------------------------------------------------------------------------------------- command

local function parse_args(argv)
  local opts, format, db_path = {}, "text", nil
  local names = { ["--format"] = "format", ["--metric"] = "metric", ["--split"] = "split",
    ["--experiment"] = "experiment", ["--cols"] = "cols" }
  local switches = { ["--table1"] = "table1", ["--lower-better"] = "lower_better" }
  local i = 2
  while i <= #argv do
    local a = argv[i]
    if a == "--help" or a == "-h" then return nil, nil, nil, "help" end
    local flag, value = a:match("^(%-%-[%w_-]+)=(.*)$")
    flag = flag or a
    if switches[a] then
      opts[switches[a]] = true
    elseif names[flag] then
      if value == nil then
        i = i + 1
        value = argv[i]
        if value == nil then error(("option %s needs a value"):format(flag), 0) end
      end
      if value == "" then error(("option %s needs a non-empty value"):format(flag), 0) end
      if names[flag] == "format" then format = value else opts[names[flag]] = value end
    elseif a:match("^%-") then
      error(("unknown option '%s' (see rotlab report --help)"):format(a), 0)
    elseif db_path then
      error(("unexpected argument '%s' (one DB path expected)"):format(a), 0)
    else
      db_path = a
    end
    i = i + 1
  end
  if not db_path then error("missing DB path", 0) end
  if opts.cols then opts.table1 = true end
  if opts.lower_better and not opts.table1 then error("option --lower-better needs --table1", 0) end
  if not report.FORMATS[format] then
    error(("unknown format '%s' (expected text, markdown or csv)"):format(format), 0)
  end
  return db_path, opts, format
end

-- Says why there is nothing to show; exit code 2.
local function no_rows(info, opts, db_path)
  local c = info.counts
  local total = c.FINISHED + c.FAILED + c.RUNNING + c.INTERRUPTED
  local scope = opts.experiment and (" of experiment '" .. opts.experiment .. "'") or ""
  if total == 0 then
    io.stderr:write(("rotlab report: no runs%s in '%s'\n"):format(scope, db_path))
  else
    io.stderr:write(("rotlab report: no FINISHED runs%s in '%s' (%d FAILED, %d RUNNING, %d INTERRUPTED)\n"):format(
      scope, db_path, c.FAILED, c.RUNNING, c.INTERRUPTED))
  end
  return 2
end

-- rotlab report DB --table1 ...
function report.main_pivot(db_path, opts, format)
  local popts = { metric = opts.metric, split = opts.split, experiment = opts.experiment, cols = opts.cols,
    lower_better = opts.lower_better }
  local ok, pivot = pcall(report.pivot, db_path, popts)
  if not ok then
    io.stderr:write("rotlab report: ", tostring(pivot), "\n")
    return 2
  end
  if #pivot.rows == 0 then return no_rows(pivot.info, opts, db_path) end
  local text, footer = report.render_pivot(pivot, format)
  io.write(text)
  if format == "csv" then io.stderr:write(footer, "\n")
  else io.write(format == "markdown" and "\n" or "", footer, "\n") end
  return 0
end

function report.main(argv)
  local ok, db_path, opts, format, help = pcall(parse_args, argv)
  if ok and help then
    print(usage)
    return 0
  end
  if not ok then
    io.stderr:write("rotlab report: ", db_path, "\n", usage, "\n")
    return 2
  end
  if opts.table1 then return report.main_pivot(db_path, opts, format) end
  local rows, info
  ok, rows, info = pcall(report.table, db_path, opts)
  if not ok then
    io.stderr:write("rotlab report: ", tostring(rows), "\n")
    return 2
  end
  if #rows == 0 then return no_rows(info, opts, db_path) end
  local text, footer = report.render(rows, info, format)
  io.write(text)
  if format == "csv" then io.stderr:write(footer, "\n")
  else io.write(format == "markdown" and "\n" or "", footer, "\n") end
  return 0
end

return report
