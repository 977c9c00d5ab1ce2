#!/usr/bin/env rotlab
-- BADMM's log-sum-exps take their exps at the previous iteration's row and column maxima and redo a row or column
-- whose maximum left the window (rotp_badmm_fused.c): in the float build, where exp overflows from 88 on, a missed
-- redo gives inf / NaN and a late one loses the small entries. Sets spanning a wide range with small rho make the
-- maxima jump between iterations; the float build's output and input gradient must match the double build's
-- (tests/fixtures/rotp_range_case.lua run by both) within float tolerances: outputs 1e-5 of their largest value,
-- gradients 1e-2 of theirs (as the golden float checks).
local t = require("rotlab.tap")()

-- the builds on PATH (the sanitizer run puts its own first), else this tree's
local function binary(name)
  local p = io.popen("command -v " .. name .. " 2>/dev/null")
  local found = p:read("l")
  p:close()
  if found and found ~= "" then return found end
  return ROTLAB_ROOT .. "/build/bin/" .. name
end
local bins = { rotlab = binary("rotlab"), ["rotlab-double"] = binary("rotlab-double") }
if not io.open(bins["rotlab-double"]) then t:skip_all("rotlab-double missing (make)") end
local case = ROTLAB_ROOT .. "/tests/fixtures/rotp_range_case.lua"

-- the case's numbers (outputs, then the input gradient) as printed by one build
local function run(build, args)
  local p = io.popen(("'%s' run '%s' %s 2>&1"):format(bins[build], case, args))
  local out = p:read("a")
  local ok = p:close()
  local v = {}
  for w in out:gmatch("%S+") do v[#v + 1] = tonumber(w) end
  return ok, v, out
end

-- max |a - b| over [i0, i1] relative to max |b| there
local function rel(a, b, i0, i1)
  local e, m = 0, 0
  for i = i0, i1 do
    e = math.max(e, math.abs(a[i] - b[i]))
    m = math.max(m, math.abs(b[i]))
  end
  return e / m
end

local NOUT = 3 * 5 -- 3 sets, D = 5; then 40 x 5 gradient entries
for _, args in ipairs {
  "solver=badmm-e scale=1000 rho=0.1 a1=0.5 T=10",
  "solver=badmm-e scale=300 rho=0.05 a1=0.1 T=10",
  "solver=badmm-q scale=1000 rho=0.1 a1=0.5 T=10",
  "solver=badmm-e scale=100 rho=0.01 a1=0.01 T=10",
} do
  local okd, d, outd = run("rotlab-double", args)
  local okf, f, outf = run("rotlab", args)
  if not (okd and okf and #d == NOUT + 200 and #f == #d) then
    t:ok(false, args .. ": both builds print the case", (okd and outf or outd):sub(1, 300))
  else
    local eo, eg = rel(f, d, 1, NOUT), rel(f, d, NOUT + 1, #d)
    t:ok(eo < 1e-5 and eg < 1e-2, ("%s: float matches double (output %.1e, gradient %.1e of their largest)")
      :format(args, eo, eg))
  end
end
os.exit(t:done())
