#!/usr/bin/env rotlab
-- rl.data in the float build: dataset round trips, h5py-written files, every validation error of the reader and
-- the writer, batches of sets, splits / k-fold / mini-batch properties, and the error path of every function.
-- (tests/h5io.t repeats the round trip in the double build.)
local rl = require "rotlab"
local t = require("rotlab.tap")()

local here = (arg and arg[0] or "tests/data.t"):match("^(.*)/[^/]*$") or "."
local PY = "/usr/bin/python3"
local temps = {}
local function tmp()
  local p = os.tmpname()
  temps[#temps + 1] = p
  return p
end

-- Runs a Python (h5py) script; returns true or false plus its output.
local function python(src)
  local script, out = tmp(), tmp()
  local f = assert(io.open(script, "w"))
  f:write(src)
  f:close()
  local ok = os.execute(("%s %s > %s 2>&1"):format(PY, script, out))
  local o = io.open(out):read("a")
  return ok, o
end

local function list_eq(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do if a[i] ~= b[i] then return false end end
  return true
end

-- ------------------------------------------------------------ round trip
local g = rl.rng(11)
local sizes = { 3, 1, 4, 2, 5, 1 }
local offsets, rows = { 0 }, 0
for b, s in ipairs(sizes) do rows = rows + s; offsets[b + 1] = rows end
local X = rl.randn(g, rows, 7)
local y = { 0, 2, 1, 2, 0, 1 }
local F = tmp()
rl.data.write(F, { X = X, offsets = offsets, y = y, group_offsets = { 0, 2, 6 }, fold = { 0, 1, 2, 0, 1, 2 },
  attrs = { backbone = "resnet18", layer = "avgpool", num_classes = 4, scale = 0.5 } })
local ds = rl.data.load(F)
t:is(ds:size(), 6, "size: number of sets")
t:is(#ds, 6, "#ds is the number of sets")
t:is(ds:dim(), 7, "dim")
t:is(ds:rows(), rows, "rows")
t:is(ds:num_classes(), 4, "num_classes comes from the attribute")
t:is(ds:values():maxdiff(X), 0, "values equal after write -> load (float build, default dtype)")
t:ok(list_eq(ds:labels(), y), "labels round trip (0-based)")
t:ok(list_eq(ds:set_sizes(), sizes), "set sizes")
t:ok(list_eq(ds:offsets(), offsets), "offsets round trip")
t:ok(list_eq(ds:folds(), { 0, 1, 2, 0, 1, 2 }), "folds round trip")
t:ok(list_eq(ds:group_offsets(), { 0, 2, 6 }), "group offsets round trip")
local at = ds:attrs()
t:ok(at.backbone == "resnet18" and at.layer == "avgpool" and at.num_classes == 4 and at.scale == 0.5, "attributes round trip")
t:is(ds:file(), F, "file")
t:ok(tostring(ds):find("6 sets, 16 rows x 7, 4 classes", 1, true) ~= nil, "tostring summarises the dataset")

-- the same data stored as float64 (explicit dtype) also round trips exactly in the float build
local F64 = tmp()
rl.data.write(F64, { X = X, offsets = offsets, y = y, dtype = "float64" })
local ds64 = rl.data.load(F64)
t:is(ds64:values():maxdiff(X), 0, "float64 storage round trip in the float build")
t:is(ds64:num_classes(), 3, "without the attribute num_classes is max(y) + 1")
t:is(ds64:folds(), nil, "folds() is nil without /fold")
t:is(ds64:group_offsets(), nil, "group_offsets() is nil without /group_offsets")
t:is(next(ds64:attrs()), nil, "no attributes -> empty table")
local ok, out = python(("import h5py; f = h5py.File(%q, 'r'); print(f['X'].dtype, h5py.File(%q, 'r')['X'].dtype, f['offsets'].dtype, f['y'].dtype)"):format(F64, F))
t:is(ok and out, "float64 float32 int64 int64\n", "h5py sees the stored types (dtype option; float32 default in the float build)")

-- ------------------------------------------------------------ batches
local b, by = ds:batch{ 5, 2, 5 }
t:is(b:count(), 3, "batch: one set per index (duplicates allowed)")
t:ok(list_eq(b:offsets(), { 0, 5, 6, 11 }), "batch: offsets of the gathered sets")
t:ok(list_eq(by:totable(), { 0, 2, 0 }), "batch: labels in index order (tensor)")
local bv, same = b:values(), true
local function check_rows(dst0, set, n)
  for r = 1, n do
    for c = 1, 7 do
      if bv:get(dst0 + r, c) ~= X:get(offsets[set] + r, c) then same = false end
    end
  end
end
check_rows(0, 5, 5)
check_rows(5, 2, 1)
check_rows(6, 5, 5)
t:ok(same, "batch: values are the rows of the chosen sets, concatenated")
local all = ds:batch{ 1, 2, 3, 4, 5, 6 }
t:is(all:values():maxdiff(X), 0, "batch of every set in order reproduces X")
t:ok(rl.sets(all:values(), all:offsets()):count() == 6, "batch output is a valid rl.sets")

-- ------------------------------------------------------------ files written by h5py (5 lines)
local H = tmp()
local okpy, pyout = python(([[
import h5py, numpy as np
with h5py.File(%q, "w") as f:
    f["X"] = np.arange(12, dtype=np.float32).reshape(6, 2)
    f["offsets"] = np.array([0, 2, 3, 6]); f["y"] = np.array([1, 0, 1])
    f.attrs["backbone"] = "resnet18"; f.attrs["num_classes"] = 2
]]):format(H))
t:ok(okpy, "h5py wrote a dataset file", pyout)
local hd = rl.data.load(H)
t:ok(hd:size() == 3 and hd:dim() == 2 and hd:num_classes() == 2, "h5py file loads (3 sets, D = 2, 2 classes)")
t:is(hd:values():get(6, 2), 11, "h5py values read")
t:is(hd:attrs().backbone, "resnet18", "h5py string attribute")

-- a large float64, chunked + gzip file spanning several read chunks, with a NaN in the second chunk
local Big = tmp()
okpy, pyout = python(([[
import h5py, numpy as np
x = np.random.default_rng(0).standard_normal((600, 1000))
with h5py.File(%q, "w") as f:
    f.create_dataset("X", data=x, chunks=(50, 1000), compression="gzip")
    f["offsets"] = np.arange(0, 601, 3); f["y"] = np.arange(200) %% 5
print(repr(float(x.sum())), repr(float(x[599, 999])))
x[590, 7] = np.nan
with h5py.File(%q + ".nan", "w") as f:
    f["X"] = x; f["offsets"] = np.arange(0, 601, 3); f["y"] = np.arange(200) %% 5
]]):format(Big, Big))
temps[#temps + 1] = Big .. ".nan"
t:ok(okpy, "h5py wrote the large chunked/gzip file", pyout)
local bsum, blast = (pyout or ""):match("^(%S+) (%S+)")
local bigds = rl.data.load(Big)
t:ok(math.abs(bigds:values():sum() - tonumber(bsum)) < 1e-2, "large gzip'd float64 file: sum matches numpy (float build)")
t:ok(math.abs(bigds:values():get(600, 1000) - tonumber(blast)) <= 2 ^ -23 * math.abs(tonumber(blast)),
  "last value (second read chunk) matches numpy to float precision")
t:is(bigds:num_classes(), 5, "large file: classes")
t:raises(function() rl.data.load(Big .. ".nan") end, "/X: row 590 %(0%-based, in set 196%), column 7 is NaN",
  "NaN reported with row, set and column (second read chunk)")

-- ------------------------------------------------------------ validation errors, one file each
-- bad(fields): writes the datasets with rl.h5 helpers (so the writer's own checks are bypassed)
local function bad(fields, attrs)
  local p = tmp()
  os.remove(p)
  for _, f in ipairs(fields) do rl.h5.write(p, f[1], f[2], { type = f[3] }) end
  if attrs then rl.h5.write_attrs(p, "/", attrs) end
  return p
end
local X6 = rl.randn(g, 6, 2)
local function std(over, attrs)
  local f = { X = { "X", X6 }, offsets = { "offsets", { 0, 2, 3, 6 }, "int64" }, y = { "y", { 0, 1, 0 }, "int64" } }
  for k, v in pairs(over) do f[k] = v or nil end
  local list = {}
  for _, k in ipairs{ "X", "offsets", "y", "group_offsets", "fold" } do if f[k] then list[#list + 1] = f[k] end end
  return bad(list, attrs)
end
local cases = {
  { std{ y = false }, ": /y: missing %(a dataset file needs /X, /offsets and /y%)", "missing /y" },
  { std{ X = false }, ": /X: missing", "missing /X" },
  { std{ offsets = false }, ": /offsets: missing", "missing /offsets" },
  { std{ X = { "X", rl.zeros(12) } }, ": /X: expected a 2%-D dataset %(rows x D%), got 1%-D", "X of wrong rank" },
  { std{ X = { "X", rl.zeros(6, 2, 1) } }, ": /X: expected a 2%-D dataset %(rows x D%), got 3%-D", "X of rank 3" },
  { std{ X = { "X", rl.zeros(6, 2), "int64" } }, ": /X: has type int64, expected float32 or float64", "X of integer type" },
  { std{ offsets = { "offsets", { 0, 2, 3, 6 }, "float64" } }, ": /offsets: has type float64, expected an integer type",
    "offsets of float type" },
  { std{ offsets = { "offsets", rl.zeros(2, 2), "int64" } }, ": /offsets: expected a 1%-D dataset", "offsets of rank 2" },
  { std{ offsets = { "offsets", { 1, 2, 3, 6 }, "int64" } }, ": /offsets: must start at 0, got 1", "offsets not starting at 0" },
  { std{ offsets = { "offsets", { 0, 4, 3, 6 }, "int64" } },
    ": /offsets: must be non%-decreasing, but offsets%[2%] = 3 < offsets%[1%] = 4", "non-monotone offsets" },
  { std{ offsets = { "offsets", { 0, 2, 2, 6 }, "int64" } }, ": /offsets: set 1 %(0%-based%) is empty", "empty set" },
  { std{ offsets = { "offsets", { 0, 2, 3, 5 }, "int64" } },
    ": /offsets: last entry must equal the number of rows of /X %(6%), got 5", "offsets not ending at rows" },
  { std{ offsets = { "offsets", { 0 }, "int64" }, y = { "y", {}, "int64" } }, ": /offsets: needs at least 2 entries",
    "offsets with a single entry" },
  { std{ y = { "y", { 0, 1 }, "int64" } }, ": /y: has 2 entries, expected one label per set %(B = 3 from /offsets%)",
    "y length differs from B" },
  { std{ y = { "y", { 0, 1, 2 } } }, ": /y: has type float64, expected an integer type", "y of float type" },
  { std{ y = { "y", { 0, -1, 0 }, "int64" } }, ": /y: label of set 1 %(0%-based%) is %-1; labels must be >= 0", "negative label" },
  { std({ y = { "y", { 0, 1, 2 }, "int64" } }, { num_classes = 2 }),
    ": /y: label of set 2 %(0%-based%) is 2, but attribute num_classes is 2", "label >= num_classes" },
  { std({}, { num_classes = 0 }), ": attribute num_classes must be a positive integer, got 0", "num_classes = 0" },
  { std({}, { num_classes = "two" }), ": attribute num_classes must be one positive integer", "num_classes a string" },
  { std{ group_offsets = { "group_offsets", { 0, 2 }, "int64" } },
    ": /group_offsets: last entry must equal the number of sets B %(3%), got 2", "group offsets not ending at B" },
  { std{ group_offsets = { "group_offsets", { 0, 1, 1, 3 }, "int64" } },
    ": /group_offsets: group 1 %(0%-based%) is empty", "empty group" },
  { std{ fold = { "fold", { 0, 1 }, "int64" } }, ": /fold: has 2 entries, expected one per set %(B = 3%)", "fold length" },
  { std{ fold = { "fold", { 0, -2, 1 }, "int64" } }, ": /fold: fold of set 1 %(0%-based%) is %-2", "negative fold" },
  { std{ X = { "X", rl.tensor{ { 0, 0 }, { 0, 0 }, { 0, 0 }, { 0, 1 / 0 }, { 0, 0 }, { 0, 0 } } } },
    ": /X: row 3 %(0%-based, in set 2%), column 1 is %+Inf", "Inf in X" },
  { std{ X = { "X", rl.tensor{ { 0, 0 }, { 0, 0 }, { 0, 0 }, { 0, 0 }, { 0 / 0, 0 }, { 0, 0 } } } },
    ": /X: row 4 %(0%-based, in set 2%), column 0 is NaN", "NaN in X" },
  { std{ X = { "X", rl.zeros(6, 0) } }, ": /X: has 0 columns", "X without columns" },
}
for _, c in ipairs(cases) do
  t:raises(function() rl.data.load(c[1]) end, c[1]:gsub("%p", "%%%0") .. c[2], "load: " .. c[3] .. " (names file and field)")
end
local grp = bad({ { "X/inner", { 1 } }, { "offsets", { 0, 1 }, "int64" }, { "y", { 0 }, "int64" } })
t:raises(function() rl.data.load(grp) end, ": /X: is a group, expected a dataset", "load: /X is a group")
-- a float64 value beyond the float range is refused by the float build instead of becoming Inf
local huge = bad({ { "X", rl.zeros(1, 1) }, { "offsets", { 0, 1 }, "int64" }, { "y", { 0 }, "int64" } })
os.remove(huge)
okpy = python(("import h5py, numpy as np\nwith h5py.File(%q, 'w') as f:\n    f['X'] = np.array([[1e300]]); f['offsets'] = np.array([0, 1]); f['y'] = np.array([0])\n"):format(huge))
t:raises(function() rl.data.load(huge) end, "column 0 is 1e%+300, which does not fit in float",
  "load: float64 value too large for the float build")
t:raises(function() rl.data.load(here .. "/none/x.h5") end, "x.h5: cannot open for reading", "load: missing file")
t:raises(function() rl.data.load(here .. "/data.t") end, "data.t: cannot open as an HDF5 file", "load: not an HDF5 file")
t:raises(function() rl.data.load() end, "bad argument #1", "load: path required")

-- ------------------------------------------------------------ writer errors
local W = tmp()
os.remove(W)
local good = { X = X6, offsets = { 0, 2, 3, 6 }, y = { 0, 1, 0 } }
local function with(over)
  local s = {}
  for k, v in pairs(good) do s[k] = v end
  for k, v in pairs(over) do s[k] = v end
  return s
end
local wcases = {
  { { X = X6, y = { 0, 1, 0 } }, "field 'offsets' is required", "missing offsets" },
  { { offsets = { 0, 6 }, y = { 0 } }, "field 'X' is required", "missing X" },
  { with{ X = rl.zeros(12) }, "X must be a 2%-D tensor %(rows x D%), got 1%-D", "X of rank 1" },
  { with{ X = "x" }, "X must be a 2%-D tensor %(rows x D%), got string", "X not a tensor" },
  { with{ offsets = { 0, 3, 2, 6 } }, "/offsets: must be non%-decreasing", "non-monotone offsets" },
  { with{ offsets = { 0, 2, 2, 6 } }, "/offsets: set 1 %(0%-based%) is empty", "empty set" },
  { with{ offsets = { 0, 2, 3, 7 } }, "/offsets: last entry must equal the number of rows of /X %(6%), got 7", "offsets end" },
  { with{ offsets = { 0 } }, "offsets needs at least 2 entries", "one offset" },
  { with{ offsets = { 0, 2.5, 6 } }, "offsets: entry 2 is not an integer", "fractional offset" },
  { with{ y = { 0, 1 } }, "y has 2 entries, expected one label per set %(3%)", "y length" },
  { with{ y = { 0, -1, 0 } }, "/y: label of set 1 %(0%-based%) is %-1", "negative label" },
  { with{ attrs = { num_classes = 1 } }, "/y: label of set 1 %(0%-based%) is 1, but attribute num_classes is 1",
    "label >= num_classes" },
  { with{ X = rl.tensor{ { 0, 0 }, { 0, 0 }, { 0 / 0, 0 }, { 0, 0 }, { 0, 0 }, { 0, 0 } } },
    "/X: row 2 %(0%-based, in set 1%), column 0 is NaN", "NaN in X" },
  { with{ group_offsets = { 0, 4 } }, "/group_offsets: last entry must equal the number of sets B %(3%), got 4", "group offsets" },
  { with{ group_offsets = { 0 } }, "group_offsets needs at least 2 entries", "one group offset" },
  { with{ fold = { 0, 1 } }, "fold has 2 entries, expected one per set %(3%)", "fold length" },
  { with{ fold = { 0, 1, -1 } }, "/fold: fold of set 2 %(0%-based%) is %-1", "negative fold" },
  { with{ dtype = "int8" }, "option 'dtype': unknown value \"int8\"", "bad dtype" },
  { with{ Y = 1 }, "unknown option 'Y'", "unknown field" },
  { with{ attrs = 3 }, "attrs must be a table, got number", "attrs not a table" },
  { with{ attrs = { a = { {} } } }, "attribute 'a': entry 1 is a table", "nested attribute" },
}
for _, c in ipairs(wcases) do
  t:raises(function() rl.data.write(W, c[1]) end, c[2], "write: " .. c[3])
end
t:ok(io.open(W) == nil, "a refused write creates no file")
t:raises(function() rl.data.write(W) end, "bad argument #2", "write: spec table required")
t:raises(function() rl.data.write(here .. "/none/dir/x.h5", good) end, "x.h5: cannot create", "write: uncreatable path")

-- ------------------------------------------------------------ dataset method errors
t:raises(function() ds:batch{ 7 } end, "bad argument #1 to 'batch' %(indices: entry 1 is 7, out of range 1..6%)",
  "batch: index beyond the sets")
t:raises(function() ds:batch{ 1, 0 } end, "entry 2 is 0; indices are 1%-based", "batch: index 0")
t:raises(function() ds:batch{} end, "a batch needs at least one set", "batch: empty list")
t:raises(function() ds:batch{ 1.5 } end, "entry 1 is not an integer", "batch: fractional index")
t:raises(function() ds:batch("x") end, "expected a list of integers, got string", "batch: not a list")
t:raises(function() ds.size(42) end, "rotlab.dataset expected", "methods check self")
do
  local d2 <close> = rl.data.load(F)
  t:is(d2:size(), 6, "a dataset can be a to-be-closed variable")
end
ds:close()
ds:close() -- closing twice is fine
for _, m in ipairs{ "size", "dim", "rows", "num_classes", "labels", "set_sizes", "offsets", "folds", "group_offsets",
  "attrs", "values", "file" } do
  t:raises(function() ds[m](ds) end, "has been closed", "closed dataset: " .. m .. "() raises")
end
t:raises(function() ds:batch{ 1 } end, "has been closed", "closed dataset: batch() raises")
t:ok(tostring(ds):find("closed") ~= nil, "tostring of a closed dataset")

-- ------------------------------------------------------------ splits
local labels = {}
for i = 1, 97 do labels[i] = (i % 7 == 0) and 2 or ((i % 3 == 0) and 1 or 0) end
local classes = {}
for _, l in ipairs(labels) do classes[l] = (classes[l] or 0) + 1 end

local function check_partition(parts, n)
  local seen, total = {}, 0
  for _, p in ipairs(parts) do
    for _, i in ipairs(p) do
      if seen[i] or i < 1 or i > n or math.type(i) ~= "integer" then return false end
      seen[i] = true
      total = total + 1
    end
  end
  return total == n
end

local fr = { train = 0.6, val = 0.15, test = 0.25 }
local s1 = rl.data.split(labels, { train = fr.train, val = fr.val, test = fr.test, seed = 3 })
t:ok(check_partition({ s1.train, s1.val, s1.test }, #labels), "split: parts are disjoint and cover every item")
local within = true
for _, part in ipairs{ "train", "val", "test" } do
  local cnt = {}
  for _, i in ipairs(s1[part]) do cnt[labels[i]] = (cnt[labels[i]] or 0) + 1 end
  for c, n in pairs(classes) do
    if math.abs((cnt[c] or 0) - n * fr[part]) >= 1 then within = false end
  end
  if math.abs(#s1[part] - #labels * fr[part]) > 1 then within = false end
end
t:ok(within, "split: per-class counts within 1 of n_c * fraction (stratified), totals within 1")
local sorted = true
for i = 2, #s1.train do if s1.train[i] <= s1.train[i - 1] then sorted = false end end
t:ok(sorted, "split: indices ascending")
local s1b = rl.data.split(labels, { train = fr.train, val = fr.val, test = fr.test, seed = 3 })
t:ok(list_eq(s1.train, s1b.train) and list_eq(s1.test, s1b.test), "split: same seed, same split")
local s2 = rl.data.split(labels, { train = fr.train, val = fr.val, test = fr.test, seed = 4 })
t:ok(not list_eq(s1.train, s2.train), "split: different seeds differ")
local sd = rl.data.split(50)
t:ok(#sd.train == 40 and #sd.val == 5 and #sd.test == 5 and check_partition({ sd.train, sd.val, sd.test }, 50),
  "split(count): defaults 0.8 / 0.1 / 0.1, unstratified")
local s0 = rl.data.split(10, { train = 0.7, test = 0.3 })
t:ok(#s0.train == 7 and #s0.val == 0 and #s0.test == 3, "split: a missing fraction is 0")
local gen = rl.rng(5)
local r1, r2 = rl.data.split(30, { rng = gen }), rl.data.split(30, { rng = gen })
t:ok(not list_eq(r1.train, r2.train), "split: an rng option is advanced by each call")
local ns = rl.data.split(labels, { stratify = false, seed = 1 })
t:ok(check_partition({ ns.train, ns.val, ns.test }, #labels) and math.abs(#ns.train - 0.8 * #labels) <= 1,
  "split: stratify = false")
t:ok(check_partition({ rl.data.split(rl.tensor(labels)).train, rl.data.split(rl.tensor(labels)).val,
  rl.data.split(rl.tensor(labels)).test }, #labels), "split: labels may be a tensor")

-- ------------------------------------------------------------ k-fold
local k = 5
local folds = rl.data.kfold(labels, k, { seed = 2 })
t:is(#folds, k, "kfold: k folds")
local tests = {}
for i, f in ipairs(folds) do tests[i] = f.test end
t:ok(check_partition(tests, #labels), "kfold: test parts partition the items")
local comp, strat, minsz, maxsz = true, true, math.huge, 0
for _, f in ipairs(folds) do
  local intest = {}
  for _, i in ipairs(f.test) do intest[i] = true end
  if #f.train + #f.test ~= #labels then comp = false end
  for _, i in ipairs(f.train) do if intest[i] then comp = false end end
  local cnt = {}
  for _, i in ipairs(f.test) do cnt[labels[i]] = (cnt[labels[i]] or 0) + 1 end
  for c, n in pairs(classes) do if math.abs((cnt[c] or 0) - n / k) >= 1 then strat = false end end
  minsz, maxsz = math.min(minsz, #f.test), math.max(maxsz, #f.test)
end
t:ok(comp, "kfold: train is the complement of test")
t:ok(strat, "kfold: each fold's class counts within 1 of n_c / k (stratified)")
t:ok(maxsz - minsz <= 1, "kfold: fold sizes differ by at most 1")
t:ok(list_eq(rl.data.kfold(labels, k, { seed = 2 })[3].test, folds[3].test), "kfold: same seed, same folds")
t:ok(not list_eq(rl.data.kfold(labels, k, { seed = 9 })[1].test, folds[1].test), "kfold: different seeds differ")
local kc = rl.data.kfold(10, 3)
t:ok(#kc == 3 and #kc[1].test + #kc[2].test + #kc[3].test == 10, "kfold(count): unstratified")
local ku = rl.data.kfold(labels, 20, { stratified = false })
t:is(#ku, 20, "kfold: stratified = false allows k above a class count")

-- ------------------------------------------------------------ mini-batches
local idx = s1.train
local bs = rl.data.batches(idx, 8, { seed = 1 })
local flat, sizes_ok = {}, true
for i, bt in ipairs(bs) do
  if #bt ~= (i < #bs and 8 or (#idx - 8 * (#bs - 1))) then sizes_ok = false end
  for _, v in ipairs(bt) do flat[#flat + 1] = v end
end
t:is(#bs, math.ceil(#idx / 8), "batches: ceil(n / batch_size) batches")
t:ok(sizes_ok, "batches: full batches, the last one smaller")
local copy = { table.unpack(flat) }
table.sort(copy)
t:ok(list_eq(copy, idx), "batches: every given index exactly once")
t:ok(not list_eq(flat, idx), "batches: shuffled by default")
t:ok(list_eq(rl.data.batches(idx, 8, { seed = 1 })[2], bs[2]), "batches: same seed, same batches")
t:ok(not list_eq(rl.data.batches(idx, 8, { seed = 2 })[1], bs[1]), "batches: different seeds differ")
local dl = rl.data.batches(idx, 8, { drop_last = true })
t:is(#dl, #idx // 8, "batches: drop_last drops the partial batch")
local ord = rl.data.batches({ 4, 9, 2 }, 2, { shuffle = false })
t:ok(#ord == 2 and list_eq(ord[1], { 4, 9 }) and list_eq(ord[2], { 2 }), "batches: shuffle = false keeps the order")
t:is(#rl.data.batches({}, 3), 0, "batches: an empty list gives no batches")

-- ------------------------------------------------------------ split / kfold / batches errors
local E = {
  { function() rl.data.split(labels, { train = 0.5, val = 0.2, test = 0.2 }) end, "must sum to 1", "split: fractions sum" },
  { function() rl.data.split(labels, { train = 1.2, test = -0.2 }) end, "fraction train must be in %[0, 1%]", "split: fraction > 1" },
  { function() rl.data.split(labels, { train = "a" }) end, "option 'train': expected a finite number", "split: fraction type" },
  { function() rl.data.split(10, { stratify = true }) end, "stratify = true needs a list of labels", "split: stratify a count" },
  { function() rl.data.split({}) end, "bad argument #1 to '.-' %(labels: the list is empty%)", "split: empty labels" },
  { function() rl.data.split(0) end, "expected a positive item count", "split: zero count" },
  { function() rl.data.split({ 0, 1.5 }) end, "labels: entry 2 is not an integer", "split: fractional label" },
  { function() rl.data.split("x") end, "expected a list of integers, got string", "split: bad first argument" },
  { function() rl.data.split(10, { tarin = 0.8 }) end, "unknown option 'tarin'", "split: unknown option" },
  { function() rl.data.split(10, { seed = 1, rng = rl.rng(1) }) end, "either seed or rng", "split: seed and rng" },
  { function() rl.data.split(10, { seed = 0.5 }) end, "option 'seed': expected an integer", "split: fractional seed" },
  { function() rl.data.split(10, { rng = 3 }) end, "option 'rng' must be an rl.rng", "split: bad rng" },
  { function() rl.data.kfold(labels, 1) end, "k must be at least 2", "kfold: k < 2" },
  { function() rl.data.kfold(5, 6) end, "k = 6 is more than the 5 items", "kfold: k > n" },
  { function() rl.data.kfold(labels, 14) end, "k = 14 is more than the 13 members of class 2", "kfold: k > class count" },
  { function() rl.data.kfold(10, 2, { stratified = true }) end, "stratified = true needs a list of labels", "kfold: count" },
  { function() rl.data.kfold(labels) end, "bad argument #2", "kfold: k required" },
  { function() rl.data.kfold(labels, 2, { shuffle = true }) end, "unknown option 'shuffle'", "kfold: unknown option" },
  { function() rl.data.kfold({ 0, "a" }, 2) end, "entry 2 is not an integer", "kfold: bad label" },
  { function() rl.data.batches(idx, 0) end, "batch_size must be at least 1, got 0", "batches: batch_size 0" },
  { function() rl.data.batches({ 1, 0 }, 2) end, "entry 2 is 0; indices are 1%-based", "batches: index 0" },
  { function() rl.data.batches({ 1, "x" }, 2) end, "entry 2 is not an integer", "batches: bad index" },
  { function() rl.data.batches(idx) end, "bad argument #2", "batches: batch_size required" },
  { function() rl.data.batches(idx, 2, { droplast = true }) end, "unknown option 'droplast'", "batches: unknown option" },
  { function() rl.data.batches(idx, 2, { shuffle = 1 }) end, "option 'shuffle': expected a boolean", "batches: bad shuffle" },
}
for _, e in ipairs(E) do t:raises(e[1], e[2], e[3]) end

-- ------------------------------------------------------------ experiments/make_digits.lua on a synthetic source
-- 1797 rows with the real class counts; pixel 1 holds class + 1, so the class of every instance can be read back.
local COUNTS = { 178, 182, 177, 183, 181, 182, 181, 179, 174, 180 }
local function fake_source(dir, counts, rows_override)
  os.execute("mkdir -p " .. dir .. "/sklearn-digits/raw")
  local pipe = io.popen("gzip -c > " .. dir .. "/sklearn-digits/raw/digits.csv.gz", "w")
  local gen, n = rl.rng(1), 0
  for c = 0, 9 do
    for _ = 1, counts[c + 1] do
      n = n + 1
      if rows_override and n > rows_override then break end
      local px = { c + 1 }
      for k = 2, 64 do px[k] = gen:uniform() < 0.5 and 0 or gen:int(16) end
      pipe:write(table.concat(px, ","), ",", c, "\n")
    end
  end
  pipe:close()
end
local function make_digits(dir, out, extra)
  local log = tmp()
  local ok = os.execute(("rotlab run %s/../experiments/make_digits.lua out=%s data=%s %s > %s 2>&1"):format(
    here, out, dir, extra or "", log))
  return ok, io.open(log):read("a")
end
local fake = tmp()
os.remove(fake)
fake_source(fake, COUNTS)
local mok, mout = make_digits(fake, fake .. "/out")
t:ok(mok, "make_digits runs on a data directory", mout)
t:ok(mout:find("digit_bags.h5: 600 bags, %d+ positive") and mout:find("digit_points.h5: 1797 sets"),
  "make_digits prints one line per file with counts", mout)
local mb = rl.data.load(fake .. "/out/digit_bags.h5")
local mv, moff, rule, sum, sq = mb:values(), mb:offsets(), true, 0, 0
local ml = mb:labels()
for bb = 1, mb:size() do
  local has9 = false
  for r = moff[bb] + 1, moff[bb + 1] do
    if math.floor(mv:get(r, 1) * 16 + 0.5) - 1 == 9 then has9 = true end
  end
  if (ml[bb] == 1) ~= has9 then rule = false end
  local size = moff[bb + 1] - moff[bb]
  sum, sq = sum + size, sq + size * size
end
local mean = sum / mb:size()
local sd = math.sqrt(sq / mb:size() - mean * mean)
t:ok(rule, "digit bags: label 1 exactly when the bag contains a 9")
t:ok(math.abs(mean - 10) < 0.3 and math.abs(sd - 2) < 0.3, ("digit bags: sizes ~ N(10, 2) (mean %.2f, sd %.2f)"):format(mean, sd))
local mp = rl.data.load(fake .. "/out/digit_points.h5")
local first = mp:batch{ 1 }:values()
t:ok(first:get(1, 1) == 0 and first:get(1, 2) == 0 and math.abs(first:get(1, 3) - 1 / 16) < 1e-7,
  "digit points: first point is pixel (0, 0) with intensity (class + 1) / 16")
local mok2 = make_digits(fake, fake .. "/out2")
local same_bytes = io.open(fake .. "/out/digit_bags.h5", "rb"):read("a") == io.open(fake .. "/out2/digit_bags.h5", "rb"):read("a")
t:ok(mok2 and same_bytes, "make_digits is reproducible (byte-identical files for the same seed)")
local mok3 = make_digits(fake, fake .. "/out3", "seed=1")
t:ok(mok3 and rl.data.load(fake .. "/out3/digit_bags.h5"):rows() ~= mb:rows(), "a different seed gives different bags")
local wrong = tmp()
os.remove(wrong)
local bad_counts = { table.unpack(COUNTS) }
bad_counts[1], bad_counts[2] = bad_counts[1] + 1, bad_counts[2] - 1
fake_source(wrong, bad_counts)
local fok, fout = make_digits(wrong, wrong .. "/out")
t:ok(not fok and fout:find("class counts 179,181,177") ~= nil, "make_digits fails clearly on wrong class counts", fout)
local short = tmp()
os.remove(short)
fake_source(short, COUNTS, 100)
fok, fout = make_digits(short, short .. "/out")
t:ok(not fok and fout:find("has 100 rows, expected 1797") ~= nil, "make_digits fails clearly on a truncated source", fout)
os.execute("rm -rf " .. fake .. " " .. wrong .. " " .. short)

-- ------------------------------------------------------------ the shipped digit data (built by `make data`)
local root = here .. "/.."
local bags_path, points_path = root .. "/build/data/digit_bags.h5", root .. "/build/data/digit_points.h5"
if io.open(bags_path) and io.open(points_path) then
  local bags = rl.data.load(bags_path)
  local a = bags:attrs()
  t:ok(bags:size() == 600 and bags:dim() == 64 and bags:num_classes() == 2, "digit_bags: 600 bags of 64-d images, 2 classes")
  local v = bags:values()
  t:ok(v:min() >= 0 and v:max() <= 1, "digit_bags: pixels scaled to [0, 1]")
  local minsize, pos = math.huge, 0
  for _, s in ipairs(bags:set_sizes()) do minsize = math.min(minsize, s) end
  for _, l in ipairs(bags:labels()) do pos = pos + l end
  t:ok(minsize >= 2, "digit_bags: bag sizes >= 2")
  t:ok(pos > 0 and pos < 600, "digit_bags: both labels occur (" .. pos .. " positive)")
  t:ok(a.source and a.licence and a.protocol and a.seed and a.num_classes == 2, "digit_bags: provenance attributes")
  local pts = rl.data.load(points_path)
  t:ok(pts:size() == 1797 and pts:dim() == 3 and pts:num_classes() == 10, "digit_points: 1797 point sets in 3-D, 10 classes")
  local cnt = {}
  for _, l in ipairs(pts:labels()) do cnt[l + 1] = (cnt[l + 1] or 0) + 1 end
  t:is(table.concat(cnt, ","), "178,182,177,183,181,182,181,179,174,180", "digit_points: the source's class counts")
  t:ok(pts:values():min() >= 0 and pts:values():max() <= 1, "digit_points: coordinates and intensities in [0, 1]")
else
  t:diag("build/data/digit_*.h5 not built (run `make data`): skipping their checks")
end

for _, p in ipairs(temps) do os.remove(p) end
os.exit(t:done())
