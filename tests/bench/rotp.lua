--[[
bench/rotp.lua -- ROTP at the paper's Fig. 8 setting: a batch of 50 sets of 500 samples in 100 dimensions.
For each solver: alpha0 = 0 with T in {4, 8, 16}, and learned alpha0 at T = 4; forward and forward+backward
milliseconds (median of repeats, and the best one: the machine may be shared), peak memory (each configuration in a
fresh process), ns per set entry (per sample x dimension), and the figures to hold them against:
  - one vectorised exp pass over the batch (core.rotp_exp_pass, the solvers' own kernel, all threads), and the number
    of such passes each algorithm needs: Sinkhorn (alpha0 = 0) 2T forward + 1 (the plan) + 2T backward; BADMM 2T + 2T;
  - the sgemm rate (GFLOP/s per core) and the matrix-multiply work of learned alpha0 (structure products, D x D).
The ratios use process CPU time (summed over threads), which stays meaningful when other processes share the cores;
wall-clock columns are as measured.
Reference (the authors' PyTorch code, same setting, forward+backward, T = 4): Sinkhorn 126 ms, BADMM-E 190 ms,
BADMM-Q 207 ms (peak 0.9-1.3 GB); learned alpha0 1.24-1.38 s (peak 1.8-2.0 GB).
  rotlab run tests/bench/rotp.lua                      -- everything (spawns one process per configuration)
  rotlab run tests/bench/rotp.lua config=badmm-e:0:4   -- one configuration (solver:alpha0:T)
]]
local rl = require "rotlab"
local util = require "tests.bench.util"

local B, N, D = 50, 500, 100
local REPEATS = 7
local params = ... or {}

local function batch()
  local g = rl.rng(1)
  local x = rl.rand(g, B * N, D)
  local off = {}
  for b = 0, B do off[b + 1] = b * N end
  return rl.sets(x, off), rl.randn(g, B, D)
end

local function best_ms(fn, repeats, clock)
  clock = clock or util.clock
  fn()
  local best = math.huge
  for _ = 1, repeats do
    local t0 = clock()
    fn()
    best = math.min(best, (clock() - t0) * 1000)
  end
  return best
end

-- process CPU time summed over threads (os.clock): robust when other processes share the cores
local function cpu_ms(fn, repeats) return best_ms(fn, repeats, os.clock) end

-- matrix-multiply flops of learned alpha0 (per set and unrolled iteration): a structure product M(t) costs
-- 4 N D^2 + 2 D^3; its reverse 12 N D^2 + 8 D^3 (rotp_kernels.c). Sinkhorn uses 1 product per outer step, BADMM 2.
local function gemm_flops(solver, T)
  local fwd = 4 * N * D * D + 2 * D * D * D
  local bwd = 12 * N * D * D + 8 * D * D * D
  local uses = solver == "sinkhorn" and 1 or 2
  return B * T * uses * (fwd + bwd), B * T * uses * fwd
end

local function one(config)
  local solver, a0, T = config:match("^([^:]+):([^:]+):(%d+)$")
  T = tonumber(T)
  local s, W = batch()
  local rotp = rl.pool.rotp or rl.core.pool_rotp
  local m = rotp { dim = D, solver = solver, iters = T, alpha0 = a0 == "learn" and "learn" or 0, rng = rl.rng(2) }
  local rss0 = util.rss_mb()
  local f = util.median_ms(function() m:forward(s) end, REPEATS)
  local fb = util.median_ms(function() m:forward(s); m:backward(s, W, false) end, REPEATS)
  local fbest = best_ms(function() m:forward(s) end, REPEATS)
  local fbbest = best_ms(function() m:forward(s); m:backward(s, W, false) end, REPEATS)
  local fbcpu = cpu_ms(function() m:forward(s); m:backward(s, W, false) end, REPEATS)
  print(("RESULT %s %s %d %.3f %.3f %.3f %.3f %.1f %.1f %.3f"):format(solver, a0, T, f, fb, fbest, fbbest,
    util.peak_rss_mb(), rss0, fbcpu))
end

if params.config then
  one(params.config)
  return 0
end

-- the yardsticks, in this process
local s = batch()
local e = s:values():clone()
local exp_ms = util.median_ms(function() rl.core.rotp_exp_pass(e) end, 15)
local exp_best = best_ms(function() rl.core.rotp_exp_pass(e) end, 15)
local exp_cpu = cpu_ms(function() rl.core.rotp_exp_pass(e) end, 15)
local a, b = rl.rand(rl.rng(3), N, D), rl.rand(rl.rng(4), N, D)
local k = 200
local gemm_s = cpu_ms(function() for _ = 1, k do a:matmul(b, true, false) end end, 3) / 1000 -- CPU seconds
local gflops = 2 * N * D * D * k / gemm_s / 1e9
-- the sgemm rate per core (flops per CPU second); the solvers run one set per thread with single-threaded BLAS
local threads = tonumber(os.getenv("OMP_NUM_THREADS") or "") or 2
print(("ROTP bench: %d sets x %d samples x %d dims (%d entries), %s build"):format(B, N, D, B * N * D, rl.real))
print(("exp pass over the batch: %.2f ms median, %.2f ms best (%.3f ns per entry, all threads), %.2f CPU ms")
  :format(exp_ms, exp_best, exp_best * 1e6 / (B * N * D), exp_cpu))
print(("sgemm (X^T t, %dx%dx%d): %.1f GFLOP/s per core; %d threads"):format(D, D, N, gflops, threads))
print()
print(("%-9s %-6s %3s | %9s %9s | %9s %9s | %8s | %8s | %7s | %s"):format("solver", "alpha0", "T", "fwd ms",
  "f+b ms", "f best", "f+b best", "f+b CPU", "ns/entry", "peak MB", "vs target (CPU-time ratios)"))

local host = os.getenv("ROTLAB") or "build/bin/rotlab"
local self = arg and arg[0] or "tests/bench/rotp.lua"
local configs = {}
for _, solver in ipairs { "sinkhorn", "badmm-e", "badmm-q" } do
  for _, T in ipairs { 4, 8, 16 } do configs[#configs + 1] = ("%s:0:%d"):format(solver, T) end
  configs[#configs + 1] = ("%s:learn:4"):format(solver)
end
local reference = { sinkhorn = 126, ["badmm-e"] = 190, ["badmm-q"] = 207 }
for _, c in ipairs(configs) do
  local p = io.popen(('%s run "%s" config=%s 2>&1'):format(host, self, c))
  local out = p:read("a")
  p:close()
  local solver, a0, T, f, fb, fbest, fbbest, peak, _, fbcpu =
    out:match("RESULT (%S+) (%S+) (%d+) (%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (%S+)")
  if not solver then
    print(("%-22s failed: %s"):format(c, out))
  else
    T, f, fb, fbest, fbbest, peak = tonumber(T), tonumber(f), tonumber(fb), tonumber(fbest), tonumber(fbbest),
        tonumber(peak)
    fbcpu = tonumber(fbcpu)
    local note
    if a0 == "0" then
      local passes = solver == "sinkhorn" and 4 * T + 1 or 4 * T
      note = ("%d exp passes needed: f+b = %.1fx their cost"):format(passes, fbcpu / (passes * exp_cpu))
      if T == 4 then
        note = note .. ("; %.1fx faster than the reference (best wall), %.1fx (CPU / %d threads)")
          :format(reference[solver] / fbbest, reference[solver] / (fbcpu / threads), threads)
      end
    else
      local total, fwd = gemm_flops(solver, T)
      local ms = total / gflops / 1e6
      note = ("gemm work %.1f GFLOP = %.0f ms at the sgemm rate: f+b CPU = %.1fx; %.1fx faster than 1.24 s (CPU / %d)")
        :format(total / 1e9, ms, fbcpu / ms, 1240 / (fbcpu / threads), threads)
    end
    print(("%-9s %-6s %3d | %9.1f %9.1f | %9.1f %9.1f | %8.1f | %8.2f | %7.0f | %s"):format(solver, a0, T, f, fb,
      fbest, fbbest, fbcpu, fbbest * 1e6 / (B * N * D), peak, note))
  end
end
return 0
