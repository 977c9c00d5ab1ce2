#!/usr/bin/env rotlab-double
-- MIL converter (core/data/mil.c, rotlab.mil, `rotlab convert mil`): round trips on synthetic MIL directories
-- written here, the real datasets' counts (when ../shared/data is present), and every malformed-input error.
local rl = require "rotlab"
local mil = require "rotlab.mil"
local t = require("rotlab.tap")()

local tmp = os.tmpname()
os.remove(tmp)
assert(os.execute("mkdir -p '" .. tmp .. "'"))
local ndirs = 0

local function write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

-- A MIL directory with the given file contents (nil: the file is not written). Returns its path.
local function mildir(data, bagids, labels)
  ndirs = ndirs + 1
  local d = tmp .. "/d" .. ndirs
  assert(os.execute("mkdir -p '" .. d .. "'"))
  if data then write(d .. "/data.csv", data) end
  if bagids then write(d .. "/bagids.csv", bagids) end
  if labels then write(d .. "/labels.csv", labels) end
  return d
end

-- Synthetic bags: n = 7 instances of d = 3 features, bags of sizes 2, 1, 4 with labels 1, 0, 1.
-- X[j][f] is instance j's feature f; the file is feature-major (line f lists every instance).
local X = {
  { 1, -2.5, 0.5 }, { 42, 1e-05, -250 }, { 3, 0, 7 }, { 0.25, 1.5e3, -1 },
  { -0, 2, 3 }, { 5, 6, 7 }, { 8, 9, 1e-3 },
}
local spelled = { -- how some values are written (number formats the reader must accept)
  ["2.2"] = "1e-05", ["2.3"] = "-2.5E+2", ["4.2"] = "1.5e3", ["1.1"] = "+1", ["5.1"] = "-0", ["7.3"] = ".001",
}
local sizes, bag_labels = { 2, 1, 4 }, { 1, 0, 1 }
local function data_text(eol, final)
  local lines = {}
  for f = 1, 3 do
    local cells = {}
    for j = 1, #X do cells[j] = spelled[j .. "." .. f] or ("%.17g"):format(X[j][f]) end
    lines[f] = table.concat(cells, "\t")
  end
  return table.concat(lines, eol) .. (final and eol or "")
end
local function per_instance(values, eol, final)
  local out = {}
  for b, s in ipairs(sizes) do for _ = 1, s do out[#out + 1] = tostring(values[b]) end end
  return table.concat(out, eol) .. (final and eol or "")
end
local ids = { 1, 2, 3 }

local function check_read(m, what)
  local ok = m.bags == 3 and m.instances == 7 and m.dim == 3 and m.positives == 2
  t:ok(ok, what .. ": counts (3 bags, 7 instances, 3 features, 2 positive)",
    ("%s %s %s %s"):format(m.bags, m.instances, m.dim, m.positives))
  t:is(table.concat(m.offsets, ","), "0,2,3,7", what .. ": bag offsets from the bag ids")
  t:is(table.concat(m.y, ","), "1,0,1", what .. ": one label per bag")
  local shape = m.X:shape()
  local worst = 0
  for j = 1, 7 do for f = 1, 3 do worst = math.max(worst, math.abs(m.X:get(j, f) - X[j][f])) end end
  t:ok(shape[1] == 7 and shape[2] == 3 and worst == 0, what .. ": X is the transpose of data.csv, values exact",
    "max diff " .. worst)
end

---------------------------------------------------------------------------------------------- round trips

local good = mildir(data_text("\n", true), per_instance(ids, "\n", true), per_instance(bag_labels, "\n", true))
check_read(rl.mil_read(good), "LF files")
check_read(rl.mil_read(mildir(data_text("\r\n", true), per_instance(ids, "\r\n", true),
  per_instance(bag_labels, "\r\n", false))), "CRLF files, last line end optional")
check_read(mil.read(mildir(data_text("\n", false), per_instance(ids, "\n", false),
  per_instance(bag_labels, "\n", false))), "no final line end")

local out = tmp .. "/good.h5"
local info = mil.convert(good, out, { name = "Synth", source = "written by tests/mil_convert.t", licence = "CC0" })
t:ok(info.bags == 3 and info.instances == 7 and info.dim == 3 and info.positives == 2 and info.file == out and
  info.name == "Synth", "convert returns the counts")
local ds = rl.data.load(out)
t:ok(ds:size() == 3 and ds:rows() == 7 and ds:dim() == 3 and ds:num_classes() == 2, "written file: shape")
t:is(table.concat(ds:offsets(), ","), "0,2,3,7", "written file: /offsets")
t:is(table.concat(ds:labels(), ","), "1,0,1", "written file: /y")
t:is(table.concat(ds:set_sizes(), ","), "2,1,4", "written file: bag sizes")
local a = ds:attrs()
t:ok(a.num_classes == 2 and a.name == "Synth" and a.source == "written by tests/mil_convert.t" and
  a.licence == "CC0" and a.kind == "mil" and a.converted_from == good, "written file: attributes")
local worst = 0
local V = ds:values()
for j = 1, 7 do
  for f = 1, 3 do
    local want = X[j][f]
    worst = math.max(worst, math.abs(V:get(j, f) - want) / math.max(1, math.abs(want)))
  end
end
t:ok(worst < 1e-7, "written file: values as float32 (DESIGN section 5), within float32 rounding", worst)
ds:close()

local out64 = tmp .. "/good64.h5"
mil.convert(good, out64, { dtype = "float64" })
ds = rl.data.load(out64)
worst = 0
V = ds:values()
for j = 1, 7 do for f = 1, 3 do worst = math.max(worst, math.abs(V:get(j, f) - X[j][f])) end end
t:ok(worst == 0, "dtype = float64: exact values", worst)
t:is(ds:attrs().name, "d1", "default name: the dataset directory's name")
ds:close()

-- a dataset directory with the files in raw/ (the shared layout) is accepted and named after the dataset
local layout = tmp .. "/Bags"
assert(os.execute("mkdir -p '" .. layout .. "/raw' && cp '" .. good .. "'/*.csv '" .. layout .. "/raw/'"))
t:is(mil.files_dir(layout), layout .. "/raw", "files_dir finds DIR/raw")
local linfo = mil.convert(layout, tmp .. "/bags.h5")
t:ok(linfo.name == "Bags" and linfo.dir == layout .. "/raw", "convert of a dataset directory: name from it")
t:is(mil.files_dir(tmp .. "/nothing-here"), nil, "files_dir of a directory without the files: nil")
local found = mil.find(tmp)
local names = {}
for _, d in ipairs(found) do names[#names + 1] = d.name end
t:ok(#found >= 1 and table.concat(names, ","):find("Bags"), "find lists directories holding the files",
  table.concat(names, ","))

---------------------------------------------------------------------------------------------- the real data

local data_dir = mil.default_data_dir()
local expect = { -- README of ../shared/data, section 1-2
  Musk1 = { bags = 92, instances = 476, dim = 166, positives = 47, min = 2, max = 40 },
  Musk2 = { bags = 102, instances = 6598, dim = 166, positives = 39, min = 1, max = 1044 },
  Elephant = { bags = 200, instances = 1391, dim = 230, positives = 100, min = 2, max = 13 },
  Fox = { bags = 200, instances = 1320, dim = 230, positives = 100, min = 2, max = 13 },
  Tiger = { bags = 200, instances = 1220, dim = 230, positives = 100, min = 1, max = 13 },
}
for _, name in ipairs(mil.ORDER) do
  local e = expect[name]
  local dir = data_dir and mil.files_dir(data_dir .. "/" .. name)
  if not dir then
    t:ok(true, name .. " counts # SKIP no shared data directory")
  else
    local h5 = tmp .. "/" .. name .. ".h5"
    local ci = mil.convert(dir, h5, { name = name })
    local rd = rl.data.load(h5)
    local mn, mx = math.huge, 0
    for _, s in ipairs(rd:set_sizes()) do mn, mx = math.min(mn, s), math.max(mx, s) end
    local pos = 0
    for _, y in ipairs(rd:labels()) do pos = pos + y end
    t:ok(ci.bags == e.bags and ci.instances == e.instances and ci.dim == e.dim and ci.positives == e.positives and
      rd:size() == e.bags and rd:rows() == e.instances and rd:dim() == e.dim and pos == e.positives,
      ("%s: %d bags (%d positive), %d instances, %d features"):format(name, e.bags, e.positives, e.instances, e.dim),
      ("got %d bags (%d positive), %d instances, %d features"):format(ci.bags, ci.positives, ci.instances, ci.dim))
    t:ok(mn == e.min and mx == e.max, ("%s: bag sizes %d..%d"):format(name, e.min, e.max), mn .. ".." .. mx)
    t:ok(rd:attrs().source:find(name == "Musk2" and "MILSurvey" or "MilDatasets.jl", 1, true) ~= nil and
      rd:attrs().licence ~= nil, name .. ": provenance attributes of a known dataset")
    rd:close()
  end
end
if data_dir and mil.files_dir(data_dir .. "/Musk1") then
  -- Musk1 holds the raw UCI integers: instance 1 starts 42, -198, -109 (README: identical to clean1.data)
  local m = rl.mil_read(mil.files_dir(data_dir .. "/Musk1"))
  t:ok(m.X:get(1, 1) == 42 and m.X:get(1, 2) == -198 and m.X:get(2, 1) == 42, "Musk1: first values (transposed)")
else
  t:ok(true, "Musk1 first values # SKIP no shared data directory")
end

---------------------------------------------------------------------------------------------- errors

local D3 = "1\t2\t3\n4\t5\t6\n"            -- 2 features x 3 instances
local B3, L3 = "1\n1\n2\n", "0\n0\n1\n"     -- bags {1, 2}, {3}
local function fails(data, bagids, labels, pattern, name)
  local dir = mildir(data, bagids, labels)
  t:raises(function() rl.mil_read(dir) end, pattern, name)
  return dir
end

fails("1\t2\t3\n4\t5\n", B3, L3, "data%.csv:2:4: ragged line: 2 values, expected 3", "ragged line (too few values)")
fails("1\t2\t3\n4\t5\t6\t7\n", B3, L3, "data%.csv:2:7: ragged line: more than 3 values",
  "ragged line (too many values)")
fails("1\tabc\t3\n4\t5\t6\n", B3, L3, "data%.csv:1:3: not a number: 'abc'", "non-numeric value")
fails("1\t2\t3\n4\tnan\t6\n", B3, L3, "data%.csv:2:3: not a number: 'nan'", "nan is refused")
fails("1\t2\t3\n4\tinf\t6\n", B3, L3, "data%.csv:2:3: not a number: 'inf'", "inf is refused")
fails("1\t2\t3\n4\t0x10\t6\n", B3, L3, "data%.csv:2:3: not a number: '0x10'", "hexadecimal is refused")
fails("1\t2\t3\n4\t1e999\t6\n", B3, L3, "data%.csv:2:3: value '1e999' is out of range", "overflowing value")
fails("1\t 2\t3\n4\t5\t6\n", B3, L3, "data%.csv:1:3: not a number: ' 2'", "a space inside a field")
fails("1\t\t3\n4\t5\t6\n", B3, L3, "data%.csv:1:3: empty value", "empty value between two TABs")
fails("1\t2\t3\n\n4\t5\t6\n", B3, L3, "data%.csv:2:1: empty line", "empty line inside data.csv")
fails("1\t2\t3\n4\t5\t" .. ("9"):rep(80) .. "\n", B3, L3, "data%.csv:2:5: value '9+%.%.%.' is longer than 64 bytes",
  "overlong value")
fails("1\t2\t3\n4\t5\t6\0\n", B3, L3, "data%.csv:2:5: not a number: '6%?'", "a NUL byte inside a value")
fails(D3, "1\n1\n3\n", L3, "bagids%.csv:3:1: bag id 3 follows bag 1: ids must be contiguous %(no bag 2%)",
  "bag id gap")
fails(D3, "1\n2\n1\n", L3, "bagids%.csv:3:1: bag id 1 after bag 2: a bag's instances must be on consecutive lines",
  "non-contiguous bag ids")
fails(D3, "2\n2\n3\n", L3, "bagids%.csv:1:1: first bag id is 2, expected 1", "bag ids must start at 1")
fails(D3, "0\n0\n1\n", L3, "bagids%.csv:1:1: bag id 0: ids are 1%-based", "bag id 0")
fails(D3, "1\n1.5\n2\n", L3, "bagids%.csv:2:2: bag id '1%.5' is not a non%-negative integer", "non-integer bag id")
fails(D3, "1\n-1\n2\n", L3, "bagids%.csv:2:1: bag id '%-1' is not a non%-negative integer", "negative bag id")
fails(D3, "1\n1\n" .. ("9"):rep(30) .. "\n", L3, "bagids%.csv:3:1: bag id '9+%.?%.?%.?' is not a non%-negative " ..
  "integer of at most 18 digits", "overlong bag id")
fails(D3, "1\n\n2\n", L3, "bagids%.csv:2:1: empty line %(expected a bag id%)", "empty line in bagids.csv")
fails(D3, B3, "0\n1\n1\n", "labels%.csv:2:1: label 1 differs from label 0 on line 1, yet both instances are in bag " ..
  "1 %(.*bagids%.csv lines 1%.%.2%): labels must be constant inside a bag", "label varying inside a bag")
fails(D3, B3, "0\n0\n2\n", "labels%.csv:3:1: label '2' is not 0 or 1", "label other than 0/1")
fails(D3, B3, "0\n0\n1.0\n", "labels%.csv:3:1: label '1%.0' is not 0 or 1", "label 1.0 is refused")
fails(D3, B3, "0\n\n1\n", "labels%.csv:2:1: empty line %(expected a label, 0 or 1%)", "empty line in labels.csv")
fails(D3, "1\n1\n", L3, "bagids%.csv: 2 lines %(instances%), but .*data%.csv has 3 values per line", 
  "wrong count: bagids.csv shorter than the instances")
fails(D3, "1\n1\n2\n2\n", L3, "bagids%.csv: 4 lines %(instances%), but .*data%.csv has 3", 
  "wrong count: bagids.csv longer than the instances")
fails(D3, B3, "0\n0\n1\n1\n", "labels%.csv: 4 lines %(instances%), but .*bagids%.csv has 3 and .*data%.csv 3",
  "wrong count: labels.csv longer")
fails(D3, B3, "0\n0\n", "labels%.csv: 2 lines %(instances%), but", "wrong count: labels.csv shorter")
fails("", B3, L3, "data%.csv: empty file", "empty data.csv")
fails(D3, "", L3, "bagids%.csv: empty file", "empty bagids.csv")
fails(D3, B3, "", "labels%.csv: empty file", "empty labels.csv")
fails(nil, B3, L3, "data%.csv: cannot open: No such file or directory", "missing data.csv")
fails(D3, nil, L3, "bagids%.csv: cannot open: No such file or directory", "missing bagids.csv")
fails(D3, B3, nil, "labels%.csv: cannot open: No such file or directory", "missing labels.csv")
t:raises(function() rl.mil_read(tmp .. "/no-such-dir") end, "no%-such%-dir/data%.csv: cannot open",
  "missing directory")
t:raises(function() rl.mil_read(tmp .. "/d1/data.csv") end, "data%.csv/data%.csv: cannot open",
  "a file instead of a directory")
t:raises(function() rl.mil_read("") end, "expected a directory name", "empty directory name")
t:raises(function() mil.convert(good, tmp .. "/no/such/dir/x.h5") end, "x%.h5", "unwritable output")
t:raises(function() mil.convert(good, tmp .. "/x.h5", { dtype = "int8" }) end, "option 'dtype': unknown value",
  "unknown dtype")
t:raises(function() rl.mil_convert(good, tmp .. "/x.h5", { nme = "x" }) end, "unknown option 'nme'",
  "unknown converter option")
t:raises(function() mil.convert(nil, "x.h5") end, "bad argument #1 to 'convert'", "convert needs a directory")

-- random corruptions of a valid directory: every one parses or fails with a message naming a file (never a crash;
-- the ASan build checks the memory side)
local g = rl.rng(7)
local alphabet = { "\t", "\n", "\r", "0", "1", "2", "9", ".", "-", "e", "x", " ", "\0", "\255" }
local base = { data_text("\n", true), per_instance(ids, "\n", true), per_instance(bag_labels, "\n", true) }
local named, crashed = true, 0
for trial = 1, 300 do
  local files = { base[1], base[2], base[3] }
  local which = trial % 3 + 1
  local s = files[which]
  for _ = 1, 1 + g:int(4) do
    local pos = g:int(#s + 1)
    local op = g:int(3)
    local ch = alphabet[g:int(#alphabet)]
    if op == 1 then s = s:sub(1, pos - 1) .. ch .. s:sub(pos)           -- insert
    elseif op == 2 then s = s:sub(1, pos - 1) .. s:sub(pos + 1)         -- delete
    else s = s:sub(1, pos - 1) .. ch .. s:sub(pos + 1) end              -- replace
  end
  files[which] = s
  local ok, res = pcall(rl.mil_read, mildir(files[1], files[2], files[3]))
  if ok then
    if res.instances < 1 or res.bags < 1 or #res.offsets ~= res.bags + 1 then crashed = crashed + 1 end
  elseif not tostring(res):find("%.csv[:%s]") then
    named = false
    t:diag("message without a file: " .. tostring(res))
  end
end
t:ok(named, "300 random corruptions: every failure names the file")
t:is(crashed, 0, "300 random corruptions: every success is a consistent set of bags")

---------------------------------------------------------------------------------------------- the command

local bin = "rotlab"
do
  local p = io.popen("command -v rotlab 2>/dev/null")
  local found_bin = p:read("l")
  p:close()
  if not found_bin or found_bin == "" then bin = ROTLAB_ROOT .. "/build/bin/rotlab" end
end
local errfile = tmp .. "/err"
local function sh(s) return "'" .. s:gsub("'", "'\\''") .. "'" end
local function run(...)
  local argv = { bin, "convert" }
  for _, x in ipairs { ... } do argv[#argv + 1] = sh(x) end
  local p = io.popen(table.concat(argv, " ") .. " 2>" .. sh(errfile))
  local o = p:read("a")
  local _, _, code = p:close()
  local f = io.open(errfile)
  local e = f and f:read("a") or ""
  if f then f:close() end
  return code, o, e
end

local code, o, e = run("mil", good, tmp .. "/cli.h5", "--name", "Cli", "--licence=CC0")
t:ok(code == 0 and o:find("^Cli: 3 bags %(2 positive, 1 negative%), 7 instances x 3 features %->"),
  "rotlab convert mil DIR OUT.h5: exit 0 and a summary", o .. e)
t:is(rl.data.load(tmp .. "/cli.h5"):attrs().licence, "CC0", "command options reach the file")
code, _, e = run("mil", mildir(D3, "1\n1\n3\n", L3), tmp .. "/bad.h5")
t:ok(code == 2 and e:find("^rotlab convert mil: .*bagids%.csv:3:1: bag id 3 follows bag 1"),
  "malformed input: exit 2, message without a Lua position", e)
t:ok(not io.open(tmp .. "/bad.h5"), "malformed input: no output file")
code, o = run("mil", "--help")
t:ok(code == 0 and o:find("^usage: rotlab convert mil DIR OUT%.h5"), "convert mil --help")
code, _, e = run("mil", good)
t:ok(code == 2 and e:find("expected DIR and OUT%.h5"), "missing output argument: exit 2", e)
code, _, e = run("mil", good, tmp .. "/x.h5", "--bogus")
t:ok(code == 2 and e:find("unknown option '%-%-bogus'"), "unknown option: exit 2", e)
code, _, e = run("tu", good, tmp .. "/x.h5")
t:ok(code == 2 and e:find("unknown format 'tu'"), "unknown format: exit 2", e)
code, o = run()
t:ok(code == 2 and o:find("formats: mil"), "convert without a format: usage, exit 2", o)

os.execute("rm -rf '" .. tmp .. "'")
os.exit(t:done())
