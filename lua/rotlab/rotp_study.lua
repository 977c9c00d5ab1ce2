--[[
rotlab.rotp_study -- what the ROTP experiment scripts (experiments/rotp_stability.lua, rotp_convergence.lua,
rotp_equivalence.lua) share: typed key=value arguments, seeded synthetic sets, counting non-finite values, running
the spec through rotlab.experiment and reading the finished runs back from the results DB, and printing tables.

  study.parse(script, params, keys) -> opts          raises a plain-string error naming the key (see below)
        keys = list of {name, kind, default [, quick] [, min] [, max] [, choices] [, help]}, kind one of
        "int" "number" "bool" "string" "list" (comma-separated words) "numlist" "intlist"; params.quick = true
        selects each key's `quick` default; an explicit key=value always wins. Unknown keys are errors.
  study.usage(script, keys) -> text                  one line per key, with its defaults
  study.main(script, keys, params, body) -> exit code
        parses, calls body(opts) and returns its code; a bad argument prints "SCRIPT: message" and the usage to
        stderr and returns 2
  study.sets(kind, seed, B, N, D) -> rl.sets, X      B sets of N rows x D, rows stacked in X:
        "relu" ReLU(N(0, 1)) entries (non-negative, as after a ReLU encoder), "uniform" U[0, 1)
  study.nonfinite(t) -> nan, inf                    counts of NaN and of +-inf entries of a 1-D/2-D tensor
  study.run(spec) -> summary                         experiment.run(spec)
  study.finished(spec) -> list of {config, seed, run (the run row), m, t}   the FINISHED runs of spec's jobs, in
        job order (jobs without a FINISHED run are left out); m[split .. "/" .. name][step] = value,
        t[key][step] = list of numbers (the traces)
  study.artifact(db_path, run_id, name) -> data or nil
  study.table(headers, rows [, right]) -> text      aligned columns: numbers right, text left (right = true: every
        column but the first right-aligned)
  study.fmt(v [, digits]) -> string                  NaN, inf, -inf, integers as such, others %.{digits}g
]]
local rl = require "rotlab"
local experiment = require "rotlab.experiment"
local results = require "db.results"

local study = {}

------------------------------------------------------------------------------------------------- arguments

local function fmt_default(v)
  if type(v) == "table" then
    local s = {}
    for i, x in ipairs(v) do s[i] = tostring(x) end
    return table.concat(s, ",")
  end
  return tostring(v)
end

local function split_words(v)
  local r = {}
  for w in tostring(v):gmatch("[^,]+") do r[#r + 1] = w:match("^%s*(.-)%s*$") end
  return r
end

local function convert(script, key, v)
  local name, kind = key.name, key.kind
  local function bad(what)
    error(("%s: %s must be %s, got '%s'"):format(script, name, what, tostring(v)), 0)
  end
  local function check_range(x)
    if key.min and x < key.min then bad(("%s >= %s"):format(key.kind:find("int") and "an integer" or "a number",
      tostring(key.min))) end
    if key.max and x > key.max then bad(("<= %s"):format(tostring(key.max))) end
    return x
  end
  if kind == "int" then
    local x = math.tointeger(v)
    if not x then bad("an integer") end
    return check_range(x)
  elseif kind == "number" then
    if type(v) ~= "number" or v ~= v then bad("a number") end
    return check_range(v)
  elseif kind == "bool" then
    if type(v) ~= "boolean" then bad("true or false") end
    return v
  elseif kind == "string" then
    if type(v) ~= "string" and type(v) ~= "number" then bad("a string") end
    v = tostring(v)
    if v == "" then bad("a non-empty string") end
    if key.choices then
      local ok = false
      for _, c in ipairs(key.choices) do ok = ok or c == v end
      if not ok then bad("one of " .. table.concat(key.choices, ", ")) end
    end
    return v
  else -- lists
    if type(v) == "boolean" then bad("a comma-separated list") end
    local words = split_words(v)
    if #words == 0 then bad("a non-empty comma-separated list") end
    local out = {}
    for i, w in ipairs(words) do
      if kind == "list" then
        if key.choices then
          local ok = false
          for _, c in ipairs(key.choices) do ok = ok or tostring(c) == w end
          if not ok then
            error(("%s: %s: unknown entry '%s' (known: %s)"):format(script, name, w,
              fmt_default(key.choices)), 0)
          end
        end
        out[i] = w
      else
        local x = tonumber(w)
        if kind == "intlist" then x = x and math.tointeger(x) end
        if not x or x ~= x then
          bad(kind == "intlist" and "a comma-separated list of integers" or "a comma-separated list of numbers")
        end
        if key.min and x < key.min then bad(("a list of values >= %s"):format(tostring(key.min))) end
        if key.max and x > key.max then bad(("a list of values <= %s"):format(tostring(key.max))) end
        out[i] = x
      end
    end
    return out
  end
end

function study.parse(script, params, keys)
  params = params or {}
  local known = { quick = true }
  for _, k in ipairs(keys) do known[k.name] = true end
  local unknown = {}
  for k in pairs(params) do
    if not known[k] then unknown[#unknown + 1] = k end
  end
  if #unknown > 0 then
    table.sort(unknown)
    local names = {}
    for _, k in ipairs(keys) do names[#names + 1] = k.name end
    error(("%s: unknown argument%s %s (known: quick, %s)"):format(script, #unknown > 1 and "s" or "",
      table.concat(unknown, ", "), table.concat(names, ", ")), 0)
  end
  local quick = params.quick
  if quick ~= nil and type(quick) ~= "boolean" then
    error(("%s: quick must be true or false, got '%s'"):format(script, tostring(quick)), 0)
  end
  local opts = { quick = quick or false }
  for _, k in ipairs(keys) do
    local v = params[k.name]
    if v ~= nil then
      opts[k.name] = convert(script, k, v)
    else
      local d = k.default
      if opts.quick and k.quick ~= nil then d = k.quick end
      opts[k.name] = d
    end
  end
  return opts
end

function study.usage(script, keys)
  local lines = { ("usage: rotlab run experiments/%s.lua [quick=true] [key=value ...]"):format(script) }
  for _, k in ipairs(keys) do
    local d = k.default == nil and "none" or fmt_default(k.default)
    if k.quick ~= nil then d = d .. " (quick: " .. fmt_default(k.quick) .. ")" end
    lines[#lines + 1] = ("  %-10s %s [%s]"):format(k.name, k.help or "", d)
  end
  return table.concat(lines, "\n")
end

function study.main(script, keys, params, body)
  local ok, opts = pcall(study.parse, script, params, keys)
  if not ok then
    io.stderr:write(tostring(opts), "\n", study.usage(script, keys), "\n")
    return 2
  end
  return body(opts)
end

------------------------------------------------------------------------------------------------- data

function study.sets(kind, seed, B, N, D)
  local g = rl.rng(seed)
  local X
  if kind == "relu" then
    X = rl.nn.ReLU():forward(rl.randn(g, B * N, D))
  elseif kind == "uniform" then
    X = rl.rand(g, B * N, D)
  else
    error(("rotp_study.sets: unknown data kind '%s' (expected relu or uniform)"):format(tostring(kind)), 2)
  end
  local off = { 0 }
  for b = 1, B do off[b + 1] = off[b] + N end
  return rl.sets(X, off), X
end

function study.nonfinite(t)
  local nan, inf = 0, 0
  local function one(v)
    if v ~= v then nan = nan + 1 elseif v == math.huge or v == -math.huge then inf = inf + 1 end
  end
  for _, row in ipairs(t:totable()) do
    if type(row) == "table" then
      for _, v in ipairs(row) do one(v) end
    else
      one(row)
    end
  end
  return nan, inf
end

------------------------------------------------------------------------------------------------- runs

function study.run(spec)
  return experiment.run(spec)
end

function study.finished(spec)
  local jobs = experiment.jobs(spec)
  local store <close> = results.open(spec.db, { readonly = true })
  local by_key = {}
  for _, r in ipairs(store:runs({ experiment = spec.name, status = "FINISHED" })) do by_key[r.run_key] = r end
  local out = {}
  for _, job in ipairs(jobs) do
    local r = by_key[job.key]
    if r then
      local m = {}
      for _, row in ipairs(store:metrics(r.id)) do
        local k = row.split .. "/" .. row.name
        m[k] = m[k] or {}
        m[k][row.step] = row.value
      end
      local t = {}
      for _, row in ipairs(store:traces(r.id)) do
        t[row.key] = t[row.key] or {}
        t[row.key][row.step] = row.vals
      end
      out[#out + 1] = { config = job.config, seed = job.seed, run = r, m = m, t = t }
    end
  end
  return out
end

function study.artifact(db_path, run_id, name)
  local store <close> = results.open(db_path, { readonly = true })
  local rows = store.db:query("SELECT data FROM artifact WHERE run_id = ? AND name = ?", run_id, name)
  return rows[1] and rows[1].data or nil
end

------------------------------------------------------------------------------------------------- printing

function study.fmt(v, digits)
  if v == nil then return "-" end
  if type(v) ~= "number" then return tostring(v) end
  if v ~= v then return "NaN" end
  if v == math.huge then return "inf" end
  if v == -math.huge then return "-inf" end
  if math.type(v) == "integer" or (v == math.floor(v) and math.abs(v) < 1e9) then
    return ("%d"):format(math.tointeger(v) or v)
  end
  return ("%." .. (digits or 3) .. "g"):format(v)
end

function study.table(headers, rows, right)
  local width = {}
  for j, h in ipairs(headers) do width[j] = #h end
  local cells = {}
  for i, row in ipairs(rows) do
    cells[i] = {}
    for j = 1, #headers do
      local v = row[j]
      local s = type(v) == "number" and study.fmt(v) or tostring(v == nil and "-" or v)
      cells[i][j] = { s = s, right = (right and j > 1) or type(v) == "number" or
        s:match("^[-+]?[%d.]+[eE]?[-+]?%d*$") ~= nil }
      width[j] = math.max(width[j], #s)
    end
  end
  local function line(parts)
    return (table.concat(parts, "  "):gsub("%s+$", ""))
  end
  local out = {}
  local head, rule = {}, {}
  for j, h in ipairs(headers) do
    head[j] = ("%-" .. width[j] .. "s"):format(h)
    rule[j] = ("-"):rep(width[j])
  end
  out[1], out[2] = line(head), line(rule)
  for _, row in ipairs(cells) do
    local parts = {}
    for j, c in ipairs(row) do
      parts[j] = c.right and ("%" .. width[j] .. "s"):format(c.s) or ("%-" .. width[j] .. "s"):format(c.s)
    end
    out[#out + 1] = line(parts)
  end
  return table.concat(out, "\n")
end

return study
