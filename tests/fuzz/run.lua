-- tests/fuzz/run.lua -- `make fuzz`: runs each fuzz target for `seconds` (FUZZ_SECONDS) with the working corpus in
-- build/fuzz/corpus/T and artifacts in build/fuzz/artifacts/, then prints what was found (see fuzzrun.lua).
--   build/bin/rotlab run tests/fuzz/run.lua seconds=300 [targets=h5,h5spec,mil] [extra="-jobs=..."]
-- Exit code 0 when no target found anything in rotlab's code (HDF5's own defects are listed, not counted).
local args = ...
local root = ROTLAB_ROOT or "."
local fz = dofile(root .. "/tests/fuzz/fuzzrun.lua")
local seconds = tonumber(args.seconds) or 300
local failed = false
for t in (args.targets or "h5,h5spec,mil"):gmatch("[^,]+") do
  print(("fuzz: fuzz_%s for %d s%s"):format(t, seconds, t == "h5" and " (fork mode, triaged)" or ""))
  local r = fz.run{ root = root, target = t, seconds = seconds, corpus = root .. "/build/fuzz/corpus/" .. t,
    artifacts = root .. "/build/fuzz/artifacts", extra = args.extra, log = root .. "/build/fuzz/" .. t .. ".log" }
  print("fuzz: " .. fz.summary(r) .. "; log " .. r.log)
  for _, it in ipairs(r.ours) do print("  ROTLAB: " .. it.signature .. " -- " .. it.file) end
  for _, s in ipairs(fz.signatures(r.hdf5)) do print("  libhdf5: " .. s) end
  if not r.ok then failed = true end
end
os.exit(failed and 1 or 0)
