#!/usr/bin/env rotlab
-- Hostile inputs through the Lua API, beyond what data.t, h5io.t, tensor.t, pool.t and nn.t check.
-- Files: a valid dataset file truncated at many lengths, with random bytes flipped (ROTLAB_HOSTILE_SEED picks the
-- flips; the default is fixed), an empty file, an HDF5 signature alone, a directory, a FIFO, and the regression
-- inputs of the fuzzers (tests/fuzz/regress/h5) -- given to rl.data.load, rl.h5.read, rl.h5.attrs and rl.h5.list,
-- each in a child process so that a crash is seen as one: each call returns or raises a one-line error naming the
-- file, the child exits normally, and HDF5 prints none of its own error stack. Values: huge / negative / NaN / Inf
-- sizes and offsets, empty sets, wrong types, to rl.zeros, rl.tensor, rl.sets, module constructors and forward.
local rl = require "rotlab"
local t = require("rotlab.tap")()
local root = ROTLAB_ROOT or "."

local function sh(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
local function write(path, bytes)
  local f = assert(io.open(path, "wb"))
  f:write(bytes)
  f:close()
end
local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local dir = os.tmpname()
os.remove(dir)
assert(os.execute("mkdir -p " .. sh(dir)))

-- the host running this test runs the children too
local host = "rotlab"
do
  local p = io.popen("command -v rotlab 2>/dev/null")
  local found = p:read("l")
  p:close()
  if not found or found == "" then host = root .. "/build/bin/rotlab" end
end

-- The child: every reader on every file named on its command line; one line per (file, reader):
--   FILE <TAB> READER <TAB> ok | err <TAB> message
local child = dir .. "/child.lua"
write(child, [[
local rl = require "rotlab"
local args = ...
local readers = {
  load = function(f) local ds = rl.data.load(f); return ds:size() .. " sets" end,
  read = function(f) return tostring(rl.h5.read(f, "X")) end,
  attrs = function(f) local n = 0; for _ in pairs(rl.h5.attrs(f)) do n = n + 1 end; return n .. " attributes" end,
  list = function(f) return #rl.h5.list(f) .. " members" end,
}
for f in args.files:gmatch("[^|]+") do
  for _, name in ipairs{ "load", "read", "attrs", "list" } do
    local ok, msg = pcall(readers[name], f)
    io.write(f, "\t", name, "\t", ok and "ok" or "err", "\t", (tostring(msg):gsub("\n", "\\n")), "\n")
    io.flush()
  end
end
]])

-- Runs the child on a list of files; returns the parsed lines, its exit status and its stderr.
local function probe(files)
  local err = dir .. "/stderr"
  local p = io.popen(("%s run %s %s 2> %s"):format(sh(host), sh(child), sh("files=" .. table.concat(files, "|")), sh(err)))
  local out = p:read("a")
  local ok, how, code = p:close()
  local rows = {}
  for line in out:gmatch("[^\n]+") do
    local f, r, status, msg = line:match("^(.-)\t(%a+)\t(%a+)\t(.*)$")
    if f then rows[#rows + 1] = { file = f, reader = r, ok = status == "ok", msg = msg } end
  end
  return rows, ok and code == 0, how .. " " .. tostring(code), read(err)
end

-- A crash of the child on one file: replayed through the fuzzer build (when there is one) and triaged by its
-- sanitizer report (tests/fuzz/fuzzrun.lua): "library" when the fault is inside libhdf5 itself.
local function triage(file)
  local bin = root .. "/build/fuzz/fuzz_h5"
  if not io.open(bin) then return nil, "no build/fuzz/fuzz_h5 to triage with (make fuzz-build)" end
  local p = io.popen(sh(bin) .. " -runs=1 " .. sh(file) .. " 2>&1")
  local report = p:read("a")
  p:close()
  return dofile(root .. "/tests/fuzz/fuzzrun.lua").classify(report, root)
end

-- Checks a batch: the child ended normally, every file got all 4 readers, every error names its file on one line,
-- and nothing of HDF5's error stack reached stderr. `must_fail`: every reader must raise. A crash inside libhdf5
-- itself (a defect of HDF5 1.10 on corrupt metadata that rotlab cannot reach into) is reported, the batch goes on
-- with the next file, and the check passes only when the triage puts the fault in libhdf5.
local function check_batch(what, files, must_fail)
  local rows, crashes, stderr_all, rest = {}, {}, "", files
  while #rest > 0 do
    local got, exited, how, stderr = probe(rest)
    stderr_all = stderr_all .. stderr
    for _, r in ipairs(got) do rows[#rows + 1] = r end
    if exited then break end
    local k = #got // 4 + 1 -- the file the child died on
    if k > #rest then
      -- it read every file and died on the way out (HDF5 closing the library after a corrupt file): the
      -- child's own sanitizer report is what there is to triage
      local owner, sig = dofile(root .. "/tests/fuzz/fuzzrun.lua").classify(stderr, root)
      crashes[#crashes + 1] = { file = "(exit after " .. rest[#rest] .. ")", owner = owner, sig = sig or how,
        stderr = stderr, after_all = true }
      break
    end
    local owner, sig = triage(rest[k])
    crashes[#crashes + 1] = { file = rest[k], owner = owner, sig = sig or how, stderr = stderr }
    rest = { table.unpack(rest, k + 1) }
  end
  local ours = {}
  for _, c in ipairs(crashes) do
    if c.owner == "library" then
      t:diag(("%s: %s crashed inside libhdf5 (%s): a defect of HDF5 1.10, not rotlab's"):format(what, c.file, c.sig))
    else
      ours[#ours + 1] = ("%s: %s (%s)\n%s"):format(c.file, tostring(c.sig), tostring(c.owner), c.stderr)
    end
  end
  t:ok(#ours == 0, what .. ": no crash (outside libhdf5's own defects)", table.concat(ours, "\n"))
  local crashed, complete = {}, 0
  local lost = 0 -- files a crash cut short (an exit-time crash cuts none)
  for _, c in ipairs(crashes) do
    if not c.after_all then crashed[c.file], lost = true, lost + 1 end
  end
  for _, r in ipairs(rows) do if not crashed[r.file] then complete = complete + 1 end end
  t:is(complete, 4 * (#files - lost), what .. ": every reader returned or raised on every file")
  local bad = {}
  for _, r in ipairs(rows) do
    if not r.ok and not r.msg:find(r.file, 1, true) then bad[#bad + 1] = r.reader .. ": " .. r.msg end
    if not r.ok and r.msg:find("\\n", 1, true) then bad[#bad + 1] = r.reader .. " (several lines): " .. r.msg end
    if must_fail and r.ok then bad[#bad + 1] = r.reader .. " accepted " .. r.file .. ": " .. r.msg end
  end
  t:ok(#bad == 0, what .. (must_fail and ": every reader raises an error naming the file" or
    ": every error names the file"), table.concat(bad, "\n"))
  t:ok(not stderr_all:find("HDF5-DIAG", 1, true), what .. ": HDF5 prints no error stack (silenced by h5io)", stderr_all)
  return rows
end

-- ------------------------------------------------------------ the valid file
local good = dir .. "/good.h5"
local g = rl.rng(5)
rl.data.write(good, { X = rl.randn(g, 12, 3), offsets = { 0, 4, 5, 9, 12 }, y = { 1, 0, 2, 1 },
  group_offsets = { 0, 2, 4 }, fold = { 0, 1, 0, 1 }, attrs = { num_classes = 3, backbone = "resnet18", flag = true } })
local bytes = read(good)
local rows = check_batch("valid file", { good }, false)
local all_ok = true
for _, r in ipairs(rows) do all_ok = all_ok and r.ok end
t:ok(all_ok, "the valid file loads with every reader (control)")

-- ------------------------------------------------------------ truncated
local cuts = { 1, 7, 8, 48, 96, 512, 800, 1024, 2047, #bytes // 2, #bytes - 100, #bytes - 8, #bytes - 1 }
local truncated = {}
for _, n in ipairs(cuts) do
  if n > 0 and n < #bytes then
    local p = ("%s/truncated-%d.h5"):format(dir, n)
    write(p, bytes:sub(1, n))
    truncated[#truncated + 1] = p
  end
end
t:diag(("the valid file has %d bytes; truncated at %d lengths"):format(#bytes, #truncated))
check_batch("truncated file", truncated, true)

-- ------------------------------------------------------------ odd files
local empty, sig, text, fifo = dir .. "/empty.h5", dir .. "/signature.h5", dir .. "/text.h5", dir .. "/fifo.h5"
write(empty, "")
write(sig, "\137HDF\r\n\26\n")
write(text, ("not an HDF5 file\n"):rep(100))
local odd = { empty, sig, text, dir }
if os.execute("mkfifo " .. sh(fifo) .. " 2>/dev/null") then odd[#odd + 1] = fifo end
local orows = check_batch("empty / signature-only / text / directory / FIFO", odd, true)
local dmsg
for _, r in ipairs(orows) do if r.file == dir and r.reader == "load" then dmsg = r.msg end end
t:ok(dmsg and dmsg:find("it is a directory", 1, true), "a directory is named as such", dmsg)

-- ------------------------------------------------------------ flipped bytes
local seed = tonumber(os.getenv("ROTLAB_HOSTILE_SEED") or "") or 20240501
t:diag(("byte flips from seed %d (ROTLAB_HOSTILE_SEED=N picks others)"):format(seed))
local fr = rl.rng(seed)
local flipped = {}
for k = 1, 100 do
  local b = { bytes:byte(1, -1) }
  local nflips = 1 + math.floor(fr:uniform() * 8)
  local span = k <= 50 and #b or math.min(#b, 2048) -- the second half: in the first 2 KB (superblock, headers)
  for _ = 1, nflips do
    local i = 1 + math.floor(fr:uniform() * span)
    b[i] = b[i] ~ (1 + math.floor(fr:uniform() * 255))
  end
  local p = ("%s/flipped-%02d.h5"):format(dir, k)
  local parts = {}
  for i = 1, #b, 4096 do parts[#parts + 1] = string.char(table.unpack(b, i, math.min(i + 4095, #b))) end
  write(p, table.concat(parts))
  flipped[#flipped + 1] = p
end
local frows = check_batch("100 files with 1-8 flipped bytes (50 of them in the first 2 KB)", flipped, false)
local nerr = 0
for _, r in ipairs(frows) do if not r.ok then nerr = nerr + 1 end end
t:diag(("flipped bytes: %d of %d reader calls raised an error, the others read the file"):format(nerr, #frows))

-- ------------------------------------------------------------ the fuzzers' regression inputs
local expect = {
  ["label-int64-max.h5"] = "/y: label of set 0 %(0%-based%) is 9223372036854775807; labels must be below",
  ["x-rows-1e9.h5"] = "/X: declares 2000000000 elements of 4 bytes, more than a file of 10240 bytes can hold",
  ["x-cols-2e40.h5"] = "/X: shape 6 x 1099511627776 is too large",
  ["attr-table-null-deref.h5"] = ": /y: missing",
  ["attr-short-storage.h5"] = ": /X: missing",
}
local regress = {}
for name in pairs(expect) do regress[#regress + 1] = root .. "/tests/fuzz/regress/h5/" .. name end
table.sort(regress)
local rrows = check_batch("fuzzer regression inputs", regress, false)
for _, r in ipairs(rrows) do
  if r.reader == "load" then
    local name = r.file:match("[^/]+$")
    t:ok(not r.ok and r.msg:find(expect[name]) ~= nil, "regression " .. name .. ": rl.data.load raises the expected error", r.msg)
  end
end

-- ------------------------------------------------------------ values: sizes, offsets, types
local E = {
  { function() return rl.zeros(2 ^ 40, 2 ^ 40) end, "too many elements", "zeros: 2^80 elements" },
  { function() return rl.zeros(1 << 62) end, "dimension 1 is too large", "zeros: a dimension above RL_MAX_DIM" },
  { function() return rl.zeros(2 ^ 33) end, "too large", "zeros: more than RL_MAX_ALLOC bytes" },
  { function() return rl.zeros(0 / 0) end, "bad argument #1 to 'zeros'", "zeros: NaN size" },
  { function() return rl.zeros(1 / 0) end, "bad argument #1 to 'zeros'", "zeros: Inf size" },
  { function() return rl.zeros(2.5) end, "bad argument #1 to 'zeros'", "zeros: fractional size" },
  { function() return rl.zeros("x") end, "bad argument #1 to 'zeros'", "zeros: string size" },
  { function() return rl.zeros() end, "expected 1 to 4 sizes", "zeros: no size" },
  { function() return rl.zeros(1, 2, 3, 4, 5) end, "expected 1 to 4 sizes", "zeros: rank 5" },
  { function() return rl.randn(rl.rng(1), 2 ^ 40, 2 ^ 40) end, "too many elements", "randn: 2^80 elements" },
  { function() return rl.tensor{ { { { { 1 } } } } } end, "deeper than 4 levels", "tensor: rank 5" },
  { function() return rl.tensor("x") end, "bad argument #1 to 'tensor'", "tensor: a string" },
  { function() return rl.tensor{ true } end, "not a number", "tensor: a boolean entry" },
  { function() return rl.tensor{ { 1 }, 2 } end, "ragged", "tensor: table then number" },
  { function() return rl.sets(rl.zeros(5, 1), { 0, 0 / 0, 5 }) end, "offsets entry 2 is not an integer", "sets: NaN offset" },
  { function() return rl.sets(rl.zeros(5, 1), { 0, 1 / 0, 5 }) end, "offsets entry 2 is out of range", "sets: Inf offset" },
  { function() return rl.sets(rl.zeros(5, 1), { 0, -1 / 0, 5 }) end, "offsets entry 2 is out of range", "sets: -Inf offset" },
  { function() return rl.sets(rl.zeros(5, 1), { 0, math.maxinteger }) end, "offsets entry 2 is out of range",
    "sets: offset maxinteger (not rounded into a wrong int64)" },
  { function() return rl.sets(rl.zeros(5, 1), { 0, 1 << 62, 5 }) end, "out of range", "sets: offset 2^62" },
  { function() return rl.sets(rl.zeros(5, 1), { 0, -1, 5 }) end, "non%-decreasing", "sets: negative offset" },
  { function() return rl.sets(rl.zeros(5, 1), { -5, 5 }) end, "start at 0", "sets: negative first offset" },
  { function() return rl.sets(rl.zeros(5, 1), {}) end, "at least 2 entries", "sets: no offsets" },
  { function() return rl.sets(rl.zeros(5, 1), "0,5") end, "bad argument #2 to 'sets'", "sets: offsets as a string" },
  { function() return rl.sets(rl.zeros(5, 1), { 0, "x", 5 }) end, "offsets entry 2 is not a number", "sets: a word as offset" },
  { function() return rl.sets(rl.zeros(0, 3), { 0, 0 }) end, "empty", "sets: one empty set of zero rows" },
  { function() return rl.sets(rl.zeros(5), { 0, 5 }) end, "expected a 2%-D tensor", "sets: 1-D values" },
  { function() return rl.sets(nil, { 0, 5 }) end, "bad argument #1 to 'sets'", "sets: no values" },
  { function() return rl.sets(rl.zeros(5, 1), rl.tensor{ 0, 1 / 0, 5 }) end, "out of range", "sets: Inf in an offsets tensor" },
  { function() return rl.groups(rl.sets(rl.zeros(4, 1), { 0, 2, 4 }), { 0, 0 / 0 }) end, "not an integer", "groups: NaN offset" },
  { function() return rl.groups("x", { 0, 1 }) end, "rotlab.sets expected", "groups: not sets" },
  { function() return rl.nn.Linear(2 ^ 40, 2 ^ 40) end, "too many elements", "Linear: 2^80 weights" },
  { function() return rl.nn.Linear(1 << 20, 1 << 20) end, "too large", "Linear: more than RL_MAX_ALLOC bytes" },
  { function() return rl.nn.Linear(0 / 0, 2) end, "expected a positive input width", "Linear: NaN width" },
  { function() return rl.nn.Linear(1 / 0, 2) end, "expected a positive input width", "Linear: Inf width" },
  { function() return rl.nn.Linear({}, 2) end, "expected a positive input width", "Linear: table width" },
  { function() return rl.nn.Linear(3, 2):forward() end, "bad argument #1 to 'forward'", "Linear forward: nothing" },
  { function() return rl.nn.Linear(3, 2):forward({ { 1, 2, 3 } }) end, "tensor or sets expected, got table",
    "Linear forward: a plain table" },
  { function() return rl.nn.Linear(3, 2):forward(rl.zeros(0, 3)) end, "bad argument #1 to 'forward'",
    "Linear forward: zero rows" },
  { function() return rl.pool.attention{ dim = 2 ^ 40 } end, "too many elements", "attention: dim 2^40" },
  { function() return rl.pool.attention{ dim = 4, hidden = 1 << 40 } end, "too many elements", "attention: hidden 2^40" },
  { function() return rl.pool.attention{ dim = 0 / 0 } end, "option 'dim': expected a positive width", "attention: NaN dim" },
  { function() return rl.pool.mean{ dim = -3 } end, "option 'dim': expected a positive width", "mean: negative dim" },
  { function() return rl.pool.mean{ dim = 2 }:forward(rl.zeros(3, 2)) end, "expected a batch of sets",
    "mean forward: plain rows" },
  { function() return rl.pool.mean{ dim = 2 }:forward("x") end, "bad argument #1 to 'forward'", "mean forward: a string" },
  { function() return rl.pool.rotp{ dim = 1 }:forward(rl.sets(rl.tensor{ { 0 / 0 }, { 1 } }, { 0, 2 })) end,
    "not finite", "rotp forward: NaN value" },
  { function() return rl.pool.rotp{ dim = 1 }:forward(rl.sets(rl.tensor{ { 1 / 0 }, { 1 } }, { 0, 2 })) end,
    "not finite", "rotp forward: Inf value" },
  { function() return rl.nn.CrossEntropy():forward(rl.tensor{ { 0 / 0, 1 } }, { 0 }) end, "not finite",
    "CrossEntropy forward: NaN logit" },
  { function() return rl.nn.Sequential{ 1 } end, "entry 1 is not a module", "Sequential: a number" },
  { function() return rl.nn.Sequential{ rl.nn.ReLU() }:forward("x") end, "bad argument #1 to 'forward'",
    "Sequential forward: a string" },
  { function() return rl.h5.write(dir .. "/w.h5", "q", rl.tensor{ 1e30 }, { type = "int64" }) end, "not an integer",
    "h5.write int64: a value beyond int64 (the cast was undefined)" },
}
for _, e in ipairs(E) do t:raises(e[1], e[2], e[3]) end

-- what is accepted is computed, not crashed on: NaN and Inf values flow through the poolings that allow them
local m = rl.pool.mean{ dim = 1 }:forward(rl.sets(rl.tensor{ { 0 / 0 }, { 1 } }, { 0, 2 }))
t:ok(m:get(1, 1) ~= m:get(1, 1), "mean of a set holding NaN is NaN (no error, no crash)")
local z = rl.nn.Linear(3, 2):forward(rl.sets(rl.zeros(1, 3), { 0, 1 }))
t:is(z:count(), 1, "Linear on sets keeps the sets")

os.execute("rm -rf " .. sh(dir))
os.exit(t:done())
