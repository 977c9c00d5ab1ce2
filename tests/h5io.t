#!/usr/bin/env rotlab-double
-- rl.h5: generic HDF5 reads of the golden files (checked against h5py and against the golden spec's own
-- invariants), writers and their round trips, and the error path of every function.
local rl = require "rotlab"
local t = require("rotlab.tap")()

local here = (arg and arg[0] or "tests/h5io.t"):match("^(.*)/[^/]*$") or "."
local golden = here .. "/golden/"
local PY = "/usr/bin/python3"

-- Runs a Python script (h5py) and returns its stdout lines, or nil and the reason.
local function python(src)
  local script, out = os.tmpname(), os.tmpname()
  local f = assert(io.open(script, "w"))
  f:write(src)
  f:close()
  local ok = os.execute(("%s %s > %s 2>&1"):format(PY, script, out))
  local lines = {}
  for line in io.lines(out) do lines[#lines + 1] = line end
  os.remove(script)
  os.remove(out)
  if not ok then return nil, table.concat(lines, "\n") end
  return lines
end

local function amax(x) return math.max(x:max(), -x:min()) end

local function relerr(a, b)
  return math.abs(a - b) / math.max(math.abs(b), 1e-300)
end

-- ------------------------------------------------------------ golden: one case read in detail
local F = golden .. "rot_layers.h5"
local case = "uot_sinkhorn_num1"

local members = rl.h5.list(F, case)
local names = {}
for _, m in ipairs(members) do names[#names + 1] = m.name .. ":" .. m.kind end
local py = python(([[
import h5py
f = h5py.File(%q, "r")
g = f[%q]
print(",".join(k + ":" + ("group" if isinstance(g[k], h5py.Group) else "dataset") for k in sorted(g.keys())))
print(repr(int(g.attrs["num"])), repr(float(g.attrs["eps"])), g.attrs["kind"], ",".join(g.attrs["param_names"]))
x = g["inputs/x"][...]
print(" ".join(str(d) for d in x.shape), repr(float(x.sum())), repr(float(x[1, 2, 3])), repr(float(abs(x).max())))
]]):format(F, case))
t:ok(py ~= nil, "h5py reads the golden file (reference for the checks below)")
py = py or {}
t:is(table.concat(names, ","), py[1], "list: members of " .. case .. " match h5py (sorted, with kinds)")

local attrs = rl.h5.attrs(F, case)
local num, eps, kind, pnames = (py[2] or ""):match("^(%S+) (%S+) (%S+) (%S+)$")
t:is(attrs.num, tonumber(num), "attribute num (integer) matches h5py")
t:is(math.type(attrs.num), "integer", "integer attributes come back as Lua integers")
t:is(attrs.eps, tonumber(eps), "attribute eps (float64) matches h5py exactly")
t:is(attrs.kind, kind, "string attribute (variable length) matches h5py")
t:is(type(attrs.param_names) == "table" and table.concat(attrs.param_names, ",") or tostring(attrs.param_names),
  pnames, "array of strings attribute comes back as a list")

local x = rl.h5.read(F, case .. "/inputs/x")
local shape = x:shape()
local pyshape, pysum, pyelem, pymax = (py[3] or ""):match("^(%d+ %d+ %d+) (%S+) (%S+) (%S+)$")
t:is(table.concat(shape, " "), pyshape, "read: shape as stored (B x Nmax x D)")
t:is(table.concat(shape, " "), ("%d %d %d"):format(attrs.B, attrs.Nmax, attrs.D), "shape agrees with attributes B, Nmax, D")
t:ok(relerr(x:sum(), tonumber(pysum)) < 1e-12, "read: sum of inputs/x matches h5py", x:sum() .. " vs " .. pysum)
t:is(x:get(2, 3, 4), tonumber(pyelem), "read: element [1,2,3] (0-based) matches h5py exactly")
t:is(amax(x), tonumber(pymax), "read: max |x| matches h5py")

-- golden-spec invariants: padding rows are zero, mask rows sum to sizes
local sizes, sshape = rl.h5.read_int(F, case .. "/inputs/sizes")
t:is(#sizes, attrs.B, "read_int: one size per set")
t:is(table.concat(sshape, ","), tostring(attrs.B), "read_int: second result is the shape")
local mask = rl.h5.read(F, case .. "/inputs/mask") -- uint8 dataset read as real
local mask_ok, pad_ok = true, true
for b = 1, attrs.B do
  local s = 0
  for n = 1, attrs.Nmax do
    s = s + mask:get(b, n)
    if n > sizes[b] then
      for d = 1, attrs.D do if x:get(b, n, d) ~= 0 then pad_ok = false end end
    end
  end
  if s ~= sizes[b] then mask_ok = false end
end
t:ok(mask_ok, "uint8 mask rows sum to the int64 sizes")
t:ok(pad_ok, "x is exactly zero on padded rows (golden spec section 0)")
local m8 = rl.h5.read_int(F, case .. "/inputs/mask")
t:is(#m8, attrs.B * attrs.Nmax, "read_int accepts uint8 and flattens row-major")

-- float32 rerun vs float64 result: within the reference's own stated difference
local T64, T32 = rl.h5.read(F, case .. "/outputs/T"), rl.h5.read(F, case .. "/float32/T")
t:ok(T64:maxdiff(T32) / amax(T64) <= attrs.rel_diff_float32_T * (1 + 1e-6),
  "float32/T vs outputs/T within rel_diff_float32_T (float32 dataset read)")

-- ------------------------------------------------------------ golden: every dataset of one case per file, vs h5py
local files = { "rot_layers.h5", "rot_modules.h5", "baselines.h5", "cswe.h5", "lapsum.h5" }
local script = { "import h5py, numpy as np" }
for _, name in ipairs(files) do
  script[#script + 1] = ([[
f = h5py.File(%q, "r")
g = sorted(f.keys())[0]
def visit(n, o):
    if isinstance(o, h5py.Dataset):
        print(%q, g + "/" + n, o.dtype.kind, o.ndim, repr(float(np.asarray(o[...], dtype=np.float64).sum())))
f[g].visititems(visit)
]]):format(golden .. name, name)
end
local sums = python(table.concat(script, "\n")) or {}
local checked, bad = 0, {}
for _, line in ipairs(sums) do
  local file, path, kindc, ndim, sum = line:match("^(%S+) (%S+) (%a) (%d+) (%S+)$")
  if file then
    local ok, v = pcall(rl.h5.read, golden .. file, path)
    local s = ok and v:sum()
    if not ok or math.abs(s - tonumber(sum)) > 1e-10 * math.max(1, math.abs(tonumber(sum))) then
      bad[#bad + 1] = file .. ":" .. path .. " " .. tostring(ok and s or v) .. " vs " .. sum
    end
    if kindc == "i" or kindc == "u" then
      local l = rl.h5.read_int(golden .. file, path)
      local si = 0
      for _, n in ipairs(l) do si = si + n end
      if si ~= tonumber(sum) then bad[#bad + 1] = file .. ":" .. path .. " (read_int)" end
    end
    checked = checked + 1
  end
end
t:ok(checked >= 25, "every dataset of the first case of each golden file was compared (" .. checked .. ")")
t:ok(#bad == 0, "sums of all those datasets match h5py (float32/64, int64, uint8, rank 1..3)", table.concat(bad, "\n"))

local root = rl.h5.list(golden .. "lapsum.h5")
t:ok(#root > 0 and root[1].kind == "group", "list with the default group lists the root")
local la = rl.h5.attrs(golden .. "lapsum.h5", root[1].name)
t:is(type(la.descending), "boolean", "h5py boolean attribute comes back as a Lua boolean")
t:is(rl.h5.exists(F, case .. "/inputs/x"), true, "exists: dataset")
t:is(rl.h5.exists(F, case), true, "exists: group")
t:is(rl.h5.exists(F, "/"), true, "exists: root")
t:is(rl.h5.exists(F, case .. "/nope"), false, "exists: missing member")
t:is(rl.h5.exists(F, "nope/inputs/x"), false, "exists: missing parent is false, not an error")
t:is(rl.h5.exists(F, case .. "/inputs/x/deeper"), false, "exists: below a dataset is false")

-- ------------------------------------------------------------ writers and round trips
local W = os.tmpname()
local a = rl.tensor{ { 1 / 3, -2.5, 1e-300 }, { 4, 5.25, -6e10 } }
rl.h5.write(W, "a/b/x64", a, { truncate = true })
rl.h5.write(W, "a/b/x32", a, { type = "float32" })
local big = { 9007199254740993, -(2 ^ 62 | 0), 0, 42 }
rl.h5.write(W, "ints", big, { type = "int64" })
rl.h5.write(W, "scalar", 2.5)
rl.h5.write(W, "iscalar", 7, { type = "int64" })
rl.h5.write(W, "cube", rl.full(1.5, 2, 3, 4))
rl.h5.write(W, "empty", rl.zeros(0, 3))
rl.h5.write(W, "from_table", { { 1, 2 }, { 3, 4 } })
rl.h5.create_group(W, "g/h")
rl.h5.create_group(W, "g/h") -- existing group is fine
rl.h5.write_attrs(W, "/", { name = "digits", n = 3, x = 0.5, flag = true, ilist = { 1, 2, 3 }, flist = { 1, 2.5 },
  slist = { "a", "bc" }, blist = { true, false }, none = {} })
rl.h5.write_attrs(W, "a/b/x64", { unit = "m" })
rl.h5.write_attrs(W, "/", { n = 4 }) -- replaces

local r64 = rl.h5.read(W, "a/b/x64")
t:is(r64:maxdiff(a), 0, "float64 write -> read is exact (double build)")
local r32 = rl.h5.read(W, "a/b/x32")
t:ok(r32:maxdiff(a) > 0 and r32:maxdiff(a) <= 6e10 * 2 ^ -24, "float32 storage rounds to float32 precision")
local ri = rl.h5.read_int(W, "ints")
t:is(table.concat(ri, ","), table.concat(big, ","), "int64 write -> read_int is exact beyond 2^53")
t:is(rl.h5.read(W, "scalar"):get(1), 2.5, "scalar dataset reads as a 1-element tensor")
local si, sshape2 = rl.h5.read_int(W, "iscalar")
t:is(si[1] * 10 + #sshape2, 70, "int64 scalar: one value, empty shape")
t:is(table.concat(rl.h5.read(W, "cube"):shape(), "x"), "2x3x4", "rank 3 round trip keeps the shape")
t:is(table.concat(rl.h5.read(W, "empty"):shape(), "x"), "0x3", "empty dataset round trip")
t:is(rl.h5.read(W, "from_table"):get(2, 1), 3, "nested Lua table written as a dataset")
local wl = {}
for _, m in ipairs(rl.h5.list(W)) do wl[#wl + 1] = m.name .. ":" .. m.kind end
t:is(table.concat(wl, ","), "a:group,cube:dataset,empty:dataset,from_table:dataset,g:group,ints:dataset,iscalar:dataset,scalar:dataset",
  "list of a written file")
local wa = rl.h5.attrs(W)
t:is(wa.n, 4, "write_attrs replaces an existing attribute")
t:ok(wa.name == "digits" and wa.x == 0.5 and wa.flag == true, "scalar attributes round trip (string, float, boolean)")
t:is(table.concat(wa.ilist, ",") .. ";" .. table.concat(wa.flist, ",") .. ";" .. table.concat(wa.slist, ","),
  "1,2,3;1.0,2.5;a,bc", "list attributes round trip (int, float, string)")
t:ok(wa.blist[1] == true and wa.blist[2] == false and #wa.none == 0, "boolean list and empty list round trip")
t:is(rl.h5.attrs(W, "a/b/x64").unit, "m", "attributes of a dataset")
t:is(next(rl.h5.attrs(W, "g/h")), nil, "attrs of a group without attributes is an empty table")

local pyw = python(([[
import h5py
f = h5py.File(%q, "r")
a = f.attrs
print(type(a["name"]).__name__, type(a["n"]).__name__, type(a["x"]).__name__, type(a["flag"]).__name__, list(a["slist"]), list(a["blist"]))
print(f["a/b/x64"].dtype, f["a/b/x32"].dtype, f["ints"].dtype, int(f["ints"][0]), f["a/b/x64"].attrs["unit"])
]]):format(W))
t:is(pyw and pyw[1], "str int64 float64 bool_ ['a', 'bc'] [True, False]", "h5py reads our attributes as str, int64, float64, bool")
t:is(pyw and pyw[2], "float64 float32 int64 9007199254740993 m", "h5py reads our datasets with the requested types")

-- a dataset file (rl.data) round trip in the double build: float64 storage is exact, float32 rounds
local D = os.tmpname()
local DX = rl.randn(rl.rng(3), 9, 4)
rl.data.write(D, { X = DX, offsets = { 0, 4, 5, 9 }, y = { 1, 0, 1 }, attrs = { num_classes = 2 } })
local dd = rl.data.load(D)
t:is(dd:values():maxdiff(DX), 0, "dataset write -> load is exact in the double build (float64 default)")
t:ok(dd:size() == 3 and table.concat(dd:labels(), ",") == "1,0,1", "dataset sets and labels round trip")
rl.data.write(D, { X = DX, offsets = { 0, 4, 5, 9 }, y = { 1, 0, 1 }, dtype = "float32" })
local d32 = rl.data.load(D):values()
t:ok(d32:maxdiff(DX) > 0 and d32:maxdiff(DX) <= 2 ^ -24 * amax(DX), "dtype float32 rounds to float32")
t:is(rl.h5.read(D, "X"):maxdiff(d32), 0, "rl.h5.read sees the same /X as rl.data.load")
os.remove(D)

-- ------------------------------------------------------------ errors
local tmpdir = os.tmpname()
os.remove(tmpdir)
t:raises(function() rl.h5.read(F, "nope") end, "rot_layers.h5: nope: no such dataset", "read: missing dataset names file and path")
t:raises(function() rl.h5.read(F, case) end, case .. ": is a group, not a dataset", "read: a group is not a dataset")
t:raises(function() rl.h5.read(tmpdir .. "/none.h5", "x") end, "none.h5: cannot open for reading", "read: missing file")
t:raises(function() rl.h5.read(here .. "/h5io.t", "x") end, "h5io.t: cannot open as an HDF5 file", "read: not an HDF5 file")
t:raises(function() rl.h5.read(F) end, "bad argument #2", "read: path is required")
t:raises(function() rl.h5.read({}, "x") end, "bad argument #1", "read: file must be a string")
t:raises(function() rl.h5.read_int(F, case .. "/inputs/x") end, "has type float64, expected an integer dataset",
  "read_int: refuses floating point")
t:raises(function() rl.h5.read_int(F, "nope") end, "no such dataset", "read_int: missing dataset")
t:raises(function() rl.h5.read_int(tmpdir .. "/none.h5", "x") end, "cannot open", "read_int: missing file")
t:raises(function() rl.h5.list(F, case .. "/inputs/x") end, "is a dataset, not a group", "list: a dataset is not a group")
t:raises(function() rl.h5.list(F, "nope") end, "nope: no such group", "list: missing group")
t:raises(function() rl.h5.list(tmpdir .. "/none.h5") end, "cannot open", "list: missing file")
t:raises(function() rl.h5.attrs(F, "nope") end, "nope: no such group or dataset", "attrs: missing object")
t:raises(function() rl.h5.attrs(tmpdir .. "/none.h5") end, "cannot open", "attrs: missing file")
t:raises(function() rl.h5.exists(tmpdir .. "/none.h5", "x") end, "cannot open", "exists: a missing file is an error")
t:raises(function() rl.h5.exists(F) end, "bad argument #2", "exists: path is required")

-- string and rank-5 datasets written by h5py
local odd = os.tmpname()
local okodd = python(([[
import h5py, numpy as np
with h5py.File(%q, "w") as f:
    f["s"] = "text"
    f["r5"] = np.zeros((1, 2, 1, 2, 1))
    f["c"] = np.zeros(2, dtype=[("a", "i4"), ("b", "f8")])
    f.attrs.create("comp", np.zeros(1, dtype=[("a", "i4")])[0])
    f.attrs["fixed"] = np.bytes_("abc")
]]):format(odd))
t:ok(okodd ~= nil, "h5py wrote the odd-types file")
t:raises(function() rl.h5.read(odd, "s") end, "s: has type string, expected a numeric dataset", "read: string dataset refused")
t:raises(function() rl.h5.read(odd, "c") end, "has type compound", "read: compound dataset refused")
t:raises(function() rl.h5.read(odd, "r5") end, "has rank 5, at most 4", "read: rank 5 refused")
local oa = rl.h5.attrs(odd)
t:is(oa.fixed, "abc", "fixed-length string attribute")
t:ok(type(oa.comp) == "string" and oa.comp:find("unsupported") ~= nil, "unsupported attribute type is described, not fatal")

t:raises(function() rl.h5.write(W, "ints", { 1 }, { type = "int64" }) end, "ints: already exists", "write: existing dataset")
t:raises(function() rl.h5.write(W, "ints/z", { 1 }, { type = "int64" }) end, "its parent /ints is a dataset",
  "write: parent is a dataset")
t:raises(function() rl.h5.write(W, "q", { 1.5 }, { type = "int64" }) end, "entry 1 is not an integer", "write: int64 needs integers")
t:raises(function() rl.h5.write(W, "q", rl.tensor{ 0.5 }, { type = "int64" }) end, "not an integer",
  "write: int64 from a fractional tensor")
t:raises(function() rl.h5.write(W, "q", { 1 }, { type = "int32" }) end, "unknown value \"int32\"", "write: unknown type")
t:raises(function() rl.h5.write(W, "q", { 1 }, { typo = 1 }) end, "unknown option 'typo'", "write: unknown option")
t:raises(function() rl.h5.write(W, "q", { { 1 }, { 2, 3 } }) end, "ragged", "write: ragged table")
t:raises(function() rl.h5.write(W, "q") end, "bad argument #3", "write: data is required")
t:raises(function() rl.h5.write(tmpdir .. "/sub/x.h5", "q", { 1 }) end, "x.h5: cannot create", "write: uncreatable file")
t:raises(function() rl.h5.write(here .. "/h5io.t", "q", { 1 }) end, "cannot open as an HDF5 file for writing",
  "write: existing non-HDF5 file is not clobbered")
t:raises(function() rl.h5.write_attrs(W, "zz", { a = 1 }) end, "zz: no such group or dataset", "write_attrs: missing object")
t:raises(function() rl.h5.write_attrs(W, "/", { a = { 1, "x" } }) end, "must all be numbers, all strings or all booleans",
  "write_attrs: mixed list")
t:raises(function() rl.h5.write_attrs(W, "/", { a = { { 1 } } }) end, "entry 1 is a table", "write_attrs: nested list")
t:raises(function() rl.h5.write_attrs(W, "/", { [1] = 2 }) end, "attribute names must be strings", "write_attrs: bad name")
t:raises(function() rl.h5.write_attrs(W, "/", { f = print }) end, "attribute 'f' is a function", "write_attrs: bad value")
t:raises(function() rl.h5.write_attrs(W, "/", "x") end, "bad argument #3", "write_attrs: attrs must be a table")
t:raises(function() rl.h5.create_group(W, "ints/g") end, "its parent /ints is a dataset", "create_group: below a dataset")
t:raises(function() rl.h5.create_group(W, "ints") end, "ints: already exists as a dataset", "create_group: name taken")

-- every failing call above closed its file: the same file can still be written and reopened
local C = os.tmpname()
rl.h5.write(C, "x", { 1, 2 }, { truncate = true })
pcall(rl.h5.read, C, "missing")
pcall(rl.h5.read_int, C, "x/y")
pcall(rl.h5.attrs, C, "nope")
rl.h5.write(C, "y", { 3 })
t:is(#rl.h5.list(C), 2, "files are closed after errors (a later write succeeds)")

for _, p in ipairs{ W, odd, C } do os.remove(p) end
os.exit(t:done())
