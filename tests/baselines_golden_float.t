#!/usr/bin/env rotlab
-- Golden vectors of the baseline poolings in the float build (tests/golden/baselines.h5, float32 reference run):
-- outputs within 1e-3 and gradients within 1e-2 of the largest |value| of each array, compat = "reference".
local rl = require "rotlab"
local t = require("rotlab.tap")()
local dir = arg and arg[0] and arg[0]:match("^(.*)/[^/]*$") or "tests"
if rl.h5 == nil then t:skip_all("rl.h5 (the HDF5 reader) is not available") end
local run = dofile(dir .. "/golden/baselines.lua")
local n = run(t, rl, { file = dir .. "/golden/baselines.h5", pooled = "float32/pooled", grad = "float32/grad/",
  tol_out = 1e-3, tol_grad = 1e-2 })
t:is(n, 15, "all 15 baseline cases of the seven layers ran")
os.exit(t:done())
