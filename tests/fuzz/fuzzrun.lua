--[[
tests/fuzz/fuzzrun.lua -- runs the libFuzzer targets of build/fuzz/ for a bounded time and reads their reports;
used by `make fuzz` (through tests/fuzz/run.lua) and by tests/fuzz.t.

  local fz = dofile(ROOT .. "/tests/fuzz/fuzzrun.lua")
  local r = fz.run{ root = ROOT, target = "mil", seconds = 20, corpus = DIR, artifacts = DIR }
  -- r.ok, r.runs, r.exec_per_sec, r.seconds, r.ours (list of findings in rotlab), r.hdf5 (list in libhdf5), r.log

h5spec and mil run in libFuzzer's normal mode: any crash, leak, timeout, out-of-memory or UB stops the run and is
a finding in rotlab (their inputs never reach HDF5's parser with corrupt metadata). h5 runs in fork mode and goes
on after a crash: each artifact is then replayed and triaged by its sanitizer report. It is rotlab's when UBSan
reports (only rotlab's code is instrumented), when the harness reports a broken promise, when the faulting frame
(or the allocation a bad access hit, or a leaked block's allocation) is in core/ or tests/fuzz/, else it is
HDF5's: its parser of corrupt metadata (libhdf5 1.10 has known memory-safety defects there), reported apart.
]]
local M = {}

local function sh(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function read_all(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

local function list_dir(dir)
  local out = {}
  local p = io.popen("ls -1 " .. sh(dir) .. " 2>/dev/null")
  for line in p:lines() do out[#out + 1] = line end
  p:close()
  return out
end

-- Frames of a sanitizer stack: "#3 0x... in fn /path/file.c:12:3" or "#1 0x... in fn (/lib/x.so+0x..)".
local function frames(block)
  local out = {}
  for line in block:gmatch("[^\n]+") do
    local n, rest = line:match("^%s*#(%d+) 0x%x+ (.*)$")
    if n then out[#out + 1] = rest end
  end
  return out
end

-- "ours", "library" or nil (a sanitizer, libFuzzer or libc frame, passed over) for one frame.
local function frame_owner(f, root)
  if f:find(root .. "/core/", 1, true) or f:find(root .. "/tests/fuzz/", 1, true) then return "ours" end
  if f:find("libhdf5", 1, true) or f:find("libz", 1, true) or f:find("libsz", 1, true) or f:find("libaec", 1, true) then
    return "library"
  end
  return nil
end

-- Owner of the first frame that is not a sanitizer / libFuzzer / libc frame.
local function stack_owner(block, root)
  local fs = frames(block)
  for i, f in ipairs(fs) do
    local o = frame_owner(f, root)
    if o then
      -- for the signature: the first frame from here on that has a function name
      for j = i, #fs do
        if fs[j]:match("^in [%w_]") then return o, fs[j] end
      end
      return o, f
    end
  end
  return nil
end

-- Owner of a replayed report (see the header), and a one-line signature.
function M.classify(report, root)
  local kind = report:match("ERROR: AddressSanitizer: ([%w%-]+)") or report:match("ERROR: LeakSanitizer: (detected memory leaks)")
    or report:match("ERROR: libFuzzer: ([%w%-]+)") or (report:find("runtime error:", 1, true) and "undefined-behavior")
    or (report:find("deadly signal", 1, true) and "deadly-signal")
  if report:find("runtime error:", 1, true) then
    return "ours", "undefined behaviour: " .. (report:match("([^\n]*runtime error:[^\n]*)") or "")
  end
  local finding = report:match("\n(fuzz_[%w_]+: [^\n]*)")
  if finding and not finding:find("^fuzz_[%w_]+: Running") and not finding:find("inputs loaded") then
    return "ours", "harness: " .. finding
  end
  if not kind then return nil, "no sanitizer report (did not reproduce)" end
  if kind == "detected memory leaks" then
    local owner = "library"
    local where
    for block in report:gmatch("leak of.-\n\n") do
      local o, f = stack_owner(block, root)
      if o == "ours" then owner, where = "ours", f end
      where = where or f
    end
    return owner, "leak, allocated in " .. tostring(where)
  end
  -- the access (or signal, or malloc) stack, then the stack that allocated the block a bad access hit
  local from = report:find("ERROR:", 1, true)
  local first = report:sub(from)
  for _, stop in ipairs{ "allocated by thread", "freed by thread", "SUMMARY:", "\nMS:" } do
    local at = first:find(stop, 1, true)
    if at then first = first:sub(1, at - 1) end
  end
  local owner, where = stack_owner(first, root)
  local alloc = report:match("allocated by thread.-\n\n")
  if alloc and stack_owner(alloc, root) == "ours" then owner = "ours" end
  -- a stack with neither rotlab's nor a library's frame cannot be blamed on HDF5: it counts as rotlab's
  return owner or "ours", kind .. " in " .. tostring(where)
end

local function parse_stats(log, r)
  r.runs = tonumber(log:match("stat::number_of_executed_units:%s*(%d+)"))
  r.exec_per_sec = tonumber(log:match("stat::average_exec_per_sec:%s*(%d+)"))
  local done, secs = log:match("Done (%d+) runs in (%d+) second")
  r.runs = r.runs or tonumber(done)
  r.seconds = tonumber(secs)
  -- fork mode: the last status line "#N: cov: ... exec/s E ... time: Ts"
  for n, e, t in log:gmatch("#(%d+): cov: [^\n]- exec/s (%d+) [^\n]- time: (%d+)s") do
    r.runs, r.exec_per_sec, r.seconds = tonumber(n), tonumber(e), tonumber(t)
  end
end

-- Runs one target; see the header. opts: root, target, seconds, corpus (working dir, created), artifacts (dir,
-- created), extra (string of libFuzzer flags), log (path).
function M.run(opts)
  local root, t = opts.root, opts.target
  local bin = root .. "/build/fuzz/fuzz_" .. t
  local seeds = root .. "/tests/fuzz/corpus/" .. t
  local log = opts.log or (opts.artifacts .. "/" .. t .. ".log")
  os.execute("mkdir -p " .. sh(opts.corpus) .. " " .. sh(opts.artifacts))
  local dict = root .. "/tests/fuzz/" .. t .. ".dict"
  local fork = t == "h5"
  local args = {
    sh(bin), "-max_total_time=" .. math.floor(opts.seconds), "-max_len=16384", "-timeout=10", "-rss_limit_mb=2048",
    "-malloc_limit_mb=1024", "-print_final_stats=1", "-artifact_prefix=" .. sh(opts.artifacts .. "/" .. t .. "-"),
    io.open(dict) and ("-dict=" .. sh(dict)) or "",
    fork and "-fork=1 -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1" or "",
    opts.extra or "", sh(opts.corpus), sh(seeds),
  }
  local before = {}
  for _, a in ipairs(list_dir(opts.artifacts)) do before[a] = true end
  local ok, how, code = os.execute(table.concat(args, " ") .. " > " .. sh(log) .. " 2>&1")
  local r = { target = t, log = log, ours = {}, hdf5 = {}, exit = code, how = how }
  local text = read_all(log)
  parse_stats(text, r)
  -- every artifact of this run, replayed once and triaged
  for _, a in ipairs(list_dir(opts.artifacts)) do
    if not before[a] and a:find("^" .. t .. "%-") and (a:find("crash") or a:find("leak") or a:find("oom") or
        a:find("timeout") or a:find("slow")) and not a:find("%.log$") then
      local path = opts.artifacts .. "/" .. a
      -- (a low malloc limit and a high RSS limit: a huge allocation is reported with the stack that made it)
      local p = io.popen(sh(bin) .. " -timeout=10 -rss_limit_mb=4096 -malloc_limit_mb=200 -runs=1 " .. sh(path) .. " 2>&1")
      local report = p:read("a")
      p:close()
      if a:find("^" .. t .. "%-slow") then report = "" end -- a slow unit is no finding
      local owner, sig = M.classify(report, root)
      if not fork and owner ~= "ours" and report ~= "" then owner = "ours" end -- (normal mode: everything counts)
      local item = { file = path, signature = sig, owner = owner, report = report }
      if owner == "ours" then r.ours[#r.ours + 1] = item
      elseif owner == "library" then r.hdf5[#r.hdf5 + 1] = item end
    end
  end
  if not fork and code ~= 0 and #r.ours == 0 then
    r.ours[#r.ours + 1] = { file = log, signature = "fuzzer exited " .. tostring(code) .. " (" .. tostring(how) .. ")" }
  end
  r.ok = (r.runs or 0) > 0 and #r.ours == 0 and (fork or code == 0)
  return r
end

-- One line per distinct signature with its count.
function M.signatures(items)
  local count, order = {}, {}
  for _, it in ipairs(items) do
    local s = it.signature:gsub(" %(BuildId: %x+%)", ""):gsub("0x%x+", ""):gsub("%+%)", ")"):gsub("%s+", " ")
    if not count[s] then order[#order + 1] = s end
    count[s] = (count[s] or 0) + 1
  end
  local out = {}
  for _, s in ipairs(order) do out[#out + 1] = ("%dx %s"):format(count[s], s) end
  return out
end

function M.summary(r)
  return ("fuzz_%s: %s runs in %s s (%s exec/s); %d finding(s) in rotlab, %d in libhdf5"):format(r.target,
    tostring(r.runs), tostring(r.seconds), tostring(r.exec_per_sec), #r.ours, #r.hdf5)
end

return M
