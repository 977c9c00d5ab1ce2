#!/usr/bin/env rotlab
-- The ROTP experiment scripts (experiments/rotp_stability.lua, rotp_convergence.lua, rotp_equivalence.lua) in quick
-- mode, each into a temporary results DB: one FINISHED run per configuration, the assertions of the paper's figures
-- on the logged results (no NaN in the Fig. 7 sweep, the Fig. 4 objective settles, Proposition 1 within tolerance),
-- reruns skip finished runs and print the same table, bad key=value arguments exit 2 with a message naming the key.
local rl = require "rotlab"
local json = require "rotlab.json"
local t = require("rotlab.tap")()

local tmp = os.tmpname()
os.remove(tmp)
assert(os.execute("mkdir -p '" .. tmp .. "'"))

local bin = "rotlab"
do
  local p = io.popen("command -v rotlab 2>/dev/null")
  local found = p:read("l")
  p:close()
  if not found or found == "" then bin = ROTLAB_ROOT .. "/build/bin/rotlab" end
end
local function sh(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- Runs experiments/NAME.lua with the arguments; returns exit code, stdout, stderr, seconds.
local function run_script(name, ...)
  local argv = { bin, "run", sh(ROTLAB_ROOT .. "/experiments/" .. name .. ".lua") }
  for _, a in ipairs { ... } do argv[#argv + 1] = sh(a) end
  local err = tmp .. "/stderr"
  local t0 = rl.wall_time()
  local p = io.popen(table.concat(argv, " ") .. " 2>" .. sh(err))
  local out = p:read("a")
  local _, _, code = p:close()
  local f = io.open(err)
  local e = f and f:read("a") or ""
  if f then f:close() end
  return code, out, e, rl.wall_time() - t0
end

local function exists(path)
  local f = io.open(path)
  if f then f:close() end
  return f ~= nil
end

-- The runs of an experiment: list of {row, config, m = {["split/name"] = {[step] = value}}}.
local function load_runs(db, name)
  local store <close> = rl.db.open(db, { readonly = true })
  local out = {}
  for _, r in ipairs(store:runs({ experiment = name })) do
    local m = {}
    for _, row in ipairs(store:metrics(r.id)) do
      local k = row.split .. "/" .. row.name
      m[k] = m[k] or {}
      m[k][row.step] = row.value
    end
    out[#out + 1] = { row = r, config = json.decode(r.config_json), m = m }
  end
  return out
end

-- One FINISHED run per (configuration, seed) and `want` of them.
local function check_runs(label, runs, want)
  local seen, dup, unfinished = {}, 0, 0
  for _, r in ipairs(runs) do
    local k = r.row.config_json .. "#" .. r.row.seed
    if seen[k] then dup = dup + 1 end
    seen[k] = true
    if r.row.status ~= "FINISHED" then unfinished = unfinished + 1 end
  end
  t:is(#runs, want, ("%s: %d runs in the DB"):format(label, want))
  t:is(dup, 0, label .. ": one run per configuration")
  t:is(unfinished, 0, label .. ": every run FINISHED")
end

local function body_of(out) return (out:gsub("^[^\n]*\n", "")) end

local function finite(v) return v == v and v ~= math.huge and v ~= -math.huge end

------------------------------------------------------------------------------------------------- Fig. 7

do
  local db = tmp .. "/stability.db"
  local code, out, err, secs = run_script("rotp_stability", "quick=true", "db=" .. db)
  t:is(code, 0, "rotp_stability quick exits 0", err .. out)
  t:ok(secs < 60, ("rotp_stability quick takes seconds (%.1f s)"):format(secs))
  t:ok(out:find("max|mass-1|", 1, true) and out:find("badmm-q", 1, true), "rotp_stability prints its table", out)
  local runs = load_runs(db, "rotp-stability")
  -- quick: 3 solvers x 2 update forms x 2 alpha0 settings x 4 x 4 cells
  check_runs("rotp_stability", runs, 3 * 2 * 2 * 16)
  local rows = {}
  for _, r in ipairs(runs) do
    local c = r.config
    local key = c.solver .. "/" .. c.compat .. "/" .. c.alpha0
    local row = rows[key] or { cells = 0, err = 0, nan = 0, out_inf = 0, pinf = 0, pinf_bad = 0, dev = 0, gbad = 0 }
    rows[key] = row
    local function v(name) return r.m["sweep/" .. name] and r.m["sweep/" .. name][0] end
    row.cells = row.cells + 1
    if v("error") == 1 then
      row.err = row.err + 1
    else
      row.nan = row.nan + v("out_nan") + v("plan_nan")
      row.out_inf = row.out_inf + v("out_inf")
      row.pinf = row.pinf + v("plan_inf")
      -- an overflowing unbalanced plan is the exact optimum when every alpha is small (mass ~ exp(x / sum alpha))
      if v("plan_inf") > 0 and c.a1 + 2 * c.a23 > 0.1 then row.pinf_bad = row.pinf_bad + 1 end
      if v("mass_dev") then row.dev = math.max(row.dev, v("mass_dev")) end
      if v("grad_error") ~= 0 or v("grad_nonfinite") ~= 0 then row.gbad = row.gbad + 1 end
    end
  end
  for _, solver in ipairs { "sinkhorn", "badmm-e", "badmm-q" } do
    for _, a0 in ipairs { 0, 1 } do
      local row = rows[solver .. "/none/" .. a0]
      local label = ("stability %s, alpha0 = %g"):format(solver, a0)
      t:is(row and row.cells, 16, label .. ": 16 cells logged")
      if row then
        t:is(row.nan, 0, label .. ": no NaN in outputs or plans (of the cells whose forward returned)")
        t:is(row.out_inf, 0, label .. ": no Inf in outputs")
        t:is(row.gbad, 0, label .. ": finite input gradients")
        t:is(row.err, 0, label .. ": no forward error (NaN plan)")
        if solver == "sinkhorn" then
          t:is(row.pinf_bad, 0, label .. ": plans overflow only where a1 + a2 + a3 <= 0.1")
        else
          t:is(row.pinf, 0, label .. ": no Inf in plans")
          t:ok(row.dev < 1e-4, ("%s: every plan has mass 1 (max |mass - 1| = %.1e)"):format(label, row.dev))
        end
      end
    end
  end
  local ref = rows["sinkhorn/reference/0"]
  t:ok(ref and ref.err > 0, ("the authors' Sinkhorn update fails in the sweep, as in the paper's Fig. 7 (%d cells)")
    :format(ref and ref.err or -1))
  -- rerun: nothing is run again, the same table is printed from the DB
  local code2, out2 = run_script("rotp_stability", "quick=true", "db=" .. db)
  t:is(code2, 0, "rotp_stability rerun exits 0")
  t:ok(out2:find("0 runs finished, 192 skipped", 1, true), "rotp_stability rerun skips every finished run", out2)
  t:is(#load_runs(db, "rotp-stability"), 192, "rotp_stability rerun adds no run")
  t:is(body_of(out2), body_of(out), "rotp_stability rerun prints the same table")
end

------------------------------------------------------------------------------------------------- Fig. 4

do
  local db = tmp .. "/convergence.db"
  local code, out, err, secs = run_script("rotp_convergence", "quick=true", "db=" .. db)
  t:is(code, 0, "rotp_convergence quick exits 0", err .. out)
  t:ok(secs < 60, ("rotp_convergence quick takes seconds (%.1f s)"):format(secs))
  t:ok(out:find("objective <-X, P>", 1, true), "rotp_convergence prints its curves", out)
  local runs = load_runs(db, "rotp-convergence")
  check_runs("rotp_convergence", runs, 6)
  local ts = { 1, 2, 4, 8, 16, 32 }
  for _, r in ipairs(runs) do
    local c = r.config
    local label = ("convergence %s, alpha0 = %g"):format(c.solver, c.alpha0)
    local obj, mass = r.m["eval/objective"] or {}, r.m["eval/mass"] or {}
    local all_finite, n = true, 0
    for _, T in ipairs(ts) do
      n = n + (obj[T] and 1 or 0)
      all_finite = all_finite and obj[T] ~= nil and finite(obj[T])
    end
    t:is(n, #ts, label .. ": the objective is logged at every T")
    -- (the quick sets are small enough for the structured Sinkhorn to converge; the paper-size run diverges)
    t:ok(all_finite, label .. ": the objective is finite at every T")
    if all_finite then
      local first, last, prev = obj[ts[1]], obj[ts[#ts]], obj[ts[#ts - 1]]
      t:ok(last < first, ("%s: the objective goes down from T = 1 (%.4g -> %.4g)"):format(label, first, last))
      t:ok(math.abs(last - prev) <= 0.05 * math.abs(last),
        ("%s: the objective settles (T = %d -> %d: %.4g -> %.4g)"):format(label, ts[#ts - 1], ts[#ts], prev, last))
      if c.solver ~= "sinkhorn" then
        local worst = 0
        for _, T in ipairs(ts) do worst = math.max(worst, math.abs(mass[T] - 1)) end
        t:ok(worst < 1e-4, ("%s: BADMM plans have mass 1 at every T (%.1e)"):format(label, worst))
      end
    end
  end
  local code2, out2 = run_script("rotp_convergence", "quick=true", "db=" .. db)
  t:ok(code2 == 0 and out2:find("0 runs finished, 6 skipped", 1, true), "rotp_convergence rerun skips its runs", out2)
  t:is(body_of(out2), body_of(out), "rotp_convergence rerun prints the same curves")
end

------------------------------------------------------------------------------------------------- Proposition 1, Fig. 6

do
  local db = tmp .. "/equivalence.db"
  local tol = 1e-3
  local code, out, err, secs = run_script("rotp_equivalence", "quick=true", "db=" .. db, "tol=" .. tol)
  t:is(code, 0, "rotp_equivalence quick exits 0", err .. out)
  t:ok(secs < 60, ("rotp_equivalence quick takes seconds (%.1f s)"):format(secs))
  t:ok(out:find("Proposition 1", 1, true) and out:find("Fig. 6", 1, true), "rotp_equivalence prints its tables", out)
  local runs = load_runs(db, "rotp-equivalence")
  check_runs("rotp_equivalence", runs, 9)
  for _, r in ipairs(runs) do
    local c = r.config
    local label = ("Prop. 1: %s with %s"):format(c.pooling, c.solver)
    local e = r.m["eval/prop1_err"] and r.m["eval/prop1_err"][0]
    local name = ("%s reproduces the pooling, max error %s <= %g"):format(label, tostring(e), tol)
    t:ok(e and e <= tol, name)
    local eT, eA = r.m["eval/err_T"] or {}, r.m["eval/err_A"] or {}
    local ok = true
    for _, T in ipairs { 1, 10, 100 } do ok = ok and eT[T] ~= nil and finite(eT[T]) end
    for _, k in ipairs { 0, 2, 4 } do ok = ok and eA[k] ~= nil and finite(eA[k]) end
    t:ok(ok, label .. ": the Fig. 6 curves are logged and finite at every point")
    if ok then
      t:ok(eA[4] <= eA[0], ("%s: the error shrinks toward the limit of large alphas (%.2g at A = 1, %.2g at A = 1e4)")
        :format(label, eA[0], eA[4]))
    end
  end
  local code2, out2 = run_script("rotp_equivalence", "quick=true", "db=" .. db, "tol=" .. tol)
  t:ok(code2 == 0 and out2:find("0 runs finished, 9 skipped", 1, true), "rotp_equivalence rerun skips its runs", out2)
end

------------------------------------------------------------------------------------------------- bad arguments

for _, case in ipairs {
  { "rotp_stability", "bogus=1", "unknown argument bogus" },
  { "rotp_stability", "iters=abc", "iters must be an integer" },
  { "rotp_stability", "exps=1,x", "exps must be a comma%-separated list of integers" },
  { "rotp_stability", "solvers=lbfgs", "solvers: unknown entry 'lbfgs'" },
  { "rotp_stability", "quick=maybe", "quick must be true or false" },
  { "rotp_convergence", "ts=0", "ts must be a list of values >= 1" },
  { "rotp_convergence", "sets=-2", "sets must be an integer >= 1" },
  { "rotp_equivalence", "tol=-1", "tol must be a number >= 0" },
  { "rotp_equivalence", "poolings=median", "poolings: unknown entry 'median'" },
} do
  local db = tmp .. "/bad.db"
  local code, out, err = run_script(case[1], "quick=true", "db=" .. db, case[2])
  t:is(code, 2, ("%s %s: exit code 2"):format(case[1], case[2]))
  t:ok(err:find(case[1] .. ": " .. case[3]) ~= nil, ("%s %s: the message names the key"):format(case[1], case[2]),
    err)
  t:ok(err:find("usage:", 1, true) and out == "", ("%s %s: usage on stderr, nothing run"):format(case[1], case[2]))
  t:ok(not exists(db), ("%s %s: no DB written"):format(case[1], case[2]))
end

os.execute("rm -rf '" .. tmp .. "'")
os.exit(t:done())
