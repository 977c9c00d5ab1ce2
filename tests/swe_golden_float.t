#!/usr/bin/env rotlab
-- The golden SWE / C-SWE / LapSum checks of tests/swe_golden.t in the float build: against the float32 reruns of
-- the authors' code, rtol 1e-3 for outputs and 1e-2 for gradients (relative to the largest |value| of each array).
local here = (arg and arg[0] or "tests/swe_golden_float.t"):match("^(.*)/[^/]*$") or "."
local rl = require "rotlab"
if rl.real ~= "float" then
  io.write("1..0 # SKIP needs the float build (rotlab), got ", rl.real, "\n")
  os.exit(0)
end
arg[0] = here .. "/swe_golden.t"
dofile(here .. "/swe_golden.t")
