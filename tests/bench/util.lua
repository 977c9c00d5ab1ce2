--[[
bench/util.lua -- timing and memory helpers for benchmarks: require "tests.bench.util".
  util.median_ms(fn, repeats) -> median wall milliseconds of fn() over repeats (after one warm-up call)
  util.cpu_mean_ms(fn, repeats) -> process CPU milliseconds (all threads) per call of fn(), over one loop of repeats
  util.peak_rss_mb() -> peak resident set size of this process so far (VmHWM), in MiB
  util.rss_mb() -> current resident set size (VmRSS), in MiB
]]
local util = {}

local function now()
  -- os.clock is CPU time summed over threads; use the monotonic wall clock via /proc/uptime fallback
  local f = io.open("/proc/uptime")
  local t = f:read("n")
  f:close()
  return t
end

local ok, core = pcall(require, "rotlab.core")
util.clock = (ok and core.wall_time) or now

function util.median_ms(fn, repeats)
  repeats = repeats or 7
  fn()
  local ts = {}
  for i = 1, repeats do
    local t0 = util.clock()
    fn()
    ts[i] = (util.clock() - t0) * 1000
  end
  table.sort(ts)
  return ts[(repeats + 1) // 2]
end

-- Process CPU time is read around the whole loop, not per call: the kernel brings the run time of the threads other
-- than the calling one up to date only at scheduler ticks and context switches, so a sub-tick call's CPU time misses
-- most of its worker threads' share (and the best of several such readings is biased low, to one thread's share).
function util.cpu_mean_ms(fn, repeats)
  repeats = repeats or 7
  fn()
  local c0 = os.clock()
  for _ = 1, repeats do fn() end
  return (os.clock() - c0) * 1000 / repeats
end

local function status_field(name)
  local f = io.open("/proc/self/status")
  if not f then return 0 end
  for line in f:lines() do
    local v = line:match("^" .. name .. ":%s+(%d+)")
    if v then
      f:close()
      return tonumber(v) / 1024
    end
  end
  f:close()
  return 0
end

function util.peak_rss_mb() return status_field("VmHWM") end
function util.rss_mb() return status_field("VmRSS") end

return util
