#!/usr/bin/env rotlab
-- ROTP against the authors' reference in the float build: every well-conditioned case of tests/golden/rot_layers.h5
-- and rot_modules.h5 (ill_conditioned cases skipped, as golden/README.md section 0 says), compared with the float64
-- reference values: outputs (plan, pooled) at rtol 1e-3, gradients (loss grad_ref: x and raw parameters) at 1e-2,
-- relative to the largest |value| of each array (parameter gradients: of all parameter gradients of the loss).
local t = require("rotlab.tap")()
local run = require "tests.rotp_golden_common"
run(t, { out_tol = 1e-3, grad_tol = 1e-2, float = true })
os.exit(t:done())
