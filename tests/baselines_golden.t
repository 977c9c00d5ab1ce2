#!/usr/bin/env rotlab-double
-- Golden vectors of the baseline poolings (tests/golden/baselines.h5, float64 reference run): outputs and every
-- gradient (x_rows and each parameter) within rtol 1e-6 of the largest |value| of each array, compat = "reference".
local rl = require "rotlab"
local t = require("rotlab.tap")()
local dir = arg and arg[0] and arg[0]:match("^(.*)/[^/]*$") or "tests"
if rl.h5 == nil then t:skip_all("rl.h5 (the HDF5 reader) is not available") end
local run = dofile(dir .. "/golden/baselines.lua")
local n = run(t, rl, { file = dir .. "/golden/baselines.h5", pooled = "outputs/pooled", grad = "grad/",
  tol_out = 1e-6, tol_grad = 1e-6 })
t:is(n, 15, "all 15 baseline cases of the seven layers ran")
os.exit(t:done())
