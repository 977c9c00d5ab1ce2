#!/usr/bin/env rotlab
-- The libFuzzer targets of core/data (tests/fuzz/README.md): `make fuzz-build` builds them with clang into
-- build/fuzz/; the committed seeds and the regression inputs of tests/fuzz/regress/ replay cleanly; then each target
-- fuzzes for a bounded time (ROTLAB_FUZZ_SECONDS, default 15 s each) from its seeds into a temporary corpus and must
-- report no finding in rotlab's code. fuzz_h5 (raw bytes into HDF5's own parser) runs in fork mode: the defects of
-- libhdf5 itself that it meets are listed as diagnostics, not counted (see tests/fuzz/fuzzrun.lua).
-- Skipped only when clang is not installed (`make deps` installs it: clang, libclang-rt-14-dev, llvm).
local t = require("rotlab.tap")()
local root = ROTLAB_ROOT or "."
local fz = dofile(root .. "/tests/fuzz/fuzzrun.lua")

local function sh(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
local function run(cmd)
  local p = io.popen(cmd .. " 2>&1")
  local out = p:read("a")
  local ok, _, code = p:close()
  return out, ok and code == 0
end

if not os.execute("command -v clang > /dev/null 2>&1") then
  t:skip_all("clang is not installed (make deps installs clang, libclang-rt-14-dev and llvm)")
end

local seconds = tonumber(os.getenv("ROTLAB_FUZZ_SECONDS") or "") or 15
local out, built = run("make -C " .. sh(root) .. " -s -j2 fuzz-build")
t:ok(built, "make fuzz-build builds fuzz_h5, fuzz_h5spec and fuzz_mil (clang, libFuzzer, ASan + UBSan)", out)
if not built then os.exit(t:done()) end

-- the seeds and the regression inputs: each replayed once, no report
local targets = { "h5", "h5spec", "mil" }
for _, tg in ipairs(targets) do
  local globs = sh(root .. "/tests/fuzz/corpus/" .. tg) .. "/*"
  local has_regress = os.execute("test -d " .. sh(root .. "/tests/fuzz/regress/" .. tg))
  if has_regress then globs = globs .. " " .. sh(root .. "/tests/fuzz/regress/" .. tg) .. "/*" end
  local rout, rok = run(("%s/build/fuzz/fuzz_%s %s"):format(sh(root), tg, globs))
  local _, executed = rout:gsub("\nExecuted ", "")
  t:ok(rok and executed > 0 and not rout:find("ERROR:", 1, true) and not rout:find("runtime error", 1, true),
    ("fuzz_%s replays its %d seed%s inputs cleanly"):format(tg, executed, has_regress and " and regression" or ""), rout)
end

-- bounded fuzzing from the seeds into a temporary corpus
local tmp = os.tmpname()
os.remove(tmp)
os.execute("mkdir -p " .. sh(tmp))
for _, tg in ipairs(targets) do
  local r = fz.run{ root = root, target = tg, seconds = seconds, corpus = tmp .. "/corpus-" .. tg, artifacts = tmp }
  local details = {}
  for _, it in ipairs(r.ours) do
    details[#details + 1] = it.signature .. " (" .. it.file .. ")"
    details[#details + 1] = (it.report or ""):sub(1, 3000)
  end
  if #r.ours == 0 and not r.ok then details[#details + 1] = (io.open(r.log) and io.open(r.log):read("a") or ""):sub(-3000) end
  t:ok(r.ok, ("fuzz_%s: %d s of fuzzing, no finding in rotlab's code"):format(tg, seconds), table.concat(details, "\n"))
  t:diag(fz.summary(r))
  for _, s in ipairs(fz.signatures(r.hdf5)) do t:diag("  libhdf5 defect (not rotlab's): " .. s) end
  if #r.ours > 0 then
    os.execute("mkdir -p " .. sh(root .. "/build/fuzz/artifacts"))
    for _, it in ipairs(r.ours) do os.execute("cp " .. sh(it.file) .. " " .. sh(root .. "/build/fuzz/artifacts/") .. " 2>/dev/null") end
    t:diag("  the reproducers were copied to build/fuzz/artifacts/")
  end
end
os.execute("rm -rf " .. sh(tmp))
os.exit(t:done())
