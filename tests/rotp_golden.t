#!/usr/bin/env rotlab-double
-- ROTP against the authors' reference (tests/golden/rot_layers.h5: the six solvers called directly; rot_modules.h5:
-- complete ROT/UOT pooling layers), double build, rtol 1e-6 relative to the largest |value| of each array.
-- The ill-conditioned cases (ROTPooling_sinkhorn*, plans up to 1e15: golden README section 2) are held to 1e-8 as
-- their note suggests; they reach ~5e-12, since the log-domain iteration rounds no worse there.
-- Gradients the reference itself computes unstably (its float32 run differs from its float64 run by more than 100%:
-- uot_badmm_small's rho) are held to 1e-4 (see tests/rotp_golden_common.lua); ours reach ~1e-5 there.
local t = require("rotlab.tap")()
local run = require "tests.rotp_golden_common"
run(t, { out_tol = 1e-6, grad_tol = 1e-6, ill_tol = 1e-8, dominated_tol = 1e-4, float = false })
os.exit(t:done())
